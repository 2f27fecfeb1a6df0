"""Signatures: who made this file (HMAC-SHA256 with a shared secret key).

Every record (segments and blobs) has a MAC of its stored payload, and the
index has one over the header and the index itself, which holds every
record's MAC, offset, length and checksum: so the one index MAC binds the
metadata, the tables and (with the record MACs, which are cryptographic
where the checksums are not) every byte of every pickle segment and blob.
Per-record MACs let a reader check a record before it unpickles it and a
blob when it is first used, so memory-mapped loading stays lazy.

Version 2 stores the MACs as raw bytes in the binary index (the index MAC
last, computed with its own 32 bytes read as zeros).  Version 1 (read only)
stored them as hex in a ``"signature"`` key of the JSON index:

    {"algorithm": "hmac-sha256",
     "segments": [hex MAC of each segment's stored payload, in table order],
     "blobs":    [hex MAC of each blob's stored payload, in table order],
     "value":    hex MAC of the header bytes followed by the index payload}

with ``value`` computed over the payload as written, its own 64 hex digits
replaced by zeros.
"""

from __future__ import annotations

import os
import re

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time: `import mason` stays fast
    from typing import Any

from ..errors import CorruptSessionError, SignatureError
from . import spec

__all__ = ["ALGORITHM", "ENV_VAR", "resolve_key", "record_mac", "index_mac", "Signature", "JsonSignature"]

ALGORITHM = "hmac-sha256"
#: environment variable holding the signing key (UTF-8 text) when no key= is given
ENV_VAR = "MASON_SIGNING_KEY"
_DIGITS = 64
_PLACEHOLDER = b'"value":"' + b"0" * _DIGITS + b'"'
_MAC_HEX = re.compile(f"[0-9a-f]{{{_DIGITS}}}")
# A MAC of a mason index is never a MAC of anything else, nor of the other version's index.
_DOMAIN_V1 = b"mason signature v1\0"
_DOMAIN = b"mason signature v2\0"


def resolve_key(key: Any) -> bytes | None:
    """The key to sign or verify with: ``key=`` or, when it is None, the
    environment variable; ``False`` means "no signing" explicitly."""
    if key is False:
        return None
    if key is None:
        key = os.environ.get(ENV_VAR) or None
        if key is None:
            return None
    if isinstance(key, str):
        key = key.encode("utf-8")
    elif isinstance(key, (bytes, bytearray, memoryview)):
        key = bytes(key)
    else:
        raise TypeError(f"key must be bytes or str (or False for none), not {type(key).__name__}")
    if not key:
        raise ValueError("the signing key is empty")
    return key


def record_mac(key: bytes, payload: Any) -> bytes:
    """The MAC of one record's stored payload (32 bytes)."""
    import hashlib
    import hmac  # both only when signing: they add milliseconds to `import mason`

    return hmac.new(key, payload, hashlib.sha256).digest()


def new_record_mac(key: bytes) -> Any:
    """An incremental :func:`record_mac` (``update``, then ``digest``)."""
    import hashlib
    import hmac

    return hmac.new(key, digestmod=hashlib.sha256)


def index_mac(key: bytes, header: bytes, zeroed_payload: Any) -> bytes:
    """The MAC of a version 2 index: the header bytes, then the index payload
    with the 32 bytes of this MAC read as zeros."""
    import hashlib
    import hmac

    mac = hmac.new(key, _DOMAIN, hashlib.sha256)
    mac.update(header)
    mac.update(zeroed_payload)
    return mac.digest()


class Signature:
    """The MACs a signed container carries: one per SEGM record (``segments``,
    in file order) and one per blob (``blobs``), each 32 bytes, and the index
    MAC (``value``), 32 bytes at ``value_at`` in the index payload."""

    def __init__(self, segments: list[bytes], blobs: list[bytes], value: bytes, value_at: int) -> None:
        self.algorithm: Any = ALGORITHM  # version 1: whatever the file says, refused if not this
        self.segments = segments
        self.blobs = blobs
        self.value = value
        self.value_at = value_at

    def verify_index(self, key: bytes, header: bytes, payload: bytes) -> None:
        import hmac

        at = self.value_at
        zeroed = b"".join((payload[:at], bytes(spec.MAC_SIZE), payload[at + spec.MAC_SIZE :]))
        if not hmac.compare_digest(index_mac(key, header, zeroed), self.value):
            raise SignatureError(
                "the signature does not match: the file was altered after signing, or signed with another key"
            )

    def verify_record(self, kind: str, number: int, mac: bytes, what: str) -> None:
        """``mac``: :func:`record_mac` of the stored payload of record ``number``
        of its table (``kind``: "segment" or "blob"); ``what`` names it."""
        import hmac

        expected = (self.segments if kind == "segment" else self.blobs)[number]
        if not hmac.compare_digest(mac, expected):
            raise SignatureError(f"{what} does not match its signature: the file was altered after signing")


class JsonSignature(Signature):
    """The ``"signature"`` key of a version 1 index, checked for shape."""

    def __init__(self, obj: Any, segments: int, blobs: int) -> None:
        if not isinstance(obj, dict):
            raise CorruptSessionError("index: signature is not an object")
        tables = []
        for key, count in (("segments", segments), ("blobs", blobs)):
            macs = obj.get(key)
            if (
                not isinstance(macs, list)
                or len(macs) != count
                or not all(isinstance(m, str) and _MAC_HEX.fullmatch(m) for m in macs)
            ):
                raise CorruptSessionError(f"index: signature {key} is not {count} MACs")
            tables.append([bytes.fromhex(m) for m in macs])
        value = obj.get("value")
        if not isinstance(value, str) or not _MAC_HEX.fullmatch(value):
            raise CorruptSessionError("index: signature value is not a MAC")
        super().__init__(tables[0], tables[1], bytes.fromhex(value), -1)
        self.algorithm = obj.get("algorithm")
        self._hex = value

    def verify_index(self, key: bytes, header: bytes, payload: bytes) -> None:
        if self.algorithm != ALGORITHM:
            raise SignatureError(f"signed with {self.algorithm!r}, which this mason cannot check")
        stored = b'"value":"' + self._hex.encode("ascii") + b'"'
        if payload.count(stored) != 1:
            raise SignatureError("the signature cannot be located in the index: the file was altered")
        import hashlib
        import hmac

        mac = hmac.new(key, _DOMAIN_V1, hashlib.sha256)
        mac.update(header)
        mac.update(payload.replace(stored, _PLACEHOLDER))
        if not hmac.compare_digest(mac.hexdigest().encode("ascii"), self._hex.encode("ascii")):
            raise SignatureError(
                "the signature does not match: the file was altered after signing, or signed with another key"
            )
