"""Check the fixed parts of a container and parse its index, trusting no number.

The header, the shape of each record (lengths, padding, the compression
rules) and the index: version 2's binary tables and JSON metadata, or
version 1's JSON index (its nesting, its keys, every entry's types), and
that the records tile the file.  Used by the reader on a file it can seek in
and on a stream read front to back.
"""

from __future__ import annotations

import json
import re
import struct
from collections import namedtuple

from ..errors import CorruptSessionError, UnsupportedFormatError
from . import compression as _compression
from . import signing as _signing
from . import spec

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time: `import mason` stays fast
    from typing import Any

_HEX = re.compile(f"[0-9a-f]{{{spec.CHECKSUM_HEX_DIGITS}}}")


class Entry(namedtuple("Entry", "kind number offset length raw_length codec checksum pad segments")):
    """One record, as the index describes it (already checked): kind (bytes),
    number (position in its table: SEGM records, blobs), offset (of the
    payload), length (stored), raw_length, codec (compression.Codec or None),
    checksum (int), pad, and for a SEGM record the range of segment numbers
    it holds (one in version 1), else None."""

    __slots__ = ()

    @property
    def label(self) -> str:
        """What the record holds, for messages: "blob 3", "segment 7", "segments 0-41"."""
        if self.segments is None:
            return f"{spec.RECORD_KINDS[self.kind]} {self.number}"
        first, last = self.segments.start, self.segments.stop - 1
        return f"segment {first}" if first >= last else f"segments {first}-{last}"

    @property
    def name(self) -> str:
        return f"{self.label} (offset {self.offset})"


class Tables(namedtuple("Tables", "meta groups blobs segment_lengths group_first signature")):
    """A parsed index: meta (dict); groups (the SEGM records' Entries) and
    blobs (Entries); segment_lengths (raw length of each segment);
    group_first (the first segment of each SEGM record, then the segment
    count); signature (signing.Signature or None)."""

    __slots__ = ()


def check_magic(data: bytes) -> None:
    """Say what the file is instead, if it does not start with MAGIC."""
    if not data:
        raise CorruptSessionError("not a mason file: it is empty")
    if len(data) < len(spec.MAGIC) and spec.MAGIC.startswith(data):
        raise CorruptSessionError(f"truncated: only {len(data)} bytes, not even a header")
    if data.startswith(spec.MAGIC):
        return
    if data.startswith(spec.MAGIC[:6]):  # b"\x89MASON", then damaged line endings
        raise CorruptSessionError("not a mason file any more: its line endings were changed (copied in text mode?)")
    if data[:1] == b"\x80":
        raise CorruptSessionError(
            "not a mason file: this looks like a plain pickle (if dill wrote it, mason.load and"
            " mason.load_module read it, and `mason convert` makes a mason session of it)"
        )
    raise CorruptSessionError(f"not a mason file (it starts with {bytes(data[:10])!r})")


def parse_header(data: bytes) -> Any:
    """The header's fields, after checking magic, version and reserved bits."""
    check_magic(data)
    if len(data) < spec.HEADER.size:
        raise CorruptSessionError(f"truncated: only {len(data)} bytes, not even a header")
    header = spec.HEADER.unpack(data)
    if header.major not in spec.READ_MAJORS:
        readable = " and ".join(f"{major}.x" for major in spec.READ_MAJORS)
        raise UnsupportedFormatError(
            f"format version {header.major}.{header.minor} is not one this mason reads"
            f" ({readable})" + ("; upgrade mason" if header.major > spec.FORMAT_MAJOR else "")
        )
    if header.reserved:
        raise CorruptSessionError("header: reserved bits set")
    return header


def shape_problem(kind: bytes, offset: int, pad: int, length: int, raw_length: int, codec: Any) -> str:
    """What is impossible about a record of these numbers, or "" if nothing."""
    if length > spec.MAX_LENGTH or raw_length > spec.MAX_LENGTH:
        return f"absurd length {max(length, raw_length)}"
    if kind == spec.BLOB:
        # The writer pads with the fewest bytes that align the payload.
        if offset % spec.ALIGNMENT or not 0 <= pad < spec.ALIGNMENT:
            return f"payload is not aligned to {spec.ALIGNMENT} bytes (pad {pad})"
    elif pad:
        return f"pad {pad} where none belongs"
    if codec is None:
        if raw_length != length:
            return f"raw length {raw_length} differs from length {length} without compression"
    elif not length < raw_length:
        # The writer stores data raw unless compressing makes it smaller.
        return f"compressed length {length} is not below raw length {raw_length}"
    elif raw_length > spec.max_raw_length(length):
        return (
            f"{length} compressed bytes declare {raw_length} raw bytes, more than the format allows"
            f" ({spec.RATIO_CAP} x length + {spec.RATIO_FLOOR}): a decompression bomb, or damage"
        )
    if kind == spec.INDEX and (codec is not None or length > spec.MAX_INDEX_LENGTH):
        return "index is compressed or too large"
    return ""


def parse_index(payload: bytes, major: int, algo_name: str, index_offset: int) -> Tables:
    """The index payload of a container of version ``major``, every entry checked."""
    if major == 1:
        return _parse_json_index(payload, algo_name, index_offset)
    return _parse_binary_index(payload, index_offset)


def _parse_binary_index(payload: bytes, index_offset: int) -> Tables:
    """Version 2: the head, the record, group and segment tables, the
    signature and the JSON metadata (spec.INDEX_HEAD describes the order).

    Every count is checked against the payload's length before anything
    is read or allocated from it, so the largest table is the payload."""
    size = len(payload)
    if size < spec.INDEX_HEAD.size:
        raise CorruptSessionError(f"index: {size} bytes, too short for its head")
    head = spec.INDEX_HEAD.unpack(payload)
    if any(head.reserved):
        raise CorruptSessionError("index: reserved bits set")
    if head.signature and head.signature not in spec.SIGNATURE_NAMES:
        raise UnsupportedFormatError(
            f"index: unknown signature algorithm id {head.signature} (written by a newer mason, or damaged)"
        )
    at = spec.INDEX_HEAD.size
    table_end = at + head.records * spec.RECORD.size
    if table_end > size:
        raise CorruptSessionError(f"index: a table of {head.records} records does not fit in {size} bytes")
    # Offsets are not stored: records lie back to back from the header on, so
    # each one starts where the previous one ends.
    rows = []
    groups = 0
    position = spec.HEADER.size
    for number, row in enumerate(spec.RECORD.struct.iter_unpack(memoryview(payload)[at:table_end])):
        kind, compression_id, pad, reserved, length, raw_length, checksum = row
        if kind != spec.SEGMENT and kind != spec.BLOB:
            raise CorruptSessionError(f"index: record {number} is of kind {kind!r}, not SEGM or BLOB")
        codec = _compression.by_id(compression_id)
        offset = position + spec.RECORD.size + pad
        problem = "reserved bits set" if reserved else shape_problem(kind, offset, pad, length, raw_length, codec)
        if problem:
            raise CorruptSessionError(f"index: record {number} (offset {offset}): {problem}")
        groups += kind == spec.SEGMENT
        rows.append((kind, offset, length, raw_length, codec, checksum, pad))
        position = offset + length
    if position != index_offset:
        raise CorruptSessionError(f"records end at {position} but the index starts at {index_offset}")
    segments_at = table_end + groups * spec.TABLE_INT_SIZE
    signature_at = segments_at + head.segments * spec.TABLE_INT_SIZE
    meta_at = signature_at + (head.records + 1) * spec.MAC_SIZE * bool(head.signature)
    if meta_at + head.meta_length != size:
        raise CorruptSessionError(
            f"index: {head.records} records ({groups} of segments), {head.segments} segments and"
            f" {head.meta_length} bytes of metadata do not make the {size} bytes it has"
        )
    counts = struct.unpack_from(f"<{groups}{spec.TABLE_INT}", payload, table_end)
    lengths = struct.unpack_from(f"<{head.segments}{spec.TABLE_INT}", payload, segments_at)
    if sum(counts) != head.segments:
        raise CorruptSessionError(f"index: the records hold {sum(counts)} segments, the head says {head.segments}")
    group_entries: list[Entry] = []
    blobs: list[Entry] = []
    group_first = [0]
    first = 0
    for kind, offset, length, raw_length, codec, checksum, pad in rows:
        if kind == spec.BLOB:
            blobs.append(Entry(kind, len(blobs), offset, length, raw_length, codec, checksum, pad, None))
            continue
        count = counts[len(group_entries)]
        held = range(first, first + count)
        entry = Entry(kind, len(group_entries), offset, length, raw_length, codec, checksum, pad, held)
        if not count:
            raise CorruptSessionError(f"index: the record at offset {offset} holds no segment")
        if sum(lengths[first : first + count]) != raw_length:
            raise CorruptSessionError(f"{entry.name}: the segment lengths do not add up to its raw length {raw_length}")
        group_entries.append(entry)
        first += count
        group_first.append(first)
    signature = None
    if head.signature:
        macs = memoryview(payload)[signature_at:meta_at]
        by_kind: dict[bytes, list[bytes]] = {spec.SEGMENT: [], spec.BLOB: []}
        for number, row in enumerate(rows):
            by_kind[row[0]].append(bytes(macs[number * spec.MAC_SIZE : (number + 1) * spec.MAC_SIZE]))
        value_at = meta_at - spec.MAC_SIZE
        signature = _signing.Signature(by_kind[spec.SEGMENT], by_kind[spec.BLOB], payload[value_at:meta_at], value_at)
    meta = parse_json(payload[meta_at:], "metadata", spec.MAX_INDEX_DEPTH - 1)
    if not isinstance(meta, dict):
        raise CorruptSessionError("index: the metadata is not a JSON object")
    return Tables(meta, group_entries, blobs, lengths, group_first, signature)


def parse_json(text: bytes, what: str, depth: int) -> Any:
    """The JSON ``text``, nested at most ``depth`` deep, or CorruptSessionError."""
    too_deep = f"{what} is nested deeper than the format allows ({spec.MAX_INDEX_DEPTH} levels)"
    try:
        value = json.loads(text.decode("utf-8"))
    except RecursionError:
        # The C decoder's own guard, far below any stack limit: at about the
        # interpreter's recursion limit (1000), long before the depth is
        # checked on what it returns.
        raise CorruptSessionError(too_deep) from None
    except ValueError as exc:  # UnicodeDecodeError, JSONDecodeError
        raise CorruptSessionError(f"{what} is not valid JSON: {exc}") from None
    if nested_deeper(text, depth):
        raise CorruptSessionError(too_deep)
    return value


def _parse_json_index(payload: bytes, algo_name: str, index_offset: int) -> Tables:
    """Version 1: one JSON object holding meta and the segment and blob tables."""
    index = parse_json(payload, "index", spec.MAX_INDEX_DEPTH)
    if not isinstance(index, dict):
        raise CorruptSessionError("index is not a JSON object")
    missing = [key for key in spec.INDEX_KEYS if key not in index]
    if missing:
        raise CorruptSessionError(f"index lacks {', '.join(missing)}")
    if index["checksum"] != algo_name:
        raise CorruptSessionError(f"index says checksum {index['checksum']!r}, header {algo_name!r}")
    if not isinstance(index["meta"], dict):
        raise CorruptSessionError("index: meta is not an object")
    tables = []
    for key, kind in (("segments", spec.SEGMENT), ("blobs", spec.BLOB)):
        if not isinstance(index[key], list):
            raise CorruptSessionError(f"index: {key} is not a list")
        tables.append([parse_entry(kind, i, obj) for i, obj in enumerate(index[key])])
    # Records lie back to back from the header to the index; anything else means
    # the index and the file disagree.
    expected = spec.HEADER.size
    for entry in sorted(tables[0] + tables[1], key=lambda e: e.offset):
        if entry.offset - entry.pad - spec.RECORD.size != expected:
            raise CorruptSessionError(f"{entry.name}: not where the previous record ends ({expected})")
        expected = entry.offset + entry.length
    if expected != index_offset:
        raise CorruptSessionError(f"records end at {expected} but the index starts at {index_offset}")
    signature = index.get("signature")
    if signature is not None:
        signature = _signing.JsonSignature(signature, len(tables[0]), len(tables[1]))
    segments = tables[0]
    return Tables(
        index["meta"], segments, tables[1], tuple(e.raw_length for e in segments), range(len(segments) + 1), signature
    )


# For nested_deeper: fold braces into brackets, keep only brackets and quotes.
_FOLD = bytes.maketrans(b"{}", b"[]")
_NOT_STRUCTURE = bytes(set(range(256)) - set(b'[]{}"'))


def nested_deeper(payload: bytes, limit: int) -> bool:
    """Whether the JSON text ``payload`` (already parsed, so valid) nests
    containers more than ``limit`` deep.

    Done on the bytes with a few C-speed passes, where walking the parsed
    index would cost a Python call per value (a second for 200,000
    variables).  Strings are cut out first, since their brackets are text;
    what is left is a bracket sequence whose depth is the number of passes of
    "remove every innermost []" that it takes to empty it.
    """
    text = payload
    if b"\\" in text:
        # Escapes hide no bracket, but an escaped quote must not be taken for a
        # string's end.  Once the escaped backslashes (pairs, left to right) are
        # gone, every backslash left starts an escape: each `\"` is a quote
        # inside a string.
        text = text.replace(b"\\\\", b"").replace(b'\\"', b"")
    structure = text.translate(_FOLD, _NOT_STRUCTURE)
    # A string without brackets leaves `""`.  Dropping two adjacent quotes keeps
    # every other quote's parity, so whatever quotes remain still pair up as
    # string bounds: cut what lies between them.
    structure = structure.replace(b'""', b"")
    if b'"' in structure:
        structure = b"".join(structure.split(b'"')[::2])
    for _ in range(limit):
        if not structure:
            return False
        structure = structure.replace(b"[]", b"")
    return bool(structure)


_ENTRY_KEYS = frozenset(spec.ENTRY_KEYS)


def parse_entry(kind: bytes, number: int, obj: Any) -> Entry:
    # Sessions have thousands of entries: the checks are written for speed,
    # and the message is only built when one fails.
    def where() -> str:
        return f"index: {spec.RECORD_KINDS[kind]} {number}"

    if type(obj) is not dict or not obj.keys() >= _ENTRY_KEYS:
        raise CorruptSessionError(f"{where()}: not an object with keys {', '.join(spec.ENTRY_KEYS)}")
    offset, length, raw_length, pad = obj["offset"], obj["length"], obj["raw_length"], obj["pad"]
    if not (
        type(offset) is type(length) is type(raw_length) is type(pad) is int
        and offset >= 0
        and length >= 0
        and raw_length >= 0
        and pad >= 0
    ):
        raise CorruptSessionError(f"{where()}: offset, length, raw_length and pad must be ints >= 0")
    checksum = obj["checksum"]
    if type(checksum) is not str or not _HEX.fullmatch(checksum):
        raise CorruptSessionError(f"{where()}: checksum is not {spec.CHECKSUM_HEX_DIGITS} hex digits")
    name = obj["compression"]
    if name is None:
        codec = None
    else:
        if not isinstance(name, str) or name not in spec.COMPRESSION_IDS:
            raise UnsupportedFormatError(f"{where()}: unknown compression {name!r}")
        codec = _compression.by_id(spec.COMPRESSION_IDS[name])
    problem = shape_problem(kind, offset, pad, length, raw_length, codec)
    if problem:
        raise CorruptSessionError(f"{where()}: {problem}")
    held = range(number, number + 1) if kind == spec.SEGMENT else None
    return Entry(kind, number, offset, length, raw_length, codec, int(checksum, 16), pad, held)
