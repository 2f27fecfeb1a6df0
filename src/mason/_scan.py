"""The scan: the pickle machine of ``_vm.py`` with inert tokens for
globals and calls.  It runs nothing, judges every name a stream uses
against an allowlist, and takes time and memory linear in the stream."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time
    from typing import Any, ClassVar

import io
import pickle

from . import _dillcompat
from ._allowlist import REBUILD, Allowlist
from ._vm import _MAKERS, _SPECIAL, _Machine
from .errors import UnpicklingError


class ScanReport:
    """What a pickle stream would import and call, found without running it."""

    def __init__(self) -> None:
        self.globals: set[str] = set()  # "module:name"
        self.modules: set[str] = set()  # every module it would import
        self.functions: list[str] = []  # names of functions saved by value
        self.problems: list[str] = []  # offenders, when scanned with an allowlist
        self.by_variable: dict[str, list[str]] = {}  # a session's offenders, by variable


class _Token:
    """An inert stand-in: what a global or a call would have produced."""

    __slots__ = ("kind", "name", "origin", "problem")

    def __init__(self, kind: str, name=None, origin=None, problem=None):
        self.kind = kind  # "global", "rebuilder", "module", "made", "result"
        self.name = name  # "module:name" or the rebuilder's name
        self.origin = origin  # the module it stands for, when known
        # why the allowlist refuses it: a later pickle that uses it (from the
        # shared memo) is refused for the same reason
        self.problem = problem

    def __repr__(self):
        return f"<token {self.kind} {self.name}>"


class Scanner(_Machine):
    """Replays pickles with tokens; ``report`` collects what they name.

    One scanner reads consecutive pickles that share a memo (the segments of
    a session): call ``load`` once per pickle.  With an allowlist, the
    offenders go to ``report.problems``; nothing is refused here.
    """

    def __init__(
        self, file, allowlist: Allowlist | None = None, session_module: str | None = None, dill_sessions: bool = False
    ):
        super().__init__(file, allowlist, buffers=_endless_buffers())
        self.report = ScanReport()
        self._session_module = session_module
        self._tokens: dict[tuple, _Token] = {}
        self._result = _Token("result")
        #: A dill session is a pickle whose top object is the module made by
        #: the stream's first _import_module (dill.session reads it so too).
        #: With ``dill_sessions`` (a lone pickle that may be one), that call
        #: is taken for the session's own module (a new one, which its BUILD
        #: fills) until the scan ends, then judged like any other import if
        #: the pickle was not a session after all.
        self._dill_sessions = dill_sessions
        self._dill_first: _Token | None = None
        self._dill_first_built = False
        #: the name dill gave the session's module, when the pickle is one
        self.dill_session: str | None = None

    def scan(self):
        try:
            result = self.load()
        except Exception as exc:  # nothing runs here: any failure means a malformed stream
            raise UnpicklingError(f"the pickle stream cannot be checked: {exc}") from None
        self._settle_dill_session(result)
        return result

    def _settle_dill_session(self, result) -> None:
        first = self._dill_first
        if first is None:
            return
        if result is first:
            self.dill_session = first.origin
            return
        if not first.origin.startswith("__runtime__."):
            self._import(first.origin)
            if self._dill_first_built:
                self._problem(f"BUILD on {first.origin} (setting attributes of an object the file did not create)")

    def _import(self, module: str) -> None:
        """Record (and judge) an import of ``module`` by name."""
        if module != self._session_module:
            self.report.modules.add(module)
            if self.allowlist is not None and not self.allowlist.import_allowed(module):
                self._problem(f"{module} (imported by name)")

    def _problem(self, problem: str | None) -> None:
        if problem is not None and self.allowlist is not None:
            self.report.problems.append(problem)

    def find_class(self, module, name):
        module, name = self._names(module, name)
        if module is _SPECIAL:
            return self._special(name)
        self.report.globals.add(f"{module}:{name}")
        if module != REBUILD:
            self.report.modules.add(module)
        problem = self.allowlist.global_problem(module, name) if self.allowlist is not None else None
        self._problem(problem)
        key = (module, name)
        token = self._tokens.get(key)
        if token is None:
            if module == REBUILD:
                token = _Token("rebuilder", name, problem=problem)
            else:
                token = _Token("global", f"{module}:{name}", module, problem)
            self._tokens[key] = token
        return token

    def _special(self, key):
        if key == "namespace":  # the namespace loaded into, as module_dict of the session's module
            return self._tokens.setdefault(("namespace",), _Token("module", "the namespace loaded into"))
        if key == "NoneType":
            return _Token("global", "builtins:NoneType")
        if key == "dill":
            return _Token("dill", "dill._dill")
        return _Token("result", key)  # inert: the empty-cell marker, ``open`` as an argument

    def _get(self, index):
        try:
            value = self.memo[index]
        except KeyError:
            raise UnpicklingError(f"memo entry {index} was never written") from None
        self.append(value)
        if value.__class__ is _Token and value.problem is not None:
            self._problem(value.problem)

    def _op_binget(self):
        self._get(self.read(1)[0])

    def _op_long_binget(self):
        self._get(int.from_bytes(self.read(4), "little"))

    def _op_get_text(self):
        self._get(int(self.readline()[:-1]))

    dispatch: ClassVar[dict[int, Any]] = dict(_Machine.dispatch)
    dispatch[pickle.BINGET[0]] = _op_binget
    dispatch[pickle.LONG_BINGET[0]] = _op_long_binget
    dispatch[pickle.GET[0]] = _op_get_text

    def persistent_load(self, pid):
        return self._result

    def _call(self, func, args, kwargs):
        self._hashing(args)
        if (
            isinstance(func, _Token)
            and func.name == "builtins:getattr"
            and args
            and isinstance(args[0], _Token)
            and args[0].kind == "dill"
        ):
            return self._dill_shim(args)
        if not isinstance(func, _Token) or func.kind not in ("global", "rebuilder", "made"):
            self._problem(f"a call of {_describe(func)}, which is not an allowed global")
            return self._result
        if func.kind in ("made", "global") and func.name != "builtins:getattr":
            return _Token("result", f"the result of {func.name}", problem=func.problem)
        before = len(self.report.problems)
        result = self._rebuilder_call("getattr_chain" if func.kind == "global" else func.name, args)
        if len(self.report.problems) > before:
            result = _Token(result.kind, result.name, result.origin, self.report.problems[before])
        return result

    def _dill_shim(self, args):
        """``getattr(dill._dill, name[, default])``: one of dill's shims."""
        if len(args) not in (2, 3) or not isinstance(args[1], str):
            self._problem("getattr of dill._dill with a computed name")
            return self._result
        if args[1] not in _dillcompat.SHIMS:
            if len(args) == 3:
                return args[2]
            self._problem(f"dill._dill.{args[1]} (not one of dill's shims)")
            return self._result
        mason_name = _dillcompat.SHIMS[args[1]]
        return self._result if mason_name is None else _Token("rebuilder", mason_name)

    def _rebuilder_call(self, name, args):
        first = args[0] if args else None
        if name == "dill_import_module" and isinstance(first, str):
            if self._dill_first is None and self._dill_sessions:  # the session's own, if it is one (see scan)
                self._dill_first = _Token("made", name, first)
                return self._dill_first
            if first.startswith("__runtime__."):  # a new module of the file's own
                return _Token("made", name, first)
            name = "import_module"  # any other module: judged as mason's import_module
        if name == "dill_load_type":
            return self._dill_type(first, args)
        if name in ("import_module", "module_dict"):
            if not isinstance(first, str):
                self._problem(f"{REBUILD}:{name} with a computed module name")
                return self._result
            if first != self._session_module:
                self.report.modules.add(first)
                if self.allowlist is not None:
                    if name == "module_dict":
                        self._problem(f"the namespace of module {first!r} (only the session's own may be written)")
                    elif not self.allowlist.import_allowed(first):
                        self._problem(f"{first} (imported by name)")
            return self._tokens.setdefault(("module", first), _Token("module", first, first))
        if name == "import_package":
            if (
                len(args) != 2
                or not isinstance(first, str)
                or not isinstance(args[1], tuple)
                or not all(isinstance(sub, str) for sub in args[1])
            ):
                self._problem(f"{REBUILD}:import_package with computed module names")
                return self._result
            for module in (first, *args[1]):
                self.report.modules.add(module)
                if self.allowlist is not None and not self.allowlist.import_allowed(module):
                    self._problem(f"{module} (imported by name)")
            return _Token("module", first, first)
        if name == "module_attribute":
            if len(args) != 2 or not all(isinstance(a, str) for a in args):
                self._problem(f"{REBUILD}:module_attribute with computed names")
                return self._result
            self.report.modules.add(first)
            self.report.globals.add(f"{args[0]}:{args[1]}")
            if self.allowlist is not None:
                self._problem(self.allowlist.global_problem(args[0], args[1]))
            return self._result
        if name == "getattr_chain":
            if len(args) != 2 or not isinstance(args[1], str):
                self._problem(f"{REBUILD}:getattr_chain with a computed attribute path")
            elif any(p.startswith("__") and p.endswith("__") for p in args[1].split(".")):
                self._problem(f"the attribute {args[1]!r} (dunder attributes are never reachable)")
            elif isinstance(first, _Token) and first.origin is not None and self.allowlist is not None:
                self._problem(self.allowlist.global_problem(first.origin, args[1]))
            return _Token("result", f"the attribute {args[1]!r} of {_describe(first)}")
        if name in ("make_function", "dill_create_function") and len(args) >= 3 and isinstance(args[2], str):
            self.report.functions.append(args[2])
        if name in _MAKERS:
            return _Token("made", name)
        return self._result

    def _dill_type(self, name, args):
        """dill's ``_load_type(name)``: judged as the global the type is."""
        if len(args) != 1 or not isinstance(name, str):
            self._problem(f"{REBUILD}:dill_load_type with a computed type name")
            return self._result
        if name in _dillcompat.DATA_TYPES:
            return _Token("global", f"dill's type {name}")
        found = _dillcompat.type_global(name)
        if found is None:
            self._problem(f"dill's type {name} (no module holds it, so no allow pattern names it)")
            return self._result
        return self.find_class(*found)

    def _new(self, cls, args, kwargs):
        if not isinstance(cls, _Token) or cls.kind not in ("global", "made"):
            self._problem(f"NEWOBJ on a {type(cls).__name__} object that is not an allowed class")
        return self._result

    def _build(self, inst, state):
        if inst is self._dill_first and inst is not None:
            self._dill_first_built = True
        if not (isinstance(inst, _Token) and inst.kind in ("result", "made")):
            self._problem(f"BUILD on {_describe(inst)} (setting attributes of an object the file did not create)")

    def _setitems(self, target, items):
        if not (
            isinstance(target, (dict, list, set)) or (isinstance(target, _Token) and target.kind in ("result", "made"))
        ):
            self._problem(f"item assignment on {_describe(target)} (an object the file did not create)")

    def _extend(self, target, items):
        if not (
            isinstance(target, (dict, list, set)) or (isinstance(target, _Token) and target.kind in ("result", "made"))
        ):
            self._problem(f"appending to {_describe(target)} (an object the file did not create)")

    _add = _extend

    def _new_container(self, value):
        return value

    def _frozenset(self, items):
        return self._result


def _describe(obj) -> str:
    return obj.name if isinstance(obj, _Token) and obj.name else f"a {type(obj).__name__} object"


def _endless_buffers():
    while True:
        yield b""


def scan_pickle(data, allowlist: Allowlist | None = None) -> ScanReport:
    """Scan one pickle (bytes-like) without running it."""
    scanner = Scanner(io.BytesIO(data), allowlist)
    scanner.stream_bytes = len(data)
    scanner.scan()
    return scanner.report
