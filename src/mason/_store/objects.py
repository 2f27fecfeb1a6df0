"""Object files: a 64-byte header, then the payload (raw or compressed).

An object is named by the hash of its raw bytes, so the same bytes are one
object however often they are saved, and whatever compression they were
stored with.  Reading one checks the header, decompresses no further than the
raw length the manifest gives, and checks the result against the name.
"""

from __future__ import annotations

from .._format import compression as _compression
from .._format import spec as _spec
from ..errors import CorruptSessionError, CorruptStoreError
from . import layout

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time: `import mason` stays fast
    from typing import Any

    from .backend import FsspecBackend, LocalBackend
    from .hashing import Hash

_ZLIB = _compression.CODECS["zlib"]


def encode(views: list[Any], codec: Any, level: int) -> tuple[list[Any], int]:
    """(the parts of an object file holding the concatenated ``views``, its size).

    Compressed only when that makes it smaller, and never beyond the
    container's ratio rule (a reader must not be asked to inflate a few bytes
    into gigabytes), as the container writer does.
    """
    raw_length = sum(len(v) for v in views)
    if codec is not None and raw_length:
        data = views[0] if len(views) == 1 else b"".join(views)
        packed = codec.compress(data, level)
        if len(packed) < raw_length and raw_length > _spec.max_raw_length(len(packed)) and codec is not _ZLIB:
            codec, packed = _ZLIB, _ZLIB.compress(data, _ZLIB.default_level)
        if len(packed) < raw_length <= _spec.max_raw_length(len(packed)):
            return [layout.object_header(codec.id), packed], layout.HEADER_SIZE + len(packed)
    return [layout.object_header(0), *views], layout.HEADER_SIZE + raw_length


def decode(data: Any, raw_length: int, what: str) -> Any:
    """The raw payload of an object file's bytes ``data`` (not yet checked against its name)."""
    codec_id = layout.parse_object_header(data, what)
    stored = memoryview(data)[layout.HEADER_SIZE :]
    try:
        codec = _compression.by_id(codec_id)
    except CorruptSessionError as exc:
        raise CorruptStoreError(f"{what}: {exc}") from None
    if codec is None:
        if len(stored) != raw_length:
            raise CorruptStoreError(f"{what}: holds {len(stored)} bytes, the manifest says {raw_length}: truncated?")
        return stored
    if raw_length > _spec.max_raw_length(len(stored)) or len(stored) >= raw_length:
        raise CorruptStoreError(f"{what}: compressed lengths break the ratio rule ({len(stored)} -> {raw_length})")
    try:
        return memoryview(codec.decompress(stored, raw_length))
    except CorruptSessionError as exc:
        raise CorruptStoreError(f"{what}: {exc}") from None


def describe(backend: LocalBackend | FsspecBackend, digest: str) -> str:
    return f"{backend.label}: object {layout.object_name(digest)}"


def read(backend: LocalBackend | FsspecBackend, digest: str, raw_length: int, hash: Hash) -> Any:
    """The raw bytes of object ``digest`` (private memory), checked against its name."""
    what = describe(backend, digest)
    try:
        data = backend.read(layout.object_name(digest), limit=layout.HEADER_SIZE + raw_length)
    except FileNotFoundError:
        raise CorruptStoreError(f"{what} is missing") from None
    payload = decode(data, raw_length, what)
    check(payload, digest, hash, what)
    return payload


def check(payload: Any, digest: str, hash: Hash, what: str) -> None:
    if hash.digest(payload) != digest:
        raise CorruptStoreError(f"{what}: its bytes do not match its name ({hash.name}): the data is damaged")
