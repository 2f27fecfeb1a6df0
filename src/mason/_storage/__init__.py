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
    "size",
]


def _no_options(target: Any, storage_options: dict | None) -> None:
    if storage_options:
        raise ValueError(f"storage_options apply to URLs only, not to {target!r}")


@contextmanager
def open_output(target: str | os.PathLike[str], storage_options: dict | None = None) -> Iterator[BinaryIO]:
    """A binary stream whose bytes replace ``target`` (a path or URL) only if the block succeeds."""
    if is_url(target):
        with remote.open_output(target, storage_options) as stream:
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
        return remote.size(source, storage_options)
    _no_options(source, storage_options)
    return os.stat(source).st_size
