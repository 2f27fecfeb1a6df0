"""Who may write to a store now: lock files, as restic keeps them.

Checkpoints and prunes exclude each other; any number of either may run
together.  A checkpoint reuses objects that are already in the store (that is
the point of it), so a prune must not delete an object between the moment a
checkpoint decides to reuse it and the moment that checkpoint's entry is
listed; and a prune's list of what the listed checkpoints need must include
every checkpoint that is listed when it deletes.  Both hold while no
checkpoint runs during a prune's deletions.

Each holder writes ``locks/<id>.json`` ({kind, host, pid, refreshed, nonce})
before it starts, then lists the locks:

- a checkpoint that sees a live prune lock removes its own lock, waits until
  the prune's lock is gone, and starts over;
- a prune keeps its lock and waits until no live checkpoint lock is left.

Whichever of the two wrote its lock second sees the other's (a listing shows
every file whose creation finished before it started, locally and on S3), so
they never both go ahead.  Checkpoints that did not see the prune's lock
finish while it waits; later ones see it and wait in turn.

A lock is *stale*, and ignored (and removed) by everyone, when its process is
gone (same machine, pid no longer running) or when it was not refreshed for
``LEASE`` seconds (any machine: a holder refreshes it every ``REFRESH``
seconds while it works).  A checkpoint checks, just before its entry is
written, that its lock is still there: if a prune took it for dead, the
checkpoint is given up (``StoreError``) rather than listed with objects the
prune may have deleted.
"""

from __future__ import annotations

import os
import time

from .._storage import local as _local
from ..errors import StoreError, StoreLockedError
from . import layout

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time: `import mason` stays fast
    from typing import Any

    from .catalog import Store

CHECKPOINT = "checkpoint"
PRUNE = "prune"
#: seconds without a refresh after which a lock is taken to be dead
LEASE = 900.0
#: how often a lock holder rewrites its lock while it works
REFRESH = 60.0
DEFAULT_TIMEOUT = 120.0


class Lock:
    """A lock file of this process in a store."""

    def __init__(self, store: Store, kind: str) -> None:
        self.store = store
        self.kind = kind
        self.id = layout.new_id(time.time_ns() // 1000, os.urandom(4))
        self.name = layout.lock_name(self.id)
        self.nonce = os.urandom(8).hex()
        self.refreshed = 0.0
        self._write()

    def _write(self) -> None:
        now = time.time()
        document = {
            "created": now,
            "format": layout.LOCK_FORMAT,
            "host": _local._host_tag(),
            "hostname": _hostname(),
            "kind": self.kind,
            "nonce": self.nonce,
            "pid": os.getpid(),
            "refreshed": now,
            "version": 1,
        }
        # Not fsynced: a lock lost in a power cut belonged to a process that is gone too.
        self.store.backend.write(self.name, [layout.dumps(document)], durable=False)
        self.refreshed = time.monotonic()

    def refresh_if_due(self) -> None:
        if time.monotonic() - self.refreshed >= REFRESH:
            self.confirm()
            self._write()

    def confirm(self) -> None:
        """Raise StoreError if a prune took this lock for dead and removed it."""
        try:
            data = self.store.backend.read(self.name, limit=layout.MAX_DOCUMENT)
            held = layout.loads(data, self.name).get("nonce") == self.nonce
        except (FileNotFoundError, StoreError):
            held = False
        if not held:
            raise StoreError(
                f"{self.store.label}: this {self.kind} took so long without progress that another process took"
                " it for dead and removed its lock; it was given up and nothing was listed"
            )

    def release(self) -> None:
        self.store.backend.delete(self.name)


def acquire(store: Store, kind: str, timeout: float | None = None) -> Lock:
    """A lock of ``kind`` (CHECKPOINT or PRUNE) in ``store``, once the other kind is gone.

    StoreLockedError after ``timeout`` seconds (default DEFAULT_TIMEOUT)."""
    deadline = time.monotonic() + (DEFAULT_TIMEOUT if timeout is None else timeout)
    if kind == PRUNE:
        lock = Lock(store, PRUNE)
        try:
            _wait_until_none(store, CHECKPOINT, deadline, "a prune waits for running checkpoints")
        except BaseException:
            lock.release()
            raise
        return lock
    while True:
        lock = Lock(store, CHECKPOINT)
        if not live(store, PRUNE):
            return lock
        lock.release()  # a prune is deleting (or waits to): let it finish first
        _wait_until_none(store, PRUNE, deadline, "a checkpoint waits for a prune")


def _wait_until_none(store: Store, kind: str, deadline: float, doing: str) -> None:
    delay = 0.01
    while True:
        holders = live(store, kind)
        if not holders:
            return
        if time.monotonic() >= deadline:
            raise StoreLockedError(
                f"{store.label}: {doing}, and gave up: "
                + "; ".join(_describe(name, doc) for name, doc in holders[:3])
                + " (if no such process runs any more, delete the lock file)"
            )
        time.sleep(delay)
        delay = min(delay * 2, 0.25)


def live(store: Store, kind: str) -> list[tuple[str, Any]]:
    """The lock files of ``kind`` that are not stale (stale ones are removed),
    as (name, document); a lock file that cannot be read counts as live."""
    found = []
    backend = store.backend
    for filename in backend.list(layout.LOCKS):
        if not filename.endswith(layout.ENTRY_SUFFIX):
            continue
        name = f"{layout.LOCKS}/{filename}"
        try:
            doc: Any = layout.loads(backend.read(name, limit=layout.MAX_DOCUMENT), name)
        except FileNotFoundError:
            continue  # released meanwhile
        except StoreError:
            doc = None  # unreadable: conservatively live, and named in any timeout
        if doc is not None:
            if doc.get("kind") != kind:
                continue
            if is_stale(doc):
                backend.delete(name)
                continue
        found.append((name, doc))
    return found


def is_stale(doc: dict) -> bool:
    refreshed = doc.get("refreshed")
    if not isinstance(refreshed, (int, float)) or time.time() - refreshed > LEASE:
        return True
    pid = doc.get("pid")
    if doc.get("host") == _local._host_tag() and type(pid) is int and pid != os.getpid():
        return not _local._pid_alive(pid)
    return False


def _describe(name: str, doc: Any) -> str:
    if doc is None:
        return f"{name} (unreadable)"
    created = doc.get("created")
    since = time.time() - created if type(created) in (int, float) else 0.0
    return f"{doc.get('kind')} by pid {doc.get('pid')} on {doc.get('hostname')} for {since:.0f} s ({name})"


def _hostname() -> str:
    try:
        return os.uname().nodename
    except AttributeError:  # Windows
        import socket

        return socket.gethostname()
