"""The dill-compatible object API: dump, dumps, load, loads, copy, pickles."""

from __future__ import annotations

import io
import pickle
import sys

from ._allowlist import Allowlist
from ._diagnose import find_culprit
from ._format.spec import MAGIC
from ._pickler import Pickler
from ._session import load_module
from ._storage import peek
from ._unpickler import Unpickler
from .errors import MasonError, PicklingError, UnpicklingError

__all__ = ["dump", "dumps", "load", "loads", "copy", "pickles", "register"]

# What the C pickler raises for an object it cannot handle.
_PICKLING_FAILURES = (pickle.PicklingError, TypeError, AttributeError, ValueError, RecursionError, NotImplementedError)


def dump(obj, file, protocol=None, byref=None, fmode=None, recurse=None, **kwds) -> None:
    """Pickle ``obj`` to the binary file object ``file``.

    Raises :class:`PicklingError` naming the path to the part that failed,
    e.g. ``obj['results'][3].gen: cannot pickle 'generator' object``.
    """

    def make(f):
        return Pickler(f, protocol, byref, fmode, recurse, **kwds)

    try:
        make(file).dump(obj)
    except _PICKLING_FAILURES as exc:  # mason's PicklingError too: add the path
        raise _explain(obj, make, exc) from None


def dumps(obj, protocol=None, byref=None, fmode=None, recurse=None, **kwds) -> bytes:
    """``obj`` as a pickle stream that ``pickle.loads`` reads too (with mason installed)."""
    buffer = io.BytesIO()
    dump(obj, buffer, protocol, byref, fmode, recurse, **kwds)
    return buffer.getvalue()


def load(file, ignore=None, *, allow=None, map_location=None, **kwds):
    """Unpickle one object from the binary file object ``file``.

    Loading runs code from the file: only load files you trust.
    A session file written by :func:`dump_module` is restored as by
    :func:`load_module` (as ``dill.load`` does with dill's session files),
    and the restored module is returned.  Files written by dill 0.3.6 to
    0.4.x (``dill.dump``, ``dill.dump_module``) load without dill; a dill
    session file updates the module it names in place, as ``dill.load``
    does (with ``allow=``, as :func:`load_module` restores it).
    ``allow=[...]`` (module prefixes, ``module:name`` globals, ``mason.CODE``)
    first scans the stream without running it and raises
    :class:`ForbiddenGlobalError`, listing the offenders, if it would use
    anything else.  ``map_location``: where torch tensors go, as for
    ``torch.load`` (e.g. ``'cpu'`` for tensors saved on a GPU).
    """
    head, file = peek(file, len(MAGIC), MAGIC)
    if head == MAGIC:
        return _load_session_file(file, ignore, allow, map_location, kwds)
    allowlist = Allowlist.from_arg(allow)
    if allowlist is not None:
        return load_restricted(file, allowlist, kwds.get("buffers"), map_location)
    return Unpickler(file, ignore=ignore, map_location=map_location, **kwds).load()


def _load_session_file(file, ignore, allow, map_location, kwds):
    """``dill.load`` on one of dill's session files restores the module and
    returns it; so does this on a file written by ``dump_module``."""
    module = load_module(file, ignore=ignore, allow=allow, map_location=map_location, **kwds)
    return sys.modules["__main__"] if module is None else module


def loads(str, ignore=None, *, allow=None, map_location=None, **kwds):  # noqa: A002 - dill's parameter name
    """Unpickle one object from bytes.

    Loading runs code from the data: only load data you trust.  ``allow``
    and ``map_location`` as for :func:`load`.
    """
    return load(io.BytesIO(str), ignore=ignore, allow=allow, map_location=map_location, **kwds)


class _Recorder:
    """Reads from a stream and keeps what was read, to read it again."""

    def __init__(self, file):
        self._file = file
        self.data = bytearray()

    def read(self, n=-1):
        chunk = self._file.read(n)
        self.data += chunk
        return chunk

    def readline(self):
        line = self._file.readline()
        self.data += line
        return line


def load_restricted(file, allowlist: Allowlist, buffers=None, map_location=None):
    """One pickle from ``file``, checked against the allowlist without running
    it, then loaded from the very bytes that were checked by the restricted
    machine, which enforces the list again on every step."""
    from ._restricted import RestrictedUnpickler
    from ._scan import Scanner

    recorder = _Recorder(file)
    scanner = Scanner(recorder, allowlist, session_module="__main__", dill_sessions=True)
    scanner._stream_size = lambda: len(recorder.data)  # type: ignore[method-assign]  # the stream's length so far
    scanner.scan()
    data = bytes(recorder.data)
    if scanner.dill_session is not None:
        # A dill session: its state may only go into the module it restores,
        # in one step, as load_module does (which scans it again, as a session).
        module = load_module(io.BytesIO(data), allow=allowlist, map_location=map_location)
        return sys.modules["__main__"] if module is None else module
    allowlist.check(scanner.report.problems, scanner.report.functions)
    unpickler = RestrictedUnpickler(io.BytesIO(data), allowlist, buffers=buffers, map_location=map_location)
    unpickler.stream_bytes = len(data)
    try:
        return unpickler.load()
    except MasonError:
        raise
    except Exception as exc:  # raised by allowed code rebuilding an object
        raise UnpicklingError(f"cannot rebuild the object: {type(exc).__name__}: {exc}") from exc


def copy(obj, *args, **kwds):
    """A deep copy made by pickling and unpickling ``obj``."""
    ignore = kwds.pop("ignore", None)
    return loads(dumps(obj, *args, **kwds), ignore=ignore)


def pickles(obj, exact=False, safe=False, **kwds) -> bool:
    """Whether ``obj`` survives a round trip; never raises for unpicklable input.

    ``exact``: the copy must also compare equal.  ``safe``: also answer
    ``False`` (instead of raising) for any other exception.
    """
    caught = (Exception,) if safe else (MasonError, *_PICKLING_FAILURES, pickle.UnpicklingError, ImportError, EOFError)
    try:
        result = copy(obj, **kwds)
    except caught:
        return False
    if not exact:
        return type(result) is type(obj) or repr(type(result)) == repr(type(obj))
    try:
        return bool(result == obj)
    except Exception:  # ambiguous comparisons (arrays) count as not exact
        return False


def register(t: type):
    """Decorator registering ``reducer(obj) -> reduce tuple`` for type ``t``.

    Applies to Picklers made after registration.
    """
    from ._reducers import USER_TABLE

    def decorator(reducer):
        USER_TABLE[t] = reducer
        return reducer

    return decorator


def _explain(obj, make_pickler, exc: BaseException) -> PicklingError:
    if isinstance(exc.__cause__, RecursionError):  # the Pickler's own advice: no culprit to find
        return PicklingError(f"obj: {exc}")
    found = find_culprit(obj, make_pickler)
    if found is None:
        return PicklingError(f"obj: {type(exc).__name__}: {exc}")
    path, culprit, culprit_exc = found
    return PicklingError(f"{path}: {_reason(culprit, culprit_exc)}")


def _reason(culprit, exc) -> str:
    message = str(exc) or type(exc).__name__
    type_name = type(culprit).__name__
    if type_name not in message:
        message = f"{message} ({type_name} object)"
    return message
