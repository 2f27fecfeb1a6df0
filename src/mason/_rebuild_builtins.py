"""Reconstructors of mason._rebuild for builtin types: static and class
methods, dict views, mapping proxies, memoryviews, locks, weak references,
temporary files, attribute accessors.

Part of mason._rebuild, which re-exports every public name here: files name
them ``mason._rebuild.<name>``, and the FROZEN rules of that module hold.
"""

from __future__ import annotations

import _thread
import types
import weakref

from ._rebuild import _check, _is_dotted
from .errors import UnpicklingError

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
