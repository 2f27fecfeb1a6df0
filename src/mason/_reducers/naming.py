"""The one predicate that decides "by reference or by value"."""

from __future__ import annotations

import sys


def lookup_by_name(obj, by_value_modules: frozenset[str] = frozenset()) -> bool:
    """True when ``obj`` can be found again as ``module.qualname``.

    Objects of ``__main__``, of a module being saved as a session
    (``by_value_modules``), of a module missing from ``sys.modules``, or
    defined inside a function are not: they are saved by value.
    """
    module_name = getattr(obj, "__module__", None)
    if not isinstance(module_name, str) or module_name == "__main__":
        return False
    if module_name in by_value_modules:
        return False
    module = sys.modules.get(module_name)
    if module is None:
        return False
    qualname = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    if not isinstance(qualname, str) or "<locals>" in qualname:
        return False
    found: object = module
    for part in qualname.split("."):
        found = getattr(found, part, _MISSING)
        if found is _MISSING:
            return False
    return found is obj


_MISSING = object()
