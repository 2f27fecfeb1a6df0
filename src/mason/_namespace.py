"""A module's namespace as entries to save, and the environment it lives in."""

from __future__ import annotations

import functools
import sys
import types

from ._reducers.functions import ModuleDictRef, code_global_names
from ._reducers.modules import is_importable_module, with_submodules
from ._reducers.naming import lookup_by_name
from ._reducers.thirdparty import live_singletons


class Entry:
    """One variable of a saved namespace.

    ``value`` is the variable's object (its type and package are recorded);
    ``saved`` is what is pickled for it: the object itself, or a reference
    that loading resolves to it (``stored == "reference"``).
    """

    __slots__ = ("name", "value", "stored", "saved")

    def __init__(self, name: str, value: object, stored: str, saved: object = None) -> None:
        self.name = name
        self.value = value
        self.stored = stored  # "value" or "reference"
        self.saved = value if saved is None else saved

    def __repr__(self) -> str:
        return f"Entry({self.name!r}, {type(self.value).__name__}, {self.stored!r})"


def resolve_module(module) -> types.ModuleType:
    """The module object for a module, an importable module's name, or None (``__main__``)."""
    if module is None:
        return sys.modules["__main__"]
    if isinstance(module, str):
        import importlib

        return importlib.import_module(module)
    if isinstance(module, types.ModuleType):
        return module
    raise TypeError(f"module must be a module object or a module name, not {type(module).__name__}")


def module_kind(module: types.ModuleType) -> str:
    """``main``, ``importable`` (found in sys.modules under its name) or ``dynamic``."""
    if module.__name__ == "__main__":
        return "main"
    return "importable" if is_importable_module(module) else "dynamic"


def entries(module: types.ModuleType, keep, refimported: bool) -> list[Entry]:
    """The variables to save, sorted by name (deterministic output)."""
    namespace = vars(module)
    own = module.__name__
    imported = _imported_objects(namespace, own) if refimported else {}
    result = []
    maybe_imported = []
    for name in sorted(namespace):
        value = namespace[name]
        if not keep(name, value):
            continue
        if name in imported:
            result.append(Entry(name, value, "reference", imported[name]))
            continue
        if value is namespace:  # ``g = globals()``: the restored namespace
            result.append(Entry(name, value, "reference", ModuleDictRef(own)))
            continue
        entry = Entry(name, value, how_stored(value, own))
        result.append(entry)
        if entry.stored == "value" and _may_be_imported(name, value, own):
            maybe_imported.append(entry)
    _add_reached_submodules(result, namespace, own)
    if maybe_imported:
        # Saved by their own reducers, by reference with the user's changes.
        live = {id(obj) for obj in live_singletons()}
        maybe_imported = [entry for entry in maybe_imported if id(entry.value) not in live]
        homes = PublicHomes((entry.value for entry in result), own, [entry.value for entry in maybe_imported])
        for entry in maybe_imported:
            home = homes.find(entry.name, entry.value)
            if home is not None:
                entry.stored, entry.saved = "reference", ModuleAttributeRef(*home)
    return result


def how_stored(value, module_name: str) -> str:
    if isinstance(value, types.ModuleType):
        return "reference" if is_importable_module(value) or value.__name__ == "__main__" else "value"
    # Functions, classes, ufuncs...: whatever is found again under its name
    # in another module is pickled by reference.
    owner = getattr(value, "__module__", None)
    if isinstance(owner, str) and owner != module_name and hasattr(value, "__name__"):
        if lookup_by_name(value, frozenset({module_name})):
            return "reference"
    return "value"


def _add_reached_submodules(entries, namespace: dict, own: str) -> None:
    """Module variables that the session's code uses down to submodules
    (``xml`` in ``xml.etree.ElementTree.parse(...)``) are saved with them:
    importing ``xml`` alone would not bring ``xml.etree`` back."""
    modules = [
        entry for entry in entries
        if entry.stored == "reference" and entry.saved is entry.value
        and isinstance(entry.value, types.ModuleType) and entry.value.__name__ != own
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


class ImportedRef:
    """An object saved as ``getattr(module, name)``: re-imported on load."""

    __slots__ = ("module", "attr", "obj")

    def __init__(self, module: str, attr: str, obj):
        self.module, self.attr, self.obj = module, attr, obj

    def __reduce__(self):
        from . import _rebuild

        return _rebuild.getattr_chain, (sys.modules[self.module], self.attr)


def _imported_objects(namespace: dict, own_name: str) -> dict[str, ImportedRef]:
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


_MISSING = object()


def _is_atom(value) -> bool:
    # Small ints, None, short strings are shared by the interpreter; "found in
    # another module" means nothing for them.
    return value is None or isinstance(value, (bool, int, float, str, bytes))


# ---------------------------------------------------------------- imported objects
#
# ``from sympy import *`` leaves ``CC``, ``S``, ``pi`` in a session; copying
# them by value loses their identity (``CC is sympy.CC``), and some cannot
# be rebuilt from a copy at all.  A variable that is the very same object as
# a public attribute of another importable module is saved as that module
# and attribute name instead, whatever its type.  Only the modules the
# namespace itself refers to are searched (a namespace holding ``CC`` holds
# sympy's functions too), so a session without imports pays nothing.


class ModuleAttributeRef:
    """Pickles as "attribute ``name`` of module ``module``", imported on load."""

    __slots__ = ("module", "name")

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    def __reduce__(self):
        from . import _rebuild

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
    """Finds an object among the public attributes of the modules a
    namespace refers to: module objects in it, the modules that define the
    types and functions in it, and every package above those (``builtins``
    aside: a ``list`` says nothing about where it came from).

    The shortest module path wins (``sympy`` over
    ``sympy.polys.domains``), then the variable's own name, then the first
    name in sorted order, so the same session is always saved the same way.
    A module's reverse map (object id -> name) is built the first time a
    lookup by the variable's name fails in it, and only for ``wanted`` ids.
    """

    def __init__(self, values, own: str, wanted) -> None:
        names = set()
        for source in {s for s in _defining_modules(values) if isinstance(s, str)}:
            # Private modules are never a public home, and their packages
            # are reached through the public modules that use them.
            if isinstance(source, str) and source[:1] != "_" and "._" not in source:
                parts = source.split(".")
                names.update(".".join(parts[: i + 1]) for i in range(len(parts)))
        names.difference_update((own, "__main__", "builtins"))
        modules = []
        for name in sorted(names, key=lambda n: (n.count("."), len(n), n)):
            module = sys.modules.get(name)
            # Not an alias entry of sys.modules (``os.path`` is posixpath).
            if module is not None and getattr(module, "__name__", None) == name:
                modules.append(module)
        self._modules = modules
        self._wanted = {id(value) for value in wanted}
        self._reverse: dict[str, dict[int, str]] = {}

    def find(self, var_name: str, value) -> tuple[str, str] | None:
        """(module name, attribute name) where ``value`` lives, or None."""
        public_name = not var_name.startswith("_")
        for module in self._modules:
            if public_name and vars(module).get(var_name, _MISSING) is value:
                return module.__name__, var_name
            attr = self._reverse_map(module).get(id(value))
            if attr is not None:
                return module.__name__, attr
        return None

    def _reverse_map(self, module) -> dict[int, str]:
        found = self._reverse.get(module.__name__)
        if found is not None:
            return found
        found = self._reverse[module.__name__] = {}
        namespace = vars(module)
        wanted = self._wanted
        # Most modules hold none of the wanted objects: one pass in C says so.
        if wanted.isdisjoint(map(id, namespace.values())):
            return found
        for attr, value in namespace.items():
            key = id(value)
            if key in wanted and isinstance(attr, str) and not attr.startswith("_"):
                known = found.get(key)
                if known is None or attr < known:
                    found[key] = attr
        return found


def _defining_modules(values) -> list:
    """Names of the modules the values come from (cheap attribute reads;
    whatever a class put in ``__module__``, the caller keeps strings only)."""
    sources = []
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


# ---------------------------------------------------------------- environment


def environment(values) -> dict:
    """Where a session was saved: interpreter, platform, mason and package versions."""
    import datetime
    import platform

    from . import __version__

    return {
        "python": list(sys.version_info[:3]),
        "implementation": sys.implementation.name,
        "platform": platform.platform(),
        "byteorder": sys.byteorder,
        "mason": __version__,
        "packages": package_versions(values),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def package_versions(values) -> dict[str, str]:
    """Versions of the third-party packages the saved values come from."""
    stdlib = getattr(sys, "stdlib_module_names", frozenset())
    tops: set[str] = set()
    for value in values:
        for name in _module_names_of(value):
            top = name.partition(".")[0]
            if top and top not in stdlib and top not in ("builtins", "__main__", "mason"):
                tops.add(top)
    versions = {}
    for top in sorted(tops):
        version = installed_version(top)
        if version is not None:
            versions[top] = version
    return versions


def _module_names_of(value):
    if isinstance(value, types.ModuleType):
        yield value.__name__
        return
    yield type(value).__module__ or ""
    if isinstance(value, (type, types.FunctionType, types.BuiltinFunctionType)):
        yield getattr(value, "__module__", None) or ""


def installed_version(top: str) -> str | None:
    """The version of a top-level package, without importing it."""
    module = sys.modules.get(top)
    version = getattr(module, "__version__", None)
    if isinstance(version, str):
        return version
    # The names of installed distributions' metadata folders carry their
    # versions: a directory listing, where importlib.metadata costs ~25 ms to
    # import (a fixed cost of every load of a file that records packages).
    version = _dist_versions().get(_normalize(top)) or _top_level_versions().get(top)
    if version is not None:
        return version
    from importlib import metadata

    try:
        return metadata.version(top)
    except metadata.PackageNotFoundError:
        pass
    for dist in metadata.packages_distributions().get(top, ()):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    # A package without distribution metadata (on sys.path as a folder):
    # loading would import it anyway, so import it now to read its version.
    import importlib
    import importlib.util

    try:
        if importlib.util.find_spec(top) is None:
            return None
        version = getattr(importlib.import_module(top), "__version__", None)
    except Exception:  # a package that fails to import counts as missing
        return None
    return version if isinstance(version, str) else None


def _normalize(name: str) -> str:
    return name.lower().replace("-", "_").replace(".", "_")


@functools.lru_cache(maxsize=None)
def _dist_info_folders() -> tuple[tuple[str, str, str], ...]:
    """(normalized distribution name, version, folder) of every
    ``NAME-VERSION.dist-info`` folder on sys.path, in import order."""
    import os

    found = []
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for name in names:
            if name.endswith(".dist-info"):
                dist, sep, version = name[: -len(".dist-info")].rpartition("-")
                if sep and dist:
                    found.append((_normalize(dist), version, os.path.join(entry or ".", name)))
    return tuple(found)


@functools.lru_cache(maxsize=None)
def _dist_versions() -> dict[str, str]:
    """{normalized distribution name: version}; the first on sys.path wins, as for imports."""
    versions: dict[str, str] = {}
    for dist, version, _ in _dist_info_folders():
        versions.setdefault(dist, version)
    return versions


@functools.lru_cache(maxsize=None)
def _top_level_versions() -> dict[str, str]:
    """{import name: version} from the folders' ``top_level.txt`` (``sklearn``
    is scikit-learn's); read only when a name is not a distribution's."""
    import os

    versions: dict[str, str] = {}
    for _, version, folder in _dist_info_folders():
        try:
            with open(os.path.join(folder, "top_level.txt"), encoding="utf-8") as f:
                for line in f:
                    versions.setdefault(line.strip(), version)
        except OSError:
            continue
    return versions
