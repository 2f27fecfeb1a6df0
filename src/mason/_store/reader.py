"""Read one checkpoint: what a load asks of a container reader (``meta``,
``segments``, ``segment``, ``blob``, ``verify_records``, ``verify``), from a store.

Opening reads the catalog entry's manifest and checks it against its name
(and, with a key, its signature, and that it is this checkpoint's).  Each
segment and blob is then put together from its pieces in memory of its own,
and every piece is checked there against its name (with a key, also against
its MAC) before anything is handed out: check, then use the very bytes
checked.  The one exception mirrors the container reader: a blob that is one
whole uncompressed object of a local store, read without a key, is a view of
a copy-on-write memory map of that object (checked through the map once).
"""

from __future__ import annotations

import contextlib
import mmap as _mmap
import os

from ..errors import CorruptStoreError, SignatureError
from . import hashing, layout, objects

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time: `import mason` stays fast
    from typing import Any

    from .catalog import Entry, Store


class StoreReader:
    """Random access to the segments and blobs of one checkpoint.

    ``key`` (bytes): the checkpoint must be signed with it (SignatureError
    otherwise); every piece's MAC is checked before it is handed out, and
    nothing is memory-mapped.  ``mmap``: blobs that are one whole object of
    a local store may be views of a private map of it (no key only).
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
        if self._mmap and len(pieces) == 1:
            mapped = self._mapped(pieces[0], lambda: self._what("blob", i))
            if mapped is not None:
                return mapped
        return self._assemble(pieces, lambda: self._what("blob", i))

    def _assemble(self, numbers: list[int], what: Any) -> memoryview:
        table = self.manifest.pieces
        total = sum(table[p][3] for p in numbers)
        out = memoryview(bytearray(total))
        at = 0
        for p in numbers:
            name, number, offset, length = table[p]
            target = out[at : at + length]
            self._fill(target, number, offset, what)
            self._check_piece(p, target, what)
            at += length
        return out

    def _fill(self, target: memoryview, number: int, offset: int, what: Any) -> None:
        """Copy the bytes of object ``number`` from ``offset`` into ``target``."""
        name, raw_length = self.manifest.objects[number]
        length = len(target)
        if number not in self._shared and offset == 0 and length == raw_length:
            file = self._open_object(name, what)
            if file is not None:
                with file:
                    if self._read_raw_into(file, target, name, what):
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

    def _read_raw_into(self, file: Any, target: memoryview, name: str, what: Any) -> bool:
        """Read an uncompressed object's payload straight into ``target``
        (False: it is compressed, decode it instead)."""
        label = f"{what()}: {objects.describe(self._backend, name)}"
        head = file.read(layout.HEADER_SIZE)
        if layout.parse_object_header(head, label) != 0:
            return False
        size = os.fstat(file.fileno()).st_size
        if size != layout.HEADER_SIZE + len(target):
            raise CorruptStoreError(
                f"{label}: holds {size - layout.HEADER_SIZE} bytes, the manifest says {len(target)}: truncated?"
            )
        view = target
        while view.nbytes:
            count = file.readinto(view)
            if not count:
                raise CorruptStoreError(f"{label}: truncated while it was read")
            view = view[count:]
        return True

    def _decode(self, name: str, raw_length: int, what: Any) -> Any:
        path = layout.object_name(name)
        label = f"{what()}: {objects.describe(self._backend, name)}"
        try:
            data = self._backend.read(path, limit=layout.HEADER_SIZE + raw_length)
        except FileNotFoundError:
            raise self._missing(name, what) from None
        return objects.decode(data, raw_length, label)

    def _mapped(self, p: int, what: Any) -> memoryview | None:
        """A view of a private map of the one object blob piece ``p`` fills whole, or None."""
        name, number, offset, length = self.manifest.pieces[p]
        if offset != 0 or length != self.manifest.objects[number][1]:
            return None
        file = self._open_object(name, what)
        with file:
            head = file.read(layout.HEADER_SIZE)
            if layout.parse_object_header(head, f"{what()}: {objects.describe(self._backend, name)}") != 0:
                return None
            if os.fstat(file.fileno()).st_size != layout.HEADER_SIZE + length:
                return None  # the copying path says what is wrong
            try:
                mapped = _mmap.mmap(file.fileno(), 0, access=_mmap.ACCESS_COPY)
            except (OSError, ValueError):
                return None
        view = memoryview(mapped)[layout.HEADER_SIZE :]
        self._check_piece(p, view, what)
        return view

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


def _item(table: list, i: int, what: str) -> list[int]:
    if not 0 <= i < len(table):
        raise IndexError(f"{what} {i} out of range ({len(table)} {what}s)")
    return table[i]
