"""Check the fixed parts of a container and parse its JSON index, trusting no number.

The header, the shape of each record (lengths, padding, the compression
rules) and the index: its nesting, its keys, every entry's types, and that
the records tile the file.  Used by the reader on a file it can seek in and
on a stream read front to back.
"""

from __future__ import annotations

import json
import re
from collections import namedtuple

from ..errors import CorruptSessionError, UnsupportedFormatError
from . import compression as _compression
from . import signing as _signing
from . import spec

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time: `import mason` stays fast
    from typing import Any

_HEX = re.compile(f"[0-9a-f]{{{spec.CHECKSUM_HEX_DIGITS}}}")


class Entry(namedtuple("Entry", "kind number offset length raw_length codec checksum pad")):
    """One segment or blob, as the index describes it (already checked):
    kind (bytes), number (position in its table), offset (of the payload),
    length (stored), raw_length, codec (compression.Codec or None),
    checksum (int), pad."""

    __slots__ = ()

    @property
    def name(self) -> str:
        return f"{spec.RECORD_KINDS[self.kind]} {self.number} (offset {self.offset})"


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
    if header.major != spec.FORMAT_MAJOR:
        raise UnsupportedFormatError(
            f"format version {header.major}.{header.minor} is not one this mason reads"
            f" ({spec.FORMAT_MAJOR}.x)" + ("; upgrade mason" if header.major > spec.FORMAT_MAJOR else "")
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


def parse_index(payload: bytes, algo_name: str, index_offset: int) -> tuple[dict, list, list, Any]:
    """meta, segment entries, blob entries (every entry checked) and the signature or None."""
    try:
        index = json.loads(payload.decode("utf-8"))
    except RecursionError:
        # The C decoder's own guard, far below any stack limit: at about the
        # interpreter's recursion limit (1000), long before MAX_INDEX_DEPTH is
        # checked on what it returns.
        raise CorruptSessionError(
            f"index is nested deeper than the format allows ({spec.MAX_INDEX_DEPTH} levels)"
        ) from None
    except ValueError as exc:  # UnicodeDecodeError, JSONDecodeError
        raise CorruptSessionError(f"index is not valid JSON: {exc}") from None
    if nested_deeper(payload, spec.MAX_INDEX_DEPTH):
        raise CorruptSessionError(f"index is nested deeper than the format allows ({spec.MAX_INDEX_DEPTH} levels)")
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
        signature = _signing.Signature(signature, len(tables[0]), len(tables[1]))
    return index["meta"], tables[0], tables[1], signature


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
    return Entry(kind, number, offset, length, raw_length, codec, int(checksum, 16), pad)
