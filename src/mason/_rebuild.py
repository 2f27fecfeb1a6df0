"""Load-side reconstructors and state setters.

Every saved file names functions of this module by ``mason._rebuild.<name>``.
This module is FROZEN: names are only ever appended, never renamed, moved or
given a different meaning.  A new behaviour gets a new name.  The list is
pinned by ``tests/test_rebuild_names.py``.  Some are defined in the
``_rebuild_*`` modules (builtins, io, libs, dill, portable), for size: this
module imports them and gives them its own name, which is what pickle
writes for them, so where a function is defined is not part of the format.

Nothing here may import a third-party package at module level, and every
function must be safe to call with the arguments a reducer produced on
another machine: they raise mason's own errors with a clear message.

Every reconstructor is closed: it builds only the kind of object it exists
for, from arguments it checks for type.  The state setters act only on
objects that a maker of this module built during the same load (the load
registers them in a :class:`_LoadState`), so a file cannot use them to write
into a module, class or function that existed before it was loaded.
"""

from __future__ import annotations

import abc
import builtins
import contextvars
import importlib
import marshal
import sys
import types

from .errors import ForbiddenGlobalError, UnpicklingError, VersionMismatchError

# ---------------------------------------------------------------- the load in progress


class _LoadState:
    """What one load (all segments of a session, or one pickle) has built.

    ``made``: objects returned by this module's makers during the load, by
    id (kept alive, so ids stay unique): only these may be given state.
    ``namespace``: the dict a session restores into, the one module
    namespace a load may write to.
    ``partitions``: the session's Dask partition table (a
    ``mason._dask.source.PartitionSource``), or None.
    """

    __slots__ = ("made", "namespace", "partitions")

    def __init__(self, namespace=None, partitions=None):
        self.made: dict[int, object] = {}
        self.namespace = namespace
        self.partitions = partitions


#: The _LoadState of the load running in this context (None: the data is being
#: unpickled by something other than mason, e.g. plain ``pickle.loads``,
#: which trusts it anyway).
_LOAD: contextvars.ContextVar = contextvars.ContextVar("mason_load", default=None)


def _made(obj):
    state = _LOAD.get()
    if state is not None:
        state.made[id(obj)] = obj
    return obj


def _require_made(obj, kind: type, what: str):
    if not isinstance(obj, kind):
        raise UnpicklingError(f"damaged file: {what} is given a {type(obj).__name__} object")
    state = _LOAD.get()
    if state is not None and state.made.get(id(obj)) is not obj:
        raise ForbiddenGlobalError(f"this file sets the state of a {kind.__name__} it did not create ({what}): refused")


# Code, functions and cells are final types (no subclasses): ``type(x) is``
# is the same test as ``isinstance``, and cheaper in the makers that a
# session of thousands of functions calls thousands of times.
_CodeType = types.CodeType
_FunctionType = types.FunctionType
_CellType = types.CellType


def _check(condition, message: str) -> None:
    if not condition:
        raise UnpicklingError(f"damaged file: {message}")


def _is_name(value) -> bool:
    return isinstance(value, str) and value.isidentifier()


def _is_dotted(value) -> bool:
    return isinstance(value, str) and bool(value) and all(part.isidentifier() for part in value.split("."))


# ---------------------------------------------------------------- modules


def import_module(name):
    """A module by name (imported if needed)."""
    _check(_is_dotted(name), f"a module name must be a dotted name, not {name!r}")
    if name == "__main__":
        return sys.modules["__main__"]
    return importlib.import_module(name)


def module_dict(name):
    """The live ``__dict__`` of a module: the globals of a function saved
    with ``recurse=False`` (dill's semantics) or of a session's own functions.
    The session unpickler points this at the namespace being restored."""
    return import_module(name).__dict__


def make_module(name):
    """An empty module object that is not registered in ``sys.modules``."""
    _check(isinstance(name, str), "a module name is not a string")
    return _made(types.ModuleType(name))


def module_setstate(module, state):
    _require_made(module, types.ModuleType, "module_setstate")
    _check(isinstance(state, dict) and all(isinstance(k, str) for k in state), "module state is not a dict of names")
    module.__dict__.update(state)


# ---------------------------------------------------------------- code


def code_from_marshal(version, data):
    """A code object, exact for the interpreter that saved it.

    Bytecode is specific to a minor version of Python, so a mismatch is an
    error that names both versions rather than a crash later.
    """
    _check(
        isinstance(version, (tuple, list)) and len(version) >= 2 and all(type(v) is int for v in version[:2]),
        "a code object's Python version is malformed",
    )
    _check(isinstance(data, (bytes, bytearray, memoryview)), "a code object is not bytes")
    version = tuple(version)
    here = sys.version_info[:2]
    if version != here:
        raise VersionMismatchError(
            f"this file holds code compiled by Python {version[0]}.{version[1]}, "
            f"which cannot run on Python {here[0]}.{here[1]}; load it with "
            f"Python {version[0]}.{version[1]}"
        )
    try:
        code = marshal.loads(data)
    except (ValueError, EOFError, TypeError) as exc:
        raise UnpicklingError(f"damaged code object: {exc}") from None
    if not isinstance(code, types.CodeType):
        raise UnpicklingError("damaged code object: marshal data is not code")
    return code


# ---------------------------------------------------------------- cells


def make_cell():
    """An empty cell; its contents arrive with the state of its owner."""
    return _made(types.CellType())


def cell_setstate(cell, state):
    _require_made(cell, types.CellType, "cell_setstate")
    _check(isinstance(state, tuple) and len(state) == 1, "cell state is not a 1-tuple")
    (value,) = state
    cell.cell_contents = value


# ---------------------------------------------------------------- functions


def make_function(code, globals, name, closure):
    """A function skeleton: attributes and closure contents come with its state,
    after it is memoized, so a function can refer to itself."""
    if type(code) is not _CodeType:
        _check(False, "a function's code is not a code object")
    if type(globals) is not dict or not isinstance(name, str):
        _check(False, "a function's globals or name is malformed")
    if closure is not None and not (type(closure) is tuple and all(type(c) is _CellType for c in closure)):
        _check(False, "a function's closure is not a tuple of cells")
    if "__builtins__" not in globals:
        globals["__builtins__"] = builtins.__dict__
    try:
        func = _FunctionType(code, globals, name, None, closure)
    except (TypeError, ValueError) as exc:  # closure size differs from the code's
        raise UnpicklingError(f"damaged function {name!r}: {exc}") from None
    load = _LOAD.get()  # _made, inline
    if load is not None:
        load.made[id(func)] = func
    return func


_FUNCTION_ATTRS = frozenset(
    {
        "__defaults__",
        "__kwdefaults__",
        "__annotations__",
        "__doc__",
        "__module__",
        "__qualname__",
    }
)


def function_setstate(func, state):
    """State of a by-value function: (attributes, closure values, globals).

    Globals are written only into a dict that belongs to this load: the
    session's namespace or one the file built, never a module's that
    existed before (``module_dict`` hands out no other).
    """
    load = _LOAD.get()
    if type(func) is not _FunctionType or (load is not None and load.made.get(id(func)) is not func):
        _require_made(func, types.FunctionType, "function_setstate")  # raises
    if type(state) is not tuple or len(state) != 3:
        _check(False, "function state is not a 3-tuple")
    attrs, cell_values, globals_update = state
    _check(
        isinstance(attrs, dict)
        and (globals_update is None or isinstance(globals_update, dict))
        and (cell_values is None or isinstance(cell_values, tuple)),
        "function state is malformed",
    )
    for attr in attrs:  # a few keys, in the reducer's order; only these attributes are set
        if attr in _FUNCTION_ATTRS:
            setattr(func, attr, attrs[attr])
    if attrs.get("__dict__"):
        func.__dict__.update(attrs["__dict__"])
    if globals_update:
        func.__globals__.update(globals_update)
    if cell_values is not None:
        for cell, value in zip(func.__closure__ or (), cell_values):
            if value is not _EMPTY_CELL:
                cell.cell_contents = value


class _EmptyCellMarker:
    """Stands for 'this cell is empty' in a function's saved closure values."""

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __reduce__(self):
        return (empty_cell_marker, ())

    def __repr__(self):
        return "<empty cell>"


_EMPTY_CELL = _EmptyCellMarker()


def empty_cell_marker():
    return _EMPTY_CELL


# ---------------------------------------------------------------- classes


def make_class(metaclass, name, bases, type_kwargs):
    """A class skeleton made the way a class statement makes it.

    Only ``__module__``, ``__qualname__``, ``__slots__`` and annotations are
    in the namespace at creation, so ``__init_subclass__`` runs once here on
    the skeleton and the saved (already processed) attributes are set
    afterwards by :func:`class_setstate`: side effects that wrap methods do
    not run twice.
    """
    _check_class_args(metaclass, name, bases, type_kwargs)
    try:
        return _made(types.new_class(name, bases, {"metaclass": metaclass}, lambda ns: ns.update(type_kwargs)))
    except TypeError as exc:  # bases that cannot be combined
        raise UnpicklingError(f"cannot rebuild class {name!r}: {exc}") from None


def _check_class_args(metaclass, name, bases, type_kwargs) -> None:
    _check(isinstance(metaclass, type) and issubclass(metaclass, type), "a class's metaclass is not a metaclass")
    _check(isinstance(name, str) and type(bases) is tuple, "a class's name or bases are malformed")
    _check(all(isinstance(b, type) or hasattr(b, "__mro_entries__") for b in bases), "a class's bases are not classes")
    _check(
        isinstance(type_kwargs, dict) and all(isinstance(k, str) for k in type_kwargs),
        "a class's namespace is malformed",
    )


def make_enum(metaclass, name, bases, members, type_kwargs):
    """An Enum skeleton with its members; methods arrive with the state."""
    import enum

    _check_class_args(metaclass, name, bases, type_kwargs)
    _check(issubclass(metaclass, enum.EnumMeta), "an enum's metaclass is not EnumMeta")
    _check(isinstance(members, dict) and all(isinstance(k, str) for k in members), "an enum's members are malformed")
    namespace = metaclass.__prepare__(name, bases)
    for key, value in type_kwargs.items():
        namespace[key] = value
    for member_name, value in members.items():
        namespace[member_name] = value
    return _made(metaclass(name, bases, namespace))


def class_setstate(cls, state):
    """Attributes of a by-value class, and its registered virtual subclasses."""
    _require_made(cls, type, "class_setstate")
    _check(isinstance(state, tuple) and len(state) == 2, "class state is not a 2-tuple")
    attrs, abc_registry = state
    _check(
        isinstance(attrs, dict) and all(isinstance(k, str) for k in attrs) and isinstance(abc_registry, (list, tuple)),
        "class state is malformed",
    )
    for key, value in attrs.items():
        setattr(cls, key, value)
    for subclass in abc_registry:
        _check(isinstance(subclass, type) and isinstance(cls, abc.ABCMeta), "a virtual subclass is not a class")
        abc.ABCMeta.register(cls, subclass)


def make_typevar(name, constraints, bound, covariant, contravariant):
    import typing

    return typing.TypeVar(name, *constraints, bound=bound, covariant=covariant, contravariant=contravariant)


# ---------------------------------------------------------------- third-party


def make_array(typecode, data):
    """An ``array.array`` from its (possibly out-of-band) bytes."""
    import array

    _check(isinstance(typecode, str) and len(typecode) == 1, "an array's typecode is malformed")
    result = array.array(typecode)
    result.frombytes(memoryview(data).cast("B"))
    return result


def bytes_from_buffer(mutable, buffer):
    """A ``bytearray`` (``mutable``) or ``bytes`` with the contents of an out-of-band buffer."""
    # A buffer, never a size: bytearray(2**34) would be 16 GiB from a 47-byte file.
    _check(
        isinstance(mutable, bool) and not isinstance(buffer, (int, str)),
        "bytes_from_buffer of something that is not a buffer",
    )
    return bytearray(buffer) if mutable else bytes(buffer)


# ---------------------------------------------------------------- imported objects


def module_attribute(module, name):
    """A public attribute of an importable module: a variable that was the
    very object another module holds (``from sympy import *`` gives
    ``CC is sympy.CC``), found there again.

    ``module`` is a dotted module name and ``name`` one identifier, neither
    private nor a dunder: what this can reach is exactly what a pickle's own
    global ``module.name`` could.
    """
    if not isinstance(module, str) or not isinstance(name, str):
        raise UnpicklingError("damaged module attribute reference: names are not strings")
    parts = module.split(".")
    if not all(part.isidentifier() and not part.startswith("_") for part in parts):
        raise UnpicklingError(f"damaged module attribute reference: {module!r} is not a public module name")
    if not name.isidentifier() or name.startswith("_"):
        raise UnpicklingError(f"damaged module attribute reference: {name!r} is not a public attribute name")
    found = getattr(importlib.import_module(module), name, _NO_ATTRIBUTE)
    if found is _NO_ATTRIBUTE:
        raise UnpicklingError(
            f"module {module!r} has no attribute {name!r} here (it had when the file was saved: "
            f"another version of {parts[0]}?)"
        )
    return found


_NO_ATTRIBUTE = object()


# ---------------------------------------------------------------- methods


def make_method(func, obj):
    """A bound method: ``func`` bound to ``obj`` (dill's rule).  Unlike
    ``getattr(obj, name)``, this works for a method stored on the instance
    itself (``self.f = f.__get__(self)``), bound to the loaded copy, and
    while ``obj`` is still being rebuilt."""
    if not callable(func) or obj is None:
        raise UnpicklingError("damaged bound method: its function is not callable or it is bound to nothing")
    return types.MethodType(func, obj)


# ---------------------------------------------------------------- packages


def import_package(name, submodules):
    """Module ``name`` after importing each of ``submodules`` (dotted names
    under ``name``), as ``import xml.etree.ElementTree`` leaves ``xml``: code
    saved with it reaches them as attributes (``xml.etree.ElementTree``).

    A submodule that cannot be imported here is left out with an
    ``UnpicklingWarning``: the module itself is still what was saved, and
    only code that reaches the missing submodule fails, when it runs.
    """
    if not isinstance(name, str) or not _is_dotted_name(name) or name == "__main__":
        raise UnpicklingError(f"damaged package reference: {name!r} is not a module name")
    if not isinstance(submodules, tuple) or not all(
        isinstance(sub, str) and sub.startswith(name + ".") and _is_dotted_name(sub) for sub in submodules
    ):
        raise UnpicklingError(f"damaged package reference: submodules of {name!r} that are not under it")
    module = importlib.import_module(name)
    for sub in submodules:
        try:
            importlib.import_module(sub)
        except ImportError as exc:
            import warnings

            from .errors import UnpicklingWarning

            warnings.warn(f"{name}: submodule {sub} not imported: {exc}", UnpicklingWarning, stacklevel=2)
    return module


def _is_dotted_name(name: str) -> bool:
    return all(part.isidentifier() for part in name.split("."))


# ---------------------------------------------------------------- the other modules of _rebuild
#
# Reconstructors kept in the _rebuild_* modules, for size: files name them
# ``mason._rebuild.<name>`` all the same, so they are imported here (E402,
# F401: after this module's own helpers, which they import; re-exported)
# and carry this module's name, which is what pickle writes for them.

from ._rebuild_builtins import (  # noqa: E402, F401
    class_attribute,
    getattr_chain,
    make_classmethod,
    make_dead_weakproxy,
    make_dead_weakref,
    make_dict_items,
    make_dict_keys,
    make_dict_values,
    make_keyed_ref,
    make_lock,
    make_mappingproxy,
    make_memoryview,
    make_rlock,
    make_staticmethod,
    make_tempfile,
    make_weakproxy_to,
    make_weakref,
    make_weakref_with_callback,
)
from ._rebuild_dill import (  # noqa: E402, F401
    _check_namedtuple,
    _existing_namedtuple,
    _new_namedtuple,
    dill_class_attribute,
    dill_create_cell,
    dill_create_code,
    dill_create_function,
    dill_create_type,
    dill_delattr,
    dill_dtype_class,
    dill_eval_repr,
    dill_filehandle,
    dill_import_module,
    dill_load_type,
    dill_namedtuple,
    dill_ndarray,
    dill_rlock,
    dill_setattr,
    dill_setitems,
    dill_typing_tuple,
    dill_weakproxy,
    dill_weakref,
)
from ._rebuild_io import (  # noqa: E402, F401
    make_file,
    make_stringio,
    reopen_file,
)
from ._rebuild_libs import (  # noqa: E402, F401
    _MAP_LOCATION,
    _LeftOut,
    dask_cluster_note,
    dask_future,
    dask_graph,
    dask_partition_file,
    matplotlib_rcparams,
    torch_parameter,
    torch_storage,
    torch_tensor,
    torch_tensor_setstate,
    torch_typed_storage,
)
from ._rebuild_portable import (  # noqa: E402, F401
    code_portable,
    dataclass_setstate,
)

for _value in list(globals().values()):
    if getattr(_value, "__module__", "").startswith(__name__ + "_"):  # from a _rebuild_* module
        _value.__module__ = __name__
del _value
