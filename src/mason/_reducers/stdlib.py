"""Reducers for standard-library objects plain pickle refuses.

A reducer refuses an object by raising ``pickle.PicklingError``, as the C
pickler does: the API then turns it into mason's PicklingError naming the
path to the object (``obj['f']: ...``); mason's own error would reach the
caller as it is, without the path.
"""

from __future__ import annotations

import _thread
import abc
import array
import collections
import gc
import io
import pickle
import re
import struct
import sys
import types
import weakref

from .. import _rebuild


def reduce_staticmethod(obj):
    return _rebuild.make_staticmethod, (obj.__func__,), _instance_dict(obj)


def reduce_classmethod(obj):
    return _rebuild.make_classmethod, (obj.__func__,), _instance_dict(obj)


def _instance_dict(obj):
    # staticmethod/classmethod carry __wrapped__, __doc__ ... in a __dict__
    # since Python 3.10; an empty one is left out.
    return getattr(obj, "__dict__", None) or None


def reduce_method(method):
    """A bound method as its function and instance, bound again on load
    (the default, ``getattr(instance, name)``, cannot find a method stored
    on the instance itself while that instance is being rebuilt)."""
    return _rebuild.make_method, (method.__func__, method.__self__)


def reduce_property(obj):
    return property, (obj.fget, obj.fset, obj.fdel, obj.__doc__)


# abc's deprecated decorators are subclasses (the C pickler's table is
# looked up by exact type): made again by calling their class, by name.


def reduce_abstract_wrapper(obj):
    """``abc.abstractclassmethod(f)`` / ``abc.abstractstaticmethod(f)``."""
    return type(obj), (obj.__func__,), _instance_dict(obj)


def reduce_abstract_property(obj):
    return type(obj), (obj.fget, obj.fset, obj.fdel, obj.__doc__)


_DICT_VIEWS = {
    type({}.keys()): _rebuild.make_dict_keys,
    type({}.values()): _rebuild.make_dict_values,
    type({}.items()): _rebuild.make_dict_items,
    type(collections.OrderedDict().keys()): _rebuild.make_dict_keys,
    type(collections.OrderedDict().values()): _rebuild.make_dict_values,
    type(collections.OrderedDict().items()): _rebuild.make_dict_items,
}


def reduce_dict_view(view):
    # ``view.mapping`` is only a read-only proxy; the garbage collector's
    # referents give the dict itself, so its identity is kept.
    (mapping,) = gc.get_referents(view)
    return _DICT_VIEWS[type(view)], (mapping,)


def reduce_mappingproxy(proxy):
    return _rebuild.make_mappingproxy, (dict(proxy),)


def reduce_memoryview(view):
    # tobytes() copies in C order whatever the strides, so a strided view
    # comes back contiguous, with its format, shape and read-only flag.
    return _rebuild.make_memoryview, (view.tobytes(), view.format, view.shape, view.readonly)


def reduce_memoryview_out_of_band(view):
    """Protocol 5: a view of a whole C-contiguous buffer travels as an
    out-of-band buffer, written straight from its memory (a blob of its own
    in a session file); a slice is copied.

    The PickleBuffer is made over the object the view looks at, never over
    the view: a memoryview with a buffer exported from it must not meet the
    garbage collector.  Should a cycle ever hold both (the pickler's memo
    holds the view and the PickleBuffer), CPython's memoryview tp_clear
    frees the memory anyway and the PickleBuffer's release then crashes the
    interpreter.
    """
    base = view.obj
    # C order only: the rebuilt view casts the bytes to its shape, in C order.
    if not view.c_contiguous or base is None or isinstance(base, memoryview) or not _spans(view, base):
        return reduce_memoryview(view)
    return _rebuild.make_memoryview, (pickle.PickleBuffer(base), view.format, view.shape, view.readonly)


def _spans(view, base) -> bool:
    """Whether ``view`` sees all of ``base``'s (C-contiguous) memory: a
    contiguous view of as many bytes inside it can only be the whole."""
    with memoryview(base) as whole:
        return whole.c_contiguous and whole.nbytes == view.nbytes


def reduce_array_out_of_band(arr):
    """Protocol 5: ``array.array`` data as an out-of-band buffer."""
    return _rebuild.make_array, (arr.typecode, pickle.PickleBuffer(arr))


def reduce_module_singleton(obj):
    """A sentinel that its module compares by identity (``dataclasses.MISSING``,
    ``dataclasses._FIELD``...): by name, never a copy."""
    module = sys.modules.get(type(obj).__module__)
    for name, value in vars(module).items() if module is not None else ():
        if value is obj:
            return name
    raise pickle.PicklingError(f"cannot find sentinel {obj!r} in module {type(obj).__module__!r}")


def reduce_future_feature(feature):
    """``from __future__ import division`` leaves ``__future__.division`` in
    a namespace: by name, the very object again on load."""
    module = sys.modules["__future__"]
    for name in getattr(module, "all_feature_names", ()):
        if getattr(module, name, None) is feature:
            return name
    return feature.__reduce_ex__(pickle.DEFAULT_PROTOCOL)  # one made by hand: a copy


def loaded_tables() -> dict:
    """Reducers for types of standard modules that mason does not import
    itself: needed only once the module is loaded (no object of it exists
    before), and importing them all would slow ``import mason`` down."""
    table = {}
    dataclasses = sys.modules.get("dataclasses")
    if dataclasses is not None:
        names = ("_FIELD_BASE", "_MISSING_TYPE", "_HAS_DEFAULT_FACTORY_CLASS", "_KW_ONLY_TYPE")
        sentinels = [getattr(dataclasses, name) for name in names if hasattr(dataclasses, name)]
        table.update(dict.fromkeys(sentinels, reduce_module_singleton))
    future = sys.modules.get("__future__")
    if future is not None and hasattr(future, "_Feature"):
        table[future._Feature] = reduce_future_feature
    typing = sys.modules.get("typing")
    if typing is not None:
        from .classes import reduce_typevar

        table[typing.TypeVar] = reduce_typevar
    return table


#: reducers that only protocol 5 can use (PickleBuffer)
PROTOCOL5_TABLE = {memoryview: reduce_memoryview_out_of_band, array.array: reduce_array_out_of_band}


def reduce_weakref(ref):
    obj = ref()
    if obj is None:
        return _rebuild.make_dead_weakref, ()
    if ref.__callback__ is not None:
        return _rebuild.make_weakref_with_callback, (obj, ref.__callback__)
    return _rebuild.make_weakref, (obj,)


def reduce_keyed_ref(ref):
    obj = ref()
    if obj is None:  # its dictionary has dropped, or is dropping, the entry
        return _rebuild.make_dead_weakref, ()
    return _rebuild.make_keyed_ref, (obj, ref.__callback__, ref.key)


_PROXY_TARGET = re.compile(r" to .+ at (0x[0-9a-fA-F]+)>$")


def reduce_weakproxy(proxy):
    # Python gives no way from a proxy to its referent except the address in
    # its repr; the referent is then found among the objects the garbage
    # collector tracks.  Slow, but proxies are rare in sessions.
    is_callable = type(proxy) is weakref.CallableProxyType
    try:
        proxy.__class__  # noqa: B018 - raises once the referent is gone
    except ReferenceError:
        return _rebuild.make_dead_weakproxy, (is_callable,)
    match = _PROXY_TARGET.search(repr(proxy))
    if match is None:
        raise pickle.PicklingError(f"cannot find the referent of {proxy!r}")
    address = int(match.group(1), 16)
    for candidate in gc.get_objects():
        if id(candidate) == address:
            return _rebuild.make_weakproxy_to, (candidate, is_callable)
    raise pickle.PicklingError("cannot pickle a weakref.proxy whose referent is not tracked by the garbage collector")


def reduce_lock(lock):
    return _rebuild.make_lock, (lock.locked(),)


def reduce_rlock(lock):
    # ``_recursion_count`` exists on CPython 3.11+; older versions give 0.
    count = getattr(lock, "_recursion_count", lambda: 0)()
    if count and not lock._is_owned():
        raise pickle.PicklingError("cannot pickle an RLock held by another thread")
    return _rebuild.make_rlock, (count,)


def reduce_descriptor(desc):
    """Member, getset, slot-wrapper and method descriptors: by their class."""
    return _rebuild.class_attribute, (desc.__objclass__, desc.__name__)


def reduce_method_wrapper(wrapper):
    return getattr, (wrapper.__self__, wrapper.__name__)


def reduce_super(obj):
    """``super(cls, obj)`` made again from its arguments (the C pickler
    would reach the wrapped object's own ``__reduce_ex__`` through it)."""
    if obj.__self__ is None:
        return super, (obj.__thisclass__,)
    return super, (obj.__thisclass__, obj.__self__)


def reduce_capsule(capsule):
    # Refused on purpose: dill saves the raw pointer, which is only valid in
    # the process that made it.
    raise pickle.PicklingError(
        "cannot pickle 'PyCapsule' object: it wraps a raw C pointer, meaningless in another process"
    )


def _capsule_type():
    # types.CapsuleType is new in Python 3.13; before, the C datetime
    # module's capsule gives the type (None where there is no such module).
    found = getattr(types, "CapsuleType", None)
    if found is None:
        import datetime

        found = type(getattr(datetime, "datetime_CAPI", None))
    return found if found.__name__ == "PyCapsule" else None


def reduce_struct(obj):
    return struct.Struct, (obj.format,)


def reduce_stringio(buf):
    if buf.closed:
        raise pickle.PicklingError("cannot pickle a closed StringIO")
    return _rebuild.make_stringio, (buf.getvalue(), buf.tell())


def make_file_reducer(fmode: int):
    """A reducer for open file handles bound to one ``fmode`` (0, 1 or 2)."""

    def reduce_file(handle):
        name = getattr(handle, "name", None)
        if isinstance(name, int):
            return _reduce_anonymous_file(handle)
        if not isinstance(name, str):
            raise pickle.PicklingError(f"cannot pickle a file handle without a file name (name={name!r})")
        closed = handle.closed
        position = -1
        if not closed:
            if handle.writable():
                handle.flush()
            try:
                position = handle.tell()
            except OSError:  # pipes and terminals
                position = -1
        contents = None
        if fmode == 2 and name not in ("<stdin>", "<stdout>", "<stderr>"):
            # Bytes even for text handles: decoding and encoding again could
            # change line endings or fail on the file's encoding.
            try:
                with open(name, "rb") as src:
                    contents = src.read()
            except OSError as exc:
                raise pickle.PicklingError(f"cannot read file {name!r} to save its contents: {exc}") from None
        return _rebuild.reopen_file, (name, handle.mode, position, closed, fmode, contents, _open_args(handle))

    return reduce_file


def _reduce_anonymous_file(handle):
    """A file known only by its descriptor (``tempfile.TemporaryFile``):
    saved with its contents whatever the fmode, there is no name to reopen."""
    closed = handle.closed
    contents, position = ("" if isinstance(handle, io.TextIOWrapper) else b""), -1
    if not closed:
        try:
            handle.flush()
            position = handle.tell()
            handle.seek(0)
            contents = handle.read() if handle.readable() else _read_behind(handle)
            handle.seek(position)
        except OSError as exc:
            raise pickle.PicklingError(f"cannot read anonymous file {handle!r}: {exc}") from None
    return _rebuild.make_tempfile, (handle.mode, contents, position, closed, _open_args(handle))


def _open_args(handle):
    """Keyword arguments for ``open`` that give back a handle of the same
    kind: the encoding of a text handle; ``buffering=0`` for a raw
    ``FileIO`` (``open(..., buffering=0)``), which ``open`` otherwise wraps
    in a buffered reader or writer."""
    if isinstance(handle, io.TextIOWrapper):
        return {"encoding": handle.encoding, "errors": handle.errors}
    if isinstance(handle, io.FileIO):
        return {"buffering": 0}
    return None


def _read_behind(handle):
    """Contents of a write-only descriptor, read through a second descriptor."""
    import os

    fd = os.open(f"/proc/self/fd/{handle.fileno()}", os.O_RDONLY)
    with open(fd, "rb" if "b" in handle.mode else "r") as reader:
        return reader.read()


FILE_TYPES = (io.TextIOWrapper, io.BufferedReader, io.BufferedWriter, io.BufferedRandom, io.FileIO)

TABLE = {
    staticmethod: reduce_staticmethod,
    classmethod: reduce_classmethod,
    property: reduce_property,
    abc.abstractclassmethod: reduce_abstract_wrapper,
    abc.abstractstaticmethod: reduce_abstract_wrapper,
    abc.abstractproperty: reduce_abstract_property,
    types.MethodType: reduce_method,
    types.MappingProxyType: reduce_mappingproxy,
    memoryview: reduce_memoryview,
    weakref.ReferenceType: reduce_weakref,
    weakref.KeyedRef: reduce_keyed_ref,
    weakref.ProxyType: reduce_weakproxy,
    weakref.CallableProxyType: reduce_weakproxy,
    _thread.LockType: reduce_lock,
    _thread.RLock: reduce_rlock,
    types.MemberDescriptorType: reduce_descriptor,
    types.GetSetDescriptorType: reduce_descriptor,
    types.WrapperDescriptorType: reduce_descriptor,
    types.MethodDescriptorType: reduce_descriptor,
    types.ClassMethodDescriptorType: reduce_descriptor,
    types.MethodWrapperType: reduce_method_wrapper,
    io.StringIO: reduce_stringio,
    super: reduce_super,
    struct.Struct: reduce_struct,
}
TABLE.update(dict.fromkeys(_DICT_VIEWS, reduce_dict_view))
_CAPSULE_TYPE = _capsule_type()
if _CAPSULE_TYPE is not None:
    TABLE[_CAPSULE_TYPE] = reduce_capsule
