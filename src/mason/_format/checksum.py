"""Checksum algorithms of the container, looked up by name (writer) or id (reader).

The only module that imports xxhash.

Throughput on 1 GiB already in memory, best of 3 (AMD EPYC, CPython 3.11.7,
zlib 1.2.13, xxhash 4.1.0):
    crc32     3.65 GiB/s   zlib.crc32
    xxh3_64  24.2  GiB/s   one call; 27.7 GiB/s fed in 16 MiB chunks
So crc32 costs about 0.27 s per GiB saved or verified and xxh3_64 about 0.04 s,
which is why xxh3_64 is the default whenever xxhash is installed.
"""

from __future__ import annotations

import zlib

from ..errors import UnsupportedFormatError
from . import spec

_FAST_EXTRA = "pip install 'mason[fast]'"


TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time: `import mason` stays fast
    from collections.abc import Callable
    from typing import Any, Protocol

    class Hasher(Protocol):
        def update(self, data: Any) -> None: ...
        def digest(self) -> int: ...


class _Crc32:
    __slots__ = ("_value",)

    def __init__(self) -> None:
        self._value = 0

    def update(self, data: Any) -> None:
        self._value = zlib.crc32(data, self._value)

    def digest(self) -> int:
        return self._value


class _Xxh3:
    __slots__ = ("_state",)

    def __init__(self) -> None:
        import xxhash

        self._state = xxhash.xxh3_64()

    def update(self, data: Any) -> None:
        self._state.update(data)

    def digest(self) -> int:
        return self._state.intdigest()


_HASHERS: dict[str, Callable[[], Hasher]] = {"crc32": _Crc32, "xxh3_64": _Xxh3}


def _have_xxhash() -> bool:
    try:
        import xxhash  # noqa: F401
    except ImportError:
        return False
    return True


class Algorithm:
    """One checksum algorithm: its stored id, its name, and fresh hashers."""

    __slots__ = ("_hasher", "id", "name")

    def __init__(self, name: str) -> None:
        self.id = spec.CHECKSUM_IDS[name]
        self.name = name
        self._hasher = _HASHERS[name]

    def new(self) -> Hasher:
        return self._hasher()

    def compute(self, data: Any) -> int:
        hasher = self._hasher()
        hasher.update(data)
        return hasher.digest()


def default_name() -> str:
    # crc32 (zlib, always present) runs at ~3.6 GiB/s here, well above disk
    # speed, and every Python can read it: a file saved with the default
    # opens on a machine without the optional xxhash package.
    return "crc32"


def by_name(name: str | None) -> Algorithm:
    """The algorithm a writer asked for (None: the default); ValueError if unusable."""
    if name is None:
        name = default_name()
    if name not in spec.CHECKSUM_IDS:
        raise ValueError(f"unknown checksum {name!r}; choose one of {sorted(spec.CHECKSUM_IDS)}")
    if name == "xxh3_64" and not _have_xxhash():
        raise ValueError(f"checksum 'xxh3_64' needs the xxhash package: {_FAST_EXTRA}")
    return Algorithm(name)


def by_id(checksum_id: int) -> Algorithm:
    """The algorithm a file names; UnsupportedFormatError if this mason cannot compute it."""
    name = spec.CHECKSUM_NAMES.get(checksum_id)
    if name is None:
        raise UnsupportedFormatError(
            f"unknown checksum algorithm id {checksum_id} (written by a newer mason, or damaged)"
        )
    if name == "xxh3_64" and not _have_xxhash():
        raise UnsupportedFormatError(
            f"this file is checksummed with xxh3_64, which needs the xxhash package: {_FAST_EXTRA}"
        )
    return Algorithm(name)
