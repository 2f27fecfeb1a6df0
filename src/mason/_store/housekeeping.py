"""Whole-store work: removing old checkpoints and what only they used (prune),
and checking every object every listed checkpoint needs (verify).

Prune runs under a prune lock (locks.py), so no checkpoint is under way
while it decides and deletes.  Its order makes every interruption harmless:

1. read the manifest of every checkpoint it keeps (one that cannot be read
   stops the prune before anything is removed: what it needs is unknown);
2. remove the entries of the checkpoints it drops (each disappears whole);
3. remove every object that no kept manifest names, and temporaries of
   writers that are gone.

Killed after 2, the dropped checkpoints are gone and their objects are left
for the next prune; killed during 3, some of those objects are left.  A
listed checkpoint never loses an object.
"""

from __future__ import annotations

from ..errors import CheckpointNotFoundError, CorruptStoreError, SignatureError, UnsupportedFormatError
from . import hashing, layout, locks, objects

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time: `import mason` stays fast
    from typing import Any

    from .catalog import Store


def prune(store: Store, keep: int, report: Any) -> Any:
    """Keep the ``keep`` newest checkpoints (the caller holds a prune lock)."""
    ids = store.ids()
    cut = max(len(ids) - keep, 0)
    dropped, kept = ids[:cut], ids[cut:]
    live: set[str] = set()
    for checkpoint_id in kept:
        try:
            entry = store.entry(checkpoint_id)
        except CheckpointNotFoundError:
            continue  # another prune removed it meanwhile: no longer listed, needs nothing
        manifest = store.manifest(entry)  # CorruptStoreError: stop, nothing removed yet
        live.add(entry.manifest)
        live.update(name for name, _ in manifest.objects)
    for checkpoint_id in dropped:
        store.remove_entry(checkpoint_id)
    store.backend.sync()
    removed = freed = 0
    for name, size in list(store.backend.objects()):
        digest = name.rsplit("/", 1)[-1]
        if name != layout.object_name(digest) or not layout.is_digest(digest, store.hash.hex_digits):
            continue  # not a name mason gives: not ours to remove
        if digest not in live and store.backend.delete(name):
            removed += 1
            freed += size
    store.backend.clean_temps(locks.LEASE)
    return report(tuple(dropped), len(ids) - len(dropped), removed, freed)


def verify(store: Store, key: bytes | None, report: Any) -> Any:
    """Check every listed checkpoint's entry, manifest and objects, each object once."""
    from .._sessionmeta import SESSION_KIND, session_meta_problem, variable_names

    problems: list[str] = []
    wanted: dict[str, list[Any]] = {}  # object -> [raw length, {(piece name, offset, length)}]
    macs: dict[str, set[str]] = {}  # piece name -> the MACs signed manifests give it
    manifests: set[str] = set()
    checked = 0
    for checkpoint_id in store.ids():
        try:
            entry = store.entry(checkpoint_id)
            manifest = store.manifest(entry, key)
        except CheckpointNotFoundError:
            continue
        except (CorruptStoreError, SignatureError, UnsupportedFormatError) as exc:
            problems.append(str(exc))
            continue
        checked += 1
        manifests.add(entry.manifest)
        where = f"checkpoint {checkpoint_id}"
        meta = manifest.meta
        problem = (
            session_meta_problem(meta, len(manifest.segments), len(manifest.blobs))
            if meta.get("kind") == SESSION_KIND
            else "the manifest holds no session"
        )
        if problem:
            problems.append(f"{where}: {problem}")
        listed = entry.checkpoint
        if not problem and (
            listed.parent != manifest.parent
            or listed.message != manifest.message
            or list(listed.names) != variable_names(meta)
        ):
            problems.append(f"{where}: the catalog entry does not say what its manifest says")
        signed = manifest.macs or [None] * len(manifest.pieces)
        for (piece, number, offset, length), mac in zip(manifest.pieces, signed):
            name, raw_length = manifest.objects[number]
            slot = wanted.setdefault(name, [raw_length, set()])
            if slot[0] != raw_length:
                problems.append(f"{where}: object {name}: another checkpoint gives it another length")
                continue
            slot[1].add((piece, offset, length))
            if key is not None and mac is not None:
                macs.setdefault(piece, set()).add(mac)
    total = 0
    sizes = dict(store.backend.objects())
    for name in sorted(wanted):
        raw_length, pieces = wanted[name]
        try:
            data = objects.read(store.backend, name, raw_length, store.hash)
        except CorruptStoreError as exc:
            problems.append(str(exc))
            continue
        total += sizes.get(layout.object_name(name), 0)
        for piece, offset, length in sorted(pieces):
            part = data[offset : offset + length]
            if store.hash.digest(part) != piece:
                problems.append(f"{objects.describe(store.backend, name)}: piece {piece} does not match its name")
            elif key is not None:
                computed = hashing.piece_mac(key, part)
                if not all(hashing.same_mac(computed, mac) for mac in macs.get(piece, ())):
                    problems.append(
                        f"{objects.describe(store.backend, name)}: piece {piece} does not match its signature"
                    )
    total += sum(sizes.get(layout.object_name(name), 0) for name in manifests)
    referenced = {layout.object_name(name) for name in (*wanted, *manifests)}
    if problems:
        error = CorruptStoreError(
            f"{store.label}: {len(problems)} problem(s): "
            + "; ".join(problems[:10])
            + ("; ..." if problems[10:] else "")
        )
        error.problems = problems  # type: ignore[attr-defined]
        raise error
    return report(checked, len(referenced), total, len(set(sizes) - referenced))
