"""Partitions in a checkpoint store: one partition of a Dask collection (or
one future's value) as content-addressed objects, written and read where the
data is.

``write_store_partition`` runs on the worker that holds the value: it
pickles it (protocol 5, buffers out of band), cuts the pickle and each
buffer into pieces of the store's chunk size, names each piece by the
store's hash and writes, atomically, only the objects the store does not
hold yet.  It returns the pieces' names and lengths, which the checkpoint's
partition table records and its manifest lists (so prune and verify_store
see them as any other object).  ``read_store_partition`` reads them back,
checking every piece against its name.  Nothing here imports dask or
distributed: a worker needs only mason.
"""

from __future__ import annotations

import hashlib
import io
import pickle

from ..errors import CorruptSessionError, CorruptStoreError

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time: `import mason` stays fast
    from typing import Any


class StoreTarget:
    """What a worker needs to write one partition into a store."""

    __slots__ = ("chunk_size", "compression", "hash_name", "level", "location", "storage_options", "token")

    def __init__(self, location, storage_options, hash_name, chunk_size, compression, level, token):
        self.location = location
        self.storage_options = storage_options
        self.hash_name = hash_name
        self.chunk_size = chunk_size
        self.compression = compression
        self.level = level
        self.token = token

    def __reduce__(self):
        return StoreTarget, (
            self.location,
            self.storage_options,
            self.hash_name,
            self.chunk_size,
            self.compression,
            self.level,
            self.token,
        )


def write_store_partition(value: Any, target: StoreTarget) -> dict:
    """Write ``value`` as store objects; returns ``parts`` (the pickle, then
    each buffer: a list of [piece name, length]), ``size`` and ``written``
    (bytes this call added to the store)."""
    from .._format import compression as _compression
    from .._pickler import Pickler
    from .._store import hashing, layout, objects
    from .._store.backend import open_backend

    backend = open_backend(target.location, target.storage_options)
    digest = hashing.by_name(target.hash_name).digest
    codec = _compression.by_name(target.compression)
    level = 0 if codec is None else codec.check_level(target.level)
    chunk = target.chunk_size
    buffers: list[Any] = []

    def on_buffer(buffer: pickle.PickleBuffer) -> bool:
        try:
            raw = buffer.raw()
        except BufferError:  # not contiguous: pickled in-band
            return True
        buffers.append(raw)
        return False

    segment = io.BytesIO()
    Pickler(segment, 5, buffer_callback=on_buffer).dump(value)
    parts: list[list[list[Any]]] = []
    written = size = 0
    done: set[str] = set()
    for view in [segment.getbuffer(), *buffers]:
        pieces = []
        for at in range(0, len(view), chunk):
            piece = view[at : at + chunk]
            name = digest(piece)
            pieces.append([name, len(piece)])
            size += len(piece)
            if name in done:
                continue
            path = layout.object_name(name)
            stored = backend.size(path)
            if stored is None or stored <= layout.TRAILER_SIZE:
                encoded, length = objects.encode([piece], codec, level)
                backend.write(path, encoded)
                written += length
            done.add(name)
        parts.append(pieces)
    backend.sync()  # durable before the checkpoint that names them is listed
    return {"parts": parts, "size": size, "written": written}


class StorePartition:
    """One partition in a store as a checkpoint records it, and how to read
    it: ``location`` (the store: absolute path or URL), ``hash_name``,
    ``parts`` (the pickle, then each buffer: lists of [piece name, length]);
    ``allow``: the allowlist of the restore (None: a plain one);
    ``variable``: the session variable it was saved with (for messages)."""

    __slots__ = ("allow", "hash_name", "location", "parts", "storage_options", "token", "variable")

    def __init__(self, location, hash_name, parts, storage_options=None, allow=None, variable=""):
        self.location = location
        self.hash_name = hash_name
        self.parts = parts
        self.storage_options = storage_options
        self.allow = allow
        self.variable = variable
        # The same bytes in the same store, the same key: a partition restored twice is read once.
        self.token = hashlib.sha256(repr((location, parts)).encode()).hexdigest()[:32]

    def __reduce__(self):
        return StorePartition, (
            self.location,
            self.hash_name,
            self.parts,
            self.storage_options,
            self.allow,
            self.variable,
        )

    def __repr__(self) -> str:
        return f"<mason store partition in {self.location}>"

    @property
    def size(self) -> int:
        return sum(length for pieces in self.parts for _, length in pieces)

    def describe(self) -> str:
        of = f" of variable {self.variable!r}" if self.variable else ""
        return f"a Dask partition{of} in store {self.location}"

    @property
    def key(self) -> str:
        return f"mason-store-partition-{self.token}"

    def missing(self) -> str:
        """The first of its objects the store lacks, or ""."""
        from .._store import layout
        from .._store.backend import open_backend

        backend = open_backend(self.location, self.storage_options)
        for pieces in self.parts:
            for name, _ in pieces:
                if backend.size(layout.object_name(name)) is None:
                    return layout.object_name(name)
        return ""


def read_store_partition(part: StorePartition) -> Any:
    """The value of a store partition, every piece checked against its name."""
    from .._store import hashing, objects
    from .._store.backend import open_backend

    try:
        backend = open_backend(part.location, part.storage_options)
        hash = hashing.by_name(part.hash_name)
        views = []
        for pieces in part.parts:
            data = bytearray(sum(length for _, length in pieces))
            at = 0
            for name, length in pieces:
                data[at : at + length] = objects.read(backend, name, length, hash)
                at += length
            views.append(data)
    except CorruptSessionError as exc:
        raise CorruptStoreError(f"{part.describe()}: {exc}") from None
    stream = io.BytesIO(views[0])
    if part.allow is None:
        from .._unpickler import Unpickler

        return Unpickler(stream, ignore=True, buffers=iter(views[1:])).load()
    from .._api import load_restricted

    return load_restricted(stream, part.allow, buffers=iter(views[1:]))
