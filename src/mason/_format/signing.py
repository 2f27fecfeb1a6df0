"""Signatures: who made this file (HMAC-SHA256 with a shared secret key).

A signed container (format 1.1) has a ``"signature"`` key in its index:

    {"algorithm": "hmac-sha256",
     "segments": [hex MAC of each segment's stored payload, in table order],
     "blobs":    [hex MAC of each blob's stored payload, in table order],
     "value":    hex MAC of the header bytes followed by the index payload}

``value`` is computed over the index payload as written, with its own 64 hex
digits replaced by zeros; the index also holds every record's offset,
length and checksum, so the one MAC binds the metadata, the table and (with
the per-record MACs, which are cryptographic where the checksums are not)
every byte of every pickle segment and blob.  Per-record MACs let a reader
check each segment before unpickling it and each blob when it is first
used, so memory-mapped loading stays lazy.

Unsigned files are plain format 1.0; readers of 1.0 ignore the key.
"""

from __future__ import annotations

import os
import re

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time: `import mason` stays fast
    from typing import Any

from ..errors import CorruptSessionError, SignatureError

__all__ = ["ALGORITHM", "ENV_VAR", "resolve_key", "record_mac", "seal", "Signature"]

ALGORITHM = "hmac-sha256"
#: environment variable holding the signing key (UTF-8 text) when no key= is given
ENV_VAR = "MASON_SIGNING_KEY"
_DIGITS = 64
_PLACEHOLDER = b'"value":"' + b"0" * _DIGITS + b'"'
_MAC_HEX = re.compile(f"[0-9a-f]{{{_DIGITS}}}")
_DOMAIN = b"mason signature v1\0"  # a MAC of a mason index is never a MAC of anything else


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


def record_mac(key: bytes, payload: Any) -> str:
    import hashlib
    import hmac  # both only when signing: they add milliseconds to `import mason`

    return hmac.new(key, payload, hashlib.sha256).hexdigest()


def placeholder(segment_macs: list[str], blob_macs: list[str]) -> dict[str, Any]:
    """The signature object to put in the index before sealing it."""
    return {"algorithm": ALGORITHM, "blobs": blob_macs, "segments": segment_macs, "value": "0" * _DIGITS}


def _index_mac(key: bytes, header: bytes, zeroed_payload: bytes) -> bytes:
    import hashlib
    import hmac

    mac = hmac.new(key, _DOMAIN, hashlib.sha256)
    mac.update(header)
    mac.update(zeroed_payload)
    return mac.hexdigest().encode("ascii")


def seal(payload: bytes, header: bytes, key: bytes) -> bytes:
    """The index payload with the placeholder ``value`` replaced by the MAC."""
    if payload.count(_PLACEHOLDER) != 1:
        raise ValueError("the index must hold exactly one signature placeholder")
    value = _index_mac(key, header, payload)
    return payload.replace(_PLACEHOLDER, b'"value":"' + value + b'"')


class Signature:
    """A parsed ``"signature"`` index entry; ``verify`` checks it with a key."""

    def __init__(self, obj: Any, segments: int, blobs: int) -> None:
        if not isinstance(obj, dict):
            raise CorruptSessionError("index: signature is not an object")
        self.algorithm = obj.get("algorithm")
        tables = []
        for key, count in (("segments", segments), ("blobs", blobs)):
            macs = obj.get(key)
            if (
                not isinstance(macs, list)
                or len(macs) != count
                or not all(isinstance(m, str) and _MAC_HEX.fullmatch(m) for m in macs)
            ):
                raise CorruptSessionError(f"index: signature {key} is not {count} MACs")
            tables.append(macs)
        value = obj.get("value")
        if not isinstance(value, str) or not _MAC_HEX.fullmatch(value):
            raise CorruptSessionError("index: signature value is not a MAC")
        self.segments, self.blobs = tables
        self.value = value

    def verify_index(self, key: bytes, header: bytes, payload: bytes) -> None:
        if self.algorithm != ALGORITHM:
            raise SignatureError(f"signed with {self.algorithm!r}, which this mason cannot check")
        stored = b'"value":"' + self.value.encode("ascii") + b'"'
        if payload.count(stored) != 1:
            raise SignatureError("the signature cannot be located in the index: the file was altered")
        import hmac

        computed = _index_mac(key, header, payload.replace(stored, _PLACEHOLDER))
        if not hmac.compare_digest(computed, self.value.encode("ascii")):
            raise SignatureError(
                "the signature does not match: the file was altered after signing, or signed with another key"
            )

    def verify_record(self, kind: str, number: int, mac: str) -> None:
        """``mac``: :func:`record_mac` of the stored payload of that record."""
        import hmac

        expected = (self.segments if kind == "segment" else self.blobs)[number]
        if not hmac.compare_digest(mac, expected):
            raise SignatureError(f"{kind} {number} does not match its signature: the file was altered after signing")


def new_record_mac(key: bytes) -> Any:
    """An incremental :func:`record_mac` (``update``, then ``hexdigest``)."""
    import hashlib
    import hmac

    return hmac.new(key, digestmod=hashlib.sha256)
