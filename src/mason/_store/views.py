"""Looking at checkpoints without restoring them: a reader of one, what
each variable is stored as (for diffs), and export to a session file."""

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


def fingerprints(store: Any, ident: Any, storage_options: dict | None = None) -> dict[str, tuple]:
    """variable -> the names of the pieces it is stored as (its segment's and
    its blobs'): equal fingerprints, equal stored bytes.  Reads the manifest only."""
    from .._load import _LoadOptions

    options = _LoadOptions(mmap=False, key=False, storage_options=storage_options)
    with open_reader(store, ident, options) as reader:  # checks the session metadata
        manifest = reader.manifest
        pieces = manifest.pieces

        def names(numbers: list[int]) -> tuple:
            return tuple(pieces[n][0] for n in numbers)

        return {
            var["name"]: (names(manifest.segments[var["segment"]]), *(names(manifest.blobs[b]) for b in var["blobs"]))
            for var in reader.meta["variables"]
        }


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
