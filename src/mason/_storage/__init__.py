"""Where session bytes live: local files, or URLs through fsspec (imported lazily).

``open_output`` and ``open_input`` take what the session functions accept as
a file name, a path or a URL, and hide which of the two it was.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time: `import mason` stays fast
    from typing import Any, BinaryIO

from . import remote
from .local import atomic_write, default_session_path, open_for_read
from .remote import is_url

__all__ = [
    "atomic_write",
    "default_session_path",
    "is_url",
    "open_for_read",
    "open_input",
    "open_output",
    "peek",
    "size",
]


def _no_options(target: Any, storage_options: dict | None) -> None:
    if storage_options:
        raise ValueError(f"storage_options apply to URLs only, not to {target!r}")


@contextmanager
def open_output(target: str | os.PathLike[str], storage_options: dict | None = None) -> Iterator[BinaryIO]:
    """A binary stream whose bytes replace ``target`` (a path or URL) only if the block succeeds."""
    if is_url(target):
        with remote.open_output(os.fspath(target), storage_options) as stream:
            yield stream
    else:
        _no_options(target, storage_options)
        with atomic_write(target) as stream:
            yield stream


@contextmanager
def open_input(source: Any, storage_options: dict | None = None) -> Iterator[Any]:
    """What the container reader opens for ``source``: a local path or a stream
    as they are, a URL as a seekable binary file (closed after the block)."""
    if is_url(source):
        with remote.open_input(source, storage_options) as opened:
            yield opened
    else:
        _no_options(source, storage_options)
        yield source


def size(source: str | os.PathLike[str], storage_options: dict | None = None) -> int:
    """The size in bytes of the file at a path or URL."""
    if is_url(source):
        return remote.size(os.fspath(source), storage_options)
    _no_options(source, storage_options)
    return os.stat(source).st_size


def peek(file: Any, n: int, expected: bytes | None = None) -> tuple[bytes, Any]:
    """The first ``n`` bytes of the binary stream ``file`` (fewer once they
    cannot be ``expected``, or at its end), and a stream that still starts
    with them.  Never reads past a pickle that ends earlier: several
    pickles may follow each other in a pipe."""

    def may_be(head: bytes) -> bool:
        return expected is None or expected.startswith(head)

    seekable = getattr(file, "seekable", None)
    if seekable is not None and seekable():
        start = file.tell()
        head = file.read(n)
        file.seek(start)
        return head, file
    peek_ = getattr(file, "peek", None)
    if peek_ is not None:  # buffered pipes and sockets: nothing is consumed
        head = bytes(peek_(n)[:n])
        if len(head) == n or not may_be(head) or not head:
            return head, file
    # One byte at a time, and only while they match: a pickle starts with
    # another byte than MAGIC's first, so this reads one byte of it.
    head = b""
    while len(head) < n and may_be(head):
        byte = file.read(1)
        if not byte:
            break
        head += byte
    return head, _Replay(head, file)


class _Replay:
    """A non-seekable stream with bytes already read from it put back in front."""

    def __init__(self, head: bytes, file: Any):
        self._head = head
        self._file = file
        self.name = getattr(file, "name", "")

    def seekable(self) -> bool:
        return False

    def readable(self) -> bool:
        return True

    def read(self, n: int | None = -1) -> bytes:
        head = self._head
        if not head:
            return self._file.read(n)
        if n is None or n < 0:
            self._head = b""
            return head + self._file.read()
        self._head = head[n:]
        if len(head) >= n:
            return head[:n]
        return head + self._file.read(n - len(head))

    def readline(self) -> bytes:
        head = self._head
        if not head:
            return self._file.readline()
        newline = head.find(b"\n")
        if newline >= 0:
            self._head = head[newline + 1 :]
            return head[: newline + 1]
        self._head = b""
        return head + self._file.readline()
