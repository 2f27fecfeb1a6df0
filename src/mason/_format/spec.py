"""The mason container format, version 1, written down as data.

The writer and the reader both build and check bytes from the tables here, so
this module is the one place where the format is defined; docs/format.md
describes the same bytes in prose.  Anything that changes a byte layout is a
new major version.

    header | record* | index record | trailer

A record is a fixed header, 0..63 zero bytes of padding, then the payload.
Padding exists only so that blob payloads start at a multiple of ALIGNMENT
from the start of the container and can be memory-mapped in place.
"""

from __future__ import annotations

import struct
from collections import namedtuple

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time: `import mason` stays fast
    from typing import Any


class Layout:
    """A fixed-size little-endian struct whose fields have names and a description."""

    def __init__(self, name: str, fields: tuple[tuple[str, str, str], ...]):
        self.name = name
        self.fields = fields  # (field name, struct code, one-line description)
        self.struct = struct.Struct("<" + "".join(code for _, code, _ in fields))
        self.size = self.struct.size
        self.tuple: Any = namedtuple(name, [f[0] for f in fields])  # type: ignore[misc]  # a namedtuple class

    def pack(self, **values: Any) -> bytes:
        return self.struct.pack(*(values[field] for field, _, _ in self.fields))

    def unpack(self, buffer: Any, offset: int = 0) -> Any:
        """Named tuple of the fields; the caller has checked the buffer is long enough."""
        return self.tuple._make(self.struct.unpack_from(buffer, offset))


# -- Magic numbers and version -------------------------------------------------

# PNG-style: the high-bit byte catches 7-bit channels, "\r\n" and the lone "\n"
# catch newline translation in either direction, "\x1a" stops `type` on Windows.
MAGIC = b"\x89MASON\r\n\x1a\n"
END_MAGIC = b"MASONEND"  # last 8 bytes of every container

FORMAT_MAJOR = 1  # readers refuse a newer major version
FORMAT_MINOR = 0  # minor versions only add optional index keys; readers accept any
SIGNED_MINOR = 1  # 1.1 adds the optional "signature" index key (written only when signing)
ALIGNMENT = 64  # blob payloads start at a multiple of this (cache line, >= any SIMD load)

# -- Fixed layouts -------------------------------------------------------------

HEADER = Layout(
    "Header",
    (
        ("magic", "10s", "MAGIC"),
        ("major", "H", "format major version"),
        ("minor", "H", "format minor version"),
        ("checksum_id", "B", "checksum algorithm of every record (CHECKSUM_IDS)"),
        ("reserved", "B", "zero"),
    ),
)  # 16 bytes, at offset 0

RECORD = Layout(
    "Record",
    (
        ("kind", "4s", "record kind (RECORD_KINDS)"),
        ("compression", "B", "compression of the payload (COMPRESSION_IDS)"),
        ("pad", "B", "number of zero bytes between this header and the payload"),
        ("reserved", "H", "zero"),
        ("length", "Q", "stored payload length in bytes"),
        ("raw_length", "Q", "payload length after decompression (== length if uncompressed)"),
        ("checksum", "Q", "checksum of the stored payload bytes, zero-extended to 64 bits"),
    ),
)  # 32 bytes

TRAILER = Layout(
    "Trailer",
    (
        ("index_offset", "Q", "offset of the index record's header"),
        ("index_length", "Q", "stored length of the index payload"),
        ("index_checksum", "Q", "checksum of the index payload"),
        ("container_length", "Q", "total container length, header to END_MAGIC inclusive"),
        ("checksum_id", "B", "repeats the header's checksum id"),
        ("reserved", "7s", "zero"),
        ("end_magic", "8s", "END_MAGIC"),
    ),
)  # 48 bytes, the last bytes of the container

# -- Record kinds ----------------------------------------------------------------

SEGMENT = b"SEGM"  # one pickle segment (one saved variable); pad is 0
BLOB = b"BLOB"  # one protocol-5 out-of-band buffer; payload offset % ALIGNMENT == 0
INDEX = b"INDX"  # UTF-8 JSON index, uncompressed, pad 0; last record, then the trailer
RECORD_KINDS = {SEGMENT: "segment", BLOB: "blob", INDEX: "index"}

# -- Algorithm ids (stored in the file; never renumber, only append) -----------

CHECKSUM_IDS = {
    "crc32": 1,  # zlib.crc32, always available
    "xxh3_64": 2,  # xxhash.xxh3_64 with seed 0 (package xxhash)
}
COMPRESSION_IDS = {
    None: 0,  # stored as is
    "zlib": 1,  # zlib stream (RFC 1950), stdlib
    "lzma": 2,  # .xz container, stdlib
    "zstd": 3,  # Zstandard frame (package zstandard)
    "lz4": 4,  # LZ4 frame (package lz4)
}
CHECKSUM_NAMES = {v: k for k, v in CHECKSUM_IDS.items()}
COMPRESSION_NAMES = {v: k for k, v in COMPRESSION_IDS.items()}

# -- The index -------------------------------------------------------------------

# Keys of the index object; every one is required.  Keys a reader does not know
# are ignored, which is what lets a minor version add some.
INDEX_KEYS = ("blobs", "checksum", "meta", "segments")
# Keys of one entry in "segments" and "blobs", in file order of the records.
ENTRY_KEYS = ("checksum", "compression", "length", "offset", "pad", "raw_length")
# "checksum" in an entry is 16 lowercase hex digits (JSON numbers lose precision
# above 2**53 in many languages).
CHECKSUM_HEX_DIGITS = 16

# -- Sanity limits the reader enforces before trusting a number -----------------

MAX_LENGTH = 1 << 48  # any payload, stored or raw (256 TiB)
MAX_INDEX_LENGTH = 1 << 32  # the JSON index (4 GiB; millions of variables)
MAX_INDEX_DEPTH = 64  # nesting of the JSON index, its own object included (mason's is 5 deep)

# A compressed record may declare at most RATIO_CAP * length + RATIO_FLOOR raw
# bytes.  The raw length is what a reader must be ready to hold, so without
# this rule a few kilobytes of file could ask for gigabytes of memory.  1024
# is above what zlib (~230 at level 1, ~1030 at best) and lz4 (~250) reach
# on all-zero data; zstd and lzma go beyond it there (32000 and 7000), and the
# writer then falls back to zlib or stores the record raw.
RATIO_CAP = 1024
RATIO_FLOOR = 1 << 20


def max_raw_length(length: int) -> int:
    """The most raw bytes a compressed record of ``length`` stored bytes may declare."""
    return RATIO_CAP * length + RATIO_FLOOR


MIN_CONTAINER = HEADER.size + RECORD.size + 2 + TRAILER.size  # "{}" is the smallest JSON object
