"""Variables that are other modules' objects, and how a session refers to them.

``from sympy import *`` leaves ``CC``, ``S``, ``pi`` in a namespace; ``import
xml.etree.ElementTree`` leaves ``xml``.  Saved by value, the first lose their
identity (``CC is sympy.CC``) and some cannot be rebuilt at all; saved as a
bare ``import xml``, the second loses ``xml.etree``.  This module decides,
for the entries of a namespace, which are references and to what.
"""

from __future__ import annotations

import sys
import types

from . import _rebuild
from ._reducers.functions import code_global_names
from ._reducers.modules import with_submodules
from ._reducers.thirdparty import live_singletons

_MISSING = object()

# ---------------------------------------------------------------- public attributes of other modules


def by_public_home(entries, own: str) -> None:
    """Entries saved by value that are the very object a public attribute of
    another importable module holds become references to it, whatever their
    type.  Only the modules the namespace refers to are searched (a
    namespace holding ``CC`` holds sympy's functions too), so a session
    without imports pays nothing."""
    candidates = [e for e in entries if e.stored == "value" and _may_be_imported(e.name, e.value, own)]
    if not candidates:
        return
    # The namespace refers to other modules through what it holds by
    # reference (modules, imported functions and classes) and through the
    # types of the candidates themselves; the values it holds as its own
    # (literals, its functions, its objects) name no other module.
    referring = [e.value for e in entries if e.stored == "reference"] + [e.value for e in candidates]
    homes = PublicHomes(referring, own)
    if not homes.searches():
        return
    # Saved by their own reducers, by reference with the user's changes.
    live = {id(obj) for obj in live_singletons()}
    left = []
    for entry in candidates:
        if id(entry.value) in live:
            continue
        home = homes.by_name(entry.name, entry.value)
        if home is None:
            left.append(entry)
        else:
            entry.stored, entry.saved = "reference", ModuleAttributeRef(*home)
    if left:
        found = homes.by_identity([entry.value for entry in left])
        for entry in left:
            home = found.get(id(entry.value))
            if home is not None:
                entry.stored, entry.saved = "reference", ModuleAttributeRef(*home)


class ModuleAttributeRef:
    """Pickles as "attribute ``name`` of module ``module``", imported on load."""

    __slots__ = ("module", "name")

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    def __reduce__(self):
        return _rebuild.module_attribute, (self.module, self.name)


# Values that are equal wherever they come from, and that the interpreter
# shares between unrelated modules (small ints, interned strings, ``()``):
# being found in a module says nothing about where they came from.
_LITERAL_TYPES = frozenset({type(None), bool, int, float, complex, str, bytes, type(...), type(NotImplemented)})


def _may_be_imported(name: str, value, own: str) -> bool:
    """Whether ``value`` could be another module's object (cheap checks only)."""
    cls = type(value)
    if cls in _LITERAL_TYPES or isinstance(value, types.ModuleType):
        return False
    if name.startswith("__") and name.endswith("__"):
        return False  # the module's own bookkeeping (``__doc__``, ``__annotations__``)
    if cls in (tuple, frozenset) and not value:
        return False  # ``()`` and ``frozenset()`` are singletons
    # Objects of the session's own classes, and its own functions, are the
    # user's even when they were also stored into some other module.
    home = cls.__module__
    if home == own or home == "__main__":
        return False
    owner = getattr(value, "__module__", None) if isinstance(value, (type, types.FunctionType)) else None
    return owner != own and owner != "__main__"


class PublicHomes:
    """Finds objects among the public attributes of the modules a namespace
    refers to: module objects in it, the modules that define the types and
    functions in it, and every package above those (``builtins`` aside: a
    ``list`` says nothing about where it came from).

    First by the variable's own name (``from sympy import *``), in the
    shortest module path that has it (``sympy.CC``, not
    ``sympy.polys.domains.CC``); then, for what is left, under any public
    name of a top-level package or of a module the namespace holds
    (``codes = np.typecodes``), shortest path and first name in sorted order
    first, so the same session is always saved the same way.  That second
    search reads whole module dicts: it is done once, for all that is left.
    """

    def __init__(self, values, own: str) -> None:
        names: set[str] = set()
        held = set()
        for value in values:
            if isinstance(value, types.ModuleType):
                held.add(value.__name__)
        for source in {s for s in _defining_modules(values) if isinstance(s, str)}:
            # Private modules are never a public home, but the public
            # packages above them are: ``scipy.stats.norm`` is an object of
            # ``scipy.stats._continuous_distns``.
            parts = _public_prefix(source.split("."))
            names.update(".".join(parts[: i + 1]) for i in range(len(parts)))
        names.difference_update((own, "__main__", "builtins"))
        modules = []
        for name in sorted(names, key=lambda n: (n.count("."), len(n), n)):
            module = sys.modules.get(name)
            # Not an alias entry of sys.modules (``os.path`` is posixpath).
            if module is not None and getattr(module, "__name__", None) == name:
                modules.append(module)
        self._modules = modules
        self._broad = [m for m in modules if "." not in m.__name__ or m.__name__ in held]

    def searches(self) -> bool:
        """Whether there is any module to search at all."""
        return bool(self._modules)

    def by_name(self, var_name: str, value) -> tuple[str, str] | None:
        """(module name, ``var_name``) of the shortest module holding
        ``value`` as ``var_name``, or None."""
        if var_name.startswith("_"):
            return None
        for module in self._modules:
            if vars(module).get(var_name, _MISSING) is value:
                return module.__name__, var_name
        return None

    def by_identity(self, values) -> dict[int, tuple[str, str]]:
        """{id(value): (module name, attribute name)} for those of ``values``
        that some top-level package or held module has under a public name."""
        wanted = {id(value) for value in values}
        found: dict[int, tuple[str, str]] = {}
        for module in self._broad:
            namespace = vars(module)
            # Most modules hold none of the wanted objects: one pass in C says so.
            if wanted.isdisjoint(map(id, namespace.values())):
                continue
            here: dict[int, str] = {}
            for attr, value in namespace.items():
                key = id(value)
                if key in wanted and isinstance(attr, str) and not attr.startswith("_"):
                    known = here.get(key)
                    if known is None or attr < known:
                        here[key] = attr
            for key, attr in here.items():
                found[key] = (module.__name__, attr)
            wanted.difference_update(here)
            if not wanted:
                break
        return found


def _public_prefix(parts: list) -> list:
    """The leading components of a dotted module name up to its first private
    one (``_io``, ``._core``).  ``__future__``'s features are left to their
    reducer: a module attribute reference never names a dunder module."""
    for i, part in enumerate(parts):
        if part.startswith("_"):
            return parts[:i]
    return parts


def _defining_modules(values) -> list:
    """Names of the modules the values come from (cheap attribute reads;
    whatever a class put in ``__module__``, the caller keeps strings only)."""
    sources: list = []
    add = sources.append
    for value in values:
        cls = type(value)
        add(cls.__module__)
        if isinstance(value, types.ModuleType):
            add(getattr(value, "__name__", None))
        elif isinstance(value, (type, types.FunctionType, types.BuiltinFunctionType)):
            add(getattr(value, "__module__", None))
            if cls is types.BuiltinMethodType:
                # ``from numpy.random import rand``: a method of a hidden
                # instance, whose class tells the package.
                bound_to = getattr(value, "__self__", None)
                if not isinstance(bound_to, types.ModuleType):
                    add(type(bound_to).__module__)
        elif cls is types.MethodType:
            add(type(value.__self__).__module__)
    return sources


# ---------------------------------------------------------------- submodules reached through their parent


def with_reached_submodules(entries, namespace: dict, own: str) -> None:
    """Module variables that the session's code uses down to submodules
    (``xml`` in ``xml.etree.ElementTree.parse(...)``) are saved with them:
    importing ``xml`` alone would not bring ``xml.etree`` back."""
    modules = [
        entry
        for entry in entries
        if entry.stored == "reference"
        and entry.saved is entry.value
        and isinstance(entry.value, types.ModuleType)
        and entry.value.__name__ != own
    ]
    if not modules:
        return
    names = _code_names(namespace)
    if names:
        for entry in modules:
            entry.saved = with_submodules(entry.value, names)


def _code_names(namespace: dict) -> frozenset:
    """Every name the code of the namespace's own functions and classes uses."""
    names: set = set()
    for value in namespace.values():
        if isinstance(value, types.FunctionType):
            if value.__globals__ is namespace:
                names |= code_global_names(value.__code__)
        elif isinstance(value, type) and value.__module__ == namespace.get("__name__"):
            for attr in vars(value).values():
                func = getattr(attr, "__func__", attr)  # staticmethod, classmethod
                if isinstance(func, types.FunctionType):
                    names |= code_global_names(func.__code__)
    return frozenset(names)


# ---------------------------------------------------------------- dill's refimported


class ImportedRef:
    """An object saved as ``getattr(module, name)``: re-imported on load."""

    __slots__ = ("module", "attr", "obj")

    def __init__(self, module: str, attr: str, obj):
        self.module, self.attr, self.obj = module, attr, obj

    def __reduce__(self):
        return _rebuild.getattr_chain, (sys.modules[self.module], self.attr)


def same_name_objects(namespace: dict, own_name: str) -> dict[str, ImportedRef]:
    """dill's ``refimported``: objects found under the same name in another
    loaded module are saved as references to it."""
    wanted = {id(v): k for k, v in namespace.items() if not isinstance(v, types.ModuleType)}
    found: dict[str, ImportedRef] = {}
    for mod_name, mod in list(sys.modules.items()):
        if mod is None or mod_name == own_name or mod_name == "__main__":
            continue
        mod_dict = getattr(mod, "__dict__", None)
        if not isinstance(mod_dict, dict) or mod_dict is namespace:
            continue  # the saved module under another name (``__mp_main__``)
        for var_name, var_id in ((k, i) for i, k in wanted.items() if k not in found):
            candidate = mod_dict.get(var_name, _MISSING)
            if candidate is not _MISSING and id(candidate) == var_id and not _is_atom(candidate):
                found[var_name] = ImportedRef(mod_name, var_name, candidate)
    return found


def _is_atom(value) -> bool:
    # Small ints, None, short strings are shared by the interpreter; "found in
    # another module" means nothing for them.
    return value is None or isinstance(value, (bool, int, float, str, bytes))
