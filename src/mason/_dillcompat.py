"""What the names in a file written by dill (0.3.6 to 0.4.x) mean to mason.

dill writes its own reconstructors into every file (``dill._dill._create_function``,
``_create_code``, ``_import_module``...) and a few globals by hand
(``__builtin__.__main__`` for the module being restored).  This module says,
as tables, what each of them is in mason: one of mason's own closed
reconstructors (``mason._rebuild.dill_*``, or an older one where the
arguments agree), a "special" (the namespace being restored into, dill's
module itself as its shims see it), or a refusal that names what cannot be
read.  Both unpicklers use the same tables: the C one resolves with them,
the restricted machine judges by them (``_vm.py``), so a name is allowed
exactly as the mason reconstructor it stands for would be.

It also holds the dill-specific knowledge those reconstructors need: the
argument layouts of ``_create_code`` per Python version, the type names of
``_load_type``, and the only strings ``_eval_repr`` is given that mason
reads (without evaluating anything).

dill is never imported: a file is read the same whether dill is installed
or not.
"""

from __future__ import annotations

import builtins
import re
import sys
import types

from . import _rebuild
from .errors import UnpicklingError, VersionMismatchError

__all__ = [
    "RECONSTRUCTORS",
    "REFUSED",
    "HAND_WRITTEN",
    "RESTRICTED_BUILTINS",
    "SHIMS",
    "DATA_TYPES",
    "DILL_MODULE",
    "OPENER",
    "NO_SHIM",
    "translate",
    "shim",
    "load_type",
    "type_global",
    "make_code",
    "eval_repr",
    "is_opener",
]

#: the modules dill's own names live in (``dill.dill`` is the spelling of
#: dill before 0.3.4, which its Unpickler still reads)
DILL_MODULES = frozenset({"dill._dill", "dill.dill"})

#: dill._dill's reconstructors -> mason._rebuild's.  Each mason one takes
#: the very arguments dill wrote (dill/_dill.py, the save_* functions).
RECONSTRUCTORS = {
    "_create_function": "dill_create_function",
    "_create_code": "dill_create_code",
    "_create_cell": "dill_create_cell",
    "_create_type": "dill_create_type",
    "_load_type": "dill_load_type",
    "_import_module": "dill_import_module",
    "_getattr": "dill_class_attribute",  # (class, name, repr): a descriptor in a class's __dict__
    "_get_attr": "getattr_chain",  # (object, name)
    "_create_namedtuple": "dill_namedtuple",
    "_create_array": "dill_ndarray",
    "_create_dtypemeta": "dill_dtype_class",
    "_create_filehandle": "dill_filehandle",
    "_create_lock": "make_lock",  # (locked,)
    "_create_rlock": "dill_rlock",
    "_create_weakref": "dill_weakref",
    "_create_weakproxy": "dill_weakproxy",
    "_create_typing_tuple": "dill_typing_tuple",
    "_eval_repr": "dill_eval_repr",
    "_setitems": "dill_setitems",
    "_setattr": "dill_setattr",
    "_delattr": "dill_delattr",
}

#: dill._dill names mason does not read, and why (the error names both)
REFUSED = {
    "_create_capsule": "a PyCapsule, a raw C pointer into the memory of the process that saved it",
    "_create_thread_handle": "a thread handle, of a thread of the process that saved it",
    "_unmarshal": "code marshalled without the Python version that compiled it",
    "_create_ftype": "a method wrapper as only dill before 0.3.6 wrote it",
    "_create_stringi": "a Python 2 cStringIO object",
    "_create_stringo": "a Python 2 cStringIO object",
}

#: globals dill writes by hand (GLOBAL opcodes in save_module_dict and
#: save_type), and dill's module itself (what its shims fetch attributes of)
HAND_WRITTEN = {
    ("__builtin__", "__main__"): "namespace",  # the module being restored: its __dict__
    ("builtins", "__main__"): "namespace",  # the same, read with protocol 2's name fixes
    ("__builtin__", "NoneType"): "NoneType",
    ("builtins", "NoneType"): "NoneType",
    ("dill", "_dill"): "dill",
    ("dill", "dill"): "dill",
    ("dill._dill", "_CELL_EMPTY"): "empty_cell",
    ("dill.dill", "_CELL_EMPTY"): "empty_cell",
}

#: In the restricted machine only, once a stream has named dill: the
#: builtins dill's postprocessing calls (``setattr(cls, '__qualname__', q)``)
#: and passes (``open`` for a file handle), as mason's closed equivalents.
#: The C unpickler, which trusts its file, resolves them as they are.
RESTRICTED_BUILTINS = {
    ("builtins", "setattr"): ("rebuild", "dill_setattr"),
    ("builtins", "delattr"): ("rebuild", "dill_delattr"),
    ("builtins", "open"): ("special", "open"),
    ("io", "open"): ("special", "open"),
    ("_io", "open"): ("special", "open"),  # how Python 3.12 and later name it
    ("_pyio", "open"): ("special", "open"),
}

#: What ``getattr(dill._dill, name, default)`` gives (dill's _shims.py):
#: mason's reconstructors for these names, the empty-cell marker, else the default.
SHIMS = {"_setattr": "dill_setattr", "_delattr": "dill_delattr", "_CELL_EMPTY": None}


def translate(module: str, name: str):
    """What the global ``module.name`` of a dill file stands for:
    ``("rebuild", mason_name)``, ``("special", key)`` (a key of
    HAND_WRITTEN's values), or None for a name that is not dill's own.
    A dill name mason does not read raises, naming it."""
    special = HAND_WRITTEN.get((module, name))
    if special is not None:
        return "special", special
    if module not in DILL_MODULES:
        # Any other global, in dill's other modules too (a class of
        # dill._objects), is the file's own, resolved as usual.
        return None
    mason_name = RECONSTRUCTORS.get(name)
    if mason_name is not None:
        return "rebuild", mason_name
    why = REFUSED.get(name)
    if why is not None:
        raise UnpicklingError(f"this dill file holds {why} (dill._dill.{name}), which mason cannot read")
    raise UnpicklingError(
        f"this file names dill._dill.{name}, which is not one of the dill reconstructors mason reads"
        " (dill 0.3.6 to 0.4.x)"
    )


class _DillModule:
    """Stands for ``dill._dill`` where a file names the module itself.

    dill's shims are written as ``getattr(dill._dill, '_setattr', setattr)``;
    the C unpickler reads these attributes, mason's closed equivalents (the
    restricted machine hands out only what SHIMS names, see ``shim``).
    """

    __slots__ = ()
    _setattr = staticmethod(_rebuild.dill_setattr)
    _delattr = staticmethod(_rebuild.dill_delattr)
    _CELL_EMPTY = _rebuild._EMPTY_CELL

    def __repr__(self) -> str:
        return "<dill._dill, as mason reads it>"


DILL_MODULE = _DillModule()


class _Opener:
    """What ``open`` is in a dill stream read by the restricted machine: an
    inert marker, since mason's file-handle reconstructor opens files itself."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<open, as a dill file names it>"


OPENER = _Opener()


def shim(name, rebuilders: dict):
    """What ``getattr(dill._dill, name, default)`` gives, or ``NO_SHIM``;
    ``rebuilders`` maps mason reconstructor names to what to hand out."""
    if name not in SHIMS:
        return NO_SHIM
    mason_name = SHIMS[name]
    return _rebuild._EMPTY_CELL if mason_name is None else rebuilders[mason_name]


NO_SHIM = object()


# ====================================================================== _load_type


def _builtin_types() -> dict[str, tuple[str, str]]:
    """dill's _reverse_typemap, as globals: every type in ``builtins`` and
    ``types`` that is defined in builtins, by the name dill gives it."""
    found = {}
    for module in (builtins, types):
        for key, value in vars(module).items():
            if type(value) is type and getattr(value, "__module__", None) == "builtins":
                found[key] = (module.__name__, key)
    return found


#: dill's type names -> (module, attribute) of the global they stand for
_TYPE_GLOBALS: dict[str, tuple[str, str]] = {
    **_builtin_types(),
    "PartialType": ("functools", "partial"),
    "SuperType": ("builtins", "super"),
    "ItemGetterType": ("operator", "itemgetter"),
    "AttrGetterType": ("operator", "attrgetter"),
    "CellType": ("types", "CellType"),
    "FileType": ("io", "FileIO"),
    "BufferedRandomType": ("io", "BufferedRandom"),
    "BufferedReaderType": ("io", "BufferedReader"),
    "BufferedWriterType": ("io", "BufferedWriter"),
    "TextWrapperType": ("io", "TextIOWrapper"),
    "PyBufferedRandomType": ("_pyio", "BufferedRandom"),
    "PyBufferedReaderType": ("_pyio", "BufferedReader"),
    "PyBufferedWriterType": ("_pyio", "BufferedWriter"),
    "PyTextWrapperType": ("_pyio", "TextIOWrapper"),
    "HKEYType": ("winreg", "HKEYType"),
}


def _view_types() -> dict[str, type]:
    from collections import OrderedDict

    plain: dict = {}
    ordered: OrderedDict = OrderedDict()
    found = {f"Dict{k.title()}Type": type(getattr(plain, k)()) for k in ("keys", "values", "items")}
    found.update({f"Odict{k.title()}Type": type(getattr(ordered, k)()) for k in ("keys", "values", "items")})
    if sys.version_info >= (3, 11):  # GenericAlias became iterable (for *tuple[int, ...]) in 3.11
        found["GenericAliasIteratorType"] = type(iter(types.GenericAlias(list, (int,))))
    return found


#: dill's type names for types no module holds: built here, never judged as globals
_TYPE_VALUES = _view_types()

#: dill types whose call builds only what mason's own files build with a
#: "data" reconstructor (make_staticmethod, make_classmethod, make_method,
#: make_mappingproxy, make_cell): the restricted machine lets a file call them
#: without an allow pattern, as it lets mason's own files.
DATA_TYPES = frozenset({"staticmethod", "classmethod", "MethodType", "MappingProxyType", "CellType"})


def type_global(name) -> tuple[str, str] | None:
    """The global a dill type name stands for (None: a type no module holds)."""
    if not isinstance(name, str) or (name not in _TYPE_GLOBALS and name not in _TYPE_VALUES):
        raise UnpicklingError(f"dill's type name {name!r} is not one this Python has")
    return _TYPE_GLOBALS.get(name)


def load_type(name):
    """The type dill's ``_load_type(name)`` gives."""
    found = type_global(name)
    if found is None:
        return _TYPE_VALUES[name]
    import importlib

    module, attribute = found
    try:
        value = getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError):
        raise UnpicklingError(f"dill's type {name!r} ({module}.{attribute}) does not exist here") from None
    if not isinstance(value, type):
        raise UnpicklingError(f"dill's type {name!r} is not a type here")
    return value


# ====================================================================== _create_code

#: dill's _create_code arguments, by the Python that wrote them (dill/_dill.py,
#: save_code): (count, led by co_lnotab) -> (that Python, the fields in order).
#: Python 3.10 and later write co_lnotab first, outside the count.
_CODE_LAYOUTS = {
    (15, False): (
        "Python 3.7",
        "argcount kwonlyargcount nlocals stacksize flags code consts names varnames"
        " filename name firstlineno lnotab freevars cellvars",
    ),
    (16, False): (
        "Python 3.8 or 3.9",
        "argcount posonlyargcount kwonlyargcount nlocals stacksize flags code"
        " consts names varnames filename name firstlineno lnotab freevars cellvars",
    ),
    (16, True): (
        "Python 3.10",
        "argcount posonlyargcount kwonlyargcount nlocals stacksize flags code consts"
        " names varnames filename name firstlineno linetable freevars cellvars",
    ),
    (17, True): (
        "PyPy 3.11",
        "argcount posonlyargcount kwonlyargcount nlocals stacksize flags code consts"
        " names varnames filename name qualname firstlineno linetable freevars cellvars",
    ),
    (18, True): (
        "Python 3.11 or later",
        "argcount posonlyargcount kwonlyargcount nlocals stacksize flags code"
        " consts names varnames filename name qualname firstlineno linetable exceptiontable"
        " freevars cellvars",
    ),
    (20, True): (
        "a Python 3.11 alpha",
        "argcount posonlyargcount kwonlyargcount nlocals stacksize flags code"
        " consts names varnames filename name qualname firstlineno linetable endlinetable"
        " columntable exceptiontable freevars cellvars",
    ),
}

# This interpreter's layout (types.CodeType's positional arguments), by feature:
# co_exceptiontable and co_qualname are CPython 3.11's; co_linetable alone is 3.10's.
_HERE: tuple[int, bool] | None
if hasattr(types.CodeType, "co_exceptiontable") and hasattr(types.CodeType, "co_qualname"):
    _HERE = (18, True)
elif hasattr(types.CodeType, "co_linetable"):
    _HERE = (16, True)
else:  # pragma: no cover - mason needs Python 3.10 or later
    _HERE = None

_INT_FIELDS = frozenset(
    {"argcount", "posonlyargcount", "kwonlyargcount", "nlocals", "stacksize", "flags", "firstlineno"}
)
_BYTES_FIELDS = frozenset({"code", "lnotab", "linetable", "exceptiontable"})
_STR_FIELDS = frozenset({"filename", "name", "qualname"})
_NAME_TUPLES = frozenset({"names", "varnames", "freevars", "cellvars"})


def make_code(args: tuple):
    """A code object from dill's ``_create_code`` arguments.

    Only code written by this interpreter's minor version can run here, but
    dill records no version: the layout tells the family of Pythons, and
    (from 3.11, where one layout serves several) the bytecode itself must
    be this interpreter's, checked opcode by opcode.  Anything else is a
    :class:`VersionMismatchError` naming the Python that wrote it, never a
    code object that would crash the interpreter when called.
    """
    prefixed = bool(args) and not isinstance(args[0], int)
    fields = args[1:] if prefixed else args
    layout = _CODE_LAYOUTS.get((len(fields), prefixed))
    if layout is None:
        raise UnpicklingError(f"damaged file: dill code object with {len(args)} arguments, a layout no Python writes")
    here = f"Python {sys.version_info[0]}.{sys.version_info[1]}"
    who, names = layout
    if (len(fields), prefixed) != _HERE:
        raise VersionMismatchError(
            f"this dill file holds code compiled by {who}, which cannot run on {here}; load it with the"
            " Python that saved it"
        )
    values = dict(zip(names.split(), fields, strict=True))
    for key, value in values.items():
        ok = (
            (type(value) is int if key in _INT_FIELDS else True)
            and (isinstance(value, bytes) if key in _BYTES_FIELDS else True)
            and (isinstance(value, str) if key in _STR_FIELDS else True)
            and (type(value) is tuple and all(isinstance(v, str) for v in value) if key in _NAME_TUPLES else True)
            and (type(value) is tuple if key == "consts" else True)
        )
        if not ok:
            raise UnpicklingError(f"damaged file: a dill code object's {key} is a {type(value).__name__}")
    if _HERE == (18, True) and not _bytecode_fits(values["code"]):
        raise VersionMismatchError(
            f"this dill file holds code compiled by another version of Python than this one ({here}):"
            f" the bytecode of {values['name']!r} is not this Python's; load it with the Python that saved it"
        )
    try:
        return types.CodeType(*fields)
    except (TypeError, ValueError, SystemError) as exc:  # SystemError: CPython's own checks of the fields
        raise UnpicklingError(f"damaged file: dill code object {values['name']!r}: {exc}") from None


def _bytecode_fits(code: bytes) -> bool:
    """Whether ``code`` (a ``co_code`` as CPython 3.11 and later give it:
    unspecialized, inline caches zeroed) is made of this interpreter's
    opcodes, each followed by exactly its number of cache entries."""
    import dis
    import opcode

    if len(code) % 2:
        return False
    cache = opcode.opmap["CACHE"]
    entries = getattr(opcode, "_inline_cache_entries", None)  # a list by opcode (3.11, 3.12), a dict by name (3.13)

    def caches(op: int) -> int:
        if isinstance(entries, dict):
            return entries.get(dis.opname[op], 0)
        return entries[op] if entries is not None else 0

    i, n = 0, len(code)
    while i < n:
        op = code[i]
        name = dis.opname[op]
        if op == cache or name.startswith(("<", "INSTRUMENTED_")) or name not in opcode.opmap:
            return False
        i += 2
        for _ in range(caches(op)):
            if i + 1 >= n or code[i] != cache or code[i + 1] != 0:
                return False
            i += 2
    return True


# ====================================================================== _eval_repr

_SINGLETONS = {"Ellipsis": Ellipsis, "NotImplemented": NotImplemented}
_RANGE = re.compile(r"range\((-?[0-9]{1,30}), (-?[0-9]{1,30})(?:, (-?[0-9]{1,30}))?\)")


def eval_repr(text):
    """What dill's ``_eval_repr`` gives for the reprs dill writes with it
    (``range(0, 10, 2)``, ``Ellipsis``, ``NotImplemented``), read by a
    grammar, never evaluated: any other text is refused."""
    if not isinstance(text, str):
        raise UnpicklingError("damaged file: dill's _eval_repr is given something that is not text")
    if text in _SINGLETONS:
        return _SINGLETONS[text]
    match = _RANGE.fullmatch(text)
    if match is not None:
        start, stop, step = match.groups()
        try:
            return range(int(start), int(stop), int(step or 1))
        except ValueError:  # a step of 0
            pass
    shown = text if len(text) <= 80 else text[:77] + "..."
    raise UnpicklingError(
        f"this dill file asks to evaluate the text {shown!r} (dill._dill._eval_repr); mason never evaluates"
        " text from a file, and reads only the reprs dill writes of range, Ellipsis and NotImplemented"
    )


# ====================================================================== file handles


def is_opener(value) -> bool:
    """Whether ``value`` is the ``open`` dill passes to _create_filehandle."""
    if value is OPENER:
        return True
    return getattr(value, "__name__", None) == "open" and getattr(value, "__module__", None) in ("io", "_io", "_pyio")
