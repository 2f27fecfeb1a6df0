"""Reducers for module objects: by name when importable, else by value."""

from __future__ import annotations

import sys
import types

from .. import _rebuild

# Attributes a module gets from the import system; never saved by value.
_MODULE_BOOKKEEPING = frozenset({"__builtins__", "__loader__", "__spec__", "__cached__"})


def is_importable_module(module: types.ModuleType) -> bool:
    name = getattr(module, "__name__", None)
    return isinstance(name, str) and sys.modules.get(name) is module


def reduce_module(module: types.ModuleType):
    if is_importable_module(module):
        return _rebuild.import_module, (module.__name__,)
    state = {k: v for k, v in vars(module).items() if k not in _MODULE_BOOKKEEPING}
    return _rebuild.make_module, (module.__name__,), state, None, None, _rebuild.module_setstate


def reduce_session_module(session_module, module: types.ModuleType):
    """References to the module being saved as a session are by name even when
    it is not importable: the loader resolves the name to the restored module."""
    if module is session_module:
        return _rebuild.import_module, (module.__name__,)
    return reduce_module(module)


TABLE = {types.ModuleType: reduce_module}


# ---------------------------------------------------------------- submodules reached as attributes


class ModuleWithSubmodules:
    """Pickles as "module ``name``, after importing ``submodules``": what code
    that writes ``xml.etree.ElementTree.parse`` needs.  In a fresh
    interpreter ``import xml`` alone leaves ``xml.etree`` unset."""

    __slots__ = ("name", "submodules")

    def __init__(self, name: str, submodules: tuple):
        self.name, self.submodules = name, submodules

    def __reduce__(self):
        return _rebuild.import_package, (self.name, self.submodules)


def reachable_submodules(module: types.ModuleType, names) -> tuple:
    """Loaded submodules of ``module`` that code naming ``names`` (its
    ``co_names``, attribute names included) reaches as attributes, sorted:
    ``xml.etree`` and ``xml.etree.ElementTree`` for code that names
    ``etree`` and ``ElementTree``.  cloudpickle's rule."""
    found = []
    stack = [module]
    while stack:
        parent = stack.pop()
        prefix = parent.__name__ + "."
        attrs = vars(parent)
        for name in names:
            child = attrs.get(name)
            if isinstance(child, types.ModuleType) and child.__name__ == prefix + name and is_importable_module(child):
                found.append(child.__name__)
                stack.append(child)
    return tuple(sorted(found))


def with_submodules(module, names):
    """``module`` itself, or what pickles it with the submodules ``names`` reach."""
    if not is_importable_module(module) or module.__name__ == "__main__":
        return module
    submodules = reachable_submodules(module, names)
    return ModuleWithSubmodules(module.__name__, submodules) if submodules else module
