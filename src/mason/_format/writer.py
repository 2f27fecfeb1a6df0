"""Write a container to any binary stream that has ``write``, seekable or not.

The writer never seeks: it counts the bytes it writes, keeps the record and
segment tables in memory, and puts them in the index at the end, followed by
the fixed-size trailer that lets a seeking reader find the index.

Small segments are gathered: they wait in memory until about GROUP_BYTES of
them make one SEGM record (one header, one checksum, one row of the record
table for all of them), so a session of thousands of small variables costs
a few records, not thousands.  A large segment gets a record of its own,
written straight from the caller's buffer.
"""

from __future__ import annotations

import io
import json
import math
import pickle
import struct

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time: `import mason` stays fast
    from typing import Any, BinaryIO

from . import checksum as _checksum
from . import compression as _compression
from . import signing as _signing
from . import spec

_ZLIB = _compression.CODECS["zlib"]

# Segments wait until this many bytes of them fill a record.  A record is
# checked (and decompressed) whole when any of its segments is first used, so
# this bounds what a selective load reads beyond what it needs (a millisecond
# at memory speed), and what the writer holds.
GROUP_BYTES = 1 << 20
# A segment of this size or more is written at once, as a record of its own.
ALONE_BYTES = 1 << 18


# With the default checksum, what the writer holds back (header included)
# until it knows whether the container needs crc32+xxh3 (see _choose_checksum).
HOLD_BYTES = 4 << 20


class ContainerWriter:
    """Writes the header, then records, then (``finish``) index and trailer.

    ``checksum`` is "crc32" (every Python reads it and checks it),
    "crc32+xxh3" (every Python reads it: those with the xxhash package check
    large records at memory speed, the others by their CRC), or "xxh3_64"
    (needs xxhash to read).  The default: "crc32+xxh3" where xxhash is
    installed and the container has a record of at least
    ``checksum.XXH3_FROM`` bytes, or more than HOLD_BYTES in all; else
    "crc32", so a small container is a format 2.0 file, and saving it does
    not import xxhash.  ``compression`` is None, "zlib", "lzma", "zstd" or "lz4",
    applied to every record (a blob, or a group of segments) that it makes
    smaller, at ``level`` (default: a fast level of that codec); a record it
    would shrink beyond the format's ratio rule (``spec.RATIO_CAP``) is
    compressed with zlib instead, or stored raw.  ``key`` (bytes): sign the
    container with HMAC-SHA256 (see ``signing``).  The writer does not close
    or seek ``fileobj``.
    """

    def __init__(
        self,
        fileobj: BinaryIO,
        *,
        checksum: str | None = None,
        compression: str | None = None,
        level: int | None = None,
        key: bytes | None = None,
    ) -> None:
        self._file = fileobj
        self._key = key
        self._algo = _checksum.by_name(checksum or "crc32")
        # The default: bytes held back until the checksum is chosen (a small
        # record's sum is its CRC-32 under either choice: only the header
        # and trailer differ).
        self._held: bytearray | None = bytearray() if checksum is None else None
        self._codec = _compression.by_name(compression)
        if self._codec is None:
            if level is not None:
                raise ValueError("level given without compression")
            self._level = 0
        else:
            self._level = self._codec.check_level(level)
        self._pos = 0
        self._records: list[bytes] = []  # each record's header, in file order: the record table
        self._macs: list[bytes] = []  # with a key: each record's MAC, in file order
        self._group_sizes: list[int] = []  # segments held by each SEGM record
        self._segment_lengths: list[int] = []  # raw length of each segment
        self._blob_count = 0
        self._pending = bytearray()  # segments waiting for their record
        self._pending_count = 0
        self._pending_compress = False  # they asked to be compressed (add_segment)
        self._finished = False
        self._header = self._header_for(self._algo)
        self._write(self._header)

    @staticmethod
    def _header_for(algo: _checksum.Algorithm) -> bytes:
        return spec.HEADER.pack(
            magic=spec.MAGIC,
            major=spec.FORMAT_MAJOR,
            minor=spec.CHECKSUM_MINOR.get(algo.id, spec.FORMAT_MINOR),
            checksum_id=algo.id,
            reserved=0,
        )

    def _choose_checksum(self, large: bool) -> None:
        """End the hold of the default checksum: crc32+xxh3 for a ``large``
        container where xxhash is installed, else crc32; the held bytes go
        out under the header that says so."""
        held, self._held = self._held, None
        assert held is not None
        if large:
            self._algo = _checksum.by_name(_checksum.default_name())
            self._header = self._header_for(self._algo)
            held[: len(self._header)] = self._header
        self._write_out(held)

    @property
    def bytes_written(self) -> int:
        """Bytes of the container so far (segments waiting for their record not
        yet); with the default checksum, the first of them may still be held
        back until the checksum is chosen."""
        return self._pos

    def add_blob(self, data: Any) -> int:
        """Store one buffer (C- or Fortran-contiguous); returns its blob index 0, 1, 2, ..."""
        self._check_open()
        with _flat(data) as view:
            self._write_record(spec.BLOB, view, self._codec, self._level)
        self._blob_count += 1
        return self._blob_count - 1

    def add_segment(self, data: Any, *, compress: bool = False) -> int:
        """Store one pickle segment (bytes-like); returns its segment index 0, 1, 2, ...

        A small segment is copied, to be written with the next ones.
        ``compress``: a writer without a codec of its own stores this
        segment compressed all the same, with zlib at level 1 (every reader
        can read it); small segments that ask for it are gathered apart
        from those that do not, so that these stay raw."""
        self._check_open()
        compress = bool(compress) and self._codec is None
        with _flat(data) as view:
            length = view.nbytes
            if length >= ALONE_BYTES:
                self._flush()
                self._write_record(spec.SEGMENT, view, *self._segment_codec(compress, length))
                self._group_sizes.append(1)
            else:
                if len(self._pending) + length > GROUP_BYTES or (
                    self._pending_count and compress != self._pending_compress
                ):
                    self._flush()
                self._pending += view
                self._pending_count += 1
                self._pending_compress = compress
        self._segment_lengths.append(length)
        return len(self._segment_lengths) - 1

    def finish(self, meta: dict[str, Any]) -> None:
        """Write the index (with ``meta``, which must be JSON-serialisable) and the trailer."""
        self._check_open()
        if not isinstance(meta, dict):
            raise TypeError(f"meta must be a dict, not {type(meta).__name__}")
        # Depth 2: the index object holds meta.  json.dumps would turn
        # non-str keys into strings; refuse instead, so that meta reads back
        # equal to what was given.  The quick check only says yes or no; the
        # slow one names the culprit.
        if not _plain_json(meta, 2):
            _refuse_meta(meta)
        self._flush()
        if self._held is not None:  # every record is small: plain crc32
            self._choose_checksum(large=False)
        # Sorted keys: the same session gives the same bytes.
        text = json.dumps(meta, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        try:
            meta_bytes = text.encode("utf-8")
        except UnicodeEncodeError as exc:  # a lone surrogate in some string
            _refuse_meta(meta)
            raise TypeError(f"meta: {exc}") from None
        records, segments = len(self._records), len(self._segment_lengths)
        parts = [
            spec.INDEX_HEAD.pack(
                records=records,
                segments=segments,
                meta_length=len(meta_bytes),
                signature=spec.SIGNATURE_IDS[_signing.ALGORITHM] if self._key else 0,
                reserved=bytes(7),
            ),
            *self._records,
            _u64s(self._group_sizes),
            _u64s(self._segment_lengths),
        ]
        if self._key:
            parts += self._macs
            parts.append(bytes(spec.MAC_SIZE))  # the index MAC, computed with these zeros in its place
        parts.append(meta_bytes)
        payload = b"".join(parts)
        if self._key:
            at = len(payload) - len(meta_bytes) - spec.MAC_SIZE
            mac = _signing.index_mac(self._key, self._header, payload)
            payload = b"".join((payload[:at], mac, payload[at + spec.MAC_SIZE :]))
        if len(payload) > spec.MAX_INDEX_LENGTH:
            raise ValueError(f"index of {len(payload)} bytes is over the format's limit")
        index_offset = self._pos
        index_checksum = self._emit(spec.INDEX, payload, None, len(payload))
        self._write(
            spec.TRAILER.pack(
                index_offset=index_offset,
                index_length=len(payload),
                index_checksum=index_checksum,
                container_length=self._pos + spec.TRAILER.size,
                checksum_id=self._algo.id,
                reserved=bytes(7),
                end_magic=spec.END_MAGIC,
            )
        )
        self._finished = True
        flush = getattr(self._file, "flush", None)
        if flush is not None:
            flush()

    # -- internals ---------------------------------------------------------------

    def _check_open(self) -> None:
        if self._finished:
            raise ValueError("container is already finished")

    def copy_record(
        self,
        kind: bytes,
        payload: Any,
        compression: str | None,
        raw_length: int,
        segments: Any = None,
    ) -> int:
        """Store a record's payload exactly as another container stored it
        (already compressed with ``compression``), as ``records()`` hands it
        out; ``segments``: for a SEGM record, the raw lengths of the segments
        it holds (default: one segment).  Returns the number of the blob, or
        of the record's first segment."""
        self._check_open()
        if kind == spec.SEGMENT:
            lengths = [raw_length] if segments is None else list(segments)
            if not lengths or sum(lengths) != raw_length:
                raise ValueError(f"segment lengths {lengths} do not make a record of {raw_length} bytes")
            self._flush()
            self._emit(kind, memoryview(payload).cast("B"), compression, raw_length)
            self._group_sizes.append(len(lengths))
            self._segment_lengths += lengths
            return len(self._segment_lengths) - len(lengths)
        if kind != spec.BLOB:
            raise ValueError(f"not a record kind to copy: {kind!r}")
        self._emit(kind, memoryview(payload).cast("B"), compression, raw_length)
        self._blob_count += 1
        return self._blob_count - 1

    def _flush(self) -> None:
        """Write the waiting segments as one SEGM record."""
        if self._pending_count:
            pending = memoryview(self._pending)
            self._write_record(spec.SEGMENT, pending, *self._segment_codec(self._pending_compress, len(pending)))
            self._group_sizes.append(self._pending_count)
            self._pending = bytearray()
            self._pending_count = 0
            self._pending_compress = False

    def _segment_codec(self, compress: bool, size: int) -> tuple[Any, int]:
        """(codec, level) of a record of ``size`` bytes of segments that did
        or did not ask to be compressed.  Under ``COMPRESS_FROM`` bytes such
        a record stays raw: zlib's set-up (~0.1 ms) would be most of a tiny
        session's save, for a few hundred bytes."""
        if compress and size >= COMPRESS_FROM:
            return _ZLIB, _ZLIB.default_level
        return self._codec, self._level

    def _write_record(self, kind: bytes, view: Any, codec: Any, level: int) -> None:
        raw_length = len(view)
        payload, codec_name = view, None
        if codec is not None and raw_length:
            packed = codec.compress(view, level)
            if len(packed) < raw_length and raw_length > spec.max_raw_length(len(packed)) and codec is not _ZLIB:
                # Beyond the format's ratio rule (zstd and lzma on all-zero
                # arrays): zlib's fastest level stays far below it, and is
                # always there to read it back.
                codec, packed = _ZLIB, _ZLIB.compress(view, _ZLIB.default_level)
            # Incompressible data (random floats, already-compressed images) stays
            # raw: no decompression cost, and a raw blob can be memory-mapped.
            if len(packed) < raw_length <= spec.max_raw_length(len(packed)):
                payload, codec_name = packed, codec.name
        self._emit(kind, payload, codec_name, raw_length)

    def _emit(self, kind: bytes, payload: Any, codec_name: str | None, raw_length: int) -> int:
        """Write one record; returns its checksum."""
        if self._held is not None and kind != spec.INDEX:
            if len(payload) >= _checksum.XXH3_FROM or len(self._held) + len(payload) > HOLD_BYTES:
                self._choose_checksum(large=True)
        pad = (-(self._pos + spec.RECORD.size)) % spec.ALIGNMENT if kind == spec.BLOB else 0
        if len(payload) >= OVERLAP_FROM and not self._key and self._held is None and _local_file(self._file):
            return self._emit_summing_while_writing(kind, payload, codec_name, raw_length, pad)
        value = self._algo.compute(payload)
        header = spec.RECORD.pack(
            kind=kind,
            compression=spec.COMPRESSION_IDS[codec_name],
            pad=pad,
            reserved=0,
            length=len(payload),
            raw_length=raw_length,
            checksum=value,
        )
        if kind != spec.INDEX:
            self._records.append(header)
            if self._key:
                self._macs.append(_signing.record_mac(self._key, payload))
        self._write(header + bytes(pad))
        self._write(payload)
        return value

    def _emit_summing_while_writing(
        self, kind: bytes, payload: Any, codec_name: str | None, raw_length: int, pad: int
    ) -> int:
        """``_emit`` for a large record into a local file: the header goes
        first with a zero checksum, the payload follows while worker threads
        sum what was just handed over (the CRC and the write each take a
        core), then the header is written again with the checksum.  The bytes
        are those ``_emit`` writes; the file is only renamed into place once
        finished, so the placeholder is never seen."""
        fields = {
            "kind": kind,
            "compression": spec.COMPRESSION_IDS[codec_name],
            "pad": pad,
            "reserved": 0,
            "length": len(payload),
            "raw_length": raw_length,
        }
        header_at = self._file.tell()
        self._write(spec.RECORD.pack(checksum=0, **fields) + bytes(pad))
        hasher = self._algo.new(len(payload))
        view = memoryview(payload).cast("B")
        try:
            for at in range(0, len(view), _OVERLAP_PIECE):
                piece = view[at : at + _OVERLAP_PIECE]
                hasher.update(piece, overlap=True)  # summed on worker threads while this thread writes
                self._write(piece)
        except BaseException:
            # A failed write (disk full): the workers still hold views of the
            # caller's buffer, which it could not release, and its BufferError
            # would hide this error.  Wait for them to let go.
            hasher.digest()
            raise
        value = hasher.digest()
        header = spec.RECORD.pack(checksum=value, **fields)
        end = self._file.tell()
        self._file.seek(header_at)
        written = 0
        while written < len(header):
            n = self._file.write(memoryview(header)[written:])
            written += len(header) - written if n is None else n
        self._file.seek(end)
        if kind != spec.INDEX:
            self._records.append(header)
        return value

    def _write(self, data: Any) -> None:
        if self._held is not None:
            size = len(self._held)
            self._held += data
            self._pos += len(self._held) - size
        else:
            self._pos += self._write_out(data)

    def _write_out(self, data: Any) -> int:
        """Write all of ``data`` to the stream; returns its length."""
        view = memoryview(data).cast("B")
        total, at = view.nbytes, 0
        # Raw (unbuffered) streams may write only part; buffered ones write all;
        # hand-written sinks often return None, meaning they took everything.
        while at < total:
            n = self._file.write(view[at:])
            if n is None:
                n = total - at
            if n <= 0:
                raise OSError(f"stream accepted no bytes at offset {self._pos + at}")
            at += n
        return total


#: records of segments that ask to be compressed (they hold code) are, from this size
COMPRESS_FROM = 4096

#: records at least this large, written to a local file, are summed while
#: they are written (see _emit_summing_while_writing)
OVERLAP_FROM = 8 << 20
_OVERLAP_PIECE = 8 << 20


def _local_file(file: Any) -> bool:
    """Whether ``file`` is a buffered local file this writer may seek back in."""
    raw = getattr(file, "raw", None)
    return isinstance(file, io.BufferedWriter) and isinstance(raw, io.FileIO)


class _flat:
    """``with _flat(data) as view``: a flat byte view of any contiguous buffer,
    whatever its item format or shape, without copying (PickleBuffer.raw)."""

    __slots__ = ("_buffer", "_view")

    def __init__(self, data: Any) -> None:
        self._buffer = pickle.PickleBuffer(data)

    def __enter__(self) -> memoryview:
        self._view = self._buffer.raw()
        return self._view

    def __exit__(self, *exc_info: object) -> None:
        # Let go of the caller's buffer now (a BytesIO cannot be resized while
        # exported), not whenever a traceback holding this frame dies.
        self._view.release()
        self._buffer.release()


def _u64s(values: list[int]) -> bytes:
    """A table of little-endian u64 (spec.TABLE_INT)."""
    return struct.pack(f"<{len(values)}{spec.TABLE_INT}", *values)


_JSON_SCALARS = frozenset({str, int, bool, type(None)})
_JSON_CONTAINERS = frozenset({dict, list, tuple})


def _plain_json(obj: Any, depth: int) -> bool:
    """Whether ``obj`` (a container) is certainly fine for the index, save
    for lone surrogates in strings (the UTF-8 encoding catches those): exact
    JSON types, str keys, finite floats, within the depth limit.  A fast
    yes for what mason itself writes; any doubt (a subclass, a cycle) is a
    no, and ``_unserialisable`` then looks closer."""
    if depth > spec.MAX_INDEX_DEPTH:
        return False
    if type(obj) is dict:
        for key in obj:
            if type(key) is not str:
                return False
        values = obj.values()
    else:
        values = obj
    for value in values:
        kind = type(value)
        if kind in _JSON_SCALARS:
            continue
        if kind is float:
            if not math.isfinite(value):
                return False
        elif kind not in _JSON_CONTAINERS or not _plain_json(value, depth + 1):
            return False
    return True


def _refuse_meta(meta: dict[str, Any]) -> None:
    """Raise TypeError naming what in ``meta`` cannot be stored, if anything."""
    try:
        problem = _unserialisable(meta, "meta", set(), 2)
    except RecursionError:
        problem = "meta: nested too deeply"
    if problem:
        raise TypeError(problem)


def _unserialisable(obj: Any, path: str, active: set[int], depth: int) -> str:
    """Why ``obj`` cannot become JSON, naming the first culprit by its path.

    ``depth``: how deep in the index ``obj`` sits, counting containers.
    """
    if obj is None or isinstance(obj, (bool, int, str)):
        if isinstance(obj, str):
            try:
                obj.encode("utf-8")
            except UnicodeEncodeError:
                return f"{path}: string is not valid UTF-8 (lone surrogate)"
        return ""
    if isinstance(obj, float):
        return "" if math.isfinite(obj) else f"{path}: {obj!r} is not valid JSON"
    if isinstance(obj, (dict, list, tuple)):
        if id(obj) in active:
            return f"{path}: circular reference"
        if depth > spec.MAX_INDEX_DEPTH:
            # Readers refuse deeper indexes: refuse to write one.
            return f"{path}: nested deeper than the index allows ({spec.MAX_INDEX_DEPTH} levels)"
        active.add(id(obj))
        items = obj.items() if isinstance(obj, dict) else enumerate(obj)
        for key, value in items:
            if isinstance(obj, dict):
                if not isinstance(key, str):
                    return f"{path}: key {key!r} is not a str"
                if _unserialisable(key, f"{path}: key {key!r}", active, depth):
                    return f"{path}: key {key!r} is not valid UTF-8 (lone surrogate)"
            found = _unserialisable(value, f"{path}[{key!r}]", active, depth + 1)
            if found:
                return found
        active.discard(id(obj))
        return ""
    return f"{path}: value of type {type(obj).__name__!r} is not JSON-serialisable"
