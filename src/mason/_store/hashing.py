"""Object names (content hashes) and MACs of a checkpoint store.

The only module of the store that imports xxhash (lazily).

A store names every object by a hash of its bytes, chosen when the store is
created: ``xxh3_128`` when the xxhash package is installed (``mason[fast]``),
else ``sha256`` (standard library).  Measured on 256 MiB in memory, best of
3 (AMD EPYC VM, CPython 3.11, xxhash 3.x, OpenSSL with SHA extensions):

    xxh3_128   14.4 GiB/s    non-cryptographic: detects damage, not tampering
    sha256      1.46 GiB/s   hardware SHA-256; about 0.4 GiB/s without it
    blake2b     0.56 GiB/s   (not used: slower than sha256 wherever the CPU has SHA extensions)
    crc32       2.5 GiB/s    (the container's default checksum; 32 bits are too few to name objects)

Every checkpoint hashes the whole session (that is how an array changed in
place is found), so the hash's speed bounds how fast an unchanged session is
checkpointed: xxh3_128 costs about 0.07 s per GiB, sha256 0.7 s.  Names are
128 or 256 bits: accidental collisions are out of reach, but a name made by a
non-cryptographic hash does not bind content against someone who writes into
the store, so a signed checkpoint carries an HMAC-SHA256 of every piece it
reads (see manifest.py).
"""

from __future__ import annotations

from .._format.checksum import _have_xxhash as have_xxhash
from ..errors import UnsupportedFormatError

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time: `import mason` stays fast
    from collections.abc import Callable
    from typing import Any

_FAST_EXTRA = "pip install 'mason[fast]'"


def _xxh3_128() -> Callable[[Any], str]:
    import xxhash

    xxh3 = xxhash.xxh3_128_hexdigest
    return lambda data: xxh3(data)


def _sha256() -> Callable[[Any], str]:
    import hashlib

    sha256 = hashlib.sha256
    return lambda data: sha256(data).hexdigest()


_ALGORITHMS: dict[str, tuple[int, Callable[[], Callable[[Any], str]]]] = {
    "xxh3_128": (32, _xxh3_128),
    "sha256": (64, _sha256),
}


class Hash:
    """One naming hash: ``name``, ``hex_digits``, and ``digest(data) -> hex str``."""

    __slots__ = ("digest", "hex_digits", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self.hex_digits, make = _ALGORITHMS[name]
        self.digest = make()


def default_name() -> str:
    return "xxh3_128" if have_xxhash() else "sha256"


def by_name(name: Any, where: str = "") -> Hash:
    """The hash a store or manifest names; UnsupportedFormatError if this mason cannot compute it."""
    prefix = f"{where}: " if where else ""
    if name not in _ALGORITHMS:
        raise UnsupportedFormatError(f"{prefix}unknown hash {str(name)[:40]!r} (written by a newer mason, or damaged)")
    if name == "xxh3_128" and not have_xxhash():
        raise UnsupportedFormatError(f"{prefix}this store names objects by xxh3_128, which needs xxhash: {_FAST_EXTRA}")
    return Hash(name)


def names() -> list[str]:
    return sorted(_ALGORITHMS)


# -- MACs ------------------------------------------------------------------------

MAC_ALGORITHM = "hmac-sha256"
MAC_DIGITS = 64
#: A MAC of a manifest is never a MAC of anything else (pieces, container indexes).
MANIFEST_DOMAIN = b"mason checkpoint manifest v1\0"


def piece_mac(key: bytes, data: Any) -> str:
    import hashlib
    import hmac  # only when signing: they add milliseconds to `import mason`

    return hmac.new(key, data, hashlib.sha256).hexdigest()


def manifest_mac(key: bytes, zeroed_payload: bytes) -> str:
    import hashlib
    import hmac

    mac = hmac.new(key, MANIFEST_DOMAIN, hashlib.sha256)
    mac.update(zeroed_payload)
    return mac.hexdigest()


def same_mac(a: str, b: str) -> bool:
    import hmac

    return hmac.compare_digest(a.encode("ascii"), b.encode("ascii"))


class MacCache:
    """MACs this process computed of its own live bytes, by piece name and key.

    An unchanged piece of a signed session need not be MAC'd again on every
    checkpoint.  Only MACs computed here from the bytes being saved (or taken
    from a manifest whose signature this key verified) go in, so a store
    that someone else writes into cannot put a MAC here.  Keys are held as
    their SHA-256, never as themselves.
    """

    LIMIT = 1 << 20  # entries (about 150 MB at most); past it, start over

    def __init__(self) -> None:
        self._by_key: dict[bytes, dict[str, str]] = {}

    def table(self, key: bytes) -> dict[str, str]:
        import hashlib

        tag = hashlib.sha256(b"mason mac cache\0" + key).digest()
        table = self._by_key.get(tag)
        if table is None or len(table) > self.LIMIT:
            self._by_key.clear()  # one key at a time in practice: keep memory bounded
            table = self._by_key[tag] = {}
        return table


MAC_CACHE = MacCache()
