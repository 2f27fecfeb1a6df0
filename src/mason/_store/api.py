"""Checkpoint history: the public functions, from the rooms that do each step.

checkpoint: module -> filter -> entries -> pickler -> StoreWriter -> objects, manifest, entry
restore:    entry -> manifest -> StoreReader (every piece checked) -> unpickler -> namespace update

The pickling and unpickling are those of ``dump_module`` and ``load_module``
(``_save._write_session``, ``_load._LoadPlan``): a checkpoint holds exactly
what a session file holds, so filters, skip-and-report, ``allow=``,
``names=``, signing and lenient loads behave the same.

A process remembers, per store and module, the checkpoint it last made or
restored: the next checkpoint names it as ``parent`` and reuses its pieces
without reading its manifest again.
"""

from __future__ import annotations

import contextlib
import os
from collections import namedtuple

from .. import _progress
from .._format.signing import resolve_key
from .._load import _dict_from_plan, _LoadOptions, _LoadPlan, _module_from_plan
from .._save import _collect, _let_go_of_the_session, _SaveOptions, _write_session
from .._sessionmeta import check_session_meta
from ..errors import (
    CheckpointNotFoundError,
    CorruptSessionError,
    CorruptStoreError,
    SignatureError,
    StoreError,
    UnsupportedFormatError,
)

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time: `import mason` stays fast
    from pathlib import Path
    from typing import Any

    from .catalog import Checkpoint, Entry, Store

# (store, module name) -> the checkpoint this process last made or restored there
_LAST: dict[tuple[str, str], str] = {}
# store -> (checkpoint id, its pieces) of the checkpoint this process last made or restored there
_INDEX: dict[str, tuple[str, dict]] = {}
_LAST_MICROS = 0


class PruneReport(namedtuple("PruneReport", ["removed", "kept", "objects_removed", "bytes_freed"])):
    """What :func:`mason.prune` did: ``removed`` (ids, oldest first), ``kept``
    (how many checkpoints are left), ``objects_removed``, ``bytes_freed``."""

    __slots__ = ()


class StoreReport(namedtuple("StoreReport", ["checkpoints", "objects", "bytes", "unreferenced"])):
    """What :func:`mason.verify_store` checked: ``checkpoints``, ``objects``
    and their ``bytes`` (as stored); ``unreferenced``: objects no listed
    checkpoint uses (left by interrupted checkpoints; a prune removes them)."""

    __slots__ = ()


def default_store_path() -> Path:
    """``store/`` next to :func:`default_session_path`, in the private per-user directory."""
    from .._storage import default_session_path

    return default_session_path().parent / "store"


def checkpoint(store=None, module=None, message=None, **save_options) -> str:
    """Save a module (``__main__`` by default) as a new checkpoint in ``store``; return its id.

    ``store``: a directory (made if missing) or a URL (``s3://bucket/prefix``;
    needs ``mason[remote]``); by default :func:`default_store_path`.
    ``message``: a note kept with the checkpoint.  Keywords as for
    :func:`dump_module` (``exclude``, ``include``, ``on_error``,
    ``refimported``, ``byref``, ``recurse``, ``fmode``, ``compression``,
    ``key``, ``storage_options``, ``progress``), and ``lock_timeout``
    (seconds to wait while a prune runs, default 120).

    Only what is not in the store yet is written: buffers (arrays, columns,
    large bytes) are cut into chunks, and a chunk or pickle segment already
    stored (by any checkpoint, for any variable) is referred to, not written
    again.  What changed is found by hashing every byte, never by object
    identity, so an array changed in place is saved in the chunks that
    changed.  A checkpoint is listed once everything it needs is durable: it
    appears whole, or (killed, failed) not at all.  With ``key`` (or
    ``MASON_SIGNING_KEY``) it is signed: an HMAC-SHA256 of every piece and
    of its manifest, which restores check.

    Dask futures and persisted collections: the workers write their data into
    the store as objects, deduplicated like the rest (docs/dask.md); signed
    checkpoints leave such variables out, named.
    """
    timer = _progress.Timer("checkpoint")
    refimported = save_options.pop("refimported", False)
    lock_timeout = save_options.pop("lock_timeout", None)
    options = _SaveOptions.from_kwds(save_options)
    if options.checksum is not None:
        raise ValueError("checksum= does not apply to checkpoints: a store checks every piece against its name")
    if message is not None and not isinstance(message, str):
        raise TypeError(f"message must be a str or None, not {type(message).__name__}")
    from . import locks
    from .catalog import Store
    from .writer import StoreWriter

    key = resolve_key(options.key)
    module, entries = _collect(module, options, refimported)
    timer.lap(f"collected {len(entries)} variables")
    opened = Store.open(default_store_path() if store is None else store, options.storage_options, create=True)
    opened.backend.clean_temps(locks.LEASE)
    lock = locks.acquire(opened, locks.CHECKPOINT, lock_timeout)
    try:
        parent, known = _parent(opened, module.__name__, key)
        checkpoint_id, created = _new_id()
        writer = StoreWriter(
            opened,
            lock,
            checkpoint_id=checkpoint_id,
            created=created,
            parent=parent,
            message=message,
            known=known,
            compression=options.compression,
            key=key,
        )
        partitions = _partition_sink(writer, opened, store, options, key)
        try:
            _write_session(writer, module, entries, options, partitions)
        except BaseException as exc:
            _let_go_of_the_session(exc)
            writer.abandon()
            if partitions is not None:
                partitions.abort()  # cancels writes still running; their objects are orphans for prune
            raise
        finally:
            writer.close()
        timer.lap(f"pickled and stored ({writer.bytes_written} bytes written)")
    finally:
        lock.release()
    _LAST[(opened.backend.key, module.__name__)] = checkpoint_id
    _INDEX[opened.backend.key] = (checkpoint_id, writer.index())
    return checkpoint_id


def checkpoints(store=None, *, storage_options: dict | None = None) -> list[Checkpoint]:
    """The checkpoints in ``store``, oldest first (``Checkpoint`` named tuples:
    ``id``, ``created``, ``message``, ``parent``, ``names``, ``bytes_total``,
    ``bytes_written``).  The default store, before its first checkpoint, has none."""
    from .catalog import Store

    if store is None and not os.path.exists(default_store_path()):
        return []
    return Store.open(default_store_path() if store is None else store, storage_options).checkpoints()


def restore(store=None, id=None, module=None, names=None, **load_options):
    """Restore checkpoint ``id`` of ``store`` into its module, as :func:`load_module` does.

    Loading runs code from the store: only restore checkpoints you trust, or
    restore with ``allow=`` (see docs/security.md) or ``key=``.

    ``id``: a checkpoint id, or a unique prefix of one, or an int position in
    :func:`checkpoints` (``-1``: the latest); default the latest.
    ``names``: only these variables.  Keywords as for :func:`load_module`
    (``on_error``, ``allow``, ``key``, ``mmap``, ``storage_options``,
    ``progress``, ``map_location``, ``ignore``).  Every byte the restore
    uses is checked against its name first (and with ``key``, against the
    checkpoint's signature): a damaged or altered store raises
    :class:`CorruptStoreError` or :class:`SignatureError` before anything is
    rebuilt, and the module is left as it was.
    """
    timer = _progress.Timer("restore")
    if names is not None:
        load_options["names"] = names
    options = _LoadOptions.from_kwds(load_options, "restore")
    opened, entry = _open_entry(store, id, options)
    with _plan(opened, entry, options, store) as plan:
        timer.lap("opened and checked")
        result = _module_from_plan(plan, module, timer)
        _LAST[(opened.backend.key, plan.meta["module"])] = entry.id
    return result


def restore_asdict(store=None, id=None, update=False, names=None, **load_options) -> dict:
    """The variables of checkpoint ``id`` of ``store``, as a new dict, as
    :func:`load_module_asdict` gives them (``__session__`` is ``store@id``).

    Loading runs code from the store: only restore checkpoints you trust.
    Arguments as for :func:`restore` (and ``module=``, ``update=``).
    """
    module = load_options.pop("module", None)
    timer = _progress.Timer("restore_asdict")
    if names is not None:
        load_options["names"] = names
    options = _LoadOptions.from_kwds(load_options, "restore_asdict")
    opened, entry = _open_entry(store, id, options)
    with _plan(opened, entry, options, store) as plan:
        timer.lap("opened and checked")
        return _dict_from_plan(plan, module, update, f"{opened.label}@{entry.id}", timer)


def prune(store=None, keep=None, *, lock_timeout: float | None = None, storage_options: dict | None = None):
    """Remove all but the ``keep`` newest checkpoints of ``store``, and every
    object that only they used; returns a :class:`PruneReport`.

    Safe while other processes checkpoint: it waits (up to ``lock_timeout``
    seconds, default 120) until the checkpoints under way are listed, and
    they wait while it deletes.  It never removes an object that a listed
    checkpoint needs: if a kept checkpoint's manifest cannot be read, nothing
    is removed (``CorruptStoreError``).  Restores that read a checkpoint
    being removed fail cleanly.
    """
    from . import housekeeping, locks
    from .catalog import Store

    if keep is None:
        raise TypeError("prune() needs keep=N: how many of the newest checkpoints to keep")
    if type(keep) is not int or keep < 0:
        raise ValueError(f"keep must be an int >= 0, not {keep!r}")
    opened = Store.open(default_store_path() if store is None else store, storage_options)
    lock = locks.acquire(opened, locks.PRUNE, lock_timeout)
    try:
        return housekeeping.prune(opened, keep, PruneReport)
    finally:
        lock.release()


def verify_store(store=None, key=None, *, storage_options: dict | None = None) -> StoreReport:
    """Check every object of every listed checkpoint of ``store`` against its
    name (and with ``key``, every signature); returns a :class:`StoreReport`.

    Each object is read once, however many checkpoints use it.  Problems
    raise one :class:`CorruptStoreError` naming them all (its ``problems``
    attribute lists them).  Nothing is unpickled.
    """
    from . import housekeeping
    from .catalog import Store

    opened = Store.open(default_store_path() if store is None else store, storage_options)
    return housekeeping.verify(opened, resolve_key(key), StoreReport)


# -- steps ---------------------------------------------------------------------------


def _open_entry(store, ref, options: _LoadOptions) -> tuple[Store, Entry]:
    from .catalog import Store

    opened = Store.open(default_store_path() if store is None else store, options.storage_options)
    return opened, opened.resolve(ref)


def _partition_sink(writer: Any, store: Store, location: Any, options: _SaveOptions, key: bytes | None) -> Any:
    """Where the workers write a checkpoint's Dask partitions: the store
    itself (None when dask was never imported: nothing can hold any)."""
    import sys

    if "dask" not in sys.modules:
        return None
    from .._dask import sink

    if key is not None:
        return sink.SignedStoreSink()
    return sink.StoreSink(writer, _location(location), options.storage_options, options.compression)


def _location(store: Any) -> str:
    """The store as workers and lazy reads reach it: an absolute path, or its URL."""
    from .._dask.partition import absolute

    return absolute(default_store_path() if store is None else store)


@contextlib.contextmanager
def _plan(store: Store, entry: Entry, options: _LoadOptions, location: Any = None):
    from .reader import StoreReader

    reader = StoreReader(store, entry, key=resolve_key(options.key), mmap=options.mmap)
    try:
        try:
            check_session_meta(reader)
        except CorruptSessionError as exc:
            raise CorruptStoreError(f"{store.label}: checkpoint {entry.id}: manifest: {exc}") from None
        yield _LoadPlan(reader, options, location=_location(location) if "dask" in reader.meta else None)
        _INDEX[store.backend.key] = (entry.id, _index(reader.manifest))
    finally:
        reader.close()


def _parent(store: Store, module_name: str, key: bytes | None) -> tuple[str | None, dict]:
    """(the parent of a new checkpoint, the pieces it reuses from it).

    Called with the checkpoint lock held: the parent is listed now, so no
    prune removes its objects before the new checkpoint is listed too."""
    ids = store.ids()
    remembered = _LAST.get((store.backend.key, module_name))
    parent = remembered if remembered is not None and remembered in ids else (ids[-1] if ids else None)
    if parent is None:
        return None, {}
    cached = _INDEX.get(store.backend.key)
    if cached is not None and cached[0] == parent:
        return parent, cached[1]
    try:
        entry = store.entry(parent)
        manifest = None
        if key is not None:
            with contextlib.suppress(SignatureError):
                manifest = store.manifest(entry, key)
                _remember_macs(manifest, key)
        if manifest is None:
            manifest = store.manifest(entry)
    except (CorruptStoreError, CheckpointNotFoundError, UnsupportedFormatError, StoreError):
        return parent, {}  # nothing to reuse: every piece is written (and the parent stays as it is)
    return parent, _index(manifest)


def _remember_macs(manifest: Any, key: bytes) -> None:
    """A manifest whose signature this key verified vouches for its pieces' MACs."""
    from . import hashing

    if manifest.macs is not None:
        table = hashing.MAC_CACHE.table(key)
        for piece, mac in zip(manifest.pieces, manifest.macs):
            table.setdefault(piece[0], mac)


def _index(manifest: Any) -> dict:
    objects = manifest.objects
    return {name: (*objects[number], offset, length) for name, number, offset, length in manifest.pieces}


def _new_id() -> tuple[str, str]:
    """(a new checkpoint id, its creation time): later than any this process made."""
    import time
    from datetime import datetime, timezone

    from .layout import new_id

    global _LAST_MICROS
    micros = max(time.time_ns() // 1000, _LAST_MICROS + 1)
    _LAST_MICROS = micros
    seconds, fraction = divmod(micros, 1_000_000)
    created = datetime.fromtimestamp(seconds, timezone.utc).replace(microsecond=fraction)
    return new_id(micros, os.urandom(4)), created.isoformat(timespec="microseconds")
