"""Loading a session file written by dill (``dill.dump_module``/``dump_session``).

Such a file is one plain pickle: its top object is the module, made by
dill's ``_import_module(name)``, and its state (a BUILD) is the module's
variables.  The load mirrors mason's own (see ``_load.py``):

    bytes -> scan (nothing runs; finds the module, judges an allowlist)
          -> one unpickler (C, or the restricted machine) -> a stand-in
             module that receives the state -> a new dict of variables
          -> the target namespace, updated in one step by the caller

The stand-in is a new module made by this load, so the file's state never
goes anywhere but the dict the caller applies to its target.  Loading runs
code from the file: only load files you trust, or load with ``allow=``.
"""

from __future__ import annotations

import builtins
import io
import types

from . import _rebuild
from ._allowlist import Allowlist
from ._filter import MODULE_BOOKKEEPING
from ._format.signing import resolve_key
from ._restricted import RestrictedUnpickler
from ._scan import Scanner
from ._unpickler import Unpickler
from .errors import CorruptSessionError, MasonError, SignatureError, UnpicklingError

__all__ = ["DillSessionPlan", "restore_dill_file", "is_pickle"]

_RUNTIME = "__runtime__."
#: what dill.dump_module(refimported=True) adds to the state: names saved as
#: references, restored by dill's load_module (session._restore_modules)
_IMPORTED = ("__dill_imported", "__dill_imported_as", "__dill_imported_top_level")


from ._load import is_pickle  # noqa: E402  (re-exported for the CLI)


def _scan(data: bytes, allowlist: Allowlist | None) -> Scanner:
    """The scanner, having read the one pickle ``data`` holds; its
    ``dill_session`` names the module of a dill session (None: one object)."""
    stream = io.BytesIO(data)
    scanner = Scanner(stream, allowlist, dill_sessions=True)
    scanner.stream_bytes = len(data)
    scanner.scan()
    if stream.tell() != len(data):
        raise UnpicklingError(
            f"this file holds more than one pickle ({len(data) - stream.tell()} bytes follow the first):"
            " not a dill session"
        )
    return scanner


def _meta(spelling: str) -> dict:
    """mason's words for the module dill named ``spelling``."""
    if spelling.startswith(_RUNTIME):  # a module-type object that was not importable
        return {"module": spelling[len(_RUNTIME) :], "module_kind": "dynamic"}
    if spelling == "__main__":
        return {"module": "__main__", "module_kind": "main"}
    return {"module": spelling, "module_kind": "importable"}


class DillSessionPlan:
    """A dill session file, checked before anything runs; ``restore`` loads it.

    Has what ``_load.py`` asks of a plan: ``meta`` (``module``,
    ``module_kind``), ``allowlist``, and ``restore(namespace, module)``.

    dill saves a session as one pickle, so it loads as a whole: a variable
    that cannot be rebuilt fails the load (``on_error`` cannot skip it), and
    with an allowlist anything outside it refuses the file.
    """

    def __init__(self, data: bytes, *, allow=None, key=None, names=None, map_location=None):
        if resolve_key(key) is not None:
            raise SignatureError(
                "a dill file carries no signature, and a key was given (or MASON_SIGNING_KEY is set):"
                " load it with key=False to read it unsigned"
            )
        self.data = data
        self.names = names
        self.map_location = map_location
        self.allowlist = Allowlist.from_arg(allow)
        try:
            scanner = _scan(data, self.allowlist)
        except UnpicklingError as exc:
            raise CorruptSessionError(f"not a mason file, nor a pickle mason can read: {exc}") from None
        spelling = scanner.dill_session
        if spelling is None:
            raise CorruptSessionError(
                "not a mason file: a plain pickle of one object (as dill.dump writes), not a session:"
                " read it with mason.load, or make a session of it with `mason convert`"
            )
        self.spelling = spelling
        self.meta = _meta(spelling)
        if self.allowlist is not None:
            self.allowlist.check(scanner.report.problems, scanner.report.functions)

    #: what a session's plan says when all it built is kept: not said here
    kept_all = False

    def restore(self, namespace: dict, module) -> dict:
        """The saved variables, as a new dict (neither ``namespace`` nor
        ``module`` changes): functions get ``namespace`` as their globals."""
        loaded = _restore(self.data, self.allowlist, self.spelling, namespace, module, self.map_location)
        if self.names is None:
            return loaded
        missing = [name for name in self.names if name not in loaded]
        if missing:
            raise KeyError(f"not in this session: {', '.join(map(repr, missing))}")
        return {name: loaded[name] for name in self.names}


def _restore(data: bytes, allowlist, spelling: str, namespace: dict, module, map_location=None) -> dict:
    unpickler = _unpickler(data, allowlist, namespace, module, spelling, map_location)
    top = _run(unpickler)
    standin = unpickler.dill_standin
    if standin is None or top is not standin:
        raise UnpicklingError("damaged dill session: its top object is not the module it restores")
    state = dict(vars(standin))
    imported = [state.pop(key, ()) for key in _IMPORTED]
    loaded = {
        name: (module if value is standin else value) for name, value in state.items() if name not in MODULE_BOOKKEEPING
    }
    loaded.update(_restore_imported(unpickler, *imported))
    return loaded


def restore_dill_file(data: bytes, *, allow=None, object_name: str = "obj") -> tuple[types.ModuleType, bool]:
    """(a new module holding what a dill file holds, whether it was a session).

    A session's variables go into a module of the name dill gave it; the
    one object of a file written by ``dill.dump`` goes into a module named
    ``__main__`` as ``object_name`` (its functions get that module's
    globals, where dill gives them the live ``__main__``'s).  Neither module
    is registered in ``sys.modules``.  For ``mason convert``.
    """
    allowlist = Allowlist.from_arg(allow)
    scanner = _scan(data, allowlist)
    if allowlist is not None:
        allowlist.check(scanner.report.problems, scanner.report.functions)
    spelling = scanner.dill_session
    module = types.ModuleType(_meta(spelling)["module"] if spelling is not None else "__main__")
    module.__dict__["__builtins__"] = builtins
    if spelling is None:
        module.__dict__[object_name] = _run(_unpickler(data, allowlist, module.__dict__, module, None, None))
    else:
        module.__dict__.update(_restore(data, allowlist, spelling, module.__dict__, module))
    return module, spelling is not None


def _unpickler(data: bytes, allowlist, namespace: dict, module, spelling, map_location):
    stream = io.BytesIO(data)
    if allowlist is not None:
        allowlist.target = module.__name__
        unpickler = RestrictedUnpickler(
            stream,
            allowlist,
            session=(spelling or "__main__", namespace, module),
            map_location=map_location,
            dill_session=spelling,
        )
        unpickler.stream_bytes = len(data)
        return unpickler
    return _DillUnpickler(
        stream, spelling, namespace, ignore=True, map_location=map_location, load_state=_rebuild._LoadState(namespace)
    )


def _run(unpickler):
    try:
        return unpickler.load()
    except MasonError:
        raise
    except Exception as exc:  # a reconstructor or a class's own code failed: the file cannot be read here
        raise UnpicklingError(f"cannot restore this dill file: {type(exc).__name__}: {exc}") from exc


class _DillUnpickler(Unpickler):
    """The C unpickler for a dill file loaded into a namespace: dill's
    ``__builtin__.__main__`` is that namespace, and dill's ``_import_module``
    of the session's own module makes ``dill_standin``."""

    def __init__(self, file, spelling, namespace, **kwds):
        super().__init__(file, **kwds)
        self._spelling = spelling
        self._namespace = namespace
        self.dill_standin = None

    def _dill_namespace(self) -> dict:
        return self._namespace

    def _resolve(self, module, name):
        if (module, name) == ("mason._rebuild", "dill_import_module"):
            return self._import_module
        return super()._resolve(module, name)

    def _import_module(self, name):
        if name == self._spelling and name is not None:
            if self.dill_standin is None:
                self.dill_standin = _rebuild.make_module(name.rpartition(_RUNTIME)[2])
            return self.dill_standin
        return _rebuild.dill_import_module(name)


def _restore_imported(unpickler, imported, imported_as, top_level) -> dict:
    """Variables dill saved by name (``refimported=True``), found again as
    dill's load_module finds them: globals ``module.name``, top-level modules.
    The restricted machine judges each like a global of the file."""
    found = {}
    try:
        for modname, name in imported:
            found[name] = _global(unpickler, modname, name)
        for modname, objname, name in imported_as:
            _check_name(name)
            found[name] = _global(unpickler, modname, objname)
        importer = unpickler.find_class("mason._rebuild", "import_module")
        for modname, name in top_level:
            _check_name(name)
            found[name] = importer(modname)
    except (TypeError, ValueError):
        raise UnpicklingError("damaged dill session: its lists of imported names are malformed") from None
    return found


def _global(unpickler, module, name):
    _check_name(name)
    if not isinstance(module, str):
        raise TypeError
    try:
        return unpickler.find_class(module, name)
    except (ImportError, AttributeError) as exc:
        raise UnpicklingError(f"the session's {name!r} was {module}.{name}, which is not here: {exc}") from None


def _check_name(name) -> None:
    if not isinstance(name, str) or not name.isidentifier():
        raise TypeError
