"""A checkpoint's manifest: what it holds and where each byte is, as JSON.

The manifest says, for the one checkpoint it belongs to (its ``id``), what a
session container's index says for a file (the same ``meta``, the same
numbering of segments and blobs), but instead of offsets in a file it lists:

    objects   [[name, raw length], ...]        every object the checkpoint reads
    pieces    [[name, object, offset, length]]  a piece is a run of bytes of an
                                                object; ``name`` is its own hash
    segments  [[piece, ...], ...]               segment i is its pieces, concatenated
    blobs     [[piece, ...], ...]               blob i likewise

A signed manifest adds ``signature``: an HMAC-SHA256 of every piece (in
table order) and ``value``, an HMAC of the manifest's own bytes (with the 64
digits of ``value`` read as zeros).  The manifest names the checkpoint it
belongs to, so one cannot be passed off as another.

Parsing checks every number against the others before anything uses them:
pieces lie inside their objects, segments and blobs use pieces that exist,
lengths fit in 48 bits, the JSON nests at most 64 deep.
"""

from __future__ import annotations

from ..errors import CorruptStoreError, SignatureError
from . import hashing, layout

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time: `import mason` stays fast
    from typing import Any

MANIFEST_FORMAT = "mason.manifest"
MANIFEST_VERSION = 1
MAX_MANIFEST = 4 << 30
MAX_DEPTH = 64
MAX_LENGTH = 1 << 48
_PLACEHOLDER = b'"value":"' + b"0" * hashing.MAC_DIGITS + b'"'


class Manifest:
    """A parsed, checked manifest.

    ``objects``: list of (name, raw length); ``pieces``: list of (name,
    object number, offset, length); ``segments``/``blobs``: lists of piece
    numbers; ``macs``: piece number -> MAC (signed manifests), else None.
    """

    __slots__ = (
        "blobs",
        "created",
        "hash",
        "id",
        "macs",
        "message",
        "meta",
        "objects",
        "parent",
        "pieces",
        "segments",
    )

    def __init__(self, doc: dict) -> None:
        self.id: str = doc["id"]
        self.created: str = doc["created"]
        self.parent: str | None = doc["parent"]
        self.message: str | None = doc["message"]
        self.hash: str = doc["hash"]
        self.meta: dict = doc["meta"]
        self.objects: list = doc["objects"]
        self.pieces: list = doc["pieces"]
        self.segments: list = doc["segments"]
        self.blobs: list = doc["blobs"]
        signature = doc.get("signature")
        self.macs: list | None = None if signature is None else signature["pieces"]

    def length(self, piece_numbers: list[int]) -> int:
        pieces = self.pieces
        return sum(pieces[p][3] for p in piece_numbers)


def build(
    *,
    checkpoint_id: str,
    created: str,
    parent: str | None,
    message: str | None,
    hash_name: str,
    objects: list,
    pieces: list,
    segments: list,
    blobs: list,
    meta: dict,
    macs: list | None,
    key: bytes | None,
) -> bytes:
    """The manifest's bytes (sorted keys, no whitespace), signed when ``key`` is given."""
    doc: dict[str, Any] = {
        "blobs": blobs,
        "created": created,
        "format": MANIFEST_FORMAT,
        "hash": hash_name,
        "id": checkpoint_id,
        "message": message,
        "meta": meta,
        "objects": objects,
        "parent": parent,
        "pieces": pieces,
        "segments": segments,
        "version": MANIFEST_VERSION,
    }
    if key is not None:
        assert macs is not None and len(macs) == len(pieces)
        doc["signature"] = {"algorithm": hashing.MAC_ALGORITHM, "pieces": macs, "value": "0" * hashing.MAC_DIGITS}
    payload = layout.dumps(doc)
    if key is not None:
        if payload.count(_PLACEHOLDER) != 1:
            raise ValueError("the manifest must hold exactly one signature placeholder")
        value = hashing.manifest_mac(key, payload)
        payload = payload.replace(_PLACEHOLDER, b'"value":"' + value.encode("ascii") + b'"')
    return payload


def parse(payload: bytes, what: str, key: bytes | None) -> Manifest:
    """Check and parse a manifest's bytes (their hash already checked).

    With ``key``: the manifest must be signed with it (SignatureError
    otherwise), checked on these very bytes before anything in them is used.
    """
    import json

    if len(payload) > MAX_MANIFEST:
        raise CorruptStoreError(f"{what}: {len(payload)} bytes, over the manifest limit")
    try:
        doc = json.loads(payload.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise CorruptStoreError(f"{what}: not valid JSON ({type(exc).__name__}: {str(exc)[:80]})") from None
    if type(doc) is not dict:
        raise CorruptStoreError(f"{what}: not a JSON object")
    if _too_deep(doc):
        raise CorruptStoreError(f"{what}: nested deeper than {MAX_DEPTH} levels")
    if doc.get("format") != MANIFEST_FORMAT:
        raise CorruptStoreError(f"{what}: not a checkpoint manifest")
    if doc.get("version") != MANIFEST_VERSION:
        from ..errors import UnsupportedFormatError

        raise UnsupportedFormatError(f"{what}: manifest version {str(doc.get('version'))[:20]} is not 1")
    signature = doc.get("signature")
    if key is not None:
        _verify_signature(signature, payload, key, what)
    hex_digits = hashing.by_name(doc.get("hash"), what).hex_digits
    problem = _problem(doc, hex_digits)
    if problem:
        raise CorruptStoreError(f"{what}: {problem}")
    return Manifest(doc)


def _verify_signature(signature: Any, payload: bytes, key: bytes, what: str) -> None:
    if signature is None:
        raise SignatureError(f"{what}: this checkpoint is not signed, and a signing key was given")
    if type(signature) is not dict or signature.get("algorithm") != hashing.MAC_ALGORITHM:
        raise SignatureError(f"{what}: signed with an algorithm this mason cannot check")
    value = signature.get("value")
    if type(value) is not str or not layout.is_digest(value, hashing.MAC_DIGITS):
        raise SignatureError(f"{what}: the signature value is not a MAC: the manifest was altered")
    stored = b'"value":"' + value.encode("ascii") + b'"'
    if payload.count(stored) != 1:
        raise SignatureError(f"{what}: the signature cannot be located: the manifest was altered")
    computed = hashing.manifest_mac(key, payload.replace(stored, _PLACEHOLDER))
    if not hashing.same_mac(computed, value):
        raise SignatureError(
            f"{what}: the signature does not match: the checkpoint was altered after it was signed,"
            " or signed with another key"
        )


def _problem(doc: dict, hex_digits: int) -> str:
    for key in ("id", "parent"):
        value = doc.get(key)
        if not (value is None and key == "parent") and not (type(value) is str and layout.ID_PATTERN.fullmatch(value)):
            return f"{key} {layout._brief(value)} is not a checkpoint id"
    if type(doc.get("created")) is not str:
        return "created is not a time"
    if doc.get("message") is not None and type(doc.get("message")) is not str:
        return "message is not a string"
    if type(doc.get("meta")) is not dict:
        return "meta is not an object"
    objects = doc.get("objects")
    if type(objects) is not list:
        return "objects is not a list"
    for number, item in enumerate(objects):
        if not (
            type(item) is list
            and len(item) == 2
            and layout.is_digest(item[0], hex_digits)
            and type(item[1]) is int
            and 0 <= item[1] < MAX_LENGTH
        ):
            return f"object {number} is not [name, length]"
    pieces = doc.get("pieces")
    if type(pieces) is not list:
        return "pieces is not a list"
    count = len(objects)
    for number, item in enumerate(pieces):
        if not (
            type(item) is list
            and len(item) == 4
            and layout.is_digest(item[0], hex_digits)
            and type(item[1]) is int
            and 0 <= item[1] < count
            and type(item[2]) is int
            and type(item[3]) is int
            and item[2] >= 0
            and item[3] > 0
            and item[2] + item[3] <= objects[item[1]][1]
        ):
            return f"piece {number} is not [name, object, offset, length] inside one of the objects"
    for key in ("segments", "blobs"):
        table = doc.get(key)
        if type(table) is not list:
            return f"{key} is not a list"
        for number, numbers in enumerate(table):
            if type(numbers) is not list or not all(type(p) is int and 0 <= p < len(pieces) for p in numbers):
                return f"{key} {number} is not a list of piece numbers"
            if sum(pieces[p][3] for p in numbers) >= MAX_LENGTH:
                return f"{key} {number} is too long"
    signature = doc.get("signature")
    if signature is not None:
        if type(signature) is not dict:
            return "signature is not an object"
        macs = signature.get("pieces")
        if (
            type(macs) is not list
            or len(macs) != len(pieces)
            or not all(layout.is_digest(mac, hashing.MAC_DIGITS) for mac in macs)
        ):
            return f"signature pieces is not {len(pieces)} MACs"
    return ""


def _too_deep(doc: Any) -> bool:
    """Whether the parsed JSON nests deeper than MAX_DEPTH (iteratively: no recursion)."""
    stack = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            return True
        if type(value) is dict:
            stack.extend((item, depth + 1) for item in value.values() if type(item) in (dict, list))
        elif type(value) is list:
            stack.extend((item, depth + 1) for item in value if type(item) in (dict, list))
    return False
