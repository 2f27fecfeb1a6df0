"""Checkpoints taken by a forked child, so that the caller waits only for the fork.

``os.fork()`` gives the child a copy-on-write image of the whole process at
that instant: the child checkpoints exactly the state the caller had, while
the caller runs on (its later writes copy pages; the child never sees them).
On Linux a fork costs about a millisecond for a 1.5 GB session, where a
checkpoint must read every byte to find what changed (0.1 s or more), so
``%autocheckpoint`` runs its checkpoints here and a cell returns at once.

Where a child cannot do it safely, :func:`unsuitable` says why and the
caller checkpoints in its own process: no ``os.fork`` (Windows), a remote
store (its client runs on the parent's threads and event loop, which a
child does not have), CUDA initialized (a forked child cannot use it), Dask's
``distributed`` imported (futures need the client's connection).

The child
- leaves the caller's process group and ignores SIGINT, so that interrupting
  or killing the kernel does not end a checkpoint half way (a checkpoint is
  listed whole or not at all in any case);
- writes nothing to the caller's streams (a kernel's are sockets served by
  the parent's threads): its stdout and stderr go to /dev/null, its warnings
  and its result come back through a pipe;
- ends with ``os._exit`` and never collects the caller's garbage (``gc.freeze``):
  no atexit handler or finalizer of the caller runs twice;
- is ended by SIGALRM after :data:`TIME_LIMIT` seconds, so that one stuck on
  a lock another thread held at the fork cannot hold the store forever;
- runs at a lower priority (nice 5) and is the one the kernel's OOM killer
  picks first (``oom_score_adj`` 500): short of memory, the checkpoint is
  lost, not the caller.  When the caller's resident memory exceeds what is
  available (the pages it writes while the child runs are copied),
  :func:`unsuitable` says so and the caller checkpoints itself.
"""

from __future__ import annotations

import os
import pickle
import select
import signal
import sys
import time
from collections import namedtuple

from .._storage import is_url

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time: `import mason` stays fast
    from collections.abc import Callable
    from typing import Any

#: seconds after which a checkpoint child is ended (SIGALRM)
TIME_LIMIT = 3600
_MAX_WARNINGS = 50
_MAX_TEXT = 2000


class Outcome(namedtuple("Outcome", ["id", "error", "warnings", "seconds"])):
    """How a child's checkpoint ended: ``id`` (None if it failed), ``error``
    (text, or None), ``warnings`` ((category name, text) pairs), ``seconds``
    (from the fork to the end)."""

    __slots__ = ()


def unsuitable(store: Any) -> str | None:
    """Why a checkpoint to ``store`` cannot be taken by a forked child, or None."""
    if not hasattr(os, "fork") or sys.platform == "win32":
        return "this platform has no fork()"
    if is_url(store):
        return "the store is remote"
    if "distributed" in sys.modules:
        return "Dask's distributed is imported"
    memory = _memory_problem()
    if memory is not None:
        return memory
    torch = sys.modules.get("torch")
    cuda = getattr(torch, "cuda", None)
    try:
        if cuda is not None and cuda.is_initialized():
            return "CUDA is initialized in this process"
    except Exception:  # an odd torch build: be safe
        return "torch's CUDA state is unknown"
    return None


def _memory_problem() -> str | None:
    """Linux: why copy-on-write could run out of memory, or None.  The pages
    the caller writes while the child runs are copied; at worst all of
    them, so the caller's resident size must fit in what is available."""
    try:
        with open("/proc/self/statm", "rb") as fh:
            resident = int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        with open("/proc/meminfo", "rb") as fh:
            available = next(int(line.split()[1]) * 1024 for line in fh if line.startswith(b"MemAvailable:"))
    except (OSError, ValueError, IndexError, StopIteration):
        return None  # not Linux, or an odd /proc: no way to tell, go ahead
    if resident > available:
        return (
            f"the kernel holds {resident / 1e9:.1f} GB and only {available / 1e9:.1f} GB of memory are free:"
            " a background copy could need as much again"
        )
    return None


class Pending:
    """A checkpoint running in a child: :meth:`done` polls it, :meth:`wait` waits."""

    def __init__(self, pid: int, fd: int, started: float) -> None:
        self.pid = pid
        self.started = started
        self._fd: int | None = fd
        self._data = bytearray()
        self._outcome: Outcome | None = None

    def done(self) -> bool:
        """Whether the child has finished (never blocks)."""
        return self._outcome is not None or self._drain(0.0)

    def wait(self, timeout: float | None = None) -> Outcome | None:
        """The child's outcome, after it finished; None if ``timeout`` seconds passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._outcome is None:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if self._drain(left):
                break
            if deadline is not None and time.monotonic() >= deadline:
                return None
        return self._outcome

    def cancel(self) -> Outcome:
        """End the child now (its checkpoint is then not listed) and return its outcome."""
        if self._outcome is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.wait()
        assert self._outcome is not None
        return self._outcome

    def _drain(self, timeout: float | None) -> bool:
        """Read what the child sent, for up to ``timeout`` seconds; True once it has ended."""
        fd = self._fd
        assert fd is not None
        poller = select.poll()  # not select(): a kernel may hold more than 1024 files
        poller.register(fd, select.POLLIN)
        while True:
            if not poller.poll(None if timeout is None else int(timeout * 1000)):
                return False
            chunk = os.read(fd, 1 << 16)
            if chunk:
                self._data += chunk
                timeout = 0.0
                continue
            os.close(fd)
            self._fd = None
            self._finish()
            return True

    def _finish(self) -> None:
        try:
            _, status = os.waitpid(self.pid, 0)
        except ChildProcessError:  # reaped by someone else's os.wait(): the pipe says how it went
            status = None
        seconds = time.monotonic() - self.started
        try:
            sent = pickle.loads(bytes(self._data))  # from our own child
        except Exception:
            sent = {"id": None, "error": _ended(status), "warnings": []}
        if sent["id"] is not None:  # what checkpoint() remembered there, for this process's next one
            from . import api

            api._LAST.update(sent["last"])
            api._INDEX.update(sent["index"])
        self._outcome = Outcome(sent["id"], sent["error"], sent["warnings"], seconds)


def _ended(status: int | None) -> str:
    if status is not None and os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        why = " (its time limit)" if number == signal.SIGALRM else ""
        return f"the checkpoint process was ended by {name}{why}; the checkpoint was not made"
    return "the checkpoint process ended without a result; the checkpoint was not made"


def start(run: Callable[[], str]) -> Pending:
    """Fork; the child calls ``run()`` (which returns a checkpoint id) and
    sends back its outcome, with the bookkeeping that lets the caller's next
    checkpoint name this one as its parent.  Returns at once in the caller."""
    import warnings

    from . import api

    read_end, write_end = os.pipe()
    started = time.monotonic()
    with warnings.catch_warnings():
        # Python 3.12+ warns that forking a threaded process may deadlock the
        # child; the child here only runs mason's save, and has a time limit.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid:
        os.close(write_end)
        # Both sides move the child to its own group (the usual idiom): when
        # this returns, a signal to the caller's group already spares it.
        try:
            os.setpgid(pid, pid)
        except OSError:  # it did so itself already, or has ended
            pass
        return Pending(pid, read_end, started)
    # ---- the child: never returns
    os.close(read_end)
    status = 1
    try:
        _detach()
        last, index = dict(api._LAST), dict(api._INDEX)
        sent = _run(run)
        sent["last"] = {k: v for k, v in api._LAST.items() if last.get(k) != v}
        sent["index"] = {k: v for k, v in api._INDEX.items() if index.get(k) is not v}
        data = pickle.dumps(sent, protocol=pickle.HIGHEST_PROTOCOL)
        view = memoryview(data)
        while view:
            view = view[os.write(write_end, view) :]
        status = 0
    finally:
        os._exit(status)


def _detach() -> None:
    import gc

    # The caller's garbage is the caller's: a cycle collected here would run
    # its finalizers in the child too (a temporary file deleted under the
    # caller's feet). Frozen objects are never collected, also not by the
    # gc.collect() a save may call.
    gc.freeze()
    try:
        # Short of memory, the kernel's OOM killer ends this copy, not the
        # caller (a checkpoint never costs the user their kernel); and the
        # caller's next cell comes first for the CPU.
        with open("/proc/self/oom_score_adj", "w") as fh:
            fh.write("500")
    except OSError:
        pass
    try:
        os.nice(5)
    except OSError:
        pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGALRM, signal.SIG_DFL)  # not a handler the caller set: the limit ends the child
    signal.alarm(TIME_LIMIT)
    try:
        os.setpgid(0, 0)  # not in the kernel's process group: a signal to the group spares the checkpoint
    except OSError:
        pass
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.dup2(null, 2)
    os.close(null)
    import io

    sys.stdout = sys.stderr = io.StringIO()


def _run(run: Callable[[], str]) -> dict:
    import warnings

    caught: list = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ident = run()
        error = None
    except BaseException as exc:  # reported to the caller, who decides what to say
        ident, error = None, f"{type(exc).__name__}: {exc}"[:_MAX_TEXT]
    said = [(w.category.__name__, str(w.message)[:_MAX_TEXT]) for w in caught[:_MAX_WARNINGS]]
    return {"id": ident, "error": error, "warnings": said}
