"""Partition files: one partition of a Dask collection (or one future's value)
as a small mason container, written and read where the data is.

``write_partition`` runs on a worker, ``read_partition`` on a worker or in a
process that computes a lazily restored collection.  Nothing here imports
dask or distributed: a worker needs only mason itself.

A partition file is a container (docs/format.md) holding one segment (the
pickle of the value), its out-of-band buffers as blobs, and the index meta
``{"kind": "mason.dask-partition", "token": ...}``.  The session records the
file's size, a digest of all its bytes and its token; a reader checks the
three on the bytes it read, then unpickles those very bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import pickle
import re

from .._format import ContainerReader, ContainerWriter
from .._format import checksum as _checksum
from .._storage import local as _local
from .._storage import remote as _remote
from ..errors import CorruptSessionError

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time: `import mason` stays fast
    from collections.abc import Iterator
    from typing import Any, BinaryIO

_O_BINARY = getattr(os, "O_BINARY", 0)  # Windows: no newline translation
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)

KIND = "mason.dask-partition"
#: what a partition file is named inside its folder (the index in the session's table)
NAME = re.compile(r"[0-9]{6,12}\.mason")
#: digests a session may record: the container's checksums, or SHA-256 for signed sessions
DIGESTS = ("crc32", "xxh3_64", "sha256")


def file_name(index: int) -> str:
    return f"{index:06d}.mason"


# ====================================================================== locations
#
# A location is a local absolute path or a URL (``s3://bucket/dir``).  The
# workers and the client must all reach it by the same name: relative paths
# are made absolute by the client before any task is sent.


def join(location: str, name: str) -> str:
    if _remote.is_url(location):
        return location.rstrip("/") + "/" + name
    return os.path.join(location, name)


def split(location: str) -> tuple[str, str]:
    """(the folder a file location is in, the file's name)."""
    if _remote.is_url(location):
        folder, _, name = location.rstrip("/").rpartition("/")
        return folder, name
    return os.path.split(location)


def parent(location: str) -> str:
    return split(location)[0]


def absolute(location: str | os.PathLike) -> str:
    if _remote.is_url(location):
        return str(location)
    return os.path.abspath(os.fsdecode(location))


# ====================================================================== digests


class _Sha256:
    __slots__ = ("_state",)

    def __init__(self) -> None:
        self._state = hashlib.sha256()

    def update(self, data: Any) -> None:
        self._state.update(data)

    def hexdigest(self) -> str:
        return self._state.hexdigest()


class _ContainerSum:
    """A container checksum (crc32, xxh3_64) over a whole file, as hex."""

    __slots__ = ("_hasher",)

    def __init__(self, name: str) -> None:
        self._hasher = _checksum.by_name(name).new(0)  # crc32 or xxh3_64: the length does not matter

    def update(self, data: Any) -> None:
        self._hasher.update(data)
        # A large update is summed on worker threads that hold views of
        # ``data`` until digest(); the container writer releases each buffer
        # right after writing it, so wait for them now (digest() only waits:
        # more updates may follow).
        self._hasher.digest()

    def hexdigest(self) -> str:
        return f"{self._hasher.digest():016x}"


def _hasher(name: str) -> Any:
    if name == "sha256":
        return _Sha256()
    return _ContainerSum(name)


def digest_of(data: Any, name: str) -> str:
    hasher = _hasher(name)
    hasher.update(data)
    return f"{name}:{hasher.hexdigest()}"


class _Digesting:
    """A write-only stream that passes bytes on and sums them on the way."""

    def __init__(self, stream: Any, name: str) -> None:
        self._stream = stream
        self._name = name
        self._hasher = _hasher(name)
        self.size = 0

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        written = self._stream.write(view)
        n = view.nbytes if written is None else written
        self._hasher.update(view[:n])
        self.size += n
        return n

    def flush(self) -> None:
        flush = getattr(self._stream, "flush", None)
        if flush is not None:
            flush()

    def digest(self) -> str:
        return f"{self._name}:{self._hasher.hexdigest()}"


# ====================================================================== write


class WriteTarget:
    """What a worker needs to write one partition: where, under which token,
    and the container options of the session (sent with the write task)."""

    __slots__ = ("compression", "checksum", "digest", "location", "storage_options", "token")

    def __init__(self, location, token, storage_options=None, checksum=None, compression=None, digest="crc32"):
        self.location = location
        self.token = token
        self.storage_options = storage_options
        self.checksum = checksum
        self.compression = compression
        self.digest = digest

    def __reduce__(self):
        return WriteTarget, (
            self.location,
            self.token,
            self.storage_options,
            self.checksum,
            self.compression,
            self.digest,
        )


def write_partition(value: Any, target: WriteTarget) -> dict:
    """Write ``value`` to ``target.location`` (atomically where the storage
    allows); returns what the session records: ``size`` and ``digest``.

    Runs on the worker that holds ``value``: the value's buffers go straight
    from its memory to the file, never through the client.
    """
    from .._pickler import Pickler  # on a worker: the first partition pays for it

    if _remote.is_url(target.location):
        output = _remote.open_output(target.location, target.storage_options)
    else:
        output = _new_file(target.location)
    with output as stream:
        digesting = _Digesting(stream, target.digest)
        writer = ContainerWriter(
            digesting,  # type: ignore[arg-type]  # a write-only stream is all it uses
            checksum=target.checksum,
            compression=target.compression,
        )
        segment = io.BytesIO()

        def on_buffer(buffer: pickle.PickleBuffer) -> bool:
            try:
                raw = buffer.raw()
            except BufferError:  # not contiguous: pickled in-band
                return True
            with raw:
                writer.add_blob(raw)
            return False

        Pickler(segment, 5, buffer_callback=on_buffer).dump(value)
        writer.add_segment(segment.getbuffer())
        writer.finish({"kind": KIND, "token": target.token})
    return {"size": digesting.size, "digest": digesting.digest()}


@contextlib.contextmanager
def _new_file(path: str) -> Iterator[BinaryIO]:
    """A private file written whole or not at all, in a folder that only
    this save writes to: a temporary name, fsync, rename, and the folder
    fsynced, so the file is durable before any session refers to it.
    (``atomic_write`` also looks for stale temporaries of crashed writers:
    a listing of the folder per file, quadratic in a folder of thousands
    of partitions, and nothing to find in a folder made by this save.)"""
    temp = f"{path}.tmp-{os.getpid()}-{os.urandom(4).hex()}"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_BINARY | _O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        # A write task run again (its worker died) writes the same bytes: the last rename wins.
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    _local._fsync_directory(os.path.dirname(path))


# ====================================================================== read


class PartitionFile:
    """One partition file as a session records it, and how to read it:
    ``location`` (absolute path or URL), ``size``, ``digest``, ``token``;
    ``storage_options`` for a URL; ``allow``: the allowlist of the load
    that restored it (None: a plain load), which the read enforces too;
    ``variable``: the session variable it was saved with (for messages).

    Rides inside the read tasks of lazily restored collections, so dask
    pickles it to send it to workers.
    """

    __slots__ = ("allow", "digest", "location", "size", "storage_options", "token", "variable")

    def __init__(self, location, size, digest, token, storage_options=None, allow=None, variable=""):
        self.location = location
        self.size = size
        self.digest = digest
        self.token = token
        self.storage_options = storage_options
        self.allow = allow
        self.variable = variable

    def __reduce__(self):
        return PartitionFile, (
            self.location,
            self.size,
            self.digest,
            self.token,
            self.storage_options,
            self.allow,
            self.variable,
        )

    def __repr__(self) -> str:
        return f"<mason partition file {self.location}>"

    def describe(self) -> str:
        """How messages name it: the file, and the variable saved with it."""
        of = f" (saved with variable {self.variable!r})" if self.variable else ""
        return f"partition file {self.location}{of}"

    @property
    def key(self) -> str:
        """The task key its value is read under on a cluster: the same file,
        the same key, so loading a session twice reads each partition once."""
        return f"mason-partition-{self.token}"


def check_partition(part: PartitionFile) -> int:
    """Check a partition file without unpickling it: its size, digest, that
    it is the partition the session recorded, and every record's checksum.
    Returns its size."""
    data = _read_all(part)
    if part.digest.partition(":")[0] not in DIGESTS:
        raise CorruptSessionError(f"{part.describe()}: unknown digest {part.digest!r}")
    if digest_of(data, part.digest.partition(":")[0]) != part.digest:
        raise CorruptSessionError(
            f"{part.describe()}: its bytes are not those the session recorded (damaged, or replaced by another file)"
        )
    with ContainerReader.open(data, owned=True) as reader:
        reader.verify()
        if reader.meta.get("kind") != KIND or reader.meta.get("token") != part.token or reader.segment_count != 1:
            raise CorruptSessionError(f"{part.describe()}: not the partition the session recorded")
    return len(data)


def read_partition(part: PartitionFile) -> Any:
    """The value in a partition file, after checking its size, digest and token
    (or, for a partition in a checkpoint store, every piece against its name)."""
    if type(part) is not PartitionFile:
        from .storepart import read_store_partition

        return read_store_partition(part)  # type: ignore[arg-type]  # a StorePartition
    data = _read_all(part)
    if part.digest.partition(":")[0] not in DIGESTS:
        raise CorruptSessionError(f"{part.describe()}: unknown digest {part.digest!r}")
    if digest_of(data, part.digest.partition(":")[0]) != part.digest:
        raise CorruptSessionError(
            f"{part.describe()}: its bytes are not those the session recorded (damaged, or replaced by another file)"
        )
    # The whole file was just checked: the container's own per-blob sums would
    # only read it again.  Blobs are views of ``data``, which no one else holds.
    with ContainerReader.open(data, verify_blobs=False, owned=True) as reader:
        meta = reader.meta
        if meta.get("kind") != KIND or meta.get("token") != part.token or reader.segment_count != 1:
            raise CorruptSessionError(f"{part.describe()}: not the partition the session recorded")
        buffers = [reader.blob(i) for i in range(reader.blob_count)]
        stream = io.BytesIO(reader.segment(0))
        if part.allow is None:
            from .._unpickler import Unpickler

            # ignore=True: a class saved by value stays the saved one (as in a
            # session), never rebound to a namesake in the reading process's __main__.
            return Unpickler(stream, ignore=True, buffers=iter(buffers)).load()
        from .._api import load_restricted

        return load_restricted(stream, part.allow, buffers=iter(buffers))


def _read_all(part: PartitionFile) -> bytearray:
    """The file's bytes, in writable memory of its own (arrays rebuilt on it
    are writable, as they were when saved)."""
    try:
        if _remote.is_url(part.location):
            fs, path = _remote._filesystem(part.location, part.storage_options)
            size = fs.size(path)
            _check_size(part, size)
            data = bytearray(size)
            with fs.open(path, "rb") as file:
                _read_into(file, data, part)
            return data
        with _local.open_for_read(part.location) as file:
            size = os.fstat(file.fileno()).st_size
            _check_size(part, size)
            data = bytearray(size)
            _read_into(file, data, part)
            return data
    except FileNotFoundError:
        raise CorruptSessionError(
            f"{part.describe()} is missing (removed, or the session was saved again since and replaced its partitions)"
        ) from None


def _check_size(part: PartitionFile, size: int) -> None:
    if size != part.size:
        raise CorruptSessionError(
            f"{part.describe()} has {size} bytes, the session recorded {part.size} (truncated, damaged or replaced)"
        )


def _read_into(file: Any, data: bytearray, part: PartitionFile) -> None:
    view = memoryview(data)
    done = 0
    while done < len(data):
        n = file.readinto(view[done:])
        if not n:
            raise CorruptSessionError(f"{part.describe()} ended after {done} of {len(data)} bytes")
        done += n
