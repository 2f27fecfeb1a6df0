"""Session files on the local disk: atomic private writes, symlink-refusing reads.

A save either replaces the target whole or leaves it untouched: bytes go to a
temporary sibling (same directory, so same filesystem) that is fsynced and
then renamed over the target with ``os.replace``.  New files are always
created with ``mode`` (0600 by default), whatever the old target's mode was:
a session can hold secrets, and inheriting a looser mode would leak them.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
import zlib
from contextlib import contextmanager

TYPE_CHECKING = False
if TYPE_CHECKING:  # pathlib and typing are imported only when needed: `import mason` stays fast
    from collections.abc import Iterator
    from pathlib import Path
    from typing import BinaryIO

_TEMP_MARK = ".mason-tmp-"
# Keep the temporary name under the usual 255-byte limit however long the target's.
_MAX_STEM = 100
_O_BINARY = getattr(os, "O_BINARY", 0)  # Windows: no newline translation
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def _host_tag() -> str:
    # Temporaries can sit on a filesystem shared between machines; a pid only
    # means something on the machine that wrote it.
    try:
        host = os.uname().nodename
    except AttributeError:  # Windows
        import socket

        host = socket.gethostname()
    return f"{zlib.crc32(host.encode('utf-8', 'replace')):08x}"


def _temp_prefix(target: str) -> str:
    return f".{os.path.basename(target)[:_MAX_STEM]}{_TEMP_MARK}{_host_tag()}-"


def _refuse_symlink(path: str, action: str) -> None:
    if os.path.islink(path):
        raise OSError(errno.ELOOP, f"refusing to {action} a session through a symlink", path)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, belongs to someone else
        return True
    except OverflowError:  # not a pid we wrote: leave the file alone
        return True
    return True


def _remove_stale_temps(target: str) -> None:
    """Remove temporaries of ``target`` left by crashed writers on this machine.

    Only names that match our pattern, carry this machine's tag, and whose
    writer pid is no longer running.  On Windows os.kill(pid, 0) would
    terminate the process, so nothing is removed there.
    """
    if sys.platform == "win32":
        return
    prefix = _temp_prefix(target)
    try:
        directory = os.path.dirname(target) or os.curdir
        names = os.listdir(directory)
    except OSError:
        return  # the write itself will report an unusable directory
    for name in names:
        if not name.startswith(prefix):
            continue
        pid_text = name[len(prefix) :].partition("-")[0]
        if not pid_text.isdigit() or int(pid_text) == os.getpid() or _pid_alive(int(pid_text)):
            continue
        try:
            os.unlink(os.path.join(directory, name))
        except OSError:
            pass  # best effort: another process may have removed it first


@contextmanager
def atomic_write(path: str | os.PathLike[str], *, mode: int = 0o600) -> Iterator[BinaryIO]:
    """Yield a binary file whose bytes replace ``path`` only if the block succeeds.

    On any exception (KeyboardInterrupt included) the temporary file is
    removed, ``path`` is untouched, and the exception propagates.  Refuses a
    ``path`` that is a symlink (OSError ELOOP).  The new file gets ``mode``
    (subject to the umask).
    """
    target = os.fsdecode(path)
    _refuse_symlink(target, "write")
    if os.path.isdir(target):
        raise IsADirectoryError(errno.EISDIR, "a session file cannot replace a directory", str(target))
    directory = os.path.dirname(target) or os.curdir
    if not os.path.isdir(directory):
        raise FileNotFoundError(errno.ENOENT, "no such directory for the session file", str(directory))
    _remove_stale_temps(target)
    temp = os.path.join(directory, f"{_temp_prefix(target)}{os.getpid()}-{os.urandom(4).hex()}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_BINARY | _O_CLOEXEC, mode)
    retired = None
    try:
        with os.fdopen(fd, "wb") as fileobj:
            yield fileobj
            fileobj.flush()
            os.fsync(fileobj.fileno())
        retired = _retire(target, directory)
        os.replace(temp, target)
    except BaseException as exc:
        for ours in (temp, retired):
            try:
                if ours is not None:
                    os.unlink(ours)
            except FileNotFoundError:
                pass  # already gone: nothing of ours is left behind either way
        if isinstance(exc, OSError) and exc.errno is not None and exc.filename is None:
            raise _not_written(exc, target) from exc
        raise
    _fsync_directory(directory)
    if retired is not None:
        _discard_later(retired)


#: an old file at least this large is freed by a thread after the save
RETIRE_FROM = 64 << 20


def _retire(target: str, directory: str) -> str | None:
    """A second name for a large file the save is about to replace, or None.

    Replacing the last name of a file frees its pages there and then (about
    0.15 s per GB on tmpfs, and dropping its page cache on any disk): with
    a second name, the rename only drops a link and a thread frees the file
    after the save returns.  The name is a temporary's of this process: if
    the process dies first, the next save of ``target`` removes it."""
    if sys.platform == "win32":
        return None
    try:
        if os.lstat(target).st_size < RETIRE_FROM:
            return None
        aside = os.path.join(directory, f"{_temp_prefix(target)}{os.getpid()}-{os.urandom(4).hex()}")
        os.link(target, aside)
    except OSError:  # no old file, or no hard links here: the rename frees it
        return None
    return aside


_discarding: list = []


def _discard_later(path: str) -> None:
    import threading

    def discard() -> None:
        try:
            os.unlink(path)
        except OSError:
            pass

    # Not a daemon: an exiting interpreter waits for it (a fraction of a second).
    worker = threading.Thread(target=discard, name="mason-discard")
    worker.start()
    _discarding[:] = [t for t in _discarding if t.is_alive()] + [worker]


def _not_written(exc: OSError, target: str) -> OSError:
    """``exc`` (a write's ENOSPC, EIO, EDQUOT: no file named) saying which file
    was not written and that the old one is intact; same errno, same subclass."""
    kept = "the previous file is unchanged" if os.path.exists(target) else "no file was created"
    return OSError(exc.errno, f"{exc.strerror or exc} (session not saved; {kept})", str(target))


def _fsync_directory(directory: str) -> None:
    """Make the rename itself durable (POSIX; Windows has no directory fsync)."""
    if sys.platform == "win32":
        return
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def open_for_read(path: str | os.PathLike[str]) -> BinaryIO:
    """Open a session file for binary reading; refuses symlinks and directories."""
    target = os.fsdecode(path)
    _refuse_symlink(target, "read")
    try:
        # O_NOFOLLOW closes the gap between the check above and the open.
        fd = os.open(target, os.O_RDONLY | _O_BINARY | _O_NOFOLLOW | _O_CLOEXEC)
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, "no mason session file here", str(target)) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise OSError(errno.ELOOP, "refusing to read a session through a symlink", str(target)) from None
        raise
    if stat.S_ISDIR(os.fstat(fd).st_mode):
        os.close(fd)
        raise IsADirectoryError(errno.EISDIR, "this is a directory, not a session file", str(target))
    return os.fdopen(fd, "rb")


def default_session_path() -> Path:
    """``session.mason`` in a private per-user directory (created 0700 if missing).

    $MASON_HOME if set, else the platform's user data directory:
    $XDG_DATA_HOME/mason (~/.local/share/mason) on Linux and other POSIX,
    ~/Library/Application Support/mason on macOS, %LOCALAPPDATA%\\mason on
    Windows.  Never a shared temporary directory.  An existing directory's
    mode is left alone.
    """
    from pathlib import Path

    home = os.environ.get("MASON_HOME")
    if home:
        directory = Path(home).expanduser()
    elif sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        directory = Path(base) / "mason"
    elif sys.platform == "darwin":
        directory = Path.home() / "Library" / "Application Support" / "mason"
    else:
        xdg = os.environ.get("XDG_DATA_HOME", "")
        # The XDG spec says to ignore a relative path here.
        base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".local" / "share"
        directory = base / "mason"
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    return directory / "session.mason"
