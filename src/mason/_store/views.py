"""Looking at checkpoints without restoring them: a reader of one, and
export to a session file."""

from __future__ import annotations

import contextlib

from .._format.signing import resolve_key

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


@contextlib.contextmanager
def open_reader(store: Any, ident: Any, options: Any):
    """The StoreReader of checkpoint ``ident`` (as :func:`mason.restore` takes it)."""
    from .._sessionmeta import check_session_meta
    from . import api
    from .reader import StoreReader

    opened, entry = api._open_entry(store, ident, options)
    reader = StoreReader(opened, entry, key=resolve_key(options.key), mmap=options.mmap)
    try:
        check_session_meta(reader)
        yield reader
    finally:
        reader.close()


def export(store: Any, ident: Any, target: Any, *, key: Any = None, storage_options: dict | None = None) -> None:
    """Write checkpoint ``ident`` as one session file at ``target`` (atomically),
    copying its segments and blobs byte for byte: nothing is unpickled.
    ``key``: the checkpoint must be signed with it, and the file is signed
    with it too."""
    from .._format import ContainerWriter
    from .._load import _LoadOptions
    from .._sessionmeta import _output

    options = _LoadOptions(mmap=False, key=key, storage_options=storage_options)
    with open_reader(store, ident, options) as reader:
        reader.verify()
        with _output(target, storage_options) as stream:
            writer = ContainerWriter(stream, key=resolve_key(key) if key is not False else None)
            for i in range(reader.segment_count):
                writer.add_segment(reader.segment(i))
            for i in range(reader.blob_count):
                writer.add_blob(reader.blob(i))
            writer.finish(reader.meta)
