"""A module's namespace as entries to save, and the environment it lives in."""

from __future__ import annotations

import functools
import sys
import types

from . import _imported
from ._imported import ImportedRef  # noqa: F401 - its home before _imported existed; tests import it here
from ._reducers.functions import ModuleDictRef
from ._reducers.modules import is_importable_module
from ._reducers.naming import lookup_by_name


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
    imported = _imported.same_name_objects(namespace, own) if refimported else {}
    result = []
    for name in sorted(namespace):
        value = namespace[name]
        if not keep(name, value):
            continue
        if name in imported:
            result.append(Entry(name, value, "reference", imported[name]))
        elif value is namespace:  # ``g = globals()``: the restored namespace
            result.append(Entry(name, value, "reference", ModuleDictRef(own)))
        else:
            result.append(Entry(name, value, how_stored(value, own)))
    _imported.with_reached_submodules(result, namespace, own)
    _imported.by_public_home(result, own)
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


# ---------------------------------------------------------------- environment


def environment(values) -> dict:
    """Where a session was saved: interpreter, platform, mason and package versions."""
    import datetime

    from . import __version__

    return {
        "python": list(sys.version_info[:3]),
        "implementation": sys.implementation.name,
        "platform": _platform(),
        "byteorder": sys.byteorder,
        "mason": __version__,
        "packages": package_versions(values),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


@functools.lru_cache(maxsize=1)
def _platform() -> str:
    """``Linux-6.1.0-x86_64``: from os.uname(), not platform.platform(), which
    starts a subprocess (``uname -p``) and costs ~17 ms on a first save."""
    import os

    uname = getattr(os, "uname", None)
    if uname is None:  # Windows
        import platform

        return f"{platform.system()}-{platform.release()}-{platform.machine()}"
    info = uname()
    return f"{info.sysname}-{info.release}-{info.machine}"


def package_versions(values) -> dict[str, str]:
    """Versions of the third-party packages the saved values come from."""
    stdlib: frozenset[str] = getattr(sys, "stdlib_module_names", frozenset())
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
    """The version of a top-level package, without importing it (None if not found).

    Read from a module already imported, else from installed distribution
    metadata (dist-info, egg-info) only.  ``top`` may come from a file being
    loaded: importing it to ask would run whatever ``top.py`` comes first on
    sys.path (the current directory's, say) before the file is checked, so a
    package that has no metadata and is not imported yet has no version here.
    """
    module = sys.modules.get(top)
    version = getattr(module, "__version__", None)
    if isinstance(version, str):
        return version
    # The names of installed distributions' metadata folders carry their
    # versions: one directory listing per sys.path entry, cached for this
    # sys.path.  Never importlib.metadata (~25 ms to import) nor its
    # packages_distributions(), which reads every installed file list: a
    # notebook's own helper module (no distribution) would pay that on
    # every save, growing with the environment.
    folder = _import_folder(module) if module is not None else None
    if folder is not None and _is_local_folder(folder):
        # A notebook's own helper module (a .py beside it): no distribution
        # installed it, and finding that out costs one small listing.
        return None
    version = _dist_versions(tuple(sys.path)).get(_normalize(top))
    if version is not None:
        return version
    # An import name that is not its distribution's (``sklearn``): look it
    # up in the top_level.txt files of the one sys.path folder the module
    # was (or would be) imported from.
    if folder is None:
        folder = _find_folder(top)
    return _top_level_versions(folder).get(top) if folder is not None else None


@functools.lru_cache(maxsize=16)
def _is_local_folder(folder: str) -> bool:
    """Whether ``folder`` holds modules of the user's own, not installed
    ones: no site directory, and no distribution metadata in it.  (An
    editable install of a package without ``__version__`` then has no
    version in the record: its metadata is elsewhere.)"""
    import os

    parts = folder.replace(os.sep, "/").split("/")
    if "site-packages" in parts or "dist-packages" in parts:
        return False
    return not _metadata_folders(folder)


def _normalize(name: str) -> str:
    return name.lower().replace("-", "_").replace(".", "_")


def _import_folder(module: types.ModuleType) -> str | None:
    """The folder a top-level module or package was imported from (None if unknown)."""
    import os

    locations = list(getattr(module, "__path__", None) or ())  # a package's own folder
    file = getattr(module, "__file__", None)
    if not locations and isinstance(file, str):
        locations = [file]
    for location in locations:
        if isinstance(location, str):
            return os.path.dirname(os.path.abspath(location))
    return None


def _find_folder(top: str) -> str | None:
    """The sys.path folder ``top`` would be imported from, found without
    importing it: the path finders only look at file names."""
    import importlib.machinery
    import os

    if not top.isidentifier():  # a name from a file being loaded: only plain module names
        return None
    try:
        spec = importlib.machinery.PathFinder.find_spec(top)
    except (ImportError, ValueError, OSError):
        return None
    if spec is None:
        return None
    locations = list(spec.submodule_search_locations or ())
    if locations:
        return os.path.dirname(os.path.abspath(locations[0]))
    return os.path.dirname(os.path.abspath(spec.origin)) if isinstance(spec.origin, str) else None


def importable(top: str) -> bool:
    """Whether a top-level module ``top`` is there to import (nothing is imported)."""
    return sys.modules.get(top) is not None or _find_folder(top) is not None


def _metadata_folders(entry: str) -> list[tuple[str, str, str]]:
    """(normalized distribution name, version, folder name) of every
    ``NAME-VERSION.dist-info`` and ``NAME-VERSION[-pyX.Y].egg-info`` in ``entry``."""
    import os

    try:
        names = os.listdir(entry or ".")
    except OSError:
        return []
    found = []
    for name in names:
        if name.endswith(".dist-info"):
            dist, sep, version = name[: -len(".dist-info")].rpartition("-")
        elif name.endswith(".egg-info"):
            dist, sep, version = name[: -len(".egg-info")].partition("-")
            version = version.split("-py")[0]
        else:
            continue
        if sep and dist and version:
            found.append((_normalize(dist), version, name))
    return found


@functools.lru_cache(maxsize=4)
def _dist_versions(path: tuple) -> dict[str, str]:
    """{normalized distribution name: version} of the sys.path ``path``: one
    directory listing per entry; the first on sys.path wins, as for imports."""
    import os

    # The standard library's own folders hold no distributions: not listing
    # them halves the cost of a first save.
    lib = os.path.dirname(os.__file__)
    stdlib = {lib, os.path.join(lib, "lib-dynload")}
    versions: dict[str, str] = {}
    for entry in path:
        if entry in stdlib or entry.endswith(".zip"):
            continue
        for dist, version, _ in _metadata_folders(entry):
            versions.setdefault(dist, version)
    return versions


@functools.lru_cache(maxsize=16)
def _top_level_versions(entry: str) -> dict[str, str]:
    """{import name: version} from the ``top_level.txt`` of the distributions
    in the folder ``entry`` (``sklearn`` is scikit-learn's)."""
    import os

    versions: dict[str, str] = {}
    for _, version, name in _metadata_folders(entry):
        try:
            with open(os.path.join(entry, name, "top_level.txt"), encoding="utf-8") as f:
                for line in f:
                    versions.setdefault(line.strip(), version)
        except OSError:
            continue
    return versions
