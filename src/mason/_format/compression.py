"""Payload compression codecs of the container, looked up by name (writer) or id (reader).

The only module that imports zstandard and lz4.

Default levels favour speed, because a save sits in the user's interactive
loop; pass ``level=`` for smaller files.  On a 19 MB protocol-5 pickle of
strings and numpy arrays (ratio, compression speed):
    zlib 1: 3.9x 127 MB/s    zlib 6: 4.3x  19 MB/s
    lzma 0: 7.3x  30 MB/s    lzma 6: 9.8x 1.7 MB/s
    zstd 3: 5.2x 154 MB/s    (zstd's own default, better and faster than zlib 1)
    lz4  0: 2.1x 612 MB/s
"""

from __future__ import annotations

import zlib

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time: `import mason` stays fast
    from collections.abc import Callable
    from typing import Any

from ..errors import CorruptSessionError, UnsupportedFormatError
from . import spec

_FAST_EXTRA = "pip install 'mason[fast]'"


class Codec:
    """One compression algorithm: its id in the file, level range, and both directions."""

    __slots__ = ("_compress", "_decompress", "default_level", "id", "levels", "name", "package")

    def __init__(
        self,
        name: str,
        package: str | None,
        default_level: int,
        levels: range,
        compress: Callable[[Any, int], bytes],
        decompress: Callable[[Any, int], bytearray],
    ) -> None:
        self.name = name
        self.id = spec.COMPRESSION_IDS[name]
        self.package = package  # third-party package it needs, None for stdlib
        self.default_level = default_level
        self.levels = levels
        self._compress = compress
        self._decompress = decompress

    def available(self) -> bool:
        if self.package is None:
            return True
        try:
            __import__(self.package)
        except ImportError:
            return False
        return True

    def check_level(self, level: int | None) -> int:
        if level is None:
            return self.default_level
        if type(level) is not int or level not in self.levels:
            raise ValueError(
                f"{self.name} level must be an int in {self.levels.start}..{self.levels.stop - 1}, not {level!r}"
            )
        return level

    def compress(self, data: Any, level: int) -> bytes:
        return self._compress(data, level)

    def decompress(self, data: Any, raw_length: int) -> bytearray:
        """Exactly raw_length bytes out, or CorruptSessionError.

        ``raw_length`` comes from the file, so nothing is allocated from it:
        the output grows with what the data really decompresses to, and
        decompression stops as soon as it would exceed ``raw_length``.
        """
        try:
            out = self._decompress(data, raw_length)
        except CorruptSessionError:
            raise
        # Each library has its own error class (zlib.error, LZMAError, ZstdError,
        # lz4's RuntimeError); all mean the same thing here.
        except Exception as exc:
            raise CorruptSessionError(f"{self.name} data does not decompress: {exc}") from exc
        if len(out) != raw_length:
            raise CorruptSessionError(f"{self.name} data decompresses to {len(out)} bytes, expected {raw_length}")
        return out


# Decompressors are asked for at most _OUT_STEP bytes at a time and fed at most
# _IN_STEP bytes at a time: memory follows the real output in steps, and the
# copies some of them make of input they have not consumed yet stay small.
_OUT_STEP = 16 << 20
_IN_STEP = 1 << 20


def _room(out: bytearray, raw_length: int) -> int:
    # One byte more than is missing: output that goes past raw_length shows at once.
    return min(_OUT_STEP, raw_length - len(out) + 1)


def _grow(out: bytearray, chunk: Any, raw_length: int, name: str) -> None:
    out += chunk
    if len(out) > raw_length:
        raise CorruptSessionError(f"{name} data decompresses to more than the {raw_length} bytes declared")


def _zlib_decompress(data: Any, raw_length: int) -> bytearray:
    d = zlib.decompressobj()
    out = bytearray()
    view = memoryview(data)
    for start in range(0, len(view), _IN_STEP):
        pending: Any = view[start : start + _IN_STEP]
        while pending and not d.eof:
            chunk = d.decompress(pending, _room(out, raw_length))
            if not chunk and len(d.unconsumed_tail) == len(pending):
                raise CorruptSessionError("zlib data makes no progress")
            _grow(out, chunk, raw_length, "zlib")
            pending = d.unconsumed_tail
        if d.eof:
            if pending or d.unused_data or start + _IN_STEP < len(view):
                raise CorruptSessionError("zlib data has bytes after its end")
            return out
    raise CorruptSessionError("zlib data ends before its end marker")


def _drain(name: str, d: Any, data: Any, raw_length: int) -> bytearray:
    """Run a decompressor that keeps its unconsumed input itself (lzma's, lz4's)."""
    out = bytearray()
    view = memoryview(data)
    pos = 0
    while not d.eof:
        if d.needs_input and pos < len(view):
            piece: Any = view[pos : pos + _IN_STEP]
            pos += len(piece)
        else:  # pending output, or the input is used up: ask for what is left
            piece = b""
        chunk = d.decompress(piece, max_length=_room(out, raw_length))
        if not chunk and not piece:
            raise CorruptSessionError(f"{name} data ends before its end marker")
        _grow(out, chunk, raw_length, name)
    if d.unused_data or pos < len(view):
        raise CorruptSessionError(f"{name} data has bytes after its end")
    return out


def _lzma_compress(data: Any, level: int) -> bytes:
    import lzma  # stdlib, but slow to import: only when used

    return lzma.compress(data, preset=level)


def _lzma_decompress(data: Any, raw_length: int) -> bytearray:
    import lzma

    return _drain("lzma", lzma.LZMADecompressor(), data, raw_length)


def _zstd_compress(data: Any, level: int) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor(level=level, write_content_size=True).compress(data)


def _zstd_decompress(data: Any, raw_length: int) -> bytearray:
    import zstandard

    # The frame header's own size sizes zstd's window buffer; it must agree.
    size = zstandard.frame_content_size(data)
    if size != raw_length:
        raise CorruptSessionError(f"zstd frame says {size} bytes, expected {raw_length}")
    # A stream reader hands out at most what is asked for (the one-shot call
    # allocates the whole frame content size up front).  Reading across frames
    # makes a second frame count as excess output, and garbage after the frame
    # raise, instead of being ignored.
    reader = zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=True)
    out = bytearray()
    while True:
        chunk = reader.read(_room(out, raw_length))
        if not chunk:
            return out
        _grow(out, chunk, raw_length, "zstd")


def _lz4_compress(data: Any, level: int) -> bytes:
    import lz4.frame

    return lz4.frame.compress(data, compression_level=level, store_size=True)


def _lz4_decompress(data: Any, raw_length: int) -> bytearray:
    import lz4.frame

    return _drain("lz4", lz4.frame.LZ4FrameDecompressor(), data, raw_length)


CODECS = {
    codec.name: codec
    for codec in (
        Codec("zlib", None, 1, range(10), lambda d, lv: zlib.compress(d, lv), _zlib_decompress),
        Codec("lzma", None, 0, range(10), _lzma_compress, _lzma_decompress),
        Codec("zstd", "zstandard", 3, range(1, 23), _zstd_compress, _zstd_decompress),
        Codec("lz4", "lz4", 0, range(17), _lz4_compress, _lz4_decompress),
    )
}
_BY_ID = {codec.id: codec for codec in CODECS.values()}


def by_name(name: str | None) -> Codec | None:
    """The codec a writer asked for (None: store uncompressed); ValueError if unusable."""
    if name is None:
        return None
    codec = CODECS.get(name)
    if codec is None:
        raise ValueError(f"unknown compression {name!r}; choose one of {sorted(CODECS)} or None")
    if not codec.available():
        raise ValueError(f"compression {name!r} needs the {codec.package} package: {_FAST_EXTRA}")
    return codec


def by_id(codec_id: int) -> Codec | None:
    """The codec a record names (None for id 0); UnsupportedFormatError if not usable here."""
    if codec_id == spec.COMPRESSION_IDS[None]:
        return None
    codec = _BY_ID.get(codec_id)
    if codec is None:
        raise UnsupportedFormatError(f"unknown compression id {codec_id} (written by a newer mason, or damaged)")
    if not codec.available():
        raise UnsupportedFormatError(
            f"this file uses {codec.name} compression, which needs the {codec.package} package: {_FAST_EXTRA}"
        )
    return codec
