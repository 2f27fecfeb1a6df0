"""The partitions a session file refers to, as a load restores them.

The session's ``dask`` metadata is checked whole before anything is
unpickled (a malformed table is a damaged file, named as such).  Then each
partition a variable uses becomes, with a running client, a future on that
client's cluster (read there by a worker: the data never passes through the
loading process), or without one a task that reads the file when computed.
Either way the values are those saved.
"""

from __future__ import annotations

import os
import re

from ..errors import CorruptSessionError, UnsupportedFormatError
from . import partition as _partition
from .partition import DIGESTS, NAME, PartitionFile
from .sink import VERSION

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time: `import mason` stays fast
    from typing import Any

_TOKEN = re.compile(r"[0-9a-f]{16}")
_DIGEST = re.compile(r"(?:crc32|xxh3_64):[0-9a-f]{16}|sha256:[0-9a-f]{64}")
# Large enough for any session, small enough that a forged count cannot make
# the checks below allocate without bound.
_MAX_PARTITIONS = 1 << 24


def _malformed(what: str) -> CorruptSessionError:
    return CorruptSessionError(f"index: the session's Dask partition table is malformed: {what}")


def _directories(dask: Any) -> list[str]:
    if type(dask) is not dict:
        raise _malformed("not an object")
    version = dask.get("version")
    if type(version) is not int:
        raise _malformed("no version")
    if version > VERSION:
        raise UnsupportedFormatError(
            f"this session's Dask partitions are described in version {version} of the table, this mason reads up"
            f" to {VERSION}: upgrade mason"
        )
    folders = dask.get("directories")
    if type(folders) is not list or not all(type(f) is str and f for f in folders):
        raise _malformed("directories is not a list of folder names")
    for folder in folders:
        if not _is_absolute(folder) and any(part in ("", ".", "..") for part in folder.split("/")):
            raise _malformed(f"directory {folder[:60]!r} is neither absolute nor a plain relative folder")
    return folders


def _is_absolute(folder: str) -> bool:
    from .._storage.remote import is_url

    return is_url(folder) or os.path.isabs(folder)


def _resolve(folder: str, session: str | None) -> str | None:
    """A recorded folder as a location, or None if it is relative and the
    session was not read from a path or URL."""
    if _is_absolute(folder):
        return folder
    if session is None:
        return None
    home = _partition.parent(session)
    from .._storage.remote import is_url

    if is_url(home):
        return home.rstrip("/") + "/" + folder
    return os.path.join(home, *folder.split("/"))


def folders_of(dask: Any, session: str) -> list[str]:
    """The folders (absolute) a session's ``dask`` metadata refers to."""
    found = [_resolve(folder, session) for folder in _directories(dask)]
    return [folder for folder in found if folder is not None]


class PartitionSource:
    """The partition table of one session being loaded.

    ``session``: where the file was read from (absolute path or URL; None
    for a stream); ``storage_options``: for partitions at URLs;
    ``allowlist``: the load's (None: a plain load), enforced on every
    partition read too.
    """

    def __init__(self, dask: Any, session: str | None, storage_options: dict | None, allowlist: Any) -> None:
        folders = _directories(dask)
        self.scheduler = dask.get("scheduler")
        if self.scheduler is not None and type(self.scheduler) is not str:
            raise _malformed("scheduler is not an address")
        entries = dask.get("partitions")
        if type(entries) is not list or len(entries) > _MAX_PARTITIONS:
            raise _malformed("partitions is not a list")
        self._hash: str | None = None  # partitions in a checkpoint store: its hash
        digits = 0
        if dask.get("kind") == "store":
            if dask["version"] < 2 or folders:
                raise _malformed("a store's partition table has directories")
            if session is None:
                raise CorruptSessionError("a checkpoint's Dask partitions can only be restored from its store")
            from .._store import hashing

            self._hash = dask.get("hash")
            digits = hashing.by_name(self._hash, "the session's Dask partition table").hex_digits
        for number, entry in enumerate(entries):
            problem = _store_entry_problem(entry, digits) if self._hash else _entry_problem(entry, len(folders))
            if problem:
                raise _malformed(f"partition {number}: {problem}")
        self._folders = [_resolve(folder, session) for folder in folders]
        self._store = session
        self._entries = entries
        self._storage_options = storage_options
        self._allowlist = allowlist
        self._client: Any = False  # not looked up yet
        self._futures: dict[int, Any] = {}

    # -- what the rebuilders ask -------------------------------------------------

    def file(self, number: Any) -> Any:
        if type(number) is not int or not 0 <= number < len(self._entries) or self._entries[number] is None:
            raise CorruptSessionError(f"damaged file: Dask partition {number!r} is not in the session's table")
        entry = self._entries[number]
        if self._hash is not None:
            from .storepart import StorePartition

            return StorePartition(
                self._store,
                self._hash,
                entry["parts"],
                self._storage_options,
                self._allowlist,
                entry.get("variable", ""),
            )
        folder = self._folders[entry["dir"]]
        if folder is None:
            raise CorruptSessionError(
                "this session was read from a stream, and its Dask partitions are recorded relative to the"
                " session file: load it from its path or URL"
            )
        return PartitionFile(
            _partition.join(folder, entry["name"]),
            entry["size"],
            entry["digest"],
            entry["token"],
            self._storage_options,
            self._allowlist,
            entry.get("variable", ""),
        )

    def graph(self, rest: dict, partitions: list) -> dict:
        """``rest`` with each ``(key, number)`` of ``partitions`` put back:
        futures on the current cluster, or tasks that read the files."""
        from . import cluster

        graph = dict(rest)
        numbers = [number for _, number in partitions]
        if self._current_client() is not None:
            for (key, _), future in zip(partitions, self._read(numbers)):
                graph[key] = future
            return graph
        parts = [self.file(number) for number in numbers]
        _check_present(parts)
        for (key, _), part in zip(partitions, parts):
            graph[key] = cluster.read_task(key, part)
        return graph

    def future(self, number: Any) -> Any:
        """A saved future: a future again, or without a client a ``Delayed``."""
        from . import cluster

        if self._current_client() is not None:
            return self._read([number])[0]
        part = self.file(number)
        _check_present([part])
        return cluster.read_delayed(part)

    # -- internals ---------------------------------------------------------------

    def _current_client(self) -> Any:
        if self._client is False:
            from .cluster import current_client

            self._client = current_client()
        return self._client

    def _read(self, numbers: list) -> list:
        """Futures of the partitions ``numbers``, read by the workers (each once per load)."""
        from . import cluster

        missing = sorted({number for number in numbers if number not in self._futures})
        if missing:
            parts = [self.file(number) for number in missing]
            for number, future in zip(missing, cluster.read_futures(self._client, parts)):
                self._futures[number] = future
        return [self._futures[number] for number in numbers]


def _entry_problem(entry: Any, folders: int) -> str:
    if entry is None:
        return ""  # a number the save gave out but did not use
    if type(entry) is not dict:
        return "not an object"
    folder = entry.get("dir")
    if type(folder) is not int or not 0 <= folder < folders:
        return f"dir is not one of the {folders} directories"
    name = entry.get("name")
    if type(name) is not str or not NAME.fullmatch(name):
        return "name is not a partition file name"
    size = entry.get("size")
    if type(size) is not int or not 0 <= size < 1 << 63:
        return "size is not a byte count"
    digest = entry.get("digest")
    if type(digest) is not str or not _DIGEST.fullmatch(digest) or digest.partition(":")[0] not in DIGESTS:
        return "digest is not one mason writes"
    token = entry.get("token")
    if type(token) is not str or not _TOKEN.fullmatch(token):
        return "token is malformed"
    if type(entry.get("variable", "")) is not str:
        return "variable is not a name"
    return ""


def _store_entry_problem(entry: Any, digits: int) -> str:
    from .._store import layout

    if entry is None:
        return ""
    if type(entry) is not dict:
        return "not an object"
    parts = entry.get("parts")
    if (
        type(parts) is not list
        or not parts
        or not all(
            type(pieces) is list
            and all(
                type(p) is list
                and len(p) == 2
                and layout.is_digest(p[0], digits)
                and type(p[1]) is int
                and 0 < p[1] < 1 << 48
                for p in pieces
            )
            for pieces in parts
        )
    ):
        return "parts is not a list of [object, length] lists"
    if type(entry.get("size")) is not int or type(entry.get("variable", "")) is not str:
        return "size or variable is malformed"
    return ""


def _check_present(parts: list[Any]) -> None:
    """Each file is there with its recorded size (one listing per folder for
    URLs): a lazily restored collection fails at load, naming the variable,
    not when computed hours later.  Its bytes are checked when read."""
    from .._storage.remote import is_url

    listings: dict[str, dict[str, int]] = {}
    for part in parts:
        if type(part) is not PartitionFile:  # in a checkpoint store: its objects are there
            missing = part.missing()
            if missing:
                from ..errors import CorruptStoreError

                raise CorruptStoreError(f"{part.describe()}: object {missing} is missing")
            continue
        folder, name = _partition.split(part.location)
        if is_url(part.location):
            if folder not in listings:
                listings[folder] = _listing(folder, part.storage_options)
            size = listings[folder].get(name)
        else:
            try:
                size = os.stat(part.location).st_size
            except FileNotFoundError:
                size = None
        if size is None:
            raise CorruptSessionError(
                f"{part.describe()} is missing (removed, or the session was saved again since and"
                " replaced its partitions)"
            )
        if size != part.size:
            raise CorruptSessionError(
                f"{part.describe()} has {size} bytes, the session recorded {part.size} (truncated, damaged or replaced)"
            )


def _listing(folder: str, storage_options: dict | None) -> dict[str, int]:
    from .._storage import remote

    fs, path = remote._filesystem(folder, storage_options)
    fs.invalidate_cache(path)
    try:
        found = fs.ls(path, detail=True)
    except FileNotFoundError:
        return {}
    return {item["name"].rstrip("/").rpartition("/")[2]: item.get("size") for item in found}


def verify_partitions(dask: Any, session: str | None, storage_options: dict | None = None) -> tuple[int, int]:
    """Check every partition file a session refers to, as ``mason verify``
    does (nothing is unpickled, and dask is not needed): (files, bytes).
    A checkpoint's partitions are objects of its store: ``verify_store``
    checks those."""
    source = PartitionSource(dask, session, storage_options, None)
    if source._hash is not None:
        return 0, 0
    files = total = 0
    for number, entry in enumerate(source._entries):
        if entry is not None:
            total += _partition.check_partition(source.file(number))
            files += 1
    return files, total
