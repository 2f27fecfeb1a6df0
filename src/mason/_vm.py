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

import _compat_pickle
import copyreg
import io
import pickle
import sys

from . import _dillcompat
from ._allowlist import REBUILD, Allowlist
from .errors import UnpicklingError

__all__ = ["MACHINE_ERRORS"]  # the machine; Scanner is in _scan.py, RestrictedUnpickler in _restricted.py

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
