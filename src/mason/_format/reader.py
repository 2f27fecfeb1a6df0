"""Read a container: check it, then hand out its segments and blobs as bytes.

The reader trusts no number in the file until it is checked: the trailer
against the file size, the index against its checksum, every table entry
against the others (records must tile the file exactly), and every record
header against its table entry when the record is read.  Damage raises
CorruptSessionError saying what is wrong and where.  Nothing here unpickles.

A SEGM record holds one or more segments (always one in version 1): the
first request for any of them checks the whole record once and splits it;
its segments are then slices of that one checked copy.

Sources (sources.py): a path or real file is memory-mapped (or read with
seek/read); a seekable file object is read with seek/read; a non-seekable
stream is read once, front to back, into memory, checking each record as it
arrives, and left positioned just after the container (stream.py).  The
checks of the header, record shapes and index are in index.py.

Check, then use the very bytes checked: another process may rewrite the file
while it is read.  So the index, every segment, compressed blobs, and (with a
key, or ``private=True``) every blob are copied once into memory of our own;
checksum, MAC, JSON parser and decompressor all read that copy, and the
reader hands out that copy again on every later request.  Only an
uncompressed blob of a reader without key or ``private`` is handed out as a
view of the file's memory map: plain loads trust the file.
"""

from __future__ import annotations

import io
import mmap as _mmap
import os
from bisect import bisect_left, bisect_right
from collections import namedtuple
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from functools import partial
from itertools import accumulate

from .._storage import open_for_read
from ..errors import CorruptSessionError, SignatureError
from . import checksum as _checksum
from . import signing as _signing
from . import spec
from .index import Entry, Tables, parse_header, parse_index
from .sources import CHUNK, BufferSource, FileSource
from .stream import scan_stream

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time: `import mason` stays fast
    from typing import Any, BinaryIO


# -- The reader ----------------------------------------------------------------------

Record = namedtuple("Record", "kind payload compression raw_length segments")
Record.__doc__ = """One record as stored (``records()``): kind, stored payload, compression
name or None, raw length, and for a SEGM record the raw lengths of the
segments it holds (else ())."""


class ContainerReader:
    """Random access to the segments and blobs of one container.

    Opening checks the header, trailer and index (with its checksum) and that
    the tables describe the file exactly.  ``segment(i)`` checks that
    segment's checksum on first access, on a private copy that every later
    call returns.  ``blob(i)`` checks the blob's checksum on first access,
    which reads every page of it; open with ``verify_blobs=False`` to leave
    an uncompressed memory-mapped blob's pages unread until used, and call
    ``verify()`` when convenient (before changing any blob in place, since a
    changed blob no longer matches).

    ``key`` (bytes): the file must be signed with it (``SignatureError``
    otherwise).  The index signature is checked on opening, each record's
    MAC on its first access (blobs included, whatever ``verify_blobs`` says).

    ``owned=True``: ``source`` is a bytearray the caller hands over (and
    never changes again): blobs are writable views of it, not copies.

    ``private=True`` (implied by a key): nothing handed out is a view of the
    file.  The file is read, not memory-mapped, and each blob is read into
    memory of its own, checked there (checksum, and MAC with a key) and
    handed out, so rewriting the file afterwards changes nothing already
    checked or loaded.  Without it an uncompressed blob is a view of a
    copy-on-write map of the file: cheap, but the bytes are the file's.
    Not safe for use from several threads at once.
    """

    def __init__(
        self,
        source: Any,
        *,
        mmap: bool = True,
        verify_blobs: bool = True,
        key: bytes | None = None,
        private: bool = False,
        owned: bool = False,
    ) -> None:
        self._file: BinaryIO | None = None  # a file we opened, to close
        self._source: Any = None
        # Offsets whose checksum (MAC) holds for what the source returns from now
        # on: only checks of a stable source, or of blobs handed out as views of
        # the file, which a reader that is not private trusts.
        self._verified: set[int] = set()
        self._authenticated: set[int] = set()
        # Checked private copies by payload offset: SEGM records (decompressed)
        # for as long as the reader is open, blobs until blob() hands them out.
        self._payloads: dict[int, memoryview] = {}
        # Slices of those copies, by segment number: the segments checked so far.
        self._segment_views: dict[int, memoryview] = {}
        self._tables: Tables
        self._verify_blobs = verify_blobs
        self._key = key
        self._private = private or key is not None
        self._from_stream = False
        self.meta: dict[str, Any] = {}
        self.signature: _signing.Signature | None = None  # set when the file is signed
        self.version: tuple[int, int] = (0, 0)  # (major, minor) of the file
        name = source if isinstance(source, (str, os.PathLike)) else getattr(source, "name", "")
        self._name = os.fspath(name) if isinstance(name, (str, os.PathLike)) else ""  # for errors
        try:
            with self._named():
                # A private reader never maps the file: it copies anyway, and a
                # file truncated under a map kills the process (SIGBUS) instead
                # of raising.
                if owned and isinstance(source, bytearray):
                    self._source = BufferSource(source, owned=True, stable=True)
                else:
                    self._source = self._make_source(source, mmap and not self._private)
                self._open_index()
        except BaseException:
            self.close()
            raise

    @classmethod
    def open(
        cls,
        source: Any,
        *,
        mmap: bool = True,
        verify_blobs: bool = True,
        key: bytes | None = None,
        private: bool = False,
        owned: bool = False,
    ) -> ContainerReader:
        """Open a path, a binary file object, or a bytes-like object holding a container.

        A seekable file object is read from its current position to its end;
        a non-seekable one is read up to the end of one container.
        """
        return cls(source, mmap=mmap, verify_blobs=verify_blobs, key=key, private=private, owned=owned)

    # -- public ------------------------------------------------------------------

    @property
    def segment_count(self) -> int:
        return len(self._tables.segment_lengths)

    @property
    def blob_count(self) -> int:
        return len(self._blobs)

    @property
    def segment_lengths(self) -> tuple[int, ...]:
        """The raw length of every segment, in order."""
        return self._tables.segment_lengths

    def segment(self, i: int) -> memoryview:
        """Payload of segment ``i`` (decompressed, read-only), its checksum verified.

        The file is read once: later calls return the same checked bytes.
        """
        view = self._segment_views.get(i)
        if view is not None:
            return view
        entry = self._group(i)
        try:  # not `with self._named()`: this runs once per variable of a session
            self._split(entry)
        except (CorruptSessionError, SignatureError) as exc:
            self._add_name(exc)
            raise
        return self._segment_views[i]

    def segments(self, numbers: Any) -> list[memoryview]:
        """Payloads of the segments ``numbers`` (decompressed), in that order.

        Every one is checked (record header, checksum, and MAC with a key)
        before any is returned, so a caller that unpickles them afterwards
        never starts on a file that turns out damaged or altered further on.
        """
        self._check_open()
        numbers = list(numbers)
        views = self._segment_views
        missing = [i for i in numbers if i not in views]
        if missing:
            with self._named():
                for entry in self._groups_of(missing):
                    self._split(entry)
        return [views[i] for i in numbers]

    def joined_segments(self, count: int) -> bytes:
        """The payloads of segments ``0 .. count - 1`` (decompressed) back to
        back: ``segments(range(count))`` joined, each record that holds them
        checked first, without a view of each segment (a session's thousands
        of small variables, read in one go).  ``segment(i)`` later returns
        views of the same checked copies."""
        self._check_open()
        if not 0 <= count <= self.segment_count:
            raise IndexError(f"{count} segments asked for, of {self.segment_count}")
        if not count:
            return b""
        entries = self._groups[: bisect_left(self._tables.group_first, count)]
        with self._named():
            payloads = [self._checked_copy(entry) for entry in entries]
        last = entries[-1].segments
        if last.stop > count:  # the last record holds segments beyond those asked for
            payloads[-1] = payloads[-1][: sum(self._tables.segment_lengths[last.start : count])]
        return b"".join(payloads)

    def blob(self, i: int) -> memoryview:
        """Writable view of blob ``i`` (decompressed); writing to it never changes the file.

        Uncompressed, memory-mapped, not private: a view of the copy-on-write
        map, so pages are read from disk only when touched (but see
        ``verify_blobs``) and stay valid after ``close()``.  Otherwise a view
        of private memory, checked (and authenticated) there, which the
        caller then owns: asked for again, the blob is read and checked again.
        """
        entry = self._blob(i)
        with self._named():
            if self._copies(entry):
                # Handed over, not kept: the caller owns it (and may write to it).
                payload = self._payloads.pop(entry.offset, None)
                return payload if payload is not None else self._checked_copy(entry, keep=False)
            self._check_header(entry)
            stored = self._source.view(entry.offset, entry.length)
            if self._verify_blobs:
                self._check_sum(entry, stored)
            return stored

    def records(self) -> Iterator[Record]:
        """Every record in file order, as stored and checksum-verified
        (``Record``: what ``ContainerWriter.copy_record`` takes).

        Each payload is a private copy (one record at a time), checked as it
        is handed out."""
        self._check_open()
        lengths = self._tables.segment_lengths
        for entry in self._all_records():
            with self._named():
                self._check_header(entry)
                stored = self._source.copy(entry.offset, entry.length)
                self._check_sum(entry, stored, mark=self._source.stable)
            held = () if entry.segments is None else tuple(lengths[entry.segments.start : entry.segments.stop])
            yield Record(entry.kind, stored, entry.codec and entry.codec.name, entry.raw_length, held)

    @property
    def checksum_name(self) -> str:
        return self._algo.name

    def segment_info(self, i: int) -> dict[str, Any]:
        """Where segment ``i`` lies: offset and length of its bytes in the file,
        raw_length, and its record's compression and checksum.  A segment in a
        compressed record has no bytes of its own in the file: offset and
        length are then the whole record's payload's."""
        entry = self._group(i)
        info = _info(entry)
        if entry.codec is None:
            lengths = self._tables.segment_lengths
            info["offset"] += sum(lengths[entry.segments.start : i])
            info["length"] = lengths[i]
        info["raw_length"] = self._tables.segment_lengths[i]
        return info

    def blob_info(self, i: int) -> dict[str, Any]:
        return _info(self._blob(i))

    def verify_records(self, segments: Iterable[int], blobs: Iterable[int]) -> None:
        """Check these segments and blobs now, as ``segment()`` and ``blob()`` would.

        Lets a caller refuse a damaged (or, with a key, altered) file before
        acting on any part of it.  Blobs are checked as ``blob()`` checks
        them: uncompressed ones only if this reader verifies blobs (always
        their MAC, with a key).  What ``segment()`` and ``blob()`` hand out
        as private copies is copied now, and they hand out these checked
        copies; uncompressed blobs of a reader that is not private are
        checked in the file, which it trusts from then on.
        """
        self._check_open()
        views = self._segment_views
        entries = set(self._groups_of([i for i in segments if i not in views]))
        entries.update(entry for entry in (self._blob(i) for i in blobs) if self._copies(entry) or self._verify_blobs)
        with self._named():
            for entry in sorted(entries, key=lambda e: e.offset):
                if entry.segments is not None:
                    self._split(entry)
                elif self._copies(entry):
                    self._checked_copy(entry)
                else:
                    self._check_in_place(entry, mark=True)

    def verify(self) -> None:
        """Check every record's checksum (and MAC, with a key); the error names the first bad one.

        Reads the file piecewise (memory stays small).  A check of bytes
        that are later handed out as private copies does not count for them:
        ``segment()`` and ``blob()`` check their copies again.
        """
        self._check_open()
        with self._named():
            for entry in self._all_records():
                if entry.offset in self._payloads:
                    continue  # a checked private copy already
                self._check_in_place(entry, mark=self._source.stable or not self._copies(entry))

    def close(self) -> None:
        self._payloads.clear()
        self._segment_views.clear()
        if self._source is not None:
            self._source.close()
            self._source = None
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> ContainerReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- opening -----------------------------------------------------------------

    def _make_source(self, source: Any, use_mmap: bool) -> Any:
        if isinstance(source, (bytes, bytearray, memoryview)):
            return BufferSource(source, owned=False)
        if isinstance(source, io.TextIOBase):
            raise TypeError("a mason file must be opened in binary mode ('rb')")
        if isinstance(source, (str, os.PathLike)):
            self._file = fileobj = open_for_read(source)  # may be a FIFO: not seekable
        else:
            fileobj = source
        seekable = getattr(fileobj, "seekable", None)
        if seekable is None or not seekable():
            self._from_stream = True
            buf, self._verified = scan_stream(fileobj, self._verify_blobs)
            return BufferSource(buf, owned=True, stable=True)
        base = fileobj.tell()
        if use_mmap:
            try:
                mapped = _mmap.mmap(fileobj.fileno(), 0, access=_mmap.ACCESS_COPY)
            except (OSError, ValueError):  # no fileno (BytesIO), empty file, not mappable
                pass
            else:
                return BufferSource(mapped, owned=True).with_base(base)
        return FileSource(fileobj, base)

    def _open_index(self) -> None:
        source = self._source
        size = source.size
        # The header's bytes are kept: the index signature covers these very bytes.
        head = bytes(source.read(0, min(size, spec.HEADER.size)))
        header = parse_header(head)
        self._algo = _checksum.by_id(header.checksum_id)
        self.version = (header.major, header.minor)
        if size < spec.MIN_CONTAINER:
            raise CorruptSessionError(f"truncated: {size} bytes is too short for a mason file")
        trailer = spec.TRAILER.unpack(source.read(size - spec.TRAILER.size, spec.TRAILER.size))
        if trailer.end_magic != spec.END_MAGIC:
            raise CorruptSessionError("no trailer at the end: truncated, unfinished, or something was appended")
        if trailer.container_length != size:
            raise CorruptSessionError(
                f"the trailer says {trailer.container_length} bytes but there are {size}:"
                " truncated, or something was appended"
            )
        if trailer.checksum_id != header.checksum_id or any(trailer.reserved):
            raise CorruptSessionError("trailer does not match the header")
        index_offset = trailer.index_offset
        if (
            trailer.index_length > spec.MAX_INDEX_LENGTH
            or index_offset < spec.HEADER.size
            or index_offset + spec.RECORD.size + trailer.index_length != size - spec.TRAILER.size
        ):
            raise CorruptSessionError("trailer: the index does not end where the trailer begins")
        index = Entry(
            spec.INDEX,
            0,
            index_offset + spec.RECORD.size,
            trailer.index_length,
            trailer.index_length,
            None,
            trailer.index_checksum,
            0,
            None,
        )
        self._check_header(index)
        # Copied once: the checksum, the JSON parser and the signature check
        # all read this copy, never the file again.
        payload = bytes(source.read(index.offset, index.length))
        self._check_sum(index, payload, mark=False)
        self._tables = parse_index(payload, header.major, self._algo.name, index_offset)
        self.meta, self._groups, self._blobs = self._tables.meta, self._tables.groups, self._tables.blobs
        self.signature = self._tables.signature
        if self._key is not None:
            if self.signature is None:
                raise SignatureError("the file is not signed, and a signing key was given")
            self.signature.verify_index(self._key, head, payload)
        if self._from_stream:
            # Came off a stream: everything is in memory, so finish checking now.
            for entry in self._groups + self._blobs:
                self._check_header(entry)

    # -- records -----------------------------------------------------------------

    def _check_open(self) -> None:
        if self._source is None:
            raise ValueError("reader is closed")

    def _group(self, i: int) -> Entry:
        """The SEGM record that holds segment ``i``."""
        self._check_open()
        count = len(self._tables.segment_lengths)
        if not 0 <= i < count:
            raise IndexError(f"segment {i} out of range ({count} segments)")
        return self._groups[bisect_right(self._tables.group_first, i) - 1]

    def _groups_of(self, numbers: list[int]) -> list[Entry]:
        """The SEGM records that hold these segments, in file order (``_group``
        for many: a few C calls, whatever their number)."""
        self._check_open()
        if not numbers:
            return []
        count = len(self._tables.segment_lengths)
        low, high = min(numbers), max(numbers)
        if low < 0 or high >= count:
            raise IndexError(f"segment {low if low < 0 else high} out of range ({count} segments)")
        positions = set(map(partial(bisect_right, self._tables.group_first), numbers))
        return [self._groups[position - 1] for position in sorted(positions)]

    def _blob(self, i: int) -> Entry:
        self._check_open()
        if not 0 <= i < len(self._blobs):
            raise IndexError(f"blob {i} out of range ({len(self._blobs)} blobs)")
        return self._blobs[i]

    def _all_records(self) -> list[Entry]:
        return sorted(self._groups + self._blobs, key=lambda e: e.offset)

    def _split(self, entry: Entry) -> None:
        """Check a SEGM record (once) and file its segments as slices of the checked copy."""
        held = entry.segments
        if held.start in self._segment_views:
            return
        payload = self._checked_copy(entry)
        views = self._segment_views
        if len(held) == 1:
            views[held.start] = payload
            return
        ends = list(accumulate(self._tables.segment_lengths[held.start : held.stop]))
        views.update(zip(held, map(payload.__getitem__, map(slice, [0, *ends], ends))))

    def _copies(self, entry: Entry) -> bool:
        """Whether the record is handed out as a private copy (else as a view of the file)."""
        return entry.kind != spec.BLOB or entry.codec is not None or self._private

    def _check_header(self, entry: Entry) -> None:
        """The record header and padding in the file must say what the index says."""
        start = entry.offset - entry.pad - spec.RECORD.size
        head = self._source.read(start, spec.RECORD.size + entry.pad)
        # The fast path (thousands of records): one tuple comparison.
        if spec.RECORD.struct.unpack_from(head) == (
            entry.kind,
            entry.codec.id if entry.codec else 0,
            entry.pad,
            0,
            entry.length,
            entry.raw_length,
            entry.checksum,
        ) and (not entry.pad or not any(head[spec.RECORD.size :])):
            return
        found = spec.RECORD.unpack(head)
        expected = found._replace(
            kind=entry.kind,
            compression=spec.COMPRESSION_IDS[entry.codec and entry.codec.name],
            pad=entry.pad,
            reserved=0,
            length=entry.length,
            raw_length=entry.raw_length,
            checksum=entry.checksum,
        )
        for field, value in expected._asdict().items():
            if getattr(found, field) != value:
                raise CorruptSessionError(
                    f"{entry.name}: record header says {field} {getattr(found, field)!r}, the index says {value!r}"
                )
        if any(head[spec.RECORD.size :]):
            raise CorruptSessionError(f"{entry.name}: padding is not zero")

    def _checked_copy(self, entry: Entry, keep: bool = True) -> memoryview:
        """The record's payload (decompressed), copied once from the source and
        checked on that copy; kept for later calls unless ``keep`` is false."""
        payload = self._payloads.get(entry.offset)
        if payload is not None:
            return payload
        self._check_header(entry)
        stored = self._source.copy(entry.offset, entry.length)
        stable = self._source.stable  # then the copy is the source, and checks of it hold
        self._check_sum(entry, stored, mark=stable)
        if self._key is not None and entry.offset not in self._authenticated:
            self._record_signed(entry, _signing.record_mac(self._key, stored))
            if stable:
                self._authenticated.add(entry.offset)
        payload = stored if entry.codec is None else memoryview(self._decompress(entry, stored))
        if entry.kind == spec.SEGMENT:
            payload = payload.toreadonly()  # the bytes that were checked stay the bytes used
        if keep:
            self._payloads[entry.offset] = payload
        return payload

    def _check_in_place(self, entry: Entry, *, mark: bool) -> None:
        """Check a record by reading it piecewise from the source, keeping nothing.

        ``mark``: record the check, for a source whose later reads return the
        bytes checked now (or a blob the reader hands out as a view anyway)."""
        self._check_header(entry)
        check = entry.offset not in self._verified
        mac = self._key is not None and entry.offset not in self._authenticated
        if not (check or mac):
            return
        hasher, expected = self._algo.checker(entry.checksum)
        macer = _signing.new_record_mac(self._key) if mac and self._key is not None else None
        for at in range(0, entry.length, CHUNK):
            chunk = self._source.read(entry.offset + at, min(CHUNK, entry.length - at))
            hasher.update(chunk)
            if macer is not None:
                macer.update(chunk)
        if check:
            self._compare(entry, hasher.digest(), expected)
            if mark:
                self._verified.add(entry.offset)
        if macer is not None:
            self._record_signed(entry, macer.digest())
            if mark:
                self._authenticated.add(entry.offset)

    def _check_sum(self, entry: Entry, stored: Any, *, mark: bool = True) -> None:
        if entry.offset not in self._verified:
            self._compare(entry, *self._algo.check(stored, entry.checksum))
            if mark:
                self._verified.add(entry.offset)

    def _compare(self, entry: Entry, value: int, expected: int) -> None:
        if value != expected:
            raise CorruptSessionError(
                f"{entry.name}: checksum mismatch (stored {expected:016x}, computed {value:016x}), the data is damaged"
            )

    def _record_signed(self, entry: Entry, mac: bytes) -> None:
        assert self.signature is not None  # a key was given: opening checked there is one
        what = entry.label if entry.segments is None or len(entry.segments) == 1 else f"the record of {entry.label}"
        self.signature.verify_record(spec.RECORD_KINDS[entry.kind], entry.number, mac, what)

    def _decompress(self, entry: Entry, stored: Any) -> bytearray:
        try:
            return entry.codec.decompress(stored, entry.raw_length)
        except CorruptSessionError as exc:
            raise CorruptSessionError(f"{entry.name}: {exc}") from None

    @contextmanager
    def _named(self) -> Iterator[None]:
        """Put the file's name in front of any corruption or signature message."""
        try:
            yield
        except (CorruptSessionError, SignatureError) as exc:
            self._add_name(exc)
            raise

    def _add_name(self, exc: BaseException) -> None:
        if self._name and exc.args:
            exc.args = (f"{self._name}: {exc.args[0]}",) + exc.args[1:]


def _info(entry: Entry) -> dict[str, Any]:
    return {
        "offset": entry.offset,
        "length": entry.length,
        "raw_length": entry.raw_length,
        "compression": entry.codec and entry.codec.name,
        "checksum": f"{entry.checksum:0{spec.CHECKSUM_HEX_DIGITS}x}",
    }
