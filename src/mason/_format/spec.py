"""The mason container format, versions 2 (written) and 1 (read), written down as data.

The writer and the reader both build and check bytes from the tables here, so
this module is the one place where the format is defined; docs/format.md
describes the same bytes in prose.  Anything that changes a byte layout is a
new major version.

    header | record* | index record | trailer

A record is a fixed header, 0..63 zero bytes of padding, then the payload.
Padding exists only so that blob payloads start at a multiple of ALIGNMENT
from the start of the container and can be memory-mapped in place.

Version 2 differs from version 1 in two places only: a SEGM record holds one
or more pickle segments back to back (one header and one checksum for many
small variables), and the index is binary tables followed by the JSON
metadata, where version 1's index is one JSON object.
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

FORMAT_MAJOR = 2  # what the writer writes; readers refuse a major version not in READ_MAJORS
FORMAT_MINOR = 0  # a reader accepts any minor version of a major it reads
# 2.1 added the checksum id 3 (crc32+xxh3), and only files that use it say
# 2.1: the others are 2.0 files, byte for byte.  A 2.0 reader accepts 2.1
# and then refuses the unknown checksum id, saying a newer mason wrote it.
CHECKSUM_MINOR = {3: 1}
READ_MAJORS = (1, 2)  # version 1: the JSON index (read only, see "Version 1" below)
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

SEGMENT = b"SEGM"  # pickle segments back to back (version 1: exactly one); pad is 0
BLOB = b"BLOB"  # one protocol-5 out-of-band buffer; payload offset % ALIGNMENT == 0
INDEX = b"INDX"  # the index, uncompressed, pad 0; last record, then the trailer
RECORD_KINDS = {SEGMENT: "segment", BLOB: "blob", INDEX: "index"}

# -- Algorithm ids (stored in the file; never renumber, only append) -----------

CHECKSUM_IDS = {
    "crc32": 1,  # zlib.crc32, always available
    "xxh3_64": 2,  # xxhash.xxh3_64 with seed 0 (package xxhash)
    # low 32 bits: zlib.crc32; high 32 bits: the high half of xxh3_64 (seed 0).
    # Format 2.1; either half can be checked, so every reader opens the file.
    "crc32+xxh3": 3,
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

# -- The index (version 2) -----------------------------------------------------------
#
# The payload of the INDX record, in this order, with nothing between or after:
#
#   INDEX_HEAD                        32 bytes
#   record table   records x 32       each record's header, byte for byte, in file order
#   group table    groups x u64       segments held by each SEGM record (groups = SEGM rows)
#   segment table  segments x u64     raw length of each segment, in segment order
#   signature      (records + 1) x 32 only when signed: each record's MAC, then the index MAC
#   meta           meta_length bytes  UTF-8 JSON object, the caller's metadata
#
# Record offsets are not stored: records lie back to back from byte 16, each
# header followed by its padding (0 for SEGM, the fewest bytes that align a
# BLOB payload) and its payload, so the table's lengths give every offset.
# Segment i is the i-th segment in the SEGM records taken in file order; the
# raw payload of a SEGM record is its segments' bytes back to back.

INDEX_HEAD = Layout(
    "IndexHead",
    (
        ("records", "Q", "records before the index (SEGM and BLOB), rows of the record table"),
        ("segments", "Q", "pickle segments, rows of the segment table"),
        ("meta_length", "Q", "length of the JSON metadata, the last part of the index"),
        ("signature", "B", "signature algorithm (SIGNATURE_IDS), 0 when unsigned"),
        ("reserved", "7s", "zero"),
    ),
)  # 32 bytes
TABLE_INT = "Q"  # the group and segment tables: little-endian u64 each
TABLE_INT_SIZE = struct.calcsize("<" + TABLE_INT)
SIGNATURE_IDS = {
    "hmac-sha256": 1,  # HMAC-SHA256 with the shared secret key
}
SIGNATURE_NAMES = {v: k for k, v in SIGNATURE_IDS.items()}
MAC_SIZE = 32  # bytes of one HMAC-SHA256

# -- The index (version 1, read only) ---------------------------------------------
#
# One JSON object.  Keys of the index object; every one is required.  Keys a
# reader does not know are ignored, which is what let a minor version add some.
INDEX_KEYS = ("blobs", "checksum", "meta", "segments")
# Keys of one entry in "segments" and "blobs", in file order of the records.
ENTRY_KEYS = ("checksum", "compression", "length", "offset", "pad", "raw_length")
# "checksum" in an entry is 16 lowercase hex digits (JSON numbers lose precision
# above 2**53 in many languages).
CHECKSUM_HEX_DIGITS = 16
V1_SIGNED_MINOR = 1  # 1.1 added the optional "signature" index key

# -- Sanity limits the reader enforces before trusting a number -----------------

MAX_LENGTH = 1 << 48  # any payload, stored or raw (256 TiB)
MAX_INDEX_LENGTH = 1 << 32  # the index payload (4 GiB; millions of variables)
# Nesting of JSON, counted from the version 1 index object (level 1), which
# holds meta (level 2).  Version 2's meta is counted the same way, as level 2,
# so that metadata one version accepts the other accepts too.
MAX_INDEX_DEPTH = 64

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


# The smallest index: "{}" (version 1); the head and "{}" (version 2).
MIN_CONTAINER = HEADER.size + RECORD.size + 2 + TRAILER.size
