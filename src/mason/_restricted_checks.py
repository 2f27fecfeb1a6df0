"""Checks of the restricted unpickler on the arguments of the calls a file
asks for: builtin constructors sized by the file, copyreg's class makers,
matplotlib settings (see _restricted.py)."""

from __future__ import annotations

import _codecs
import builtins

from . import _rebuild
from ._vm import _MAX_ITEMS, _RECONSTRUCTOR
from .errors import UnpicklingError

_SIZED = (list, tuple, set, frozenset, dict, bytes, bytearray, str)


def check_builtin_call(func, args, allow) -> int:
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


def check_creator(func, args, allow) -> None:
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


def safe_rcparams(changed):
    """matplotlib settings, except those that name programs, paths or code to run later."""
    if not isinstance(changed, dict):
        raise UnpicklingError("matplotlib rcParams state is not a dict")
    kept = {k: v for k, v in changed.items() if isinstance(k, str) and not any(word in k for word in _UNSAFE_RC)}
    return _rebuild.matplotlib_rcparams(kept)
