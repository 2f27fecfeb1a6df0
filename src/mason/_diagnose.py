"""Find where inside an object graph pickling fails, for the error message.

Runs only after a dump has already failed, so it may be slow: it re-pickles
candidate children one at a time and descends into the first that fails,
building a path like ``obj['results'][3].gen``.
"""

from __future__ import annotations

import io
import sys
import types

_MAX_DEPTH = 64
_MAX_TRIES = 5000


def too_deep(exc: BaseException) -> str:
    """What to do when pickling ran out of recursion: the graph itself is
    the problem, not one object in it, so no path is searched for."""
    limit = sys.getrecursionlimit()
    return (
        f"nested too deeply to pickle: pickling follows references recursively, several levels of "
        f"the recursion limit ({limit}) per object, and this object graph goes deeper ({exc}). "
        "Store long chains flatter (a list of the nodes rather than each node referring to the next), "
        "or raise the limit with sys.setrecursionlimit() for this dump; for a limit far above the "
        "default, dump from a thread with a larger stack (threading.stack_size()), or the interpreter "
        "may crash"
    )


def find_culprit(obj, make_pickler, root: str = "obj"):
    """``(path, culprit, exception)`` for the deepest failing part of ``obj``,
    or ``None`` when ``obj`` pickles after all."""
    tries = [0]

    def fails(candidate):
        tries[0] += 1
        try:
            make_pickler(io.BytesIO()).dump(candidate)
        except Exception as exc:  # any failure at all is what we look for
            # Only its type and message are used.  Its traceback would tie
            # this frame's caller, which keeps the exception, into a cycle
            # (exception -> traceback -> frame -> f_back -> exception) that
            # keeps the pickler and every object it saw alive until the
            # next garbage collection.
            exc.__traceback__ = exc.__context__ = exc.__cause__ = None
            return exc
        return None

    exc = fails(obj)
    if exc is None:
        return None
    path, seen = root, {id(obj)}
    for _ in range(_MAX_DEPTH):
        for suffix, child in _children(obj):
            if id(child) in seen or tries[0] >= _MAX_TRIES:
                continue
            seen.add(id(child))
            child_exc = fails(child)
            if child_exc is not None:
                obj, exc, path = child, child_exc, path + suffix
                break
        else:
            break
    return path, obj, exc


def _children(obj):
    """``(path suffix, child)`` pairs, in the order a reader expects."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield f"[{key!r}]", value
        return
    if isinstance(obj, (list, tuple)):
        for index, value in enumerate(obj):
            yield f"[{index}]", value
        return
    if isinstance(obj, (set, frozenset)):
        for value in obj:
            yield f"{{{value!r}}}", value
        return
    if isinstance(obj, types.FunctionType):
        yield from _function_children(obj)
        return
    if isinstance(obj, type):
        for key, value in vars(obj).items():
            yield f".{key}", value
        return
    attrs = getattr(obj, "__dict__", None)
    if isinstance(attrs, dict):
        for key, value in attrs.items():
            yield f".{key}", value
    for slot in _slots(type(obj)):
        if hasattr(obj, slot):
            yield f".{slot}", getattr(obj, slot)
    try:
        reduced = obj.__reduce_ex__(5)
    except Exception:  # the object refuses: it is the culprit itself
        return
    if isinstance(reduced, tuple):
        for index, value in enumerate(reduced[1] if len(reduced) > 1 else ()):
            yield f".__reduce__()[1][{index}]", value
        if len(reduced) > 2 and reduced[2] is not None and not isinstance(reduced[2], dict):
            yield ".__getstate__()", reduced[2]


def _function_children(func):
    code = func.__code__
    for name, cell in zip(code.co_freevars, func.__closure__ or ()):
        try:
            yield f".<closure {name}>", cell.cell_contents
        except ValueError:
            continue
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= set(const.co_names)
    for name in sorted(names):
        if name in func.__globals__:
            yield f".__globals__[{name!r}]", func.__globals__[name]
    for index, value in enumerate(func.__defaults__ or ()):
        yield f".__defaults__[{index}]", value
    for key, value in (func.__kwdefaults__ or {}).items():
        yield f".__kwdefaults__[{key!r}]", value


def _slots(cls):
    for klass in cls.__mro__:
        slots = klass.__dict__.get("__slots__", ())
        for slot in (slots,) if isinstance(slots, str) else slots:
            if slot not in ("__dict__", "__weakref__"):
                yield slot
