"""Read one checkpoint: what a load asks of a container reader (``meta``,
``segments``, ``segment``, ``blob``, ``verify_records``, ``verify``), from a store.

Opening reads the catalog entry's manifest and checks it against its name
(and, with a key, its signature, and that it is this checkpoint's).  Each
segment and blob is then put together from its pieces in memory of its own,
and every piece is checked there against its name (with a key, also against
its MAC) before anything is handed out: check, then use the very bytes
checked.  The one exception mirrors the container reader: a large blob of a
local store read without a key is a view of its objects' files, mapped side
by side into one buffer (copy-on-write, see mapping.py) and checked through
that map, where ``load_module`` would map a container's blob.
"""

from __future__ import annotations

import contextlib
import mmap as _mmap
import os

from ..errors import CorruptStoreError, SignatureError, UnsupportedFormatError
from . import hashing, layout, objects

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time: `import mason` stays fast
    from typing import Any

    from .catalog import Entry, Store


class StoreReader:
    """Random access to the segments and blobs of one checkpoint.

    ``key`` (bytes): the checkpoint must be signed with it (SignatureError
    otherwise); every piece's MAC is checked before it is handed out, and
    nothing is memory-mapped.  ``mmap`` (no key, local stores): blobs of at
    least 1 MiB are views of their objects' files mapped in place
    (copy-on-write), checked through the map.
    """

    def __init__(self, store: Store, entry: Entry, *, key: bytes | None = None, mmap: bool = True) -> None:
        self._store = store
        self._backend = store.backend
        self.id = entry.id
        self.manifest = store.manifest(entry, key)
        self.meta: dict[str, Any] = self.manifest.meta
        self.signed = self.manifest.macs is not None
        self._hash = hashing.by_name(self.manifest.hash)
        self._key = key
        self._mmap = mmap and key is None and not self._backend.remote
        self._segments: dict[int, memoryview] = {}  # checked, kept while open
        self._blobs: dict[int, memoryview] = {}  # checked, kept until handed out
        self._decoded: dict[int, Any] = {}  # objects several pieces read, decoded and kept
        uses: dict[int, int] = {}
        for piece in self.manifest.pieces:
            uses[piece[1]] = uses.get(piece[1], 0) + 1
        self._shared = {number for number, count in uses.items() if count > 1}
        self._closed = False

    # -- what a load uses --------------------------------------------------------

    @property
    def segment_count(self) -> int:
        return len(self.manifest.segments)

    @property
    def blob_count(self) -> int:
        return len(self.manifest.blobs)

    @property
    def segment_lengths(self) -> list[int]:
        """The raw length of each segment (a session's variable columns need them)."""
        pieces = self.manifest.pieces
        return [sum(pieces[p][3] for p in numbers) for numbers in self.manifest.segments]

    @property
    def checksum_name(self) -> str:
        """What ``blob_info``'s checksums are: the store's hash, over pieces."""
        return self.manifest.hash

    def blob_info(self, i: int) -> dict[str, Any]:
        """Blob ``i`` as a container's reader describes one: its raw length,
        and as its checksum the names of its pieces (equal names, equal bytes)."""
        pieces = self.manifest.pieces
        numbers = _item(self.manifest.blobs, i, "blob")
        return {
            "raw_length": sum(pieces[p][3] for p in numbers),
            "compression": None,
            "checksum": tuple(pieces[p][0] for p in numbers),
        }

    def segment(self, i: int) -> memoryview:
        """Segment ``i`` (read-only), every piece checked; kept for later calls."""
        self._check_open()
        payload = self._segments.get(i)
        if payload is None:
            pieces = _item(self.manifest.segments, i, "segment")
            payload = self._segments[i] = self._assemble(pieces, lambda: self._what("segment", i)).toreadonly()
        return payload

    def segments(self, numbers: Any) -> list[memoryview]:
        """Segments ``numbers``, in that order: all checked before any is returned."""
        return [self.segment(i) for i in list(numbers)]

    def blob(self, i: int) -> memoryview:
        """Blob ``i`` (writable, the caller's to keep), every piece checked."""
        self._check_open()
        payload = self._blobs.pop(i, None)
        if payload is None:
            payload = self._read_blob(i)
        return payload

    def verify_records(self, segments: Any, blobs: Any) -> None:
        """Read and check these segments and blobs now; ``segment()`` and
        ``blob()`` then hand out the very bytes checked."""
        self._check_open()
        for i in segments:
            self.segment(i)
        for i in blobs:
            if i not in self._blobs:
                self._blobs[i] = self._read_blob(i)

    def verify(self) -> None:
        """Check every segment and blob (and, with a key, every MAC); nothing is kept."""
        self._check_open()
        for i in range(self.segment_count):
            if i not in self._segments:
                self._assemble(self.manifest.segments[i], lambda i=i: self._what("segment", i))
        for i in range(self.blob_count):
            if i not in self._blobs:
                self._read_blob(i)

    def close(self) -> None:
        self._segments.clear()
        self._blobs.clear()
        self._decoded.clear()
        self._closed = True

    def __enter__(self) -> StoreReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- putting bytes together ----------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("reader is closed")

    def _read_blob(self, i: int) -> memoryview:
        pieces = _item(self.manifest.blobs, i, "blob")
        what = lambda: self._what("blob", i)  # noqa: E731
        if self._mmap:
            mapped = self._map_blob(pieces, what)
            if mapped is not None:
                return mapped
        return self._assemble(pieces, what)

    def _assemble(self, numbers: list[int], what: Any) -> memoryview:
        """The pieces, copied one after the other into new memory, each checked there."""
        table = self.manifest.pieces
        total = sum(table[p][3] for p in numbers)
        out = memoryview(_allocate(total))
        at = 0
        for p in numbers:
            name, number, offset, length = table[p]
            target = out[at : at + length]
            self._fill(target, number, offset, what)
            self._check_piece(p, target, what)
            at += length
        return out

    def _map_blob(self, numbers: list[int], what: Any) -> memoryview | None:
        """The blob as a view of its objects' files, mapped in place and checked
        through the map; parts that cannot be mapped (packed, compressed) are
        copied in.  None: copy it all (small, or mapping unavailable)."""
        table = self.manifest.pieces
        objects_ = self.manifest.objects
        total = sum(table[p][3] for p in numbers)
        if total < _MAP_ABOVE:
            return None  # mapping costs more than copying
        if len(numbers) == 1:
            name, number, offset, length = table[numbers[0]]
            if offset != 0 or length != objects_[number][1]:
                return None
            file = self._open_object(name, what)
            with file:
                if not self._raw_payload(file, length, name, what):
                    return None
                try:
                    mapped = _mmap.mmap(file.fileno(), length, access=_mmap.ACCESS_COPY)
                except (OSError, ValueError):
                    return None
            view = memoryview(mapped)
            self._check_piece(numbers[0], view, what)
            return view
        from . import mapping

        if not mapping.available():
            return None
        region = mapping.Region(total)
        at = 0
        try:
            for p in numbers:
                name, number, offset, length = table[p]
                target = region.view[at : at + length]
                whole = offset == 0 and length == objects_[number][1]
                if not (whole and region.can_map(at, length) and self._map_into(region, at, length, name, what)):
                    self._fill(target, number, offset, what)
                self._check_piece(p, target, what)
                at += length
        except MemoryError:  # the region lost memory it needs: drop it, untouched
            return None
        return region.view

    def _map_into(self, region: Any, at: int, length: int, name: str, what: Any) -> bool:
        file = self._open_object(name, what)
        with file:
            return self._raw_payload(file, length, name, what) and region.map_file(at, length, file.fileno())

    def _fill(self, target: memoryview, number: int, offset: int, what: Any) -> None:
        """Copy the bytes of object ``number`` from ``offset`` into ``target``."""
        name, raw_length = self.manifest.objects[number]
        length = len(target)
        if number not in self._shared and offset == 0 and length == raw_length:
            file = self._open_object(name, what)
            if file is not None:
                with file:
                    if self._raw_payload(file, length, name, what):
                        self._read_into(file, target, name, what)
                        return
        data = self._decoded.get(number)
        if data is None:
            data = self._decode(name, raw_length, what)
            if number in self._shared:
                self._decoded[number] = data
        target[:] = data[offset : offset + length]

    def _open_object(self, name: str, what: Any) -> Any:
        if self._backend.remote:
            return None
        try:
            return self._backend.open(layout.object_name(name))
        except FileNotFoundError:
            raise self._missing(name, what) from None

    def _raw_payload(self, file: Any, length: int, name: str, what: Any) -> bool:
        """Whether the object open as ``file`` holds ``length`` raw bytes at its
        start (False: compressed, decode it); CorruptStoreError if it cannot."""
        with self._naming(name, what):
            size = os.fstat(file.fileno()).st_size
            file.seek(max(size - layout.TRAILER_SIZE, 0))
            if layout.parse_object_trailer(file.read(layout.TRAILER_SIZE), "") != 0:
                return False
            if size != length + layout.TRAILER_SIZE:
                raise CorruptStoreError(
                    f"holds {size - layout.TRAILER_SIZE} bytes, the manifest says {length}: truncated?"
                )
        return True

    def _read_into(self, file: Any, target: memoryview, name: str, what: Any) -> None:
        view = target
        file.seek(0)
        while view.nbytes:
            count = file.readinto(view)
            if not count:
                raise CorruptStoreError(f"{what()}: {objects.describe(self._backend, name)}: truncated while read")
            view = view[count:]

    def _decode(self, name: str, raw_length: int, what: Any) -> Any:
        try:
            data = self._backend.read(layout.object_name(name), limit=raw_length + layout.TRAILER_SIZE)
        except FileNotFoundError:
            raise self._missing(name, what) from None
        with self._naming(name, what):
            return objects.decode(data, raw_length, "")

    @contextlib.contextmanager
    def _naming(self, name: str, what: Any) -> Any:
        """Say which checkpoint, variable and object a CorruptStoreError is about
        (worked out only then: it scans the variables)."""
        try:
            yield
        except (CorruptStoreError, UnsupportedFormatError) as exc:
            detail = str(exc).lstrip(": ")
            raise type(exc)(
                f"{self._backend.label}: checkpoint {self.id}: {what()}: object {layout.object_name(name)}: {detail}"
            ) from None

    def _check_piece(self, p: int, data: Any, what: Any) -> None:
        name = self.manifest.pieces[p][0]
        if self._hash.digest(data) != name:
            raise CorruptStoreError(
                f"{self._backend.label}: checkpoint {self.id}: {what()}: piece {p} does not match its name"
                f" ({self._hash.name}): object {layout.object_name(self.manifest.objects[self.manifest.pieces[p][1]][0])}"
                " is damaged"
            )
        if self._key is not None:
            assert self.manifest.macs is not None  # a key was given: opening checked the signature
            if not hashing.same_mac(hashing.piece_mac(self._key, data), self.manifest.macs[p]):
                raise SignatureError(
                    f"{self._backend.label}: checkpoint {self.id}: {what()}: piece {p} does not match its"
                    " signature: the store was altered after the checkpoint was signed"
                )

    def _missing(self, name: str, what: Any) -> CorruptStoreError:
        return CorruptStoreError(
            f"{what()}: {objects.describe(self._backend, name)} is missing (removed by hand, or the checkpoint"
            " was pruned while it was read)"
        )

    def _what(self, kind: str, i: int) -> str:
        """'segment 3 (variable 'df')': for messages only."""
        for var in self.meta.get("variables", ()):
            with contextlib.suppress(Exception):
                if (kind == "segment" and var["segment"] == i) or (kind == "blob" and i in var["blobs"]):
                    return f"{kind} {i} (variable {var['name']!r})"
        return f"{kind} {i}"


#: Buffers at least this large are anonymous memory maps rather than bytearrays.
_MAP_ABOVE = 1 << 20


def _allocate(size: int) -> Any:
    """Writable memory for ``size`` bytes that are about to be overwritten.

    A bytearray is zero-filled first, touching every page once more before
    the data is read in.  A large buffer is an anonymous map instead, its
    pages allocated in one go (MAP_POPULATE, Linux): on the machine measured
    that reads 200 MB in about half the time of a bytearray, and a third
    less than pages faulted in one by one as a read reaches them.
    """
    if size < _MAP_ABOVE:
        return bytearray(size)
    flags = _mmap.MAP_PRIVATE | getattr(_mmap, "MAP_ANONYMOUS", 0x20) | getattr(_mmap, "MAP_POPULATE", 0)
    try:
        return _mmap.mmap(-1, size, flags=flags)
    except (OSError, ValueError, TypeError):  # not POSIX, or flags refused
        return _mmap.mmap(-1, size)


def _item(table: list, i: int, what: str) -> list[int]:
    if not 0 <= i < len(table):
        raise IndexError(f"{what} {i} out of range ({len(table)} {what}s)")
    return table[i]
