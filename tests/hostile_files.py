"""Building hostile container files by hand, from the format's own struct layouts.

The writer would refuse to write most of these (that is the point), so they
are assembled here byte by byte: header, records, JSON index, trailer, with
every checksum made right (as an attacker would), so that only the thing
under test is wrong.
"""

from __future__ import annotations

import json
import zlib

from mason._format import spec

CRC32 = spec.CHECKSUM_IDS["crc32"]


def assemble(records, meta=None, *, index: dict | None = None, index_payload: bytes | None = None) -> bytes:
    """A crc32 container of ``records``: (kind, stored payload, compression name, raw length).

    The index lists them as the writer would, with ``meta``; ``index``
    (a dict merged over the generated one) or ``index_payload`` (raw bytes)
    replace it.
    """
    out = bytearray(
        spec.HEADER.pack(
            magic=spec.MAGIC, major=spec.FORMAT_MAJOR, minor=spec.FORMAT_MINOR, checksum_id=CRC32, reserved=0
        )
    )
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
        out += payload
    if index_payload is None:
        full = {
            "blobs": tables[spec.BLOB],
            "checksum": "crc32",
            "meta": {} if meta is None else meta,
            "segments": tables[spec.SEGMENT],
        }
        full.update(index or {})
        index_payload = json.dumps(full, sort_keys=True, separators=(",", ":")).encode()
    return bytes(out) + _index_and_trailer(len(out), index_payload)


def _index_and_trailer(index_offset: int, payload: bytes) -> bytes:
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
            checksum_id=CRC32,
            reserved=bytes(7),
            end_magic=spec.END_MAGIC,
        )
    )


def index_of(data: bytes) -> dict:
    trailer = spec.TRAILER.unpack(data, len(data) - spec.TRAILER.size)
    start = trailer.index_offset + spec.RECORD.size
    return json.loads(data[start : start + trailer.index_length])


def with_index(data: bytes, edit) -> bytes:
    """A crc32 file ``data`` with its index changed by ``edit(index)``, checksums made right."""
    trailer = spec.TRAILER.unpack(data, len(data) - spec.TRAILER.size)
    index = index_of(data)
    edit(index)
    payload = json.dumps(index, sort_keys=True, separators=(",", ":")).encode()
    return data[: trailer.index_offset] + _index_and_trailer(trailer.index_offset, payload)


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
