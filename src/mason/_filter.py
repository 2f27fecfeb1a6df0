"""Which variables of a namespace are saved: include/exclude rules.

Pure functions.  A rule is a name, a glob pattern, a compiled regular
expression, a type, or a predicate ``(name, obj) -> bool``; a list of rules
matches when any of them does.
"""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import Callable, Iterable

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time: `import mason` stays fast
    from typing import Any

    Rule = Any  # str | re.Pattern | type | Callable[[str, object], bool] | Iterable of those
    Predicate = Callable[[str, object], bool]

#: IPython's own bookkeeping in ``__main__``, never saved from a shell:
#: history (``_i``, ``_i7``, ``_7``...), the output cache and its helpers.
IPYTHON_NAMES = (
    "In",
    "Out",
    "_",
    "__",
    "___",
    "_i",
    "_ii",
    "_iii",
    "_oh",
    "_ih",
    "_dh",
    "get_ipython",
    "exit",
    "quit",
    "_exit_code",
    "__builtin__",
    "__doc__",
    "__vsc_ipynb_file__",
    re.compile(r"^_i?\d+$"),
)

#: Packages whose objects IPython and Jupyter bind in the user namespace
#: (``open``, ``exit``, ``get_ipython`` ...).
_SHELL_PACKAGES = ("IPython.", "ipykernel.", "jupyter_client.", "traitlets.")


@functools.cache
def _ipython_names() -> Predicate:
    return compile_rule(list(IPYTHON_NAMES))


def shell_owns(name: str, value: object) -> bool:
    """Whether a name the shell lists in ``user_ns_hidden`` is the shell's own.

    ``%pylab`` hides the hundreds of names it imports there too (``np``,
    ``plot``, ``linspace``), but those are the user's session: functions in
    it use them, so they are saved (by reference, as imported objects).
    """
    if name in MODULE_BOOKKEEPING or name in ("open", "__builtin__", "_sh", "_exit_code"):
        return True
    if _ipython_names()(name, value):
        return True
    module = getattr(value, "__module__", None)
    if not isinstance(module, str):
        module = type(value).__module__
    return isinstance(module, str) and (module + ".").startswith(_SHELL_PACKAGES)


#: Module attributes the import system sets; restoring them would lie about
#: the module the session is loaded into.
MODULE_BOOKKEEPING = frozenset(
    {
        "__builtins__",
        "__name__",
        "__loader__",
        "__spec__",
        "__package__",
        "__file__",
        "__cached__",
        "__path__",
        "__session__",
    }
)

_GLOB_CHARS = re.compile(r"[*?\[]")


def compile_rule(rule: Rule) -> Predicate:
    """One predicate ``(name, obj) -> bool`` for a rule or a list of rules."""
    if isinstance(rule, str):
        text = rule
        if _GLOB_CHARS.search(text):
            return lambda name, obj: fnmatch.fnmatchcase(name, text)
        return lambda name, obj: name == text
    if isinstance(rule, re.Pattern):
        regex = rule
        return lambda name, obj: regex.search(name) is not None
    if isinstance(rule, type) or (isinstance(rule, tuple) and rule and all(isinstance(r, type) for r in rule)):
        kinds = rule
        return lambda name, obj: isinstance(obj, kinds)
    if callable(rule):
        predicate = rule
        return lambda name, obj: bool(predicate(name, obj))
    if isinstance(rule, Iterable):
        predicates = [compile_rule(item) for item in rule]
        return lambda name, obj: any(p(name, obj) for p in predicates)
    raise TypeError(
        f"a filter rule must be a name, glob pattern, compiled regex, type, predicate "
        f"(name, obj) -> bool, or a list of those; got {type(rule).__name__}: {rule!r}"
    )


def make_filter(exclude: Rule = None, include: Rule = None, *, ipython=None) -> Predicate:
    """``keep(name, obj)``: whether a variable is saved.

    ``ipython``: None outside IPython, else the names IPython itself put in
    the user namespace (``shell.user_ns_hidden``), left out with the rest
    of its bookkeeping.
    """
    excluded = compile_rule(exclude) if exclude is not None else None
    included = compile_rule(include) if include is not None else None
    ipython_rule = None
    if ipython is not None:
        hidden = frozenset(ipython)
        bookkeeping = compile_rule(list(IPYTHON_NAMES))
        ipython_rule = lambda name, obj: name in hidden or bookkeeping(name, obj)  # noqa: E731

    def keep(name: str, obj: object) -> bool:
        if name in MODULE_BOOKKEEPING:
            return False
        if ipython_rule is not None and ipython_rule(name, obj):
            return False
        if included is not None and not included(name, obj):
            return False
        return excluded is None or not excluded(name, obj)

    return keep
