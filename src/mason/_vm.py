"""The pickle machine of restricted loads and of scans.

One interpreter, two modes, so that the scan judges exactly what the load
will do (same opcodes, same memo, same marks):

- :class:`Scanner` runs nothing.  Globals become inert tokens, calls return
  tokens, containers are never hashed into, and every name the stream uses is
  recorded and judged against an allowlist.  Time and memory are linear in
  the stream's size.
- :class:`RestrictedUnpickler` loads for real, under an :class:`Allowlist`,
  and enforces it on every step.

Both are built on the pure-Python ``pickle._Unpickler``: its opcodes are
methods that can be replaced, which the C unpickler does not allow.  What a
restricted load enforces, opcode by opcode:

- GLOBAL/STACK_GLOBAL/INST/EXT*: the name is judged first (nothing is
  imported for a refused name); then the object found is judged by where it
  really comes from (:meth:`Allowlist.reach_problem`).  The extension cache
  of ``copyreg`` is neither read nor written.
- REDUCE/OBJ/INST/NEWOBJ*: only objects that came out of GLOBAL (or classes
  and, with ``mason.CODE``, functions this load rebuilt) can be called;
  metaclasses cannot; builtin constructors cannot be asked for more than
  ``_MAX_ITEMS`` items.
- BUILD: only on an object this load created (never on a global: no
  ``setattr`` on an allowed module's function or class).
- SETITEM(S)/APPEND(S)/ADDITEMS: only on containers and objects this load
  created (never ``os.environ[...] =``).
- Attribute accessors (``getattr``, mason's ``getattr_chain`` and
  ``class_attribute``): no dunder names, and the result is judged like a
  global.
- Tuples nested through shared references (a DAG of 30 memo entries
  expands to 2**30 items) cannot make hashing exponential: the expanded size
  of every tuple is tracked and hashing work is budgeted.
- Files written by dill: dill's reconstructor names are judged as the
  mason reconstructors they map to (``_dillcompat.py``); in a stream that
  names dill, ``setattr``/``delattr`` are mason's closed versions (only on
  what the load made), and ``getattr(dill._dill, ...)`` hands out only
  dill's shims.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time
    from typing import Any, ClassVar

import _codecs
import _compat_pickle
import builtins
import copyreg
import enum
import importlib
import io
import pickle
import sys
import types
import weakref

from . import _dillcompat, _rebuild
from ._allowlist import ACCESSORS, ALWAYS, CODE, REBUILD, REBUILDERS, Allowlist
from .errors import MasonError, UnpicklingError

__all__ = ["Scanner", "ScanReport", "RestrictedUnpickler", "scan_pickle", "MACHINE_ERRORS"]

_P = pickle._Unpickler

#: a tuple may expand (through shared references) to at most this many items
_MAX_WEIGHT = 1 << 20
#: hashing work allowed: this much plus _WORK_PER_BYTE for every byte of stream
_BASE_WORK = 1 << 22
_WORK_PER_BYTE = 16
#: a builtin constructor may be asked for at most this many items, and all of
#: them together for this many plus _ITEMS_PER_BYTE for every byte of stream
_MAX_ITEMS = 1 << 26
_ITEMS_PER_BYTE = 64

#: what the pure-Python machine raises on a malformed stream
MACHINE_ERRORS = (
    pickle.UnpicklingError,
    EOFError,
    TypeError,
    ValueError,
    AttributeError,
    KeyError,
    IndexError,
    RecursionError,
    MemoryError,
    OverflowError,
    UnicodeDecodeError,
    __import__("struct").error,
)

_MAKERS = frozenset(
    {
        "make_module",
        "make_cell",
        "make_function",
        "make_class",
        "make_enum",
        "torch_tensor",
        "torch_parameter",
        "dill_create_function",
        "dill_create_cell",
        "dill_create_type",
        "dill_namedtuple",
        "dill_ndarray",
    }
)
#: in ``_names``'s answer, the "module" of dill's special globals (never a string)
_SPECIAL = object()
# copyreg's object rebuilders (private names, not in typeshed)
_RECONSTRUCTOR = getattr(copyreg, "_reconstructor")
_CREATORS = (_RECONSTRUCTOR, getattr(copyreg, "__newobj__"), getattr(copyreg, "__newobj_ex__"))


class _Machine(_P):
    """The opcodes both modes share; hooks say what each mode does."""

    memo: dict[int, Any]

    dispatch: ClassVar[dict[int, Any]] = dict(_P.dispatch)

    def __init__(self, file, allowlist: Allowlist | None, *, buffers=None):
        super().__init__(file, buffers=buffers)
        self.allowlist = allowlist
        self._weights: dict[int, tuple] = {}  # id -> (tuple, expanded size), tuples with shared parts
        self._work = 0
        self._dill_stream = False  # has the stream named one of dill's own globals?
        self.stream_bytes = 0  # bytes fed so far: the hashing budget grows with them

    # -- shared bookkeeping ----------------------------------------------

    def _stream_size(self) -> int:
        return self.stream_bytes

    def _weight(self, obj) -> int:
        """How many items hashing ``obj`` visits.  Only tuples with tuples
        inside are recorded: any other holds atoms only (len + 1)."""
        entry = self._weights.get(id(obj))
        if entry is not None and entry[0] is obj:
            return entry[1]
        return len(obj) + 1 if type(obj) in (tuple, frozenset) else 1

    def _weigh(self, tup) -> None:
        weight = 1
        for item in tup:
            weight += self._weight(item)
        if weight > _MAX_WEIGHT:
            raise UnpicklingError(
                f"a tuple nested through shared references expands to {weight} items or more"
                f" (the limit is {_MAX_WEIGHT}): hashing it would never end"
            )
        if weight > len(tup) + 1:
            self._weights[id(tup)] = (tup, weight)

    def _hashing(self, items) -> None:
        work = 0
        for item in items:
            if item.__class__ is tuple or item.__class__ is frozenset:
                work += self._weight(item)
        if work:
            self._work += work
            if self._work > _BASE_WORK + _WORK_PER_BYTE * self._stream_size():
                raise UnpicklingError("the stream makes hashing take more work than its size allows")

    # -- opcodes -----------------------------------------------------------

    def _op_tuple(self):
        items = self.pop_mark()
        self.append(tuple(items))
        self._weigh(self.stack[-1])

    def _op_tuple1(self):
        self.stack[-1] = (self.stack[-1],)
        self._weigh(self.stack[-1])

    def _op_tuple2(self):
        self.stack[-2:] = [(self.stack[-2], self.stack[-1])]
        self._weigh(self.stack[-1])

    def _op_tuple3(self):
        self.stack[-3:] = [(self.stack[-3], self.stack[-2], self.stack[-1])]
        self._weigh(self.stack[-1])

    def _op_reduce(self):
        stack = self.stack
        args = stack.pop()
        if type(args) is not tuple:
            raise UnpicklingError("REDUCE: the arguments are not a tuple")
        stack[-1] = self._call(stack[-1], args, None)

    def _op_newobj(self):
        args = self.stack.pop()
        cls = self.stack.pop()
        if type(args) is not tuple:
            raise UnpicklingError("NEWOBJ: the arguments are not a tuple")
        self.append(self._new(cls, args, None))

    def _op_newobj_ex(self):
        kwargs = self.stack.pop()
        args = self.stack.pop()
        cls = self.stack.pop()
        if type(args) is not tuple or type(kwargs) is not dict:
            raise UnpicklingError("NEWOBJ_EX: the arguments are not a tuple and a dict")
        self.append(self._new(cls, args, kwargs))

    def _instantiate(self, klass, args):  # OBJ and INST
        if args or not isinstance(klass, type) or hasattr(klass, "__getinitargs__"):
            self.append(self._call(klass, tuple(args), None))
        else:
            self.append(self._new(klass, (), None))

    def _op_build(self):
        state = self.stack.pop()
        self._build(self.stack[-1], state)

    def _op_dict(self):
        items = self.pop_mark()
        if len(items) % 2:
            raise UnpicklingError("DICT: odd number of items")
        target = self._new_container({})
        self._setitems(target, items)
        self.append(target)

    def _op_setitem(self):
        value = self.stack.pop()
        key = self.stack.pop()
        self._setitems(self.stack[-1], [key, value])

    def _op_setitems(self):
        items = self.pop_mark()
        if len(items) % 2:
            raise UnpicklingError("SETITEMS: odd number of items")
        self._setitems(self.stack[-1], items)

    def _op_append(self):
        value = self.stack.pop()
        self._extend(self.stack[-1], [value])

    def _op_appends(self):
        items = self.pop_mark()
        self._extend(self.stack[-1], items)

    def _op_additems(self):
        items = self.pop_mark()
        self._add(self.stack[-1], items)

    def _op_frozenset(self):
        items = self.pop_mark()
        self._hashing(items)
        self.append(self._frozenset(items))

    def _op_empty_dict(self):
        self.append(self._new_container({}))

    def _op_empty_list(self):
        self.append(self._new_container([]))

    def _op_empty_set(self):
        self.append(self._new_container(set()))

    def _op_list(self):
        items = self.pop_mark()  # before self.append: it rebinds to the outer stack
        self.append(self._new_container(items))

    def _op_frame(self):
        size = int.from_bytes(self.read(8), "little")
        remaining = self._remaining()
        if size > sys.maxsize or (remaining is not None and size > remaining):
            raise UnpicklingError(f"a frame says {size} bytes but the stream ends before")

    def _remaining(self):
        """Bytes left in an in-memory stream (None for another kind)."""
        stream = getattr(self._file_read, "__self__", None)
        if isinstance(stream, io.BytesIO):
            return len(stream.getbuffer()) - stream.tell()
        return None

    def get_extension(self, code):
        # copyreg's _extension_cache is process-wide: never read (an entry
        # another load put there skips find_class) nor written.
        key = copyreg._inverted_registry.get(code)
        if not key:
            raise UnpicklingError(f"unregistered extension code {code}")
        self.append(self.find_class(*key))

    for _name, _op in (
        ("TUPLE", _op_tuple),
        ("TUPLE1", _op_tuple1),
        ("TUPLE2", _op_tuple2),
        ("TUPLE3", _op_tuple3),
        ("REDUCE", _op_reduce),
        ("NEWOBJ", _op_newobj),
        ("NEWOBJ_EX", _op_newobj_ex),
        ("BUILD", _op_build),
        ("DICT", _op_dict),
        ("SETITEM", _op_setitem),
        ("SETITEMS", _op_setitems),
        ("APPEND", _op_append),
        ("APPENDS", _op_appends),
        ("ADDITEMS", _op_additems),
        ("FROZENSET", _op_frozenset),
        ("EMPTY_DICT", _op_empty_dict),
        ("EMPTY_LIST", _op_empty_list),
        ("EMPTY_SET", _op_empty_set),
        ("LIST", _op_list),
        ("FRAME", _op_frame),
    ):
        dispatch[getattr(pickle, _name)[0]] = _op
    del _name, _op

    def load(self):
        try:
            return self._run()
        except UnpicklingError:
            raise
        except MACHINE_ERRORS as exc:
            raise UnpicklingError(f"not a valid pickle stream: {type(exc).__name__}: {exc}") from None

    def _run(self):
        """pickle._Unpickler.load without its frame reader: opcodes read the
        stream directly (frames are checked, not buffered), which is what
        makes this machine a few times faster than the one it is built on."""
        self.read = read = self._file_read
        self.readline = self._file_readline
        self.readinto = self._readinto
        self.metastack = []
        self.stack = []
        self.append = self.stack.append
        self.proto = 0
        dispatch = self.dispatch
        try:
            while True:
                key = read(1)
                if not key:
                    raise EOFError
                dispatch[key[0]](self)
        except pickle._Stop as stop:
            return stop.value

    def _readinto(self, buffer):
        data = self._file_read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def _names(self, module, name):
        """The global's name as the stream means it: protocol 0-2 spell
        Python 2 names; dill's own names are mason reconstructors
        (``(REBUILD, name)``) or dill's special globals (``(_SPECIAL, key)``)."""
        if not isinstance(module, str) or not isinstance(name, str):
            raise UnpicklingError("a global whose name is not a string")
        if self.proto < 3 and self.fix_imports:
            if (module, name) in _compat_pickle.NAME_MAPPING:
                module, name = _compat_pickle.NAME_MAPPING[(module, name)]
            elif module in _compat_pickle.IMPORT_MAPPING:
                module = _compat_pickle.IMPORT_MAPPING[module]
        found = _dillcompat.translate(module, name)
        if found is None and self._dill_stream:
            found = _dillcompat.RESTRICTED_BUILTINS.get((module, name))
        if found is None:
            return module, name
        self._dill_stream = True
        kind, value = found
        return (REBUILD, value) if kind == "rebuild" else (_SPECIAL, value)


# ====================================================================== scan


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


# ====================================================================== load


class RestrictedUnpickler(_Machine):
    allowlist: Allowlist  # never None here
    memo: dict[int, Any]
    """Loads under an allowlist, enforcing it on every step (see the module docstring).

    ``session``: for a session, ``(saved module name, target namespace,
    target module)``: the file's own module name means the caller's target.
    ``load_state``: the :class:`_rebuild._LoadState` shared by all pickles of
    one load.  ``dill_session``: for a session file written by dill, the
    name dill gave its module (``__main__``, ``__runtime__.name``): dill's
    ``_import_module`` of it makes ``dill_standin``, a new module that the
    saved state fills (the caller applies it to the target).
    """

    def __init__(
        self,
        file,
        allowlist: Allowlist,
        *,
        buffers=None,
        session=None,
        load_state=None,
        map_location=None,
        dill_session=None,
    ):
        super().__init__(file, allowlist, buffers=buffers)
        self._saved_module: str | None
        self._namespace: dict | None
        self._module: types.ModuleType | None
        self._saved_module, self._namespace, self._module = session or (None, None, None)
        self._dill_session = dill_session
        self.dill_standin = None
        self._state = load_state if load_state is not None else _rebuild._LoadState(self._namespace)
        self._map_location = map_location
        self._granted: dict[int, object] = {}  # what find_class handed out (callable)
        self._fresh: dict[int, object] = {}  # objects and containers this load created
        self._undo: list | None = None
        self._allocated = 0  # items the builtin constructors were asked for
        self._rebuilders = {name: self._wrap_rebuilder(name) for name in REBUILDERS}
        self._getattr = self._checked_accessor("builtins:getattr", _plain_getattr)
        # reconstructors that hand out objects that existed before the load
        self._accessors = {
            self._getattr,
            *(
                self._rebuilders[name]
                for name in (
                    "import_module",
                    "module_dict",
                    "module_attribute",
                    "import_package",
                    "getattr_chain",
                    "class_attribute",
                    "empty_cell_marker",
                    "matplotlib_rcparams",
                    "dill_import_module",
                    "dill_load_type",
                    "dill_class_attribute",
                )
            ),
        }

    # -- the memo, with an undo log for sessions ------------------------

    def start_undo(self) -> None:
        """Log memo writes from now on, so that ``undo`` can take them back."""
        self._undo = []

    def undo(self) -> None:
        """Put the memo back as it was at ``start_undo`` (a variable failed halfway)."""
        memo = self.memo
        for index, old in reversed(self._undo or ()):
            if old is _ABSENT:
                memo.pop(index, None)
            else:
                memo[index] = old
        self._undo = []

    def _memo_put(self, index: int) -> None:
        if not self.stack:
            raise UnpicklingError("memoizing from an empty stack")
        if self._undo is not None:
            self._undo.append((index, self.memo.get(index, _ABSENT)))
        self.memo[index] = self.stack[-1]

    def _op_memoize(self):
        self._memo_put(len(self.memo))

    def _op_put(self):
        index = int(self.readline()[:-1])
        if index < 0:
            raise UnpicklingError("negative PUT argument")
        self._memo_put(index)

    def _op_binput(self):
        self._memo_put(self.read(1)[0])

    def _op_long_binput(self):
        self._memo_put(int.from_bytes(self.read(4), "little"))

    dispatch: ClassVar[dict[int, Any]] = dict(_Machine.dispatch)
    dispatch[pickle.MEMOIZE[0]] = _op_memoize
    dispatch[pickle.PUT[0]] = _op_put
    dispatch[pickle.BINPUT[0]] = _op_binput
    dispatch[pickle.LONG_BINPUT[0]] = _op_long_binput

    def load(self):
        tokens = (_rebuild._LOAD.set(self._state), _rebuild._MAP_LOCATION.set(self._map_location))
        try:
            return super().load()
        finally:
            _rebuild._MAP_LOCATION.reset(tokens[1])
            _rebuild._LOAD.reset(tokens[0])

    # -- globals -------------------------------------------------------

    def find_class(self, module, name):
        module, name = self._names(module, name)
        allow = self.allowlist
        if module is _SPECIAL:
            return self._dill_special(name)
        problem = allow.global_problem(module, name)
        if problem is not None:
            allow.refuse(problem)
        if module == REBUILD:
            obj = self._rebuilders[name]
        elif (module, name) in ACCESSORS:
            obj = self._getattr
        else:
            obj = self._resolve(module, name)
        self._granted[id(obj)] = obj
        return obj

    def _dill_special(self, key):
        """dill's hand-written globals (see _dillcompat.HAND_WRITTEN)."""
        if key == "namespace":  # as module_dict of the session's module: only the namespace loaded into
            return self._module_dict(self._saved_module or "__main__")
        if key == "NoneType":
            self._granted[id(type(None))] = type(None)
            return type(None)
        return {"dill": _dillcompat.DILL_MODULE, "open": _dillcompat.OPENER, "empty_cell": _rebuild._EMPTY_CELL}[key]

    def _resolve(self, module, name):
        allow = self.allowlist
        exact = (module, name) in allow.globals or (module, name) in ALWAYS
        try:
            obj = importlib.import_module(module)
        except ImportError as exc:
            raise UnpicklingError(f"cannot import {module!r} for the global {module}:{name}: {exc}") from None
        parts = name.split(".") if self.proto >= 4 else [name]
        for i, part in enumerate(parts):
            owner = obj
            if i and not exact:
                # Walk only through modules and classes this allowlist allows.
                if isinstance(owner, types.ModuleType):
                    if not allow.origin_allowed(owner.__name__):
                        allow.refuse(f"{module}:{name} (through the module {owner.__name__})")
                else:
                    problem = allow.reach_problem(owner, f"{module}:{'.'.join(parts[:i])}")
                    if problem is not None or not isinstance(owner, type):
                        allow.refuse(problem or f"{module}:{name} (through a {type(owner).__name__} object)")
            try:
                obj = getattr(owner, part)
            except AttributeError:
                renamed = _RENAMES.get((module, name))
                if renamed is None:
                    raise UnpicklingError(f"{module}:{name} does not exist here") from None
                return self._resolve(*renamed)
        problem = allow.reach_problem(obj, f"{module}:{name}", exact=exact)
        if problem is not None:
            allow.refuse(problem)
        return obj

    def persistent_load(self, pid):
        raise UnpicklingError("this stream uses persistent ids, which a restricted load does not resolve")

    # -- calls -----------------------------------------------------------

    def _callable(self, func) -> bool:
        if self._granted.get(id(func)) is func:
            return True
        if self._state.made.get(id(func)) is func:
            return isinstance(func, type) or self.allowlist.gate(CODE)
        return False

    def _call(self, func, args, kwargs):
        allow = self.allowlist
        if not self._callable(func):
            allow.refuse(f"a call of a {type(func).__name__} object that is not an allowed global")
        if isinstance(func, type) and issubclass(func, type):
            allow.refuse(f"a call of the metaclass {func.__qualname__} (it would create a class)")
        self._hashing(args)
        self._allocated += _check_builtin_call(func, args, allow)
        if self._allocated > _MAX_ITEMS + _ITEMS_PER_BYTE * self._stream_size():
            allow.refuse(
                f"builtin constructors asked for {self._allocated} items in all (more than the file could hold)"
            )
        if func in _CREATORS:
            _check_creator(func, args, allow)
        try:
            result = func(*args, **(kwargs or {}))
        except MasonError:
            raise
        except Exception as exc:  # the allowed code's own error: name it, not the stream
            raise UnpicklingError(
                f"cannot rebuild an object with {_name_of(func)}: {type(exc).__name__}: {exc}"
            ) from exc
        # type(), not isinstance(): a dead weak proxy raises on __class__
        if issubclass(type(result), _REACHABLE) and self._state.made.get(id(result)) is not result:
            # An allowed function that returns a function, class or module
            # (a resolver the list does not know) hands out only what the
            # list would have allowed as a global.
            # A method bound to an object this load built is as harmless as its function.
            problem = allow.reach_problem(result, f"the result of calling {_name_of(func)}")
            bound_to = result.__self__ if isinstance(result, types.MethodType) else None
            if problem is not None and func not in self._accessors and not self._bound_to_own(result, bound_to):
                allow.refuse(problem)
        if func not in self._accessors:
            # What a constructor or an allowed function returns is new, unless
            # it is a kind of object that is always shared (see _mark_fresh).
            self._mark_fresh(result)
        return result

    def _new(self, cls, args, kwargs):
        allow = self.allowlist
        if not isinstance(cls, type):
            raise UnpicklingError(f"NEWOBJ: the class argument is a {type(cls).__name__}, not a class")
        if not self._callable(cls):
            allow.refuse(f"NEWOBJ of {cls.__module__}.{cls.__qualname__}, which did not come from an allowed global")
        if issubclass(cls, type):
            allow.refuse(f"NEWOBJ of the metaclass {cls.__qualname__} (it would create a class)")
        self._hashing(args)
        obj = cls.__new__(cls, *args, **(kwargs or {}))
        self._mark_fresh(obj)
        return obj

    def _mark_fresh(self, obj):
        if (
            issubclass(type(obj), _SHARED_KINDS)
            or self._granted.get(id(obj)) is obj
            or any(obj is stream for stream in _STD_STREAMS())
        ):
            # Shared objects are never "created by this load", nor are proxies,
            # whose attributes and items are another object's.
            return
        self._fresh[id(obj)] = obj

    def _owned(self, obj) -> bool:
        return self._fresh.get(id(obj)) is obj or self._state.made.get(id(obj)) is obj

    # -- state and items -----------------------------------------------

    def _build(self, inst, state):
        if not self._owned(inst):
            self.allowlist.refuse(f"BUILD on a {type(inst).__qualname__} object it did not create (setting attributes)")
        setstate = getattr(inst, "__setstate__", None)
        if setstate is not None:
            setstate(state)
            return
        slotstate = None
        if isinstance(state, tuple) and len(state) == 2:
            state, slotstate = state
        if state:
            if not isinstance(state, dict):
                raise UnpicklingError("BUILD: the state is not a dict")
            inst_dict = inst.__dict__
            for key, value in state.items():
                inst_dict[sys.intern(key) if type(key) is str else key] = value
        if slotstate:
            if not isinstance(slotstate, dict):
                raise UnpicklingError("BUILD: the slot state is not a dict")
            for key, value in slotstate.items():
                setattr(inst, key, value)

    def _check_target(self, target, what):
        if not self._owned(target):
            self.allowlist.refuse(f"{what} on a {type(target).__qualname__} object it did not create")

    def _setitems(self, target, items):
        self._check_target(target, "item assignment")
        self._hashing(items[0::2])
        for i in range(0, len(items), 2):
            target[items[i]] = items[i + 1]

    def _extend(self, target, items):
        self._check_target(target, "appending")
        if type(target) is list:
            target.extend(items)
            return
        extend = getattr(target, "extend", None)
        if extend is not None:
            extend(items)
        else:
            for item in items:
                target.append(item)

    def _add(self, target, items):
        self._check_target(target, "adding to a set")
        self._hashing(items)
        if isinstance(target, set):
            target.update(items)
        else:
            for item in items:
                target.add(item)

    def _new_container(self, value):
        self._fresh[id(value)] = value
        return value

    def _frozenset(self, items):
        return frozenset(items)

    # -- mason's reconstructors, each with the rule that judges its arguments

    def _wrap_rebuilder(self, name):
        function = getattr(_rebuild, name, None)
        if function is None:
            return _missing_rebuilder(name)
        if name == "import_module":
            return self._import_module
        if name == "module_dict":
            return self._module_dict
        if name == "module_attribute":
            return self._module_attribute
        if name == "import_package":
            return self._import_package
        if name == "getattr_chain":
            return self._checked_accessor(f"{REBUILD}:getattr_chain", function)
        if name == "class_attribute":
            return self._class_attribute
        if name == "matplotlib_rcparams":
            return _safe_rcparams
        if name in ("make_weakref_with_callback", "make_keyed_ref"):
            return self._weakref_maker(function)
        dill = {
            "dill_import_module": self._dill_import_module,
            "dill_load_type": self._dill_load_type,
            "dill_class_attribute": self._dill_class_attribute,
            "dill_namedtuple": self._dill_namedtuple,
            "dill_setitems": self._dill_setitems,
        }
        return dill.get(name, function)

    def _import_module(self, name):
        if name == self._saved_module and self._module is not None:
            return self._module
        if not isinstance(name, str) or not self.allowlist.import_allowed(name):
            self.allowlist.refuse(f"{name!r} (imported by name)")
        return _rebuild.import_module(name)

    def _import_package(self, name, submodules):
        if not isinstance(submodules, tuple):
            raise UnpicklingError("import_package: the submodules are not a tuple")
        for module in (name, *submodules):
            if not isinstance(module, str) or not self.allowlist.import_allowed(module):
                self.allowlist.refuse(f"{module!r} (imported by name)")
        return _rebuild.import_package(name, submodules)

    def _module_dict(self, name):
        if name == self._saved_module and self._namespace is not None:
            return self._namespace
        if name == "__main__" and self._saved_module is None and self.allowlist.target == "__main__":
            return sys.modules["__main__"].__dict__  # a single object's functions: dill's semantics
        self.allowlist.refuse(f"the namespace of module {name!r} (only the one loaded into may be written)")

    def _module_attribute(self, module, name):
        allow = self.allowlist
        if not (isinstance(module, str) and isinstance(name, str)):
            raise UnpicklingError("module_attribute: the names are not strings")
        problem = allow.global_problem(module, name)
        if problem is not None:
            allow.refuse(problem)
        obj = _rebuild.module_attribute(module, name)
        problem = allow.reach_problem(obj, f"{module}:{name}", exact=(module, name) in allow.globals)
        if problem is not None:
            allow.refuse(problem)
        return obj

    def _class_attribute(self, cls, name):
        allow = self.allowlist
        if not isinstance(cls, type):
            raise UnpicklingError("class_attribute: not a class")
        if cls in (type, object) or (allow.reach_problem(cls, "class") is not None and not self._owned(cls)):
            allow.refuse(f"an attribute of the class {getattr(cls, '__qualname__', '?')}")
        found = _rebuild.class_attribute(cls, name)
        inner = getattr(found, "__func__", None) if isinstance(found, (staticmethod, classmethod)) else None
        if inner is not None and self._state.made.get(id(inner)) is not inner:
            problem = allow.reach_problem(inner, f"{cls.__qualname__}.{name}")
            if problem is not None:
                allow.refuse(problem)
        return found

    def _checked_accessor(self, label, function):
        def accessor(obj, path, *default):
            if obj is _dillcompat.DILL_MODULE:  # dill's shims: getattr(dill._dill, name, default)
                return self._dill_shim(path, default)
            if not isinstance(path, str) or not path or default:
                raise UnpicklingError(f"{label}: the attribute is not a plain name")
            for part in path.split("."):
                if not part.isidentifier() or (part.startswith("__") and part.endswith("__")):
                    self.allowlist.refuse(f"the attribute {path!r} through {label} (never reachable)")
                owner, obj = obj, function(obj, part)
                self._judge_attribute(owner, obj, f"{label}(..., {path!r})")
            return obj

        return accessor

    # -- dill's reconstructors (see _dillcompat.py) ------------------------

    def _dill_shim(self, name, default):
        found = _dillcompat.shim(name, self._rebuilders)
        if found is _dillcompat.NO_SHIM:
            if len(default) != 1:
                raise UnpicklingError(f"dill._dill.{name} is not one of dill's shims")
            return default[0]
        self._granted[id(found)] = found
        return found

    def _dill_import_module(self, name):
        if not isinstance(name, str):
            raise UnpicklingError("dill_import_module: the module name is not a string")
        if name == self._dill_session and self._dill_session is not None:
            if self.dill_standin is None:
                self.dill_standin = _rebuild.make_module(name.rpartition("__runtime__.")[2])
            return self.dill_standin
        if name.startswith("__runtime__."):
            return _rebuild.dill_import_module(name)  # a new module of the file's own
        return self._import_module(name)

    def _dill_load_type(self, name):
        if name in _dillcompat.DATA_TYPES:
            found = _rebuild.dill_load_type(name)
            self._granted[id(found)] = found
            return found
        where = _dillcompat.type_global(name)
        if where is None:
            self.allowlist.refuse(f"dill's type {name} (no module holds it, so no allow pattern names it)")
        return self.find_class(*where)  # judged, and callable, exactly as that global

    def _dill_class_attribute(self, cls, name, repr_text):
        if not isinstance(repr_text, str):
            raise UnpicklingError("dill_class_attribute: the repr is not text")
        return self._class_attribute(cls, name)

    def _dill_namedtuple(self, name, fields, module, defaults=None):
        # Found by name only where the global module:name is allowed; else a new class.
        _rebuild._check_namedtuple(name, fields, module, defaults)
        if self.allowlist.global_problem(module, name) is None:
            found = _rebuild._existing_namedtuple(module, name, tuple(fields))
            if found is not None and self.allowlist.reach_problem(found, f"{module}:{name}") is None:
                return found
        return _rebuild._new_namedtuple(name, fields, module, defaults)

    def _dill_setitems(self, dest, source):
        self._check_target(dest, "dill's _setitems")
        return _rebuild.dill_setitems(dest, source)

    def _judge_attribute(self, owner, obj, how):
        """May the load hold ``obj``, read as an attribute of ``owner``?"""
        allow = self.allowlist
        if allow.reach_problem(obj, how) is None:
            return
        if isinstance(owner, type) and type(obj) is owner and self._class_ok(owner):
            return  # an enum member, a class-level singleton of an allowed class
        if self._bound_to_own(obj, owner):
            return
        allow.refuse(allow.reach_problem(obj, how))

    def _bound_to_own(self, obj, owner) -> bool:
        """Is ``obj`` a method bound to ``owner``, an object this load built,
        whose function this load built or the list allows?  (Holding it is
        holding its function.)"""
        if not isinstance(obj, (types.MethodType, types.BuiltinMethodType)) or owner is None:
            return False
        if getattr(obj, "__self__", None) is not owner or not self._owned(owner):
            return False
        func = getattr(obj, "__func__", None)
        return (
            func is None
            or self.allowlist.reach_problem(func, "a method") is None
            or self._state.made.get(id(func)) is func
        )

    def _class_ok(self, cls) -> bool:
        return self._owned(cls) or self.allowlist.reach_problem(cls, "class") is None

    def _weakref_maker(self, function):
        def maker(obj, callback, *rest):
            func = getattr(callback, "__func__", callback)
            if callback is not None and self._state.made.get(id(func)) is not func:
                self.allowlist.refuse("a weak reference whose callback the file did not create")
            return function(obj, callback, *rest)

        return maker


_ABSENT = object()
#: never "created by this load": shared kinds, and proxies (their attributes
#: and items are another object's)
_SHARED_KINDS = (
    type,
    types.ModuleType,
    types.FunctionType,
    types.BuiltinFunctionType,
    enum.Enum,
    weakref.ProxyType,
    weakref.CallableProxyType,
    types.MappingProxyType,
)


def _STD_STREAMS():
    return (sys.__stdin__, sys.__stdout__, sys.__stderr__, sys.stdin, sys.stdout, sys.stderr)


_REACHABLE = (type, types.FunctionType, types.BuiltinFunctionType, types.ModuleType, types.MethodType)


def _name_of(func) -> str:
    return f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', type(func).__name__)}"


_RENAMES = {
    ("enum", "EnumType"): ("enum", "EnumMeta"),  # EnumType is 3.11+'s name
    ("enum", "EnumMeta"): ("enum", "EnumType"),
}


def _plain_getattr(obj, name):
    return getattr(obj, name)


def _missing_rebuilder(name):
    def missing(*args):
        raise UnpicklingError(f"this file needs mason._rebuild.{name}, which this mason lacks")

    return missing


_SIZED = (list, tuple, set, frozenset, dict, bytes, bytearray, str)


def _check_builtin_call(func, args, allow) -> int:
    """Builtin constructors may not be made to build more than the file could
    hold; returns how many items (bytes) this call asks for."""
    if func is _codecs.encode:
        # protocol 2's spelling of bytes; other codecs decompress or import
        if len(args) != 2 or type(args[0]) is not str or args[1] not in ("latin1", "latin-1"):
            allow.refuse("_codecs:encode, other than of a str to latin1 (how protocol 2 writes bytes)")
    elif func is builtins.type:
        if len(args) != 1 or args[0] not in (None, NotImplemented, Ellipsis):
            allow.refuse("builtins:type, other than for type(None), type(NotImplemented), type(...)")
    elif func in _SIZED and args:
        first = args[0]
        if type(first) is int and func in (bytes, bytearray) and first > _MAX_ITEMS:
            allow.refuse(f"{func.__name__}({first}) (a buffer bigger than the file)")
        if type(first) is range and len(first) > _MAX_ITEMS:
            allow.refuse(f"{func.__name__}(range of {len(first)} items)")
        if type(first) is int and func in (bytes, bytearray):
            return first
        if type(first) is range:
            return len(first)
    return 0


def _check_creator(func, args, allow) -> None:
    """copyreg's rebuilders call ``cls.__new__``: ``cls`` must be a class and not a metaclass."""
    classes = args[:2] if func is _RECONSTRUCTOR else args[:1]
    for cls in classes:
        if not isinstance(cls, type):
            raise UnpicklingError(f"copyreg.{func.__name__}: {type(cls).__name__} is not a class")
        if issubclass(cls, type):
            allow.refuse(f"copyreg.{func.__name__} of the metaclass {cls.__qualname__}")
    if not classes:
        raise UnpicklingError(f"copyreg.{func.__name__} without a class")


_UNSAFE_RC = ("path", "args", "program", "backend", "directory", "preamble", "animation.", "command")


def _safe_rcparams(changed):
    """matplotlib settings, except those that name programs, paths or code to run later."""
    if not isinstance(changed, dict):
        raise UnpicklingError("matplotlib rcParams state is not a dict")
    kept = {k: v for k, v in changed.items() if isinstance(k, str) and not any(word in k for word in _UNSAFE_RC)}
    return _rebuild.matplotlib_rcparams(kept)
