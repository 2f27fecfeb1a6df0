"""Where a save's partitions go, and what the session file records about them.

The pickler's reducers hand the sink every future they meet (``add``), and
every partition file of an earlier save that a restored collection still
reads (``add_file``); each gets a number, which is all the pickle keeps.
The session writer calls ``begin(variable)`` before pickling a variable and
``flush()`` after: the variable's partitions are then written, all at once,
by the workers that hold them, and a failure fails that variable only (it is
skipped and named, as any variable that cannot be saved).  ``record()`` is
the session's ``dask`` metadata: the table of partitions by number.

A save never touches what the previous session file refers to until the
new file is in place: partitions go to a new folder per save
(``<session>.dask/<save id>/``), the session file is replaced atomically,
and only then (``commit``) are the folders the replaced file used, and the
new one does not, removed; ``abort`` removes the new folder instead.

``PartitionSink`` keeps the table and talks to the cluster; a subclass says
where a worker writes (``_target``), what the table says about a written
partition (``_entry``), and how a save commits or aborts.  ``FolderSink``
writes files into a folder; a checkpoint store's sink would write
content-addressed objects instead (see docs/dask.md).
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings

from ..errors import MasonWarning, PicklingError
from . import partition as _partition
from .partition import PartitionFile, WriteTarget, file_name, join

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time: `import mason` stays fast
    from typing import Any

#: the newest version of the ``dask`` metadata this mason reads: 1 (partition
#: files in folders), 2 (partitions as objects of a checkpoint store)
VERSION = 2
FOLDER_VERSION = 1
STORE_VERSION = 2
#: a file in every folder a save creates: which session it was made for
MARKER = "MASON-PARTITIONS.json"


class PartitionSink:
    """The partitions of one save, numbered as the pickle refers to them."""

    def __init__(self) -> None:
        self._entries: list[dict | None] = []  # by number: what the session records
        self._by_key: dict[Any, int] = {}  # future key or file token -> number
        self._pending: list[tuple[int, Any]] = []  # (number, future) of the current variable
        self._variable = ""
        self._inflight: list[Any] = []
        self.scheduler: str | None = None

    # -- what the reducers call ------------------------------------------------

    def add(self, future: Any) -> int:
        """The number of the partition that will hold ``future``'s value."""
        known = self._by_key.get(("future", future.key))
        if known is not None:
            return known
        number = self._new_number(("future", future.key))
        self._pending.append((number, future))
        if self.scheduler is None:
            from .cluster import scheduler_address

            self.scheduler = scheduler_address(future.client)
        return number

    def add_file(self, part: PartitionFile) -> int:
        """The number of an existing partition file (an earlier save's), kept where it is."""
        known = self._by_key.get(("file", part.token))
        if known is not None:
            return known
        number = self._new_number(("file", part.token))
        self._entries[number] = self._file_entry(part)
        return number

    def _new_number(self, key: Any) -> int:
        self._entries.append(None)
        self._by_key[key] = number = len(self._entries) - 1
        return number

    # -- what the session writer calls -----------------------------------------

    def begin(self, variable: str) -> None:
        """The next partitions belong to ``variable``; those of a variable
        that failed before its flush are forgotten (never written)."""
        self._forget(self._pending)
        self._pending = []
        self._variable = variable

    def flush(self) -> None:
        """Write the current variable's partitions (on the workers, in
        parallel) and wait for them; PicklingError if any could not be."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        from . import cluster

        for _, future in pending:
            problem = cluster.client_problem(future)
            if problem:
                self._forget(pending)
                raise PicklingError(problem)
        targets = [self._target(number) for number, _ in pending]
        try:
            self._inflight = cluster.submit_writes([(future, target) for (_, future), target in zip(pending, targets)])
            results = cluster.outcomes(self._inflight)
        except Exception:
            cluster.cancel(self._inflight)
            self._inflight = []
            self._forget(pending)
            raise
        except BaseException:  # interrupted: abort() cancels what is still writing
            self._forget(pending)
            raise
        self._inflight = []
        failed = []
        for (number, future), target, (ok, result) in zip(pending, targets, results):
            if ok:
                self._entries[number] = self._entry(number, target, result)
            else:
                failed.append((future.key, result))
        if failed:
            self._forget(pending)
            key, reason = failed[0]
            others = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
            raise PicklingError(
                f"the workers could not write partition {key!r}{others} of its data to {self.location}: {reason}"
            )

    def _forget(self, pending: list[tuple[int, Any]]) -> None:
        for number, future in pending:
            self._entries[number] = None
            self._by_key.pop(("future", future.key), None)

    def record(self) -> dict | None:
        """The session's ``dask`` metadata, or None if it holds no partitions."""
        self.begin("")
        if not any(self._entries):
            return None
        return self._record()

    # -- what a kind of storage says -------------------------------------------

    location = ""

    def _target(self, number: int) -> WriteTarget:
        raise NotImplementedError

    def _entry(self, number: int, target: WriteTarget, result: dict) -> dict:
        raise NotImplementedError

    def _file_entry(self, part: PartitionFile) -> dict:
        raise NotImplementedError

    def _record(self) -> dict:
        raise NotImplementedError

    def abort(self) -> None:
        """The session file was not written: undo what this save wrote."""
        from .cluster import cancel

        cancel(self._inflight)

    def commit(self) -> None:
        """The session file is in place."""


class DrySink(PartitionSink):
    """Numbers partitions and writes nothing: for pickling a variable again
    only to find out which part of it failed."""

    def add(self, future: Any) -> int:
        return 0

    def add_file(self, part: PartitionFile) -> int:
        return 0


class FolderSink(PartitionSink):
    """Partition files in a new folder per save, under ``root`` (a path or
    URL that the workers and later readers reach by that name).

    ``session``: where the session file goes (absolute path or URL; None
    for a stream): folders beside it are recorded relative to it, so the two
    can move together, and removed when a later save replaces it.
    ``previous``: the folders (absolute) the file being replaced refers to.
    """

    def __init__(
        self,
        root: str,
        session: str | None,
        previous: list[str],
        storage_options: dict | None = None,
        checksum: str | None = None,
        compression: str | None = None,
        digest: str = "crc32",
    ) -> None:
        super().__init__()
        self.root = root
        self.session = session
        self.previous = previous
        self.storage_options = storage_options
        self.checksum = checksum
        self.compression = compression
        self.digest = digest
        self.location = join(root, time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + os.urandom(4).hex())
        self._folders: list[str] = []  # absolute locations, numbered as the record's "directories"
        self._created = False

    def _folder_number(self, folder: str) -> int:
        if folder not in self._folders:
            self._folders.append(folder)
        return self._folders.index(folder)

    def _target(self, number: int) -> WriteTarget:
        self._create()
        return WriteTarget(
            join(self.location, file_name(number)),
            os.urandom(8).hex(),
            self.storage_options,
            self.checksum,
            self.compression,
            self.digest,
        )

    def _entry(self, number: int, target: WriteTarget, result: dict) -> dict:
        return {
            "dir": self._folder_number(self.location),
            "name": file_name(number),
            "size": result["size"],
            "digest": result["digest"],
            "token": target.token,
            "variable": self._variable,
        }

    def _file_entry(self, part: PartitionFile) -> dict:
        if type(part) is not PartitionFile:
            raise PicklingError(
                f"reads {part.describe()}: a session file cannot refer to a checkpoint's partitions;"
                " persist() or compute() it first, or checkpoint it instead"
            )
        folder, name = _partition.split(part.location)
        return {
            "dir": self._folder_number(folder),
            "name": name,
            "size": part.size,
            "digest": part.digest,
            "token": part.token,
            "variable": self._variable,
        }

    def _record(self) -> dict:
        return {
            "version": FOLDER_VERSION,
            "scheduler": self.scheduler,
            "directories": [self._relative(folder) for folder in self._folders],
            "partitions": self._entries,
        }

    def _relative(self, folder: str) -> str:
        """``folder`` as the record keeps it: relative to the session file's
        own folder when it is inside it, else absolute."""
        if self.session is None:
            return folder
        home = _partition.parent(self.session)
        if _is_url(folder) != _is_url(home):
            return folder
        sep = "/" if _is_url(folder) else os.sep
        if folder.startswith(home.rstrip(sep) + sep):
            return folder[len(home.rstrip(sep)) + 1 :].replace(os.sep, "/")
        return folder

    # -- the folder's life -------------------------------------------------------

    def _create(self) -> None:
        if self._created:
            return
        marker = json.dumps({"session": self.session, "created": time.time()}).encode()
        if _is_url(self.location):
            fs, path = _filesystem(self.location, self.storage_options)
            fs.makedirs(path, exist_ok=True)
            fs.pipe_file(path.rstrip("/") + "/" + MARKER, marker)
        else:
            os.makedirs(self.root, mode=0o700, exist_ok=True)
            os.mkdir(self.location, mode=0o700)
            fd = os.open(os.path.join(self.location, MARKER), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as file:
                file.write(marker)
        self._created = True

    def abort(self) -> None:
        super().abort()
        if self._created:
            _remove_folder(self.location, self.storage_options, self.session, quiet=True)

    def commit(self) -> None:
        """Remove the folders the replaced session file used and the new one
        does not, if a save of this very session file made them."""
        if self.session is None:
            return
        keep = set(self._folders) if any(self._entries) else set()
        for folder in self.previous:
            if folder not in keep and folder != self.location:
                _remove_folder(folder, self.storage_options, self.session, quiet=False)


class StoreSink(PartitionSink):
    """Partitions as content-addressed objects of a checkpoint store, written
    by the workers (``storepart.write_store_partition``) while the
    checkpoint's writer holds the store's checkpoint lock.  Each partition's
    pieces are added to the checkpoint's manifest (``writer.add_external``),
    so prune and verify_store treat them as any other object.  Nothing to
    undo or clean up: objects of a checkpoint never listed are orphans, which
    the next prune removes.

    ``location``: the store as the workers reach it (absolute path or URL).
    """

    def __init__(self, writer: Any, location: str, storage_options: dict | None, compression: str | None) -> None:
        super().__init__()
        store = writer.store
        self._writer = writer
        self.store_location = location
        self.storage_options = storage_options
        self.hash_name = store.hash.name
        self.chunk_size = store.config.chunk_size
        self.compression = compression
        self.location = f"checkpoint store {store.label}"

    def _target(self, number: int) -> Any:
        from .storepart import StoreTarget

        return StoreTarget(
            self.store_location,
            self.storage_options,
            self.hash_name,
            self.chunk_size,
            self.compression,
            None,
            os.urandom(8).hex(),
        )

    def _entry(self, number: int, target: Any, result: dict) -> dict:
        self._writer.add_external(result["parts"], result["written"])
        return {"parts": result["parts"], "size": result["size"], "variable": self._variable}

    def add_file(self, part: Any) -> int:
        """A partition of a checkpoint of this store that a lazily restored
        collection still reads: its objects are referred to again."""
        from .storepart import StorePartition

        if type(part) is not StorePartition or part.location != self.store_location or part.hash_name != self.hash_name:
            where = "another checkpoint store" if type(part) is StorePartition else "a session file's partition folder"
            raise PicklingError(
                f"reads {part.describe()}, in {where}: a checkpoint refers only to its own store's objects;"
                " persist() or compute() it first"
            )
        known = self._by_key.get(("file", part.token))
        if known is not None:
            return known
        self._writer.add_external(part.parts, 0, check=True)
        number = self._new_number(("file", part.token))
        self._entries[number] = {"parts": part.parts, "size": part.size, "variable": self._variable}
        return number

    def _record(self) -> dict:
        return {
            "version": STORE_VERSION,
            "kind": "store",
            "hash": self.hash_name,
            "scheduler": self.scheduler,
            "directories": [],
            "partitions": self._entries,
        }


class SignedStoreSink(PartitionSink):
    """A signed checkpoint: Dask partitions are refused (not signed yet)."""

    def add(self, future: Any) -> int:
        raise PicklingError(
            f"the future {future.key!r} holds its value on a Dask cluster, and signed checkpoints (key=) cannot"
            " hold Dask partitions yet: checkpoint without key=, or save with mason.dump_module(..., key=)"
        )

    def add_file(self, part: Any) -> int:
        raise PicklingError(f"reads {part.describe()}, and signed checkpoints (key=) cannot hold Dask partitions yet")

    def _record(self) -> dict:
        raise AssertionError("no partitions")


def _is_url(location: str) -> bool:
    from .._storage.remote import is_url

    return is_url(location)


def _filesystem(location: str, storage_options: dict | None) -> tuple[Any, str]:
    from .._storage import remote

    return remote._filesystem(location, storage_options)


def _remove_folder(folder: str, storage_options: dict | None, session: str | None, quiet: bool) -> None:
    """Remove a partition folder that a save of ``session`` made (its marker
    says so); anything else is left alone.  Failures warn: the session file
    itself is already saved."""
    try:
        if _is_url(folder):
            fs, path = _filesystem(folder, storage_options)
            try:
                owner = json.loads(fs.cat_file(path.rstrip("/") + "/" + MARKER)).get("session")
            except FileNotFoundError:
                return
            if owner == session:
                fs.rm(path, recursive=True)
            return
        import shutil

        try:
            with open(os.path.join(folder, MARKER), "rb") as file:
                owner = json.loads(file.read()).get("session")
        except FileNotFoundError:
            return
        if owner == session and not os.path.islink(folder):
            shutil.rmtree(folder)
    except Exception as exc:  # the save succeeded: a folder left behind costs only space
        if not quiet:
            warnings.warn(
                f"{folder}: could not remove the partitions of the replaced session file"
                f" ({type(exc).__name__}: {exc}); remove the folder by hand",
                MasonWarning,
                stacklevel=4,
            )


def sink_for(target: Any, options: Any, signed: bool) -> PartitionSink | None:
    """The partition sink of a save to ``target`` (a path, URL or stream)."""
    from .._storage.remote import is_url

    session = None
    if isinstance(target, (str, os.PathLike)):
        session = _partition.absolute(target)
    root = options.dask_storage
    storage_options = options.dask_storage_options
    if root is None:
        if session is None:
            return _NoFolderSink()
        root = session + ".dask"
        if storage_options is None and is_url(root):
            storage_options = options.storage_options
    else:
        root = _partition.absolute(root)
    if storage_options and not is_url(root):
        raise ValueError(f"dask_storage_options apply to URLs only, not to {root!r}")
    previous = previous_folders(session, options.storage_options) if session is not None else []
    return FolderSink(
        root,
        session,
        previous,
        storage_options,
        checksum=options.checksum,
        compression=options.compression,
        # crc32+xxh3 is per record: a partition file's digest is its CRC-32,
        # which every reader computes.
        digest="sha256" if signed else ("xxh3_64" if options.checksum == "xxh3_64" else "crc32"),
    )


class _NoFolderSink(PartitionSink):
    """A save to a stream with no ``dask_storage``: nowhere for workers to write."""

    def add(self, future: Any) -> int:
        raise PicklingError(
            f"the future {future.key!r} holds its value on a Dask cluster, and this session goes to a stream:"
            " pass dask_storage= (a folder or URL that the workers can write to) to save it"
        )

    def add_file(self, part: PartitionFile) -> int:
        raise PicklingError(
            f"reads partition file {part.location}, and this session goes to a stream: pass dask_storage= to save it"
        )

    def _record(self) -> dict:
        raise AssertionError("no partitions")


def previous_folders(session: str, storage_options: dict | None) -> list[str]:
    """The partition folders (absolute) of the session file at ``session``,
    about to be replaced; [] if there is none, or it cannot be read (then
    nothing is removed)."""
    from .._storage.remote import is_url

    # Reading the old file's index costs little, but not nothing: skipped when
    # no save of it can have made partitions (then nothing is left to remove).
    if "dask" not in sys.modules and (is_url(session) or not os.path.isdir(session + ".dask")):
        return []
    from .._load import _LoadOptions, _open_session
    from .source import folders_of

    try:
        with _open_session(session, _LoadOptions(key=False, storage_options=storage_options)) as reader:
            dask = reader.meta.get("dask")
            return folders_of(dask, session) if dask is not None else []
    except Exception:  # no file, not a mason session, damaged: nothing to clean up
        return []
