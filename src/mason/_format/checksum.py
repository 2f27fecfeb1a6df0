"""Checksum algorithms of the container, looked up by name (writer) or id (reader).

The only module that imports xxhash.

Throughput on 1 GiB already in memory, best of 3 (AMD EPYC, CPython 3.11.7,
zlib 1.2.13, xxhash 4.1.0):
    crc32     3.65 GiB/s   zlib.crc32
    xxh3_64  24.2  GiB/s   one call; 27.7 GiB/s fed in 16 MiB chunks
So crc32 costs about 0.27 s per GiB on one core and xxh3_64 about 0.04 s.
crc32 is computed on several threads: zlib releases the GIL, pieces of a
large record are summed at once and their CRCs combined (crc32_combine,
below), so that on n cores it costs about 0.27/n s per GiB.

The default is ``crc32+xxh3`` where xxhash is installed, plain ``crc32``
elsewhere.  ``crc32+xxh3`` stores both in the 64-bit field of each record
of at least XXH3_FROM bytes: the CRC-32 in the low half, the high half of
the xxh3_64 above it; smaller records have their CRC-32 only (high half
zero).  A reader with xxhash checks the xxh3 half where there is one, at
memory speed; one without checks the CRC half: the file opens everywhere,
verified either way.
"""

from __future__ import annotations

import sys
import zlib

from ..errors import UnsupportedFormatError
from . import spec

_FAST_EXTRA = "pip install 'mason[fast]'"


TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time: `import mason` stays fast
    from collections.abc import Callable
    from typing import Any, Protocol

    class Hasher(Protocol):
        def update(self, data: Any, *, overlap: bool = False) -> None: ...
        def digest(self) -> int: ...


# -- CRC-32 on several threads ---------------------------------------------------
#
# CRC-32 is linear over GF(2): the CRC of A+B follows from crc(A), crc(B) and
# len(B) (zlib's crc32_combine, which Python's zlib does not expose).  Below,
# polynomials are 32-bit ints in zlib's reflected bit order: bit 31 is x^0.

_POLY = 0xEDB88320  # CRC-32/ISO-HDLC, reflected
_PIECE = 8 << 20  # bytes per thread task: large enough that the GIL is not the cost
_MAX_PENDING = 16  # pieces in flight per hasher: bounds memory held for a stream


def _multmodp(a: int, b: int) -> int:
    """a(x) * b(x) mod p(x)."""
    m = 1 << 31
    product = 0
    while True:
        if a & m:
            product ^= b
            if not a & (m - 1):
                return product
        m >>= 1
        b = (b >> 1) ^ _POLY if b & 1 else b >> 1


def _x2n_table() -> list[int]:
    table, power = [], 1 << 30  # x^1
    for _ in range(32):
        table.append(power)  # x^(2^k) mod p
        power = _multmodp(power, power)
    return table


_X2N = _x2n_table()


def _shift_operator(length: int) -> int:
    """x^(8 * length) mod p: what multiplies a CRC to account for ``length`` more bytes."""
    power, k, n = 1 << 31, 3, length  # x^0; 2^3 bits per byte
    while n:
        if n & 1:
            power = _multmodp(_X2N[k & 31], power)
        n >>= 1
        k += 1
    return power


def crc32_combine(crc1: int, crc2: int, length2: int) -> int:
    """The CRC-32 of A+B from crc1 = crc32(A), crc2 = crc32(B) and len(B)."""
    return _multmodp(_shift_operator(length2), crc1) ^ crc2


_POOL: Any = None


def _pool() -> Any:
    """The shared worker threads (None on a one-core machine: no gain)."""
    global _POOL
    if _POOL is None:
        import os

        workers = min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
        if workers < 2:
            _POOL = False
        else:
            from concurrent.futures import ThreadPoolExecutor

            _POOL = ThreadPoolExecutor(workers, thread_name_prefix="mason-crc32")
            if hasattr(os, "register_at_fork"):
                # A forked child (multiprocessing, Dask workers) has none of the
                # threads: it makes its own pool on first use.
                os.register_at_fork(after_in_child=_forget_pool)
    return _POOL or None


def _forget_pool() -> None:
    global _POOL
    _POOL = None


class _Crc32:
    """zlib.crc32, with the pieces of large inputs summed on worker threads.

    ``update`` may return before its bytes are summed: the caller keeps them
    unchanged until ``digest`` (the reader and writer hand over read-only
    views or bytes they do not reuse)."""

    __slots__ = ("_pending", "_value")

    def __init__(self) -> None:
        self._value = 0
        self._pending: Any = None  # deque of (future, length), oldest first

    def update(self, data: Any, *, overlap: bool = False) -> None:
        """``overlap``: the caller works on while this is summed (writes it),
        so even one piece goes to a worker thread."""
        view = memoryview(data).cast("B") if not isinstance(data, bytes) else data
        size = len(view)
        pool = _pool() if size >= 2 * _PIECE or (overlap and size >= _PIECE // 2) else None
        if pool is None:
            if self._pending:
                self._drain(0)
            self._value = zlib.crc32(view, self._value)
            return
        if self._pending is None:
            from collections import deque

            self._pending = deque()
        for at in range(0, size, _PIECE):
            piece = view[at : at + _PIECE]
            self._pending.append((pool.submit(zlib.crc32, piece), len(piece)))
            if len(self._pending) > _MAX_PENDING:
                self._drain(_MAX_PENDING)

    def _drain(self, keep: int) -> None:
        pending = self._pending
        while len(pending) > keep:
            future, length = pending.popleft()
            value = future.result()
            self._value = crc32_combine(self._value, value, length) if self._value else value

    def digest(self) -> int:
        if self._pending:
            self._drain(0)
        return self._value


_XXH3_THREAD: Any = None


def _xxh3_thread() -> Any:
    """One worker thread for xxh3 updates that overlap a write: one thread,
    so that a hasher's pieces are summed in order."""
    global _XXH3_THREAD
    if _XXH3_THREAD is None:
        import os
        from concurrent.futures import ThreadPoolExecutor

        _XXH3_THREAD = ThreadPoolExecutor(1, thread_name_prefix="mason-xxh3")
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_forget_xxh3_thread)
    return _XXH3_THREAD


def _forget_xxh3_thread() -> None:
    global _XXH3_THREAD
    _XXH3_THREAD = None


class _Xxh3:
    """xxhash.xxh3_64 (which releases the GIL).  ``update(overlap=True)``
    of a large piece runs on a worker thread while the caller writes it;
    as with ``_Crc32``, the caller keeps those bytes unchanged until
    ``digest``."""

    __slots__ = ("_last", "_state")

    def __init__(self) -> None:
        import xxhash

        self._state = xxhash.xxh3_64()
        self._last: Any = None  # the newest update still running on the worker

    def update(self, data: Any, *, overlap: bool = False) -> None:
        if overlap and memoryview(data).nbytes >= _PIECE // 2:
            self._last = _xxh3_thread().submit(self._state.update, data)
        elif self._last is not None:
            self._wait()
            self._state.update(data)
        else:
            self._state.update(data)  # fast enough on the caller's thread

    def _wait(self) -> None:
        last, self._last = self._last, None
        last.result()

    def digest(self) -> int:
        if self._last is not None:
            self._wait()
        return self._state.intdigest()


class _Xxh3High(_Xxh3):
    """The high 32 bits of xxh3_64: what ``crc32+xxh3`` stores above the CRC."""

    __slots__ = ()

    def digest(self) -> int:
        return super().digest() >> 32


class _Crc32Xxh3:
    """``crc32+xxh3`` of a record of at least XXH3_FROM bytes: the CRC-32 in
    the low 32 bits, the high 32 bits of xxh3_64 in the high ones."""

    __slots__ = ("_crc", "_xxh")

    def __init__(self) -> None:
        self._xxh = _Xxh3High()
        self._crc = _Crc32()

    def update(self, data: Any, *, overlap: bool = False) -> None:
        # The xxh3 half on the caller's thread even while writing: the CRC
        # pieces already keep the other core busy, and a third thread made
        # a 1.6 GB save 3-4% slower (in-process A/B, 6 rounds).
        self._xxh.update(data)
        self._crc.update(data, overlap=overlap)

    def digest(self) -> int:
        # A zero high half means "CRC only": the rare record whose xxh3 half
        # is zero is then checked by its CRC, which is just as good.
        return self._xxh.digest() << 32 | self._crc.digest()


#: ``crc32+xxh3`` records shorter than this carry their CRC-32 only (high
#: half zero): summing them is cheap either way, and a small session then
#: never imports xxhash, to save or to load (about 1.2 ms).
XXH3_FROM = 1 << 20

_HASHERS: dict[str, Callable[[], Hasher]] = {"crc32": _Crc32, "xxh3_64": _Xxh3, "crc32+xxh3": _Crc32Xxh3}
_LOW32 = 0xFFFFFFFF


def _have_xxhash() -> bool:
    try:
        import xxhash  # noqa: F401
    except ImportError:
        return False
    return True


_INSTALLED: dict[str, bool] = {}


def _xxhash_installed() -> bool:
    """Whether xxhash is there to import, without importing it (cached)."""
    if "xxhash" in sys.modules:  # imported, or blocked with None
        return sys.modules["xxhash"] is not None
    if "xxhash" not in _INSTALLED:
        import importlib.util

        try:
            _INSTALLED["xxhash"] = importlib.util.find_spec("xxhash") is not None
        except (ImportError, ValueError):
            _INSTALLED["xxhash"] = False
    return _INSTALLED["xxhash"]


class Algorithm:
    """One checksum algorithm: its stored id, its name, and fresh hashers.

    A writer stores what ``new(length)`` digests for a payload of
    ``length`` bytes (``compute`` does both).  A reader runs the hasher of
    ``checker(stored)`` over the payload and compares its digest with the
    value that comes with it: all of the stored value, except for
    ``crc32+xxh3``, of which it checks one half, the xxh3 one where there is
    one and xxhash is installed, else the CRC one."""

    __slots__ = ("id", "name")

    def __init__(self, name: str) -> None:
        self.id = spec.CHECKSUM_IDS[name]
        self.name = name

    def new(self, length: int) -> Hasher:
        if self.name != "crc32+xxh3":
            return _HASHERS[self.name]()
        if length >= XXH3_FROM and _have_xxhash():
            return _Crc32Xxh3()
        return _Crc32()  # the high half stays zero

    def compute(self, data: Any) -> int:
        hasher = self.new(memoryview(data).nbytes)
        hasher.update(data)
        return hasher.digest()

    def checker(self, stored: int) -> tuple[Hasher, int]:
        """(a fresh hasher, what its digest must be) for a record whose stored checksum is ``stored``."""
        if self.name != "crc32+xxh3":
            return _HASHERS[self.name](), stored
        if stored >> 32 and _have_xxhash():
            return _Xxh3High(), stored >> 32
        return _Crc32(), stored & _LOW32

    def check(self, data: Any, stored: int) -> tuple[int, int]:
        """(computed, expected): ``checker``'s digest of ``data``, and what it must be."""
        hasher, expected = self.checker(stored)
        hasher.update(data)
        return hasher.digest(), expected


def default_name() -> str:
    # Every mason reads the CRC half of crc32+xxh3: a file saved where
    # xxhash is installed still opens, verified, where it is not.
    return "crc32+xxh3" if _xxhash_installed() else "crc32"


def for_copy(name: str) -> str:
    """The checksum for a copy of a file summed with ``name`` (the copy sums
    its records again): the same, but ``crc32`` for ``crc32+xxh3`` where
    xxhash is missing, so that such a file can be signed anywhere."""
    return "crc32" if name == "crc32+xxh3" and not _xxhash_installed() else name


def by_name(name: str | None) -> Algorithm:
    """The algorithm a writer asked for (None: the default); ValueError if unusable."""
    if name is None:
        name = default_name()
    if name not in spec.CHECKSUM_IDS:
        raise ValueError(f"unknown checksum {name!r}; choose one of {sorted(spec.CHECKSUM_IDS)}")
    if name != "crc32" and not _xxhash_installed():  # to write; crc32+xxh3 reads without
        raise ValueError(f"checksum {name!r} needs the xxhash package: {_FAST_EXTRA}")
    return Algorithm(name)


def by_id(checksum_id: int) -> Algorithm:
    """The algorithm a file names; UnsupportedFormatError if this mason cannot compute it."""
    name = spec.CHECKSUM_NAMES.get(checksum_id)
    if name is None:
        raise UnsupportedFormatError(
            f"unknown checksum algorithm id {checksum_id} (written by a newer mason, or damaged)"
        )
    if name == "xxh3_64" and not _have_xxhash():
        raise UnsupportedFormatError(
            f"this file is checksummed with xxh3_64, which needs the xxhash package: {_FAST_EXTRA}"
        )
    return Algorithm(name)
