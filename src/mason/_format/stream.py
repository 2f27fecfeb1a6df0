"""Read one container off a non-seekable stream, front to back, checking
each record as it arrives; the reader then checks the index on the bytes in
memory as it would a file's."""

from __future__ import annotations

from ..errors import CorruptSessionError
from . import checksum as _checksum
from . import compression as _compression
from . import spec
from .index import check_magic, parse_header, shape_problem
from .sources import CHUNK

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time: `import mason` stays fast
    from typing import Any, BinaryIO


def scan_stream(stream: BinaryIO, verify_blobs: bool) -> tuple[bytearray, set[int]]:
    """Read one container off a non-seekable stream, checking records as they arrive.

    Returns its bytes and the payload offsets already checksummed.  Memory
    grows only with bytes actually read, so a damaged length cannot make us
    allocate more than the stream holds.
    """
    buf = bytearray()
    verified: set[int] = set()

    def take(n: int, what: str, hasher: Any = None) -> None:
        end = len(buf) + n
        while len(buf) < end:
            chunk = stream.read(min(end - len(buf), CHUNK))
            if not chunk:
                raise CorruptSessionError(f"truncated: the stream ends inside {what} at offset {len(buf)}")
            if hasher is not None:
                hasher.update(chunk)
            buf.extend(chunk)

    def small(n: int, what: str) -> bytes:
        take(n, what)
        return bytes(buf[len(buf) - n :])

    try:
        head = small(spec.HEADER.size, "the header")
    except CorruptSessionError:
        check_magic(bytes(buf))  # a short stream that is not mason at all says so
        raise
    header = parse_header(head)
    algo = _checksum.by_id(header.checksum_id)
    counts = {kind: 0 for kind in spec.RECORD_KINDS}
    # Version 1 has a segment per SEGM record; version 2 may have several.
    what = {spec.SEGMENT: "segment" if header.major == 1 else "segment record", spec.BLOB: "blob", spec.INDEX: "index"}
    while True:
        at = len(buf)
        record = spec.RECORD.unpack(small(spec.RECORD.size, "a record header"))
        if record.kind not in spec.RECORD_KINDS:
            raise CorruptSessionError(f"unknown record kind {record.kind!r} at offset {at}")
        name = f"{what[record.kind]} {counts[record.kind]} (offset {at})"
        counts[record.kind] += 1
        codec = _compression.by_id(record.compression)
        offset = at + spec.RECORD.size + record.pad
        problem = shape_problem(record.kind, offset, record.pad, record.length, record.raw_length, codec)
        if record.reserved:
            problem = "reserved bits set"
        if problem:
            raise CorruptSessionError(f"{name}: {problem}")
        if any(small(record.pad, "padding")):
            raise CorruptSessionError(f"{name}: padding is not zero")
        check = record.kind != spec.BLOB or verify_blobs or codec is not None
        hasher, expected = algo.checker(record.checksum) if check else (None, 0)
        take(record.length, name, hasher)
        if hasher is not None:
            if hasher.digest() != expected:
                raise CorruptSessionError(f"{name}: checksum mismatch, the data is damaged")
            verified.add(offset)
        if record.kind == spec.INDEX:
            break
    take(spec.TRAILER.size, "the trailer")
    return buf, verified
