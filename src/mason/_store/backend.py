"""Where a store's files live: a local directory, or a URL through fsspec.

Both backends offer the same few operations on names relative to the store
(``objects/ab/ab12...``): read, write whole (atomically where the backend
can), create only if absent, list a directory, delete.  The store's logic
(catalog, locks, prune) is written once against them.

Local writes go to a private temporary file in ``<store>/tmp/`` (same
filesystem), fsynced, then renamed into place, and the directories that
received renames are fsynced before anything refers to what they hold (see
``sync``).  Files are created 0600 and directories 0700; objects are opened
without following symbolic links.

URLs: one ``pipe_file`` per file.  On S3, GCS and Azure an object appears
whole when its upload completes, so every write is atomic there; on other
backends (``sftp://``, ``memory://``) a failed write can leave a partial
file, which readers detect (every object is checked against its name, every
document parsed and checked) but do not repair.
"""

from __future__ import annotations

import errno
import os
import stat
import sys

from .._storage import local as _local
from .._storage import remote as _remote
from . import layout

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time: `import mason` stays fast
    from collections.abc import Iterable, Iterator
    from typing import Any

_O_BINARY = getattr(os, "O_BINARY", 0)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def open_backend(location: Any, storage_options: dict | None) -> LocalBackend | FsspecBackend:
    if _remote.is_url(location):
        fs, path = _remote._filesystem(os.fspath(location), storage_options)
        if _remote._is_local(fs):
            return LocalBackend(path, str(location))
        return FsspecBackend(fs, path.rstrip("/"), str(location))
    if storage_options:
        raise ValueError(f"storage_options apply to URLs only, not to {location!r}")
    if not isinstance(location, (str, os.PathLike)):
        raise TypeError(f"store must be a directory path or a URL, not {type(location).__name__}")
    return LocalBackend(os.fsdecode(location))


def _land(temp: str, fd: int, target: str, durable: bool) -> None:
    """Close a written temporary (fsynced first if ``durable``) and rename it
    over ``target``; on any failure the temporary is removed."""
    try:
        try:
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, target)
    except BaseException:
        _unlink(temp)
        raise


class LocalBackend:
    """A store in a local directory."""

    remote = False

    def __init__(self, root: str, label: str | None = None) -> None:
        self.root = os.path.abspath(root)
        self.label = label or os.fsdecode(root)  # what messages call the store
        self.key = os.path.realpath(self.root)  # the same store, however it is named
        self._made: set[str] = set()  # directories known to exist
        self._unsynced: set[str] = set()  # directories with renames not yet fsynced
        self._temp_prefix = f"{_local._host_tag()}-{os.getpid()}-"
        self._pool: Any = None  # threads that fsync and rename what write_soon wrote
        self._soon: list[Any] = []  # their futures, oldest first

    def path(self, name: str) -> str:
        return os.path.join(self.root, *name.split("/"))

    # -- the store itself --------------------------------------------------------

    def kind(self) -> str:
        """'missing', 'directory' or 'file': what is at the store's location."""
        try:
            mode = os.stat(self.root).st_mode
        except FileNotFoundError:
            return "missing"
        return "directory" if stat.S_ISDIR(mode) else "file"

    def create_root(self) -> None:
        os.makedirs(self.root, mode=0o700, exist_ok=True)

    def is_empty(self) -> bool:
        return not os.listdir(self.root)

    # -- reading -----------------------------------------------------------------

    def open(self, name: str) -> Any:
        """An unbuffered binary file, opened without following symbolic links."""
        path = self.path(name)
        try:
            fd = os.open(path, os.O_RDONLY | _O_BINARY | _O_NOFOLLOW | _O_CLOEXEC)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise OSError(errno.ELOOP, "refusing to read through a symlink in a store", path) from None
            raise
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise IsADirectoryError(errno.EISDIR, "not a regular file", path)
        return os.fdopen(fd, "rb", buffering=0)

    def read(self, name: str, limit: int | None = None) -> bytes:
        """The whole file (FileNotFoundError if absent); at most ``limit`` + 1 bytes."""
        with self.open(name) as file:
            return file.read() if limit is None else file.read(limit + 1)

    def size(self, name: str) -> int | None:
        try:
            return os.lstat(self.path(name)).st_size
        except FileNotFoundError:
            return None

    def list(self, directory: str) -> list[str]:
        try:
            return os.listdir(self.path(directory))
        except (FileNotFoundError, NotADirectoryError):
            return []

    def objects(self) -> Iterator[tuple[str, int]]:
        """(name, size) of every file under objects/."""
        for fan in self.list(layout.OBJECTS):
            for name in self.list(f"{layout.OBJECTS}/{fan}"):
                full = f"{layout.OBJECTS}/{fan}/{name}"
                size = self.size(full)
                if size is not None:
                    yield full, size

    # -- writing -----------------------------------------------------------------

    def _ensure_dir(self, directory: str) -> None:
        if directory not in self._made:
            os.makedirs(directory, mode=0o700, exist_ok=True)
            self._made.add(directory)

    def _temp(self, parts: Iterable[Any], durable: bool) -> str:
        temp, fd = self._temp_written(parts)
        try:
            if durable:
                os.fsync(fd)
        except BaseException:
            _unlink(temp)
            raise
        finally:
            os.close(fd)
        return temp

    def _temp_written(self, parts: Iterable[Any]) -> tuple[str, int]:
        """A new temporary holding ``parts`` (not fsynced), and its open descriptor."""
        tmp = self.path(layout.TMP)
        self._ensure_dir(tmp)
        temp = os.path.join(tmp, self._temp_prefix + os.urandom(6).hex())
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_BINARY | _O_CLOEXEC, 0o600)
        try:
            for part in parts:
                view = memoryview(part).cast("B")
                while view.nbytes:
                    written = os.write(fd, view)
                    if not written:
                        raise OSError(errno.EIO, "the file accepted no bytes", temp)
                    view = view[written:]
        except BaseException:
            os.close(fd)
            _unlink(temp)
            raise
        return temp, fd

    #: objects being fsynced and renamed on threads at once, at most
    SOON = 8

    def write_soon(self, name: str, parts: Iterable[Any]) -> None:
        """``write(name, parts)``, with its fsync and rename on a thread.

        The bytes are written (into the page cache) before this returns, so
        the caller may reuse what ``parts`` views; ``settle`` and ``sync``
        wait for the rest and raise the first failure.  On a disk, fsyncs of
        many objects run together (the journal commits them as a group)
        instead of one after another: a first checkpoint of many 4 MiB
        objects took 1.4x the time of one session file without it."""
        target = self.path(name)
        directory = os.path.dirname(target)
        self._ensure_dir(directory)
        temp, fd = self._temp_written(parts)
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(2, thread_name_prefix="mason-fsync")
        self._soon.append(self._pool.submit(_land, temp, fd, target, True))
        self._unsynced.add(directory)
        if len(self._soon) > self.SOON:
            self._soon.pop(0).result()

    def settle(self, quiet: bool = False) -> None:
        """Wait for every ``write_soon``; raise the first failure (unless ``quiet``)."""
        error = None
        while self._soon:
            try:
                self._soon.pop(0).result()
            except BaseException as exc:
                error = error or exc
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        if error is not None and not quiet:
            raise error

    def write(self, name: str, parts: Iterable[Any], *, durable: bool = True) -> None:
        """Replace ``name`` with the concatenated ``parts``, atomically.

        ``durable``: fsync the file before the rename, and remember its
        directory for ``sync``."""
        target = self.path(name)
        directory = os.path.dirname(target)
        self._ensure_dir(directory)
        _land(*self._temp_written(parts), target, durable)
        if durable:
            self._unsynced.add(directory)

    def write_new(self, name: str, data: bytes) -> bool:
        """Create ``name`` holding ``data`` unless it exists (then False); atomic."""
        target = self.path(name)
        self._ensure_dir(os.path.dirname(target))
        temp = self._temp([data], True)
        try:
            os.link(temp, target)  # never replaces: the first writer wins
        except FileExistsError:
            return False
        finally:
            _unlink(temp)
        self._unsynced.add(os.path.dirname(target))
        return True

    def sync(self) -> None:
        """fsync every directory that received a durable rename since the last
        call (after the writes of ``write_soon`` have landed)."""
        self.settle()
        for directory in sorted(self._unsynced):
            _local._fsync_directory(directory)
        self._unsynced.clear()

    def delete(self, name: str) -> bool:
        try:
            os.unlink(self.path(name))
        except FileNotFoundError:
            return False
        return True

    def clean_temps(self, older_than: float) -> int:
        """Remove temporaries of writers that are gone: of this machine and a
        process no longer running, or (any machine) untouched for ``older_than`` s."""
        import time

        removed = 0
        host = _local._host_tag()
        now = time.time()
        for name in self.list(layout.TMP):
            path = os.path.join(self.path(layout.TMP), name)
            tag, _, rest = name.partition("-")
            pid = rest.partition("-")[0]
            dead = (
                tag == host
                and pid.isdigit()
                and int(pid) != os.getpid()
                and sys.platform != "win32"  # os.kill(pid, 0) would end the process there
                and not _local._pid_alive(int(pid))
            )
            try:
                old = now - os.lstat(path).st_mtime > older_than
            except FileNotFoundError:
                continue
            if dead or old:
                removed += _unlink(path)
        return removed


class FsspecBackend:
    """A store at a URL, through fsspec (``s3://bucket/prefix``, ``memory://x`` ...)."""

    remote = True

    def __init__(self, fs: Any, root: str, label: str) -> None:
        self.fs = fs
        self.root = root
        self.label = label
        self.key = label

    def path(self, name: str) -> str:
        return f"{self.root}/{name}"

    def kind(self) -> str:
        info = _unless_missing(lambda: self.fs.info(self.root), None)
        if info is None:
            return "missing"
        return "directory" if info.get("type") == "directory" else "file"

    def create_root(self) -> None:
        pass  # object stores have no directories; the config file makes the store

    def is_empty(self) -> bool:
        return not self.list("")

    def open(self, name: str) -> Any:
        return None  # no local file to map or read into: read() instead

    def read(self, name: str, limit: int | None = None) -> bytes:
        path = self.path(name)
        if limit is None:
            return self.fs.cat_file(path)
        return self.fs.cat_file(path, start=0, end=limit + 1)

    def size(self, name: str) -> int | None:
        size = _unless_missing(lambda: self.fs.size(self.path(name)), None)
        return None if size is None else int(size)

    def list(self, directory: str) -> list[str]:
        path = self.path(directory) if directory else self.root
        self.fs.invalidate_cache(path)  # listings must show what others wrote since
        found = _unless_missing(lambda: self.fs.ls(path, detail=False), [])
        return [item.rstrip("/").rsplit("/", 1)[-1] for item in found]

    def objects(self) -> Iterator[tuple[str, int]]:
        base = self.path(layout.OBJECTS)
        self.fs.invalidate_cache(base)
        found = _unless_missing(lambda: self.fs.find(base, detail=True), {})
        for path, info in found.items():
            if info.get("type", "file") == "file" and path.startswith(base + "/"):
                yield layout.OBJECTS + path[len(base) :], int(info.get("size") or 0)

    def write(self, name: str, parts: Iterable[Any], *, durable: bool = True) -> None:
        data = b"".join(bytes(part) if not isinstance(part, bytes) else part for part in parts)
        self.fs.pipe_file(self.path(name), data)

    def write_soon(self, name: str, parts: Iterable[Any]) -> None:
        self.write(name, parts)  # an upload is whole when it returns

    def settle(self, quiet: bool = False) -> None:
        pass

    def write_new(self, name: str, data: bytes) -> bool:
        # Object stores have no portable "create if absent" through fsspec: two
        # first writers may both write the config; each then uses the one it reads back.
        if self.fs.exists(self.path(name)):
            return False
        self.fs.pipe_file(self.path(name), data)
        return True

    def sync(self) -> None:
        pass  # a completed upload is durable

    def delete(self, name: str) -> bool:
        return _unless_missing(lambda: self.fs.rm_file(self.path(name)) or True, False)

    def clean_temps(self, older_than: float) -> int:
        return 0  # writes go straight to their names: nothing is left in tmp/


def _unless_missing(call: Any, default: Any) -> Any:
    """``call()``, or ``default`` when what it asks for is missing.

    The caught error's traceback is dropped: fsspec keeps the error in a
    reference cycle with its future, and the traceback's frames lead back
    to the writer's, whose views of the caller's buffers would then stay
    exported until the next garbage collection (the caller cannot release
    its buffer: BufferError)."""
    try:
        return call()
    except FileNotFoundError as exc:
        exc.__traceback__ = None
        return default


def _unlink(path: str) -> int:
    try:
        os.unlink(path)
    except FileNotFoundError:
        return 0
    return 1
