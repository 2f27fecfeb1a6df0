"""Building hostile container files by hand, from the format's own struct layouts.

The writer would refuse to write most of these (that is the point), so they
are assembled here byte by byte: header, records, index, trailer, with every
checksum made right (as an attacker would), so that only the thing under test
is wrong.  ``assemble`` and ``with_index`` make format 1 files (a JSON index),
``V2`` takes a format 2 file apart and puts it back together (binary tables
and JSON metadata), and ``to_v1`` turns a file the writer made into the
format 1 file an older mason would have made of the same session.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import struct
import zlib

from mason._format import ContainerReader, spec
from mason._sessionmeta import unpack_variables

CRC32 = spec.CHECKSUM_IDS["crc32"]


def assemble(
    records, meta=None, *, index: dict | None = None, index_payload: bytes | None = None, key: bytes | None = None
) -> bytes:
    """A format 1 crc32 container of ``records``: (kind, stored payload, compression name, raw length).

    The index lists them as the writer would, with ``meta``; ``index``
    (a dict merged over the generated one) or ``index_payload`` (raw bytes)
    replace it.  ``key``: signed as format 1.1 was.
    """
    out = bytearray(
        spec.HEADER.pack(
            magic=spec.MAGIC, major=1, minor=spec.V1_SIGNED_MINOR if key else 0, checksum_id=CRC32, reserved=0
        )
    )
    header = bytes(out)
    macs: dict[bytes, list[str]] = {spec.SEGMENT: [], spec.BLOB: []}
    tables = {spec.SEGMENT: [], spec.BLOB: []}
    for kind, payload, codec, raw_length in records:
        pad = (-(len(out) + spec.RECORD.size)) % spec.ALIGNMENT if kind == spec.BLOB else 0
        crc = zlib.crc32(payload)
        out += spec.RECORD.pack(
            kind=kind,
            compression=spec.COMPRESSION_IDS[codec],
            pad=pad,
            reserved=0,
            length=len(payload),
            raw_length=raw_length,
            checksum=crc,
        ) + bytes(pad)
        tables[kind].append(
            {
                "checksum": f"{crc:016x}",
                "compression": codec,
                "length": len(payload),
                "offset": len(out),
                "pad": pad,
                "raw_length": raw_length,
            }
        )
        if key:
            macs[kind].append(hmac.new(key, payload, hashlib.sha256).hexdigest())
        out += payload
    if index_payload is None:
        full = {
            "blobs": tables[spec.BLOB],
            "checksum": "crc32",
            "meta": {} if meta is None else meta,
            "segments": tables[spec.SEGMENT],
        }
        if key:
            full["signature"] = {
                "algorithm": "hmac-sha256",
                "blobs": macs[spec.BLOB],
                "segments": macs[spec.SEGMENT],
                "value": "0" * 64,
            }
        full.update(index or {})
        index_payload = json.dumps(full, sort_keys=True, separators=(",", ":")).encode()
        if key:
            value = hmac.new(key, b"mason signature v1\0" + header + index_payload, hashlib.sha256).hexdigest()
            index_payload = index_payload.replace(b'"value":"' + b"0" * 64, b'"value":"' + value.encode())
    return bytes(out) + _index_and_trailer(len(out), index_payload)


def _index_and_trailer(index_offset: int, payload: bytes, checksum_id: int = CRC32) -> bytes:
    """The index record and trailer; ``checksum_id`` crc32, or crc32+xxh3
    (whose value for a record under 1 MiB is its CRC-32 too)."""
    assert checksum_id == CRC32 or (checksum_id == spec.CHECKSUM_IDS["crc32+xxh3"] and len(payload) < 1 << 20)
    crc = zlib.crc32(payload)
    record = spec.RECORD.pack(
        kind=spec.INDEX, compression=0, pad=0, reserved=0, length=len(payload), raw_length=len(payload), checksum=crc
    )
    total = index_offset + len(record) + len(payload) + spec.TRAILER.size
    return (
        record
        + payload
        + spec.TRAILER.pack(
            index_offset=index_offset,
            index_length=len(payload),
            index_checksum=crc,
            container_length=total,
            checksum_id=checksum_id,
            reserved=bytes(7),
            end_magic=spec.END_MAGIC,
        )
    )


def _index_payload(data: bytes) -> bytes:
    trailer = spec.TRAILER.unpack(data, len(data) - spec.TRAILER.size)
    start = trailer.index_offset + spec.RECORD.size
    return data[start : start + trailer.index_length]


def index_of(data: bytes) -> dict:
    """The JSON index of a format 1 file."""
    assert data[10:12] == b"\x01\x00", "a format 1 file"
    return json.loads(_index_payload(data))


def with_index(data: bytes, edit) -> bytes:
    """A format 1 crc32 file ``data`` with its index changed by ``edit(index)``, checksums made right."""
    trailer = spec.TRAILER.unpack(data, len(data) - spec.TRAILER.size)
    index = index_of(data)
    edit(index)
    payload = json.dumps(index, sort_keys=True, separators=(",", ":")).encode()
    return data[: trailer.index_offset] + _index_and_trailer(trailer.index_offset, payload)


def to_v1(data: bytes, compression: str | None = None) -> bytes:
    """The format 1 crc32 file of the same session (or container) as ``data``:
    a record per segment, and the variables as a list of records; each
    record compressed with zlib where that makes it smaller, if asked."""
    with ContainerReader.open(data) as reader:
        segments = [bytes(reader.segment(i)) for i in range(reader.segment_count)]
        blobs = [bytes(reader.blob(i)) for i in range(reader.blob_count)]
        meta = dict(reader.meta)
    if isinstance(meta.get("variables"), dict):
        meta["variables"] = unpack_variables(meta["variables"], [len(s) for s in segments], [len(b) for b in blobs])
    records = []
    # Blobs first, as the writer puts them: they are written while their variable is pickled.
    for kind, payload in [(spec.BLOB, blob) for blob in blobs] + [(spec.SEGMENT, s) for s in segments]:
        packed = zlib.compress(payload, 1) if compression else payload
        if len(packed) < len(payload):
            records.append((kind, packed, "zlib", len(payload)))
        else:
            records.append((kind, payload, None, len(payload)))
    return assemble(records, meta)


class V2:
    """A format 2 crc32 (or crc32+xxh3) file taken apart, to be changed and put back together.

    ``rows``: the record table, as lists [kind, compression, pad, reserved,
    length, raw_length, checksum]; ``groups``: segments per SEGM record;
    ``lengths``: segment lengths; ``signature``: its id; ``macs``: the
    signature's bytes (record MACs, then the index MAC) or b""; ``meta``: the
    metadata (a dict) or ``meta_bytes``.  ``bytes(v2)`` assembles the file,
    every checksum right: the records as they were (``body``: the bytes
    from the header's end to the index), then the index built from these
    fields, with ``head`` overriding fields of its head.
    """

    def __init__(self, data: bytes) -> None:
        assert data[10:12] == b"\x02\x00", "a format 2 file"
        self.header = data[: spec.HEADER.size]
        trailer = spec.TRAILER.unpack(data, len(data) - spec.TRAILER.size)
        self.body = data[spec.HEADER.size : trailer.index_offset]
        payload = _index_payload(data)
        head = spec.INDEX_HEAD.unpack(payload)
        at = spec.INDEX_HEAD.size
        self.rows = [list(row) for row in spec.RECORD.struct.iter_unpack(payload[at : at + head.records * 32])]
        at += head.records * 32
        groups = sum(row[0] == spec.SEGMENT for row in self.rows)
        self.groups = list(struct.unpack_from(f"<{groups}Q", payload, at))
        at += groups * 8
        self.lengths = list(struct.unpack_from(f"<{head.segments}Q", payload, at))
        at += head.segments * 8
        self.signature = head.signature
        self.macs = payload[at : len(payload) - head.meta_length]
        self.meta_bytes: bytes | None = None
        self.meta = json.loads(payload[len(payload) - head.meta_length :])
        self.head: dict = {}

    def index_payload(self) -> bytes:
        meta = self.meta_bytes
        if meta is None:
            meta = json.dumps(self.meta, sort_keys=True, separators=(",", ":")).encode()
        fields = dict(
            records=len(self.rows),
            segments=len(self.lengths),
            meta_length=len(meta),
            signature=self.signature,
            reserved=bytes(7),
        )
        fields.update(self.head)
        return b"".join(
            [
                spec.INDEX_HEAD.pack(**fields),
                *(spec.RECORD.struct.pack(*row) for row in self.rows),
                struct.pack(f"<{len(self.groups)}Q", *self.groups),
                struct.pack(f"<{len(self.lengths)}Q", *self.lengths),
                self.macs,
                meta,
            ]
        )

    def __bytes__(self) -> bytes:
        end = len(self.header) + len(self.body)
        return self.header + self.body + _index_and_trailer(end, self.index_payload(), self.header[14])


def with_meta(data: bytes, edit) -> bytes:
    """A format 2 crc32 file ``data`` with its metadata changed by ``edit(meta)``."""
    v2 = V2(data)
    edit(v2.meta)
    return bytes(v2)


def session_meta(variables, **fields) -> dict:
    """Session metadata as mason writes it, over ``variables`` (name, segment, blobs)."""
    meta = {
        "kind": "mason.session",
        "module": "__main__",
        "module_kind": "main",
        "variables": [
            {"name": name, "type": "object", "stored": "value", "segment": segment, "blobs": list(blobs), "size": 1}
            for name, segment, blobs in variables
        ],
        "skipped": [],
        "environment": {"python": [3, 11, 0], "packages": {}},
    }
    meta.update(fields)
    return meta


def crc_preserving_patch(block: bytes, change_at: int, new: bytes, fix_at: int) -> bytes:
    """``block`` with ``new`` written at ``change_at`` and the 4 bytes at
    ``fix_at`` adjusted so that its CRC-32 is unchanged (CRC is affine over GF(2))."""
    target = zlib.crc32(block)
    out = bytearray(block)
    out[change_at : change_at + len(new)] = new
    zero = zlib.crc32(bytes(len(block)))
    basis: dict[int, tuple[int, int]] = {}
    for bit in range(32):
        probe = bytearray(len(block))
        probe[fix_at + bit // 8] = 1 << (bit % 8)
        value, mask = zlib.crc32(probe) ^ zero, 1 << bit
        for top in sorted(basis, reverse=True):
            if value >> top & 1:
                value ^= basis[top][0]
                mask ^= basis[top][1]
        if value:
            basis[value.bit_length() - 1] = (value, mask)
    want, flips = zlib.crc32(out) ^ target, 0
    for top in sorted(basis, reverse=True):
        if want >> top & 1:
            want ^= basis[top][0]
            flips ^= basis[top][1]
    assert want == 0, "the window cannot fix this CRC"
    for bit in range(32):
        if flips >> bit & 1:
            out[fix_at + bit // 8] ^= 1 << (bit % 8)
    assert zlib.crc32(out) == target
    return bytes(out)
