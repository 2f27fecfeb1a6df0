"""A checkpoint store's layout, written down as data: where each file lives,
the object header, checkpoint ids, and the checks of the small JSON documents
(the store's config, catalog entries, locks).  docs/store.md describes the
same bytes; manifest.py holds the manifest's shape.

    <store>/mason-store.json        config: hash, chunk size (written once)
    <store>/objects/ab/ab12...      content-addressed objects: header + payload
    <store>/checkpoints/<id>.json   the catalog: one entry per checkpoint, written last
    <store>/locks/<lock id>.json    who is checkpointing or pruning right now
    <store>/tmp/                    objects and entries being written (renamed into place)
"""

from __future__ import annotations

import re
import struct

from ..errors import CorruptStoreError, StoreError, UnsupportedFormatError

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time: `import mason` stays fast
    from typing import Any

# -- names ---------------------------------------------------------------------

CONFIG = "mason-store.json"
OBJECTS = "objects"
CHECKPOINTS = "checkpoints"
LOCKS = "locks"
TMP = "tmp"
ENTRY_SUFFIX = ".json"

STORE_FORMAT = "mason.store"
STORE_VERSION = 1  # readers refuse a store of a newer version
ENTRY_FORMAT = "mason.entry"
LOCK_FORMAT = "mason.lock"

#: A checkpoint id: UTC time to the microsecond, then 32 random bits, so that ids
#: sort by time and two writers never make the same one.
ID_PATTERN = re.compile(r"[0-9]{8}T[0-9]{12}Z-[0-9a-f]{8}")


def object_name(digest: str) -> str:
    """Where the object named ``digest`` lives (git's fan-out: 256 directories)."""
    return f"{OBJECTS}/{digest[:2]}/{digest}"


def entry_name(checkpoint_id: str) -> str:
    return f"{CHECKPOINTS}/{checkpoint_id}{ENTRY_SUFFIX}"


def lock_name(lock_id: str) -> str:
    return f"{LOCKS}/{lock_id}{ENTRY_SUFFIX}"


def new_id(micros: int, random4: bytes) -> str:
    """The id of a checkpoint (or lock) made at ``micros`` microseconds after the epoch."""
    import time

    seconds, fraction = divmod(micros, 1_000_000)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(seconds))
    return f"{stamp}{fraction:06d}Z-{random4.hex()}"


# -- objects -------------------------------------------------------------------

#: Every object starts with this 64-byte header; the payload follows, so an
#: uncompressed payload starts 64 bytes into the file and can be memory-mapped
#: as an array (as a container's blobs are).
OBJECT_MAGIC = b"\x89MASOBJ\n"
OBJECT_VERSION = 1
OBJECT_HEADER = struct.Struct("<8sBB54x")  # magic, version, compression id, 54 zero bytes
HEADER_SIZE = OBJECT_HEADER.size  # 64


def object_header(codec_id: int) -> bytes:
    return OBJECT_HEADER.pack(OBJECT_MAGIC, OBJECT_VERSION, codec_id)


def parse_object_header(head: Any, what: str) -> int:
    """The compression id an object's header names; CorruptStoreError if it is no header."""
    if len(head) < HEADER_SIZE:
        raise CorruptStoreError(f"{what}: truncated ({len(head)} bytes, shorter than an object header)")
    magic, version, codec_id = OBJECT_HEADER.unpack_from(head)
    if magic != OBJECT_MAGIC:
        raise CorruptStoreError(f"{what}: not a mason object (bad magic)")
    if version != OBJECT_VERSION:
        raise UnsupportedFormatError(f"{what}: object version {version} (this mason reads version {OBJECT_VERSION})")
    if any(bytes(head[10:HEADER_SIZE])):
        raise CorruptStoreError(f"{what}: reserved header bytes are not zero")
    return codec_id


# -- limits --------------------------------------------------------------------

DEFAULT_CHUNK_SIZE = 4 << 20
DEFAULT_PACK_BELOW = 256 << 10
MIN_CHUNK_SIZE = 4 << 10
MAX_CHUNK_SIZE = 1 << 30
#: Documents read from the store (entries, locks, config) are small: anything
#: larger is not one mason wrote.  Manifests have their own limit (manifest.py).
MAX_DOCUMENT = 64 << 20


# -- JSON documents -------------------------------------------------------------


def dumps(document: dict) -> bytes:
    import json

    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode(
        "utf-8"
    )


def loads(data: Any, what: str) -> dict:
    """A JSON object read from the store; CorruptStoreError for anything else."""
    import json

    if len(data) > MAX_DOCUMENT:
        raise CorruptStoreError(f"{what}: {len(data)} bytes, too large to be what mason writes")
    try:
        document = json.loads(bytes(data).decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise CorruptStoreError(f"{what}: not valid JSON ({type(exc).__name__}: {str(exc)[:80]})") from None
    if type(document) is not dict:
        raise CorruptStoreError(f"{what}: not a JSON object")
    return document


class Config:
    """The store's settings: its hash algorithm and how it cuts buffers into pieces."""

    __slots__ = ("chunk_size", "hash", "pack_below")

    def __init__(self, hash: str, chunk_size: int, pack_below: int) -> None:
        self.hash = hash
        self.chunk_size = chunk_size
        self.pack_below = pack_below

    def to_json(self) -> bytes:
        return dumps(
            {
                "chunk_size": self.chunk_size,
                "format": STORE_FORMAT,
                "hash": self.hash,
                "pack_below": self.pack_below,
                "version": STORE_VERSION,
            }
        )

    @classmethod
    def from_json(cls, data: Any, where: str) -> Config:
        what = f"{where}: {CONFIG}"
        doc = loads(data, what)
        if doc.get("format") != STORE_FORMAT:
            raise StoreError(f"{what}: not a mason store's config")
        version = doc.get("version")
        if type(version) is not int or version < 1:
            raise CorruptStoreError(f"{what}: version {_brief(version)} is not a version")
        if version > STORE_VERSION:
            raise UnsupportedFormatError(f"{what}: store version {version}, written by a newer mason")
        config = cls(doc.get("hash"), doc.get("chunk_size"), doc.get("pack_below"))  # type: ignore[arg-type]
        problem = config.problem()
        if problem:
            raise CorruptStoreError(f"{what}: {problem}")
        return config

    def problem(self) -> str:
        if type(self.hash) is not str:
            return f"hash {_brief(self.hash)} is not a name"
        if type(self.chunk_size) is not int or not MIN_CHUNK_SIZE <= self.chunk_size <= MAX_CHUNK_SIZE:
            return f"chunk_size {_brief(self.chunk_size)} is not between {MIN_CHUNK_SIZE} and {MAX_CHUNK_SIZE}"
        if type(self.pack_below) is not int or not 0 <= self.pack_below <= self.chunk_size:
            return f"pack_below {_brief(self.pack_below)} is not between 0 and the chunk size"
        return ""


def check_entry(doc: dict, what: str, hex_digits: int) -> str:
    """What is wrong with a catalog entry's shape, or ""."""
    if doc.get("format") != ENTRY_FORMAT or doc.get("version") != 1:
        return "not a checkpoint entry of version 1"
    if type(doc.get("id")) is not str or not ID_PATTERN.fullmatch(doc["id"]):
        return f"id {_brief(doc.get('id'))} is not a checkpoint id"
    parent = doc.get("parent")
    if parent is not None and (type(parent) is not str or not ID_PATTERN.fullmatch(parent)):
        return f"parent {_brief(parent)} is not a checkpoint id"
    if type(doc.get("created")) is not str or len(doc["created"]) > 40:
        return "created is not a time"
    if doc.get("message") is not None and type(doc["message"]) is not str:
        return "message is not a string"
    names = doc.get("names")
    if type(names) is not list or not all(type(name) is str for name in names):
        return "names is not a list of strings"
    for key in ("bytes_total", "bytes_written", "manifest_length"):
        if not is_count(doc.get(key)):
            return f"{key} {_brief(doc.get(key))} is not a byte count"
    if not is_digest(doc.get("manifest"), hex_digits):
        return f"manifest {_brief(doc.get('manifest'))} is not an object name"
    return ""


def is_count(value: Any) -> bool:
    return type(value) is int and 0 <= value < 1 << 63


_HEX = re.compile(r"[0-9a-f]+")


def is_digest(value: Any, hex_digits: int) -> bool:
    return type(value) is str and len(value) == hex_digits and _HEX.fullmatch(value) is not None


def _brief(value: Any) -> str:
    # The value came from the store: bounded, so a huge one cannot flood the message.
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
