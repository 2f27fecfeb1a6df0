"""Write a container to any binary stream that has ``write``, seekable or not.

The writer never seeks: it counts the bytes it writes, keeps the segment and
blob tables in memory, and puts them in the index at the end, followed by the
fixed-size trailer that lets a seeking reader find the index.
"""

from __future__ import annotations

import json
import math
import pickle

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time: `import mason` stays fast
    from typing import Any, BinaryIO

from . import checksum as _checksum
from . import compression as _compression
from . import signing as _signing
from . import spec

_ZLIB = _compression.CODECS["zlib"]


class ContainerWriter:
    """Writes the header on construction, then records, then (``finish``) index and trailer.

    ``checksum`` is "crc32" (the default: every Python reads it) or
    "xxh3_64" (faster, needs the xxhash package to read); ``compression`` is None, "zlib", "lzma", "zstd" or "lz4",
    applied to every segment and blob that it makes smaller, at ``level``
    (default: a fast level of that codec); a record it would shrink beyond
    the format's ratio rule (``spec.RATIO_CAP``) is compressed with zlib
    instead, or stored raw.  ``key`` (bytes): sign the
    container with HMAC-SHA256 (format 1.1, see ``signing``).  The writer does
    not close or seek ``fileobj``.
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
        self._macs: dict[bytes, list[str]] = {spec.SEGMENT: [], spec.BLOB: []}
        self._algo = _checksum.by_name(checksum)
        self._codec = _compression.by_name(compression)
        if self._codec is None:
            if level is not None:
                raise ValueError("level given without compression")
            self._level = 0
        else:
            self._level = self._codec.check_level(level)
        self._pos = 0
        self._tables: dict[bytes, list[dict[str, Any]]] = {spec.SEGMENT: [], spec.BLOB: []}
        self._finished = False
        self._header = spec.HEADER.pack(
            magic=spec.MAGIC,
            major=spec.FORMAT_MAJOR,
            minor=spec.SIGNED_MINOR if key else spec.FORMAT_MINOR,
            checksum_id=self._algo.id,
            reserved=0,
        )
        self._write(self._header)

    @property
    def bytes_written(self) -> int:
        return self._pos

    def add_blob(self, data: Any) -> int:
        """Store one buffer (C- or Fortran-contiguous); returns its blob index 0, 1, 2, ..."""
        return self._add(spec.BLOB, data)

    def add_segment(self, data: Any) -> int:
        """Store one pickle segment (bytes-like); returns its segment index 0, 1, 2, ..."""
        return self._add(spec.SEGMENT, data)

    def finish(self, meta: dict[str, Any]) -> None:
        """Write the index (with ``meta``, which must be JSON-serialisable) and the trailer."""
        self._check_open()
        if not isinstance(meta, dict):
            raise TypeError(f"meta must be a dict, not {type(meta).__name__}")
        try:
            # Depth 2: the index object holds meta.
            problem = _unserialisable(meta, "meta", set(), 2)
        except RecursionError:
            problem = "meta: nested too deeply"
        if problem:
            # json.dumps would turn non-str keys into strings; refuse instead, so
            # that meta reads back equal to what was given.
            raise TypeError(problem)
        index = {
            "blobs": self._tables[spec.BLOB],
            "checksum": self._algo.name,
            "meta": meta,
            "segments": self._tables[spec.SEGMENT],
        }
        if self._key:
            index["signature"] = _signing.placeholder(self._macs[spec.SEGMENT], self._macs[spec.BLOB])
        # Sorted keys: the same session gives the same bytes.
        payload = json.dumps(index, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode(
            "utf-8"
        )
        if self._key:
            payload = _signing.seal(payload, self._header, self._key)
        if len(payload) > spec.MAX_INDEX_LENGTH:
            raise ValueError(f"index of {len(payload)} bytes is over the format's limit")
        index_offset = self._pos
        index_checksum = self._write_record(spec.INDEX, payload, None)["checksum"]
        self._write(
            spec.TRAILER.pack(
                index_offset=index_offset,
                index_length=len(payload),
                index_checksum=int(index_checksum, 16),
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

    def _add(self, kind: bytes, data: Any) -> int:
        self._check_open()
        # PickleBuffer gives a flat byte view of any contiguous buffer without
        # copying, whatever its item format or shape.
        buffer = pickle.PickleBuffer(data)
        try:
            with buffer.raw() as view:
                entry = self._write_record(kind, view, self._codec)
        finally:
            # Let go of the caller's buffer now (a BytesIO cannot be resized while
            # exported), not whenever a traceback holding this frame dies.
            buffer.release()
        table = self._tables[kind]
        table.append(entry)
        return len(table) - 1

    def copy_record(self, kind: bytes, payload: Any, compression: str | None, raw_length: int) -> int:
        """Store a record's payload exactly as another container stored it
        (already compressed with ``compression``); returns its table index."""
        self._check_open()
        table = self._tables[kind]
        table.append(self._emit(kind, memoryview(payload).cast("B"), compression, raw_length))
        return len(table) - 1

    def _write_record(self, kind: bytes, view: Any, codec: Any) -> dict[str, Any]:
        raw_length = len(view)
        payload, codec_name = view, None
        if codec is not None and raw_length:
            packed = codec.compress(view, self._level)
            if len(packed) < raw_length and raw_length > spec.max_raw_length(len(packed)) and codec is not _ZLIB:
                # Beyond the format's ratio rule (zstd and lzma on all-zero
                # arrays): zlib's fastest level stays far below it, and is
                # always there to read it back.
                codec, packed = _ZLIB, _ZLIB.compress(view, _ZLIB.default_level)
            # Incompressible data (random floats, already-compressed images) stays
            # raw: no decompression cost, and a raw blob can be memory-mapped.
            if len(packed) < raw_length <= spec.max_raw_length(len(packed)):
                payload, codec_name = packed, codec.name
        return self._emit(kind, payload, codec_name, raw_length)

    def _emit(self, kind: bytes, payload: Any, codec_name: str | None, raw_length: int) -> dict[str, Any]:
        pad = (-(self._pos + spec.RECORD.size)) % spec.ALIGNMENT if kind == spec.BLOB else 0
        value = self._algo.compute(payload)
        if self._key and kind != spec.INDEX:
            self._macs[kind].append(_signing.record_mac(self._key, payload))
        self._write(
            spec.RECORD.pack(
                kind=kind,
                compression=spec.COMPRESSION_IDS[codec_name],
                pad=pad,
                reserved=0,
                length=len(payload),
                raw_length=raw_length,
                checksum=value,
            )
            + bytes(pad)
        )
        offset = self._pos
        self._write(payload)
        return {
            "checksum": f"{value:0{spec.CHECKSUM_HEX_DIGITS}x}",
            "compression": codec_name,
            "length": len(payload),
            "offset": offset,
            "pad": pad,
            "raw_length": raw_length,
        }

    def _write(self, data: Any) -> None:
        view = memoryview(data)
        # Raw (unbuffered) streams may write only part; buffered ones write all;
        # hand-written sinks often return None, meaning they took everything.
        while view.nbytes:
            n = self._file.write(view)
            if n is None:
                n = view.nbytes
            if n <= 0:
                raise OSError(f"stream accepted no bytes at offset {self._pos}")
            self._pos += n
            view = view[n:]


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
            if isinstance(obj, dict) and not isinstance(key, str):
                return f"{path}: key {key!r} is not a str"
            found = _unserialisable(value, f"{path}[{key!r}]", active, depth + 1)
            if found:
                return found
        active.discard(id(obj))
        return ""
    return f"{path}: value of type {type(obj).__name__!r} is not JSON-serialisable"
