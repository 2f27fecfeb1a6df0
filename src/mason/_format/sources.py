"""Random access to a container's bytes: a file read with seek/read, a memory map, memory.

Sources hand out three kinds of bytes.  ``read``: a transient view, for
headers and for hashing piecewise.  ``view``: writable bytes for a blob that
is used in place (a view of our own memory or map, else a copy).  ``copy``:
bytes no one else can change, to be checked and then used.  ``stable`` says
whether reading the same range again gives the same bytes, so that a check of
them holds for later reads; a memory map of a file is not stable, since another
process writing the file changes the pages under it.
"""

from __future__ import annotations

import io
import mmap as _mmap

from ..errors import CorruptSessionError

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time: `import mason` stays fast
    from typing import Any, BinaryIO

CHUNK = 16 << 20  # read and hash big payloads piecewise, to bound memory


class BufferSource:
    """The container in memory or memory-mapped; reads are zero-copy views."""

    def __init__(self, buffer: Any, *, owned: bool, stable: bool = False) -> None:
        self._buffer = buffer
        view = memoryview(buffer)
        self._view = view if view.format == "B" and view.ndim == 1 else view.cast("B")
        # Views of a buffer we made (our bytearray, our copy-on-write map) can be
        # handed out writable; a caller's buffer is copied so we never write to it.
        self._share = owned and not self._view.readonly
        # Stable: memory only we can change (a stream read into our bytearray),
        # so a check of its bytes holds for every later read.  A memory map is
        # not: another process writing the file changes the pages under it.
        self.stable = stable and self._share
        self.size = len(self._view)

    def with_base(self, base: int) -> BufferSource:
        view = self._view[base:]
        self._view.release()
        self._view = view
        self.size = len(view)
        return self

    def read(self, offset: int, length: int) -> memoryview:
        return self._view[offset : offset + length]

    def view(self, offset: int, length: int) -> memoryview:
        view = self._view[offset : offset + length]
        return view if self._share else memoryview(bytearray(view))

    def copy(self, offset: int, length: int) -> memoryview:
        """Writable bytes that no one else can change: a view when the source is
        stable, else a private copy (checked and used from then on)."""
        view = self._view[offset : offset + length]
        return view if self.stable else memoryview(bytearray(view))

    def close(self) -> None:
        self._view.release()
        if isinstance(self._buffer, _mmap.mmap):
            try:
                self._buffer.close()
            except BufferError:
                # Blob views handed out (numpy arrays built on them) still use the
                # map; it is unmapped when the last of them is garbage collected.
                pass
        self._buffer = None


class FileSource:
    """A seekable file object, read with seek/read; the container starts at ``base``.

    Every read is a fresh private copy; none is stable (the file may change
    between two reads)."""

    stable = False

    def __init__(self, fileobj: BinaryIO, base: int) -> None:
        self._file = fileobj
        self._base = base
        self.size = max(0, fileobj.seek(0, io.SEEK_END) - base)

    def _readinto(self, offset: int, buffer: Any) -> None:
        self._file.seek(self._base + offset)
        readinto = getattr(self._file, "readinto", None)
        view = memoryview(buffer)
        while view.nbytes:
            if readinto is not None:
                n = readinto(view)
            else:  # a minimal file-like object: read, then copy
                chunk = self._file.read(min(view.nbytes, CHUNK))
                n = len(chunk)
                view[:n] = chunk
            if not n:
                raise CorruptSessionError(f"file shrank while reading at offset {offset}")
            view = view[n:]

    def read(self, offset: int, length: int) -> memoryview:
        buffer = private_memory(length)  # callers have checked length against the file size
        self._readinto(offset, buffer)
        return memoryview(buffer)

    view = copy = read  # a fresh bytearray is ours to hand out writable

    def close(self) -> None:
        self._file = None  # type: ignore[assignment]  # closed: no file


_ANONYMOUS_MAP_FROM = 1 << 20


def private_memory(length: int) -> Any:
    """``length`` writable bytes of this process's own, to read into.

    A big one is an anonymous private map: the kernel hands out zeroed pages
    as they are first written, where a bytearray is zero-filled first, which
    cost a keyed load of a 400 MB array 0.3 to 1 s more than the read itself.
    """
    if length < _ANONYMOUS_MAP_FROM:
        return bytearray(length)
    private = getattr(_mmap, "MAP_PRIVATE", None)  # Windows' anonymous maps are private anyway
    return _mmap.mmap(-1, length) if private is None else _mmap.mmap(-1, length, flags=private)
