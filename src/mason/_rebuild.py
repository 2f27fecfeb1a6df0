"""Load-side reconstructors and state setters.

Every saved file names functions of this module by ``mason._rebuild.<name>``.
This module is FROZEN: names are only ever appended, never renamed, moved or
given a different meaning.  A new behaviour gets a new name.  The list is
pinned by ``tests/test_rebuild_names.py``.

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

import _thread
import abc
import builtins
import contextvars
import importlib
import io
import marshal
import os
import sys
import types
import weakref

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


# ---------------------------------------------------------------- builtins


def make_staticmethod(func):
    return staticmethod(func)


def make_classmethod(func):
    return classmethod(func)


def make_dict_keys(mapping):
    _check(isinstance(mapping, dict), "dict keys of something that is not a dict")
    return mapping.keys()


def make_dict_values(mapping):
    _check(isinstance(mapping, dict), "dict values of something that is not a dict")
    return mapping.values()


def make_dict_items(mapping):
    _check(isinstance(mapping, dict), "dict items of something that is not a dict")
    return mapping.items()


def make_mappingproxy(mapping):
    return types.MappingProxyType(mapping)


def make_memoryview(data, fmt, shape, readonly):
    _check(
        isinstance(fmt, str) and (shape is None or (isinstance(shape, tuple) and all(type(n) is int for n in shape))),
        "a memoryview's format or shape is malformed",
    )
    view = memoryview(data)
    if not readonly and view.readonly:
        view = memoryview(bytearray(view))  # in-band bytes: a writable copy
    elif readonly and not view.readonly:
        view = view.toreadonly()  # an out-of-band buffer the file maps writable
    return view.cast("B").cast(fmt, shape) if shape else view.cast("B").cast(fmt)


def make_weakref(obj):
    return weakref.ref(obj)


def make_lock(locked):
    _check(isinstance(locked, bool), "a lock's state is not a bool")
    lock = _thread.allocate_lock()
    if locked:
        lock.acquire()
    return lock


def make_rlock(count):
    _check(type(count) is int and 0 <= count <= _MAX_RLOCK_COUNT, f"an RLock's count {count!r} is out of range")
    lock = _thread.RLock()
    for _ in range(count):
        lock.acquire()
    return lock


_MAX_RLOCK_COUNT = 1 << 16


def class_attribute(cls, name):
    """A descriptor as stored in its class (not bound through the metaclass)."""
    _check(isinstance(cls, type) and isinstance(name, str), "class_attribute of something that is not a class")
    try:
        return cls.__dict__[name]
    except KeyError:
        raise UnpicklingError(f"class {cls.__qualname__} has no attribute {name!r} here") from None


def make_dead_weakref():
    """A weak reference whose referent is already gone."""

    class _Gone:
        pass

    ref = weakref.ref(_Gone())
    return ref


def make_weakproxy_to(obj, callable_):
    return weakref.proxy(obj)


def make_dead_weakproxy(callable_):
    """A dead ``weakref.proxy``: a ``CallableProxyType`` when ``callable_``."""

    class _Gone:
        pass

    class _GoneCallable:
        def __call__(self):
            return None

    return weakref.proxy(_GoneCallable() if callable_ else _Gone())


def make_tempfile(mode, contents, position, closed, text_args):
    """An anonymous temporary file (no name on disk) with its saved contents."""
    import tempfile

    _check(
        isinstance(mode, str)
        and set(mode) <= set("rwabx+t")
        and isinstance(contents, (str, bytes))
        and type(position) is int
        and (
            text_args is None
            or (isinstance(text_args, dict) and set(text_args) <= {"encoding", "errors", "newline", "buffering"})
        ),
        "a temporary file's state is malformed",
    )

    handle = tempfile.TemporaryFile(mode.replace("r", "w+") if "+" not in mode else mode, **(text_args or {}))
    handle.write(contents)
    handle.seek(position if position >= 0 else 0)
    if closed:
        handle.close()
    return handle


def getattr_chain(obj, dotted):
    """``getattr`` through a dotted path (descriptors reached via a class)."""
    _check(_is_dotted(dotted), f"an attribute path must be a dotted name, not {dotted!r}")
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def make_weakref_with_callback(obj, callback):
    """A weak reference that calls ``callback`` when ``obj`` dies (how the
    entries of a WeakSet or WeakKeyDictionary remove themselves)."""
    _check(callback is None or callable(callback), "a weak reference's callback is not callable")
    return weakref.ref(obj, callback)


def make_keyed_ref(obj, callback, key):
    """A ``weakref.KeyedRef``: a WeakValueDictionary's reference to a value."""
    _check(callback is None or callable(callback), "a weak reference's callback is not callable")
    return weakref.KeyedRef(obj, callback, key)


# ---------------------------------------------------------------- files

_STD_STREAMS = {"<stdin>": "__stdin__", "<stdout>": "__stdout__", "<stderr>": "__stderr__"}


def make_file(name, mode, position, closed, fmode, contents, text_args):
    """Reopen a saved file handle following dill's three ``fmode`` semantics.

    0 (handle): reopen by name; 1 (contents): reopen and seek to the saved
    position, capped at the file's current end; 2 (file): write the saved
    contents back, then seek.  A writable file is never truncated on
    reopening in modes 0 and 1: loading must not destroy data.
    """
    _check(
        isinstance(name, str)
        and isinstance(mode, str)
        and set(mode) <= set("rwabx+t")
        and type(position) is int
        and fmode in (0, 1, 2)
        and isinstance(closed, bool)
        and (contents is None or isinstance(contents, (str, bytes)))
        and (
            text_args is None
            or (isinstance(text_args, dict) and set(text_args) <= {"encoding", "errors", "newline", "buffering"})
        ),
        "a file handle's state is malformed",
    )
    if name in _STD_STREAMS:
        return getattr(sys, _STD_STREAMS[name])
    writing = any(c in mode for c in "wax+")
    try:
        if fmode == 2:
            # Contents are bytes (text files too, so line endings and
            # encodings come back exactly); older files may hold str.
            with open(name, "w" if isinstance(contents, str) else "wb") as out:
                if contents is not None:
                    out.write(contents)
        elif not os.path.exists(name) and not writing:
            raise FileNotFoundError(f"cannot reopen saved file handle: no file {name!r}")
        flags = os.O_CREAT if writing else 0
        if "+" in mode or ("r" in mode and writing):
            flags |= os.O_RDWR
        elif writing:
            flags |= os.O_WRONLY
        else:
            flags |= os.O_RDONLY
        if "a" in mode:
            flags |= os.O_APPEND

        # The opener ignores the flags ``open`` derives from ``mode`` ('w'
        # would truncate, 'x' would fail on an existing file); going through
        # ``open`` by name keeps the handle's ``name`` and ``mode`` as saved.
        def opener(path, _flags):
            return os.open(path, flags, 0o666)

        handle = open(name, mode, opener=opener, **(text_args or {}))
    except OSError as exc:
        raise UnpicklingError(f"cannot reopen saved file handle {name!r}: {exc}") from None
    if closed:
        handle.close()
        return handle
    if fmode in (1, 2) and position >= 0:
        size = os.fstat(handle.fileno()).st_size
        handle.seek(min(position, size))
    return handle


def make_stringio(value, position):
    _check(isinstance(value, str) and type(position) is int and 0 <= position, "a StringIO's state is malformed")
    buf = io.StringIO(value)
    buf.seek(position)
    return buf


# ---------------------------------------------------------------- third-party


def matplotlib_rcparams(changed):
    """matplotlib's live ``rcParams`` with a session's changes applied.

    Values were validated when the user set them; one that this matplotlib
    no longer accepts is skipped with a warning instead of failing the load.
    """
    import warnings

    import matplotlib

    for key, value in changed.items():
        try:
            matplotlib.rcParams[key] = value
        except (KeyError, ValueError) as exc:
            warnings.warn(f"rcParams[{key!r}] not restored: {exc}", stacklevel=2)
    return matplotlib.rcParams


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


# ---------------------------------------------------------------- torch

#: ``map_location`` of the load in progress (None: where it was saved).
#: Set by the Unpickler around each ``load``; read by :func:`torch_storage`.
_MAP_LOCATION: contextvars.ContextVar = contextvars.ContextVar("mason_map_location", default=None)


def torch_storage(data, location):
    """A torch ``UntypedStorage`` holding ``data``, placed on the device the
    load's ``map_location`` chooses for ``location`` (where it was saved).

    On the CPU the storage is the buffer itself: a memory-mapped blob stays
    mapped copy-on-write, and nothing is copied.
    """
    import torch

    view = memoryview(data)
    if view.readonly:  # writes through the tensor must never reach a caller's bytes
        view = memoryview(bytearray(view))
    if view.nbytes:
        flat = torch.frombuffer(view.cast("B"), dtype=torch.uint8)
    else:
        flat = torch.empty(0, dtype=torch.uint8)
    return _place_storage(flat.untyped_storage(), location)


def _place_storage(storage, location):
    """Where ``torch.load`` would put a storage saved on ``location``, given
    the current ``map_location``: a device (name or ``torch.device``), a dict
    from saved device names to device names, or ``f(storage, location)``
    returning a storage (None: the default)."""
    if not isinstance(location, str):
        raise UnpicklingError(f"damaged tensor: device {location!r} is not a name")
    mapping = _MAP_LOCATION.get()
    if mapping is None:
        target = location
    elif isinstance(mapping, dict):
        target = mapping.get(location, location)
    elif callable(mapping):
        result = mapping(storage, location)
        if result is not None:
            return getattr(result, "_untyped_storage", result)  # a TypedStorage's bytes
        target = location
    else:
        target = mapping
    return _storage_to(storage, str(target), location)


def _storage_to(storage, target: str, location: str):
    import torch

    try:
        device = torch.device(target)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise UnpicklingError(f"map_location: {target!r} is not a torch device ({exc})") from None
    if device.type == "cpu":
        return storage
    hint = "load with map_location='cpu' to restore it on the CPU"
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UnpicklingError(f"a tensor was saved on {location!r}, but CUDA is not available here; {hint}")
    try:
        flat = torch.empty(0, dtype=torch.uint8).set_(storage)
        return flat.to(device).untyped_storage()
    except (RuntimeError, AssertionError, ValueError) as exc:  # torch's errors for a device it lacks
        raise UnpicklingError(f"cannot place a tensor saved on {location!r} on {target!r}: {exc}; {hint}") from None


def _torch_dtype(name):
    import torch

    # Only plain names: torch's module __getattr__ must not be asked for anything else.
    dtype = getattr(torch, name, None) if _is_name(name) and not name.startswith("_") else None
    if not isinstance(dtype, torch.dtype):
        raise UnpicklingError(f"this torch has no dtype {name!r} (saved with another version of torch?)")
    return dtype


def torch_tensor(storage, dtype, offset, shape, stride, requires_grad):
    """A strided tensor viewing ``storage`` (views of one storage share it)."""
    import torch

    try:
        tensor = torch.empty(0, dtype=_torch_dtype(dtype), device=storage.device)
        tensor.set_(storage, offset, shape, stride)
    except (RuntimeError, TypeError) as exc:
        raise UnpicklingError(f"damaged tensor: {exc}") from None
    if requires_grad:
        tensor.requires_grad_(True)
    return _made(tensor)


def torch_parameter(storage, dtype, offset, shape, stride, requires_grad):
    """An ``nn.Parameter`` over ``storage``."""
    import torch

    return _made(torch.nn.Parameter(torch_tensor(storage, dtype, offset, shape, stride, False), requires_grad))


def torch_tensor_setstate(tensor, state):
    """A tensor's gradient and Python attributes."""
    import torch

    _require_made(tensor, torch.Tensor, "torch_tensor_setstate")
    _check(isinstance(state, dict) and isinstance(state.get("dict") or {}, dict), "tensor state is malformed")
    grad = state.get("grad")
    if grad is not None:
        tensor.grad = grad
    tensor.__dict__.update(state.get("dict") or {})


def torch_typed_storage(storage, dtype):
    """A (deprecated) ``TypedStorage`` over an untyped storage."""
    import torch

    return torch.storage.TypedStorage(wrap_storage=storage, dtype=_torch_dtype(dtype), _internal=True)


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


# ---------------------------------------------------------------- files, dill's non-strict loading


def reopen_file(name, mode, position, closed, fmode, contents, text_args):
    """A saved file handle, reopened as :func:`make_file` does, except that a
    file gone since it was saved is not an error (dill's non-strict mode):
    a handle for reading (or a closed one) comes back as an empty anonymous
    file of the same mode, kind and name, with an ``UnpicklingWarning``; a
    handle for writing creates the file again (as ``make_file`` does).
    Nothing is created on disk for a handle that could not write there.
    """
    if not isinstance(name, str) or not isinstance(mode, str) or not isinstance(closed, bool):
        raise UnpicklingError("damaged file handle: name, mode or closed flag of the wrong type")
    if text_args is not None and (
        not isinstance(text_args, dict) or not set(text_args) <= {"encoding", "errors", "buffering"}
    ):
        raise UnpicklingError("damaged file handle: unexpected options for open()")
    if fmode in (0, 1) and name not in _STD_STREAMS and not os.path.exists(name):
        writing = any(c in mode for c in "wax+")
        if closed or not writing:
            return _empty_file_named(name, mode, closed, text_args)
    return make_file(name, mode, position, closed, fmode, contents, text_args)


def _empty_file_named(name, mode, closed, text_args):
    import tempfile
    import warnings

    from .errors import UnpicklingWarning

    try:
        handle = tempfile.TemporaryFile(mode, **(text_args or {}))
    except (OSError, ValueError) as exc:
        raise UnpicklingError(f"cannot stand in for saved file handle {name!r}: {exc}") from None
    raw = getattr(handle, "buffer", handle)
    raw = getattr(raw, "raw", raw)
    raw.name = name  # as saved (the anonymous file has only a descriptor number)
    if closed:
        handle.close()
    else:
        warnings.warn(
            f"file {name!r} no longer exists: its saved handle ({mode!r}) reads an empty file instead",
            UnpicklingWarning,
            stacklevel=2,
        )
    return handle


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


# ---------------------------------------------------------------- files written by dill
#
# dill's reconstructors, read without dill: _dillcompat.py maps each name a
# dill file uses (dill._dill._create_function...) to one of these, which take
# dill's own arguments.  Each is closed like every other reconstructor here:
# dill's versions call whatever they are given (``_create_type(typeobj,
# *args)`` is ``typeobj(*args)``; ``_eval_repr`` is ``eval``), these check it.


def dill_create_function(code, globals, name=None, defaults=None, closure=None, fdict=None, kwdefaults=None):
    """dill's ``_create_function``: a function whose attributes arrive with its state."""
    _check(isinstance(code, types.CodeType), "a function's code is not a code object")
    _check(globals is None or type(globals) is dict, "a function's globals are not a dict")
    _check(name is None or isinstance(name, str), "a function's name is not a string")
    _check(defaults is None or type(defaults) is tuple, "a function's defaults are not a tuple")
    _check(
        closure is None or (type(closure) is tuple and all(type(c) is types.CellType for c in closure)),
        "a function's closure is not a tuple of cells",
    )
    _check(
        (fdict is None or isinstance(fdict, dict)) and (kwdefaults is None or isinstance(kwdefaults, dict)),
        "a function's __dict__ or keyword defaults are not dicts",
    )
    globals = globals if globals else {}  # dill's ``fglobals or dict()``
    if "__builtins__" not in globals:
        globals["__builtins__"] = builtins.__dict__
    try:
        func = types.FunctionType(code, globals, name, defaults, closure)
    except (TypeError, ValueError) as exc:  # closure size differs from the code's
        raise UnpicklingError(f"damaged function {name!r}: {exc}") from None
    if fdict:
        func.__dict__.update(fdict)
    if kwdefaults is not None:
        func.__kwdefaults__ = kwdefaults
    return _made(func)


def dill_create_code(*args):
    """dill's ``_create_code``: a code object from the fields of the Python
    that wrote it, only if that is this Python (see ``_dillcompat.make_code``)."""
    from ._dillcompat import make_code

    return make_code(args)


def dill_create_cell(contents=None):
    """dill's ``_create_cell``: a cell holding ``contents``, empty for dill's
    empty-cell marker (mason's, as _dillcompat reads it)."""
    cell = make_cell()
    if contents is not _EMPTY_CELL:
        cell.cell_contents = contents
    return cell


def dill_create_type(metaclass, name, bases, namespace):
    """dill's ``_create_type(type(cls), name, bases, dict)``: a class made by
    its metaclass from its saved namespace (only a metaclass may be called)."""
    _check_class_args(metaclass, name, bases, namespace)
    try:
        return _made(metaclass(name, bases, dict(namespace)))
    # bases that cannot be combined, a metaclass's own checks of the namespace
    except (TypeError, ValueError, AttributeError, KeyError) as exc:
        raise UnpicklingError(f"cannot rebuild class {name!r}: {exc}") from None


def dill_load_type(name):
    """dill's ``_load_type``: a type of ``builtins`` or ``types`` by dill's name for it."""
    from ._dillcompat import load_type

    return load_type(name)


def dill_import_module(name):
    """dill's ``_import_module``: a module by name; dill's ``__runtime__.name``
    (a module-type object that was not importable) is a new, empty module
    of that name, not registered in ``sys.modules``, that its saved state fills."""
    _check(isinstance(name, str), "a module name is not a string")
    if name.startswith("__runtime__."):
        runtime = name[len("__runtime__.") :]
        _check(_is_dotted(runtime), f"a module name must be a dotted name, not {runtime!r}")
        return make_module(runtime)
    return import_module(name)


def dill_class_attribute(cls, name, repr_text):
    """dill's ``_getattr(objclass, name, repr)``: a descriptor as stored in its
    class.  dill evaluates part of ``repr``; mason reads only the class."""
    _check(isinstance(repr_text, str), "a descriptor's repr is not text")
    return class_attribute(cls, name)


def dill_namedtuple(name, fields, module, defaults=None):
    """dill's ``_create_namedtuple``: the namedtuple class ``module.name`` when
    an importable module (not ``__main__``) holds one with these fields, as a
    global would name it; otherwise a new class."""
    _check_namedtuple(name, fields, module, defaults)
    return _existing_namedtuple(module, name, tuple(fields)) or _new_namedtuple(name, fields, module, defaults)


def _check_namedtuple(name, fields, module, defaults) -> None:
    _check(
        _is_name(name)
        and isinstance(module, str)
        and isinstance(fields, (tuple, list))
        and all(_is_name(f) for f in fields)
        and (defaults is None or isinstance(defaults, (tuple, list))),
        "a namedtuple's name, fields or defaults are malformed",
    )


def _existing_namedtuple(module, name, fields):
    if module == "__main__" or not _is_dotted(module) or name.startswith("_"):
        return None
    try:
        found = module_attribute(module, name)
    except (ImportError, UnpicklingError):
        return None
    if isinstance(found, type) and issubclass(found, tuple) and getattr(found, "_fields", None) == fields:
        return found
    return None


def _new_namedtuple(name, fields, module, defaults):
    import collections

    try:
        return _made(collections.namedtuple(name, fields, defaults=defaults, module=module))
    except (TypeError, ValueError) as exc:
        raise UnpicklingError(f"cannot rebuild namedtuple {name!r}: {exc}") from None


def dill_ndarray(reconstruct, args, state, npdict=None):
    """dill's ``_create_array``: a numpy array of a subclass, with its instance
    ``__dict__``; ``reconstruct`` may only be numpy's own ``_reconstruct``."""
    import numpy

    cores = [sys.modules.get(f"numpy.{core}.multiarray") for core in ("core", "_core")]
    _check(
        any(reconstruct is getattr(core, "_reconstruct", None) for core in cores if core is not None),
        "dill's array reconstructor is not numpy's _reconstruct",
    )
    _check(type(args) is tuple and (npdict is None or isinstance(npdict, dict)), "dill's array arguments are malformed")
    array = reconstruct(*args)
    _check(isinstance(array, numpy.ndarray), "dill's array is not an array")
    array.__setstate__(state)
    if npdict:
        array.__dict__.update(npdict)
    return _made(array)


def dill_dtype_class(scalar_type):
    """dill's ``_create_dtypemeta``: the dtype class of a numpy scalar type
    (``numpy.dtypes.Float64DType``), or ``numpy.dtype`` itself for None."""
    import numpy

    if scalar_type is None:
        return numpy.dtype
    _check(
        isinstance(scalar_type, type) and issubclass(scalar_type, numpy.generic),
        "a dtype class is asked for something that is not a numpy scalar type",
    )
    return type(numpy.dtype(scalar_type))


def dill_filehandle(name, mode, position, closed, opener, strictio, fmode, fdata):
    """dill's ``_create_filehandle``, reopened as mason reopens its own saved
    handles (:func:`reopen_file`; :func:`make_file` when saved strict).
    ``opener`` is the ``open`` dill saved, and is not called."""
    from ._dillcompat import is_opener

    _check(
        is_opener(opener)
        and isinstance(name, str)
        and isinstance(mode, str)
        and fmode in (0, 1, 2)
        and (fdata is None or isinstance(fdata, (str, bytes))),
        "a dill file handle's state is malformed",
    )
    _check(type(position) is int and isinstance(closed, bool), "a dill file handle's position is malformed")
    if name in ("<tmpfile>", "<fdopen>"):  # anonymous files: their contents were never saved
        return make_tempfile(mode, b"" if "b" in mode else "", 0, closed, None)
    contents = fdata if fmode == 2 else None
    rebuild = make_file if strictio else reopen_file
    return rebuild(name, mode, position, closed, fmode, contents, None)


def dill_rlock(count, owner, *args):
    """dill's ``_create_rlock``: an RLock held ``count`` times, by this thread
    (the owner dill saved is a thread of the process that saved it)."""
    _check(type(count) is int and (owner is None or type(owner) is int), "an RLock's state is malformed")
    return make_rlock(count if owner is not None else 0)


def dill_weakref(obj, *args):
    """dill's ``_create_weakref``: a weak reference, dead when saved dead (None)."""
    _check(not args, "a weak reference with a callback dill does not save")
    return make_dead_weakref() if obj is None else weakref.ref(obj)


def dill_weakproxy(obj, callable_=False, *args):
    """dill's ``_create_weakproxy``: a weak proxy, dead when saved dead (None)."""
    _check(not args and isinstance(callable_, bool), "a weak proxy's state is malformed")
    return make_dead_weakproxy(callable_) if obj is None else weakref.proxy(obj)


def dill_typing_tuple(argz, *args):
    """dill's ``_create_typing_tuple``: ``typing.Tuple[()]`` and the like."""
    import typing

    _check(type(argz) is tuple, "a typing.Tuple's arguments are not a tuple")
    if not argz:
        return typing.Tuple[()].copy_with(())
    if argz == ((),):
        return typing.Tuple[()]
    return typing.Tuple[argz]


def dill_eval_repr(text):
    """dill's ``_eval_repr`` without ``eval``: range, Ellipsis and
    NotImplemented from their reprs; any other text is refused."""
    from ._dillcompat import eval_repr

    return eval_repr(text)


def dill_setitems(dest, source):
    """dill's ``_setitems(dest, source)``: ``dest.update(source)``, for a
    plain dict that is no module's namespace (dill uses it on the namespace
    of a class being made, and on a function's copied globals)."""
    _check(type(dest) is dict and isinstance(source, dict), "dill's _setitems is given something that is not a dict")
    state = _LOAD.get()
    if (
        dest is builtins.__dict__
        or (state is not None and dest is state.namespace)
        or any(getattr(module, "__dict__", None) is dest for module in list(sys.modules.values()))
    ):
        raise ForbiddenGlobalError("this file writes into a module's namespace with dill's _setitems: refused")
    dest.update(source)


def dill_setattr(obj, name, value):
    """dill's ``setattr`` (its postprocessing, its ``_setattr`` shim): an
    attribute of a class, function or cell this load made.  Setting a class
    or function's name to what it already is (a namedtuple found by name)
    changes nothing and is allowed."""
    _check(isinstance(name, str), "dill's setattr is given a name that is not a string")
    if type(obj) is types.CellType:
        _check(name == "cell_contents", f"dill sets the attribute {name!r} of a cell")
        _require_made(obj, types.CellType, "dill_setattr")
        obj.cell_contents = value
        return None
    if not isinstance(obj, (type, types.FunctionType)):
        raise ForbiddenGlobalError(
            f"this file sets the attribute {name!r} of a {type(obj).__name__} object with setattr: a dill"
            " file may set attributes only of the classes, functions and cells it made"
        )
    kind = type if isinstance(obj, type) else types.FunctionType
    if name in ("__qualname__", "__module__", "__name__") and getattr(obj, name, _NO_ATTRIBUTE) == value:
        return None
    _require_made(obj, kind, "dill_setattr")
    setattr(obj, name, value)
    return None


def dill_delattr(obj, name):
    """dill's ``_delattr`` shim: empty a cell this load made."""
    _check(
        type(obj) is types.CellType and name == "cell_contents", "dill deletes something other than a cell's contents"
    )
    _require_made(obj, types.CellType, "dill_delattr")
    try:
        del obj.cell_contents
    except ValueError:  # already empty
        pass
    return None


# ---------------------------------------------------------------- portable code

#: the minor version of Python loading: code saved by it runs from its bytecode
_HERE = sys.version_info[:2]


def _unmarshal_code(data):
    if type(data) is not bytes:
        _check(isinstance(data, (bytearray, memoryview)), "a code object is not bytes")
    try:
        code = marshal.loads(data)
    except (ValueError, EOFError, TypeError) as exc:
        raise UnpicklingError(f"damaged code object: {exc}") from None
    if type(code) is not types.CodeType:
        raise UnpicklingError("damaged code object: marshal data is not code")
    return code


def code_portable(version, data, source):
    """A code object: from its bytecode on the minor version of Python that
    saved it, else compiled again from its source.

    ``source`` is a source record (see ``mason._portable``: the text of the
    function or lambda and what compiling it exactly needs), or ``(name,
    why)``: the code's name and why it has no source; then, as with
    :func:`code_from_marshal`, another version raises
    :class:`VersionMismatchError`, with that reason.
    """
    if type(version) is tuple and version == _HERE and type(data) is bytes:
        # The fast path, every load on the saving Python: _unmarshal_code inline.
        try:
            code = marshal.loads(data)
        except (ValueError, EOFError, TypeError) as exc:
            raise UnpicklingError(f"damaged code object: {exc}") from None
        if type(code) is _CodeType:
            return code
        raise UnpicklingError("damaged code object: marshal data is not code")
    _check(
        isinstance(version, (tuple, list)) and len(version) >= 2 and all(type(v) is int for v in version[:2]),
        "a code object's Python version is malformed",
    )
    if tuple(version[:2]) == _HERE:
        return _unmarshal_code(data)
    if type(source) is tuple and len(source) == 2 and all(type(part) is str for part in source):
        raise VersionMismatchError(
            f"{source[0]}: {source[1]}; its bytecode was compiled by Python {version[0]}.{version[1]} and "
            f"cannot run on Python {sys.version_info[0]}.{sys.version_info[1]}: load it with Python "
            f"{version[0]}.{version[1]}"
        )
    from ._portable import compile_record, record_name

    code = compile_record(source)
    qualname = record_name(source)
    if not hasattr(code, "co_qualname") and qualname != code.co_name:
        # Python 3.10 takes a function's __qualname__ from co_name, and the
        # file saved it only where co_qualname (3.11+) would not give it.
        code = code.replace(co_name=qualname)
    return code


def dataclass_setstate(cls, state):
    """Attributes of a by-value dataclass, made again on another Python.

    ``state`` is ``(attributes, virtual subclasses, (version, options,
    made, replace))``: ``options`` are the flags of ``@dataclass(...)``,
    ``made`` the names of the methods dataclasses made, ``replace`` whether
    it set ``__replace__`` (3.13+).  On the Python that saved it this is
    :func:`class_setstate`, exact.  On another, those methods are stand-ins
    (their code was made by exec: it has no source); the other attributes
    are set, then this Python's dataclasses makes the methods again from the
    saved fields and options (code generated from field names: it counts as
    code from the file).
    """
    import dataclasses

    _require_made(cls, type, "dataclass_setstate")
    _check(
        isinstance(state, tuple) and len(state) == 3 and isinstance(state[2], tuple) and len(state[2]) == 4,
        "dataclass state is malformed",
    )
    attrs, abc_registry, (version, options, made, replace) = state
    _check(
        isinstance(version, tuple)
        and len(version) >= 2
        and all(type(v) is int for v in version[:2])
        and isinstance(options, dict)
        and all(_is_name(k) and type(v) is bool for k, v in options.items())
        and isinstance(made, tuple)
        and all(_is_name(name) for name in made)
        and type(replace) is bool
        and isinstance(attrs, dict),
        "dataclass state is malformed",
    )
    if tuple(version[:2]) == sys.version_info[:2]:
        class_setstate(cls, (attrs, abc_registry))
        try:
            cls.__dataclass_params__ = dataclasses._DataclassParams(**options)
        except TypeError as exc:
            raise UnpicklingError(f"damaged dataclass {cls.__qualname__}: {exc}") from None
        if replace:
            replace_function = getattr(dataclasses, "_replace", None)  # Python 3.13+
            _check(replace_function is not None, "a dataclass's __replace__ on a Python that has none")
            cls.__replace__ = replace_function
        return
    fields = attrs.get("__dataclass_fields__")
    own = cls.__dict__.get("__annotations__") or {}
    _check(
        isinstance(fields, dict)
        and all(isinstance(f, dataclasses.Field) for f in fields.values())
        and all(_is_field_name(name) for name in list(fields) + list(own)),
        "a dataclass's fields are malformed",
    )
    class_setstate(
        cls, ({k: v for k, v in attrs.items() if k not in made and k != "__dataclass_fields__"}, abc_registry)
    )
    for name in own:
        if name in fields:  # a Field default carries the field's options
            setattr(cls, name, fields[name])
    import inspect

    accepted = inspect.signature(dataclasses.dataclass).parameters
    options = {k: v for k, v in options.items() if k in accepted and k not in ("slots", "weakref_slot")}
    if "match_args" in accepted:  # saved by 3.10 or 3.11, which kept no such option
        options.setdefault("match_args", "__match_args__" in attrs)
    try:
        dataclasses.dataclass(cls, **options)
    except (TypeError, ValueError, AttributeError) as exc:
        raise UnpicklingError(
            f"cannot make dataclass {cls.__qualname__} again on Python {sys.version_info[0]}."
            f"{sys.version_info[1]}: {type(exc).__name__}: {exc}"
        ) from None


def _is_field_name(name) -> bool:
    import keyword

    return _is_name(name) and not keyword.iskeyword(name)


# ---------------------------------------------------------------- dask
#
# Data that lived on a Dask cluster is in partition files; the pickle holds
# partition numbers, which the session's table (the load's ``partitions``)
# turns into futures on the current cluster or, without a client, into
# tasks that read the files (see mason._dask).


class _LeftOut:
    """Stands for an object that is not a value and is not restored (a
    client's connection to a cluster).  A session variable holding one is
    left out of the namespace, with a note saying why."""

    __slots__ = ("note",)

    def __init__(self, note: str):
        self.note = note

    def __repr__(self) -> str:
        return f"<not restored by mason: {self.note}>"


def _partition_table():
    state = _LOAD.get()
    source = None if state is None else state.partitions
    if source is None:
        raise UnpicklingError(
            "damaged file: it refers to Dask partitions, but only a session file records where they are"
        )
    return source


def dask_future(number):
    """A ``distributed.Future`` a session saved: a future on the current
    cluster whose value a worker read from its partition file, or, without a
    running client, a ``dask.delayed`` value that reads it when computed."""
    _check(type(number) is int, "a Dask partition number is not an int")
    return _partition_table().future(number)


def dask_graph(rest, partitions):
    """The graph of a persisted collection: ``rest`` (its other tasks) and,
    for each ``(key, number)`` of ``partitions``, the saved partition as a
    future on the current cluster or a task reading its file."""
    _check(
        type(rest) is dict
        and type(partitions) is list
        and all(type(p) is tuple and len(p) == 2 and type(p[1]) is int for p in partitions),
        "a Dask graph's partitions are malformed",
    )
    return _partition_table().graph(rest, partitions)


def dask_partition_file(number):
    """A partition file of the session (what a lazily restored task reads)."""
    _check(type(number) is int, "a Dask partition number is not an int")
    return _partition_table().file(number)


def dask_cluster_note(kind, address):
    """A Dask client or cluster: a connection, not a value; restored as a
    note of the scheduler it reached (a session leaves it out)."""
    _check(_is_name(kind) and (address is None or isinstance(address, str)), "a Dask client's record is malformed")
    where = f" to the scheduler at {address}" if address else ""
    again = f" (distributed.Client({address!r}))" if address else ""
    return _LeftOut(
        f"a {kind} is a connection{where}, not a value: connect again{again} before loading to restore"
        " persisted collections onto that cluster"
    )
