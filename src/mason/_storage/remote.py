"""Session files at URLs (``s3://``, ``gs://``, ``memory://``, ``file://`` ...), through fsspec.

fsspec is imported here only, and only once a URL is actually opened: the
core of mason needs nothing outside the standard library.

A save keeps the promise local files make (a failed save leaves the previous
file as it was) as far as the backend allows; which way depends on the
filesystem fsspec picks for the URL:

- local (``file://``): the URL is a local path, written with
  :func:`mason._storage.local.atomic_write` (temporary sibling, fsync, rename).
- object stores that publish an object only when its upload completes (S3,
  Google Cloud Storage, Azure Blob): bytes stream into the upload; on
  failure the upload is discarded (an S3 multipart upload is aborted) and
  the file is marked closed without being closed, because fsspec's
  ``close()`` would complete the upload with whatever was written so far.
- anything else (``memory://``, ``sftp://``, ``hdfs://`` ...): the session
  is spooled to a private local temporary file and copied with one
  ``put_file`` at the end.  A failure while pickling leaves the previous
  file; a failure during the copy itself may leave a partial one.

Reads go through a seekable fsspec file: the reader fetches the trailer and
index first, then the records it needs.  Nothing is memory-mapped.
"""

from __future__ import annotations

import errno
import io
import os
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time: `import mason` stays fast
    from typing import Any, BinaryIO

from ..errors import MasonWarning
from . import local

_INSTALL = "pip install 'mason[remote]'"
# ``scheme://``, optionally behind fsspec's chained ``proto::`` prefixes.  A
# scheme needs two characters, so a Windows drive (``C:\x``, ``C://x``) is a path.
_URL = re.compile(r"(?:[A-Za-z][A-Za-z0-9+.-]+::)*[A-Za-z][A-Za-z0-9+.-]+://")
# Protocols whose uploads are invisible until completed, and whose fsspec
# files only complete them in close().
_PUBLISH_ON_COMPLETION = frozenset({"s3", "s3a", "gs", "gcs", "abfs", "abfss", "az"})
# Random reads come in ranges of this many bytes at least: small enough that
# ``inspect`` fetches little more than the index, large enough that a load's
# mostly sequential reads need few requests.
_READ_BLOCK = 8 << 20


def is_url(target: Any) -> bool:
    """Whether ``target`` is a string naming a URL (``scheme://...``) rather than a path."""
    return isinstance(target, str) and _URL.match(target) is not None


def _filesystem(url: str, storage_options: dict | None) -> tuple[Any, str]:
    try:
        import fsspec.core
    except ImportError as exc:
        raise ValueError(f"{url}: URLs are opened with fsspec, which is not installed: {_INSTALL}") from exc
    return fsspec.core.url_to_fs(url, **(storage_options or {}))


def _is_local(fs: Any) -> bool:
    from fsspec.implementations.local import LocalFileSystem

    return isinstance(fs, LocalFileSystem)


def _protocols(fs: Any) -> set[str]:
    protocol = fs.protocol
    return {protocol} if isinstance(protocol, str) else set(protocol)


# ====================================================================== write


@contextmanager
def open_output(url: str, storage_options: dict | None = None) -> Iterator[BinaryIO]:
    """Yield a binary stream whose bytes replace ``url`` only if the block succeeds
    (on the backends that allow it: see the module's docstring)."""
    fs, path = _filesystem(url, storage_options)
    if _is_local(fs):
        with local.atomic_write(path) as stream:
            yield stream
    elif _protocols(fs) & _PUBLISH_ON_COMPLETION:
        with _upload(fs, path, url) as stream:
            yield stream
    else:
        with _spooled(fs, path) as stream:
            yield stream


@contextmanager
def _upload(fs: Any, path: str, url: str) -> Iterator[BinaryIO]:
    stream = fs.open(path, "wb")
    try:
        yield stream
    except BaseException:
        _abandon(stream, url)
        raise
    try:
        stream.close()  # completes the upload: only now does the object change
    except BaseException:
        _abandon(stream, url)
        raise


def _abandon(stream: Any, url: str) -> None:
    """Throw away an unfinished upload without completing it."""
    try:
        stream.discard()  # s3fs: aborts the multipart upload, if one was started
    except Exception as exc:  # the previous object is safe either way; only parts linger
        warnings.warn(
            f"{url}: could not abort the unfinished upload ({type(exc).__name__}: {exc}); the previous"
            " object is unchanged, but the store may keep the parts already sent until they expire",
            MasonWarning,
            stacklevel=2,
        )
    finally:
        # close() would upload what was written and complete the upload.
        stream.closed = True


@contextmanager
def _spooled(fs: Any, path: str) -> Iterator[BinaryIO]:
    import tempfile  # only for URL saves: slow to import

    fd, temp = tempfile.mkstemp(prefix="mason-upload-")  # private: mode 0600
    try:
        with os.fdopen(fd, "wb") as stream:
            yield stream
        fs.put_file(temp, path)
    finally:
        os.unlink(temp)


# ====================================================================== read


@contextmanager
def open_input(url: str, storage_options: dict | None = None) -> Iterator[Any]:
    """Yield what the container reader opens for ``url``: the local path of a
    ``file://`` URL, else a seekable binary file named after the URL."""
    fs, path = _filesystem(url, storage_options)
    if _is_local(fs):
        yield path
        return
    try:
        remote = fs.open(path, "rb", block_size=_READ_BLOCK)
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, "no mason session file here", url) from None
    with _RemoteFile(remote, url) as stream:
        yield stream


def size(url: str, storage_options: dict | None = None) -> int:
    """The size in bytes of the file at ``url``."""
    fs, path = _filesystem(url, storage_options)
    if _is_local(fs):
        return os.stat(path).st_size
    return fs.size(path)


class _RemoteFile(io.RawIOBase):
    """A read-only view of an fsspec file that carries the URL as its name
    (for error messages) and has no ``fileno`` (so it is never memory-mapped)."""

    def __init__(self, remote: Any, url: str) -> None:
        super().__init__()
        self._remote = remote
        self.name = url

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._remote.seek(offset, whence)

    def tell(self) -> int:
        return self._remote.tell()

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self._remote.read(view.nbytes)
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        try:
            if not self.closed:
                self._remote.close()
        finally:
            super().close()
