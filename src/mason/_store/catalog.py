"""A store opened for use: its config, and the catalog of its checkpoints.

The catalog is the ``checkpoints/`` directory: one small JSON entry per
checkpoint, written last (after every object and the manifest are durable),
atomically, and never changed afterwards.  A checkpoint is listed exactly
when its entry exists, so it appears whole or not at all; a prune removes
the entry first, so it disappears whole too.  Listing reads the directory
and each entry once per process (entries are immutable, so they are cached).

Why not sqlite3: a store must also live at a URL (S3 and the like), where a
database file cannot be shared; sqlite's WAL mode does not work on network
filesystems either.  Files that appear whole (a rename, a completed upload)
work everywhere with one code path, as git's refs and restic's snapshots do.
"""

from __future__ import annotations

from collections import namedtuple

from ..errors import CheckpointNotFoundError, CorruptStoreError, StoreError
from . import hashing, layout, objects
from .backend import open_backend

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time: `import mason` stays fast
    from typing import Any

    from .backend import FsspecBackend, LocalBackend
    from .manifest import Manifest


class Checkpoint(
    namedtuple("Checkpoint", ["id", "created", "message", "parent", "names", "bytes_total", "bytes_written"])
):
    """One checkpoint of a store, as :func:`mason.checkpoints` lists it.

    ``id``: str, sorts by time; ``created``: aware ``datetime`` (UTC);
    ``message``: str or None; ``parent``: the id of the checkpoint this
    session was last checkpointed to or restored from (in the same process),
    else the store's latest when it was made, or None; ``names``: tuple of
    the variables saved; ``bytes_total``: the session's size (segments and
    buffers); ``bytes_written``: what this checkpoint added to the store.
    """

    __slots__ = ()


class Entry:
    """A catalog entry: the listed checkpoint and where its manifest is."""

    __slots__ = ("checkpoint", "manifest", "manifest_length")

    def __init__(self, checkpoint: Checkpoint, manifest: str, manifest_length: int) -> None:
        self.checkpoint = checkpoint
        self.manifest = manifest
        self.manifest_length = manifest_length

    @property
    def id(self) -> str:
        return self.checkpoint.id


# Entries never change once written: parsed ones are kept, by (store, id).
_ENTRIES: dict[tuple[str, str], Entry] = {}


class Store:
    """An opened checkpoint store."""

    def __init__(self, backend: LocalBackend | FsspecBackend, config: layout.Config) -> None:
        self.backend = backend
        self.config = config
        self.label = backend.label
        self.hash = hashing.by_name(config.hash, f"{self.label}: {layout.CONFIG}")

    @classmethod
    def open(cls, location: Any, storage_options: dict | None = None, *, create: bool = False) -> Store:
        """Open the store at ``location`` (a directory path or URL).

        ``create``: make a new store there if there is none (the directory
        must then be missing or empty).  StoreError if it is not a store."""
        backend = open_backend(location, storage_options)
        kind = backend.kind()
        label = backend.label
        if kind == "file":
            raise StoreError(f"{label}: is a file, not a checkpoint store (a session file is loaded with load_module)")
        try:
            data = backend.read(layout.CONFIG, limit=layout.MAX_DOCUMENT)
        except FileNotFoundError:
            if not create:
                if kind == "missing":
                    raise StoreError(f"{label}: no checkpoint store here (nothing at this path)") from None
                raise StoreError(f"{label}: not a checkpoint store (it has no {layout.CONFIG})") from None
            if kind == "directory" and not backend.is_empty():
                raise StoreError(
                    f"{label}: not a checkpoint store (it has no {layout.CONFIG}), and not empty:"
                    " refusing to make one in a directory that holds other files"
                ) from None
            config = layout.Config(hashing.default_name(), layout.DEFAULT_CHUNK_SIZE, layout.DEFAULT_PACK_BELOW)
            _create(backend, config)
            data = backend.read(layout.CONFIG, limit=layout.MAX_DOCUMENT)
        except IsADirectoryError:
            raise StoreError(f"{label}: not a checkpoint store ({layout.CONFIG} is not a file)") from None
        return cls(backend, layout.Config.from_json(data, label))

    # -- the catalog -------------------------------------------------------------

    def ids(self) -> list[str]:
        """The ids of the listed checkpoints, oldest first."""
        suffix = layout.ENTRY_SUFFIX
        found = []
        for name in self.backend.list(layout.CHECKPOINTS):
            if name.endswith(suffix) and layout.ID_PATTERN.fullmatch(name[: -len(suffix)]):
                found.append(name[: -len(suffix)])
        return sorted(found)

    def entry(self, checkpoint_id: str) -> Entry:
        """The catalog entry of ``checkpoint_id`` (CheckpointNotFoundError, CorruptStoreError)."""
        cache_key = (self.backend.key, checkpoint_id)
        cached = _ENTRIES.get(cache_key)
        if cached is not None:
            return cached
        name = layout.entry_name(checkpoint_id)
        what = f"{self.label}: {name}"
        try:
            data = self.backend.read(name, limit=layout.MAX_DOCUMENT)
        except FileNotFoundError:
            raise CheckpointNotFoundError(f"{self.label}: no checkpoint {checkpoint_id!r}") from None
        doc = layout.loads(data, what)
        problem = layout.check_entry(doc, what, self.hash.hex_digits)
        if not problem and doc["id"] != checkpoint_id:
            problem = f"the entry is that of checkpoint {doc['id']!r}"
        if problem:
            raise CorruptStoreError(f"{what}: {problem}")
        entry = Entry(
            Checkpoint(
                doc["id"],
                _parse_time(doc["created"], what),
                doc["message"],
                doc["parent"],
                tuple(doc["names"]),
                doc["bytes_total"],
                doc["bytes_written"],
            ),
            doc["manifest"],
            doc["manifest_length"],
        )
        _ENTRIES[cache_key] = entry
        return entry

    def checkpoints(self) -> list[Checkpoint]:
        """Every listed checkpoint, oldest first; a damaged entry is left out and named in a warning."""
        import warnings

        from ..errors import MasonWarning

        found, damaged = [], []
        for checkpoint_id in self.ids():
            try:
                found.append(self.entry(checkpoint_id).checkpoint)
            except CheckpointNotFoundError:
                continue  # pruned while we listed
            except CorruptStoreError as exc:
                damaged.append(str(exc))
        if damaged:
            warnings.warn(
                f"{len(damaged)} damaged checkpoint entries left out: " + "; ".join(damaged[:5]),
                MasonWarning,
                stacklevel=3,
            )
        return found

    def resolve(self, ref: Any) -> Entry:
        """The entry ``ref`` names: None for the latest, an id or a unique
        prefix of one, or an int indexing the list (``-1``: the latest)."""
        ids = self.ids()
        if not ids:
            raise CheckpointNotFoundError(f"{self.label}: the store holds no checkpoints")
        if ref is None:
            return self.entry(ids[-1])
        if type(ref) is int:
            try:
                return self.entry(ids[ref])
            except IndexError:
                raise CheckpointNotFoundError(
                    f"{self.label}: no checkpoint number {ref} (the store holds {len(ids)})"
                ) from None
        if not isinstance(ref, str):
            raise TypeError(f"a checkpoint id must be a str (or an int position), not {type(ref).__name__}")
        if ref in ids:
            return self.entry(ref)
        matches = [i for i in ids if i.startswith(ref)] if ref else []
        if len(matches) == 1:
            return self.entry(matches[0])
        if matches:
            raise CheckpointNotFoundError(
                f"{self.label}: {ref!r} is the start of {len(matches)} checkpoint ids: give more of it"
            )
        raise CheckpointNotFoundError(f"{self.label}: no checkpoint {ref!r} (latest: {ids[-1]})")

    def add_entry(self, document: dict) -> None:
        """List a checkpoint: its objects and manifest must already be durable."""
        self.backend.write(layout.entry_name(document["id"]), [layout.dumps(document)])
        self.backend.sync()

    def remove_entry(self, checkpoint_id: str) -> None:
        self.backend.delete(layout.entry_name(checkpoint_id))
        _ENTRIES.pop((self.backend.key, checkpoint_id), None)

    def manifest(self, entry: Entry, key: bytes | None = None) -> Manifest:
        """The checked manifest of ``entry`` (signed with ``key``, when given)."""
        from . import manifest

        payload = objects.read(self.backend, entry.manifest, entry.manifest_length, self.hash)
        what = f"{self.label}: checkpoint {entry.id}: manifest {layout.object_name(entry.manifest)}"
        parsed = manifest.parse(bytes(payload), what, key)
        if parsed.id != entry.id:
            from ..errors import SignatureError

            error = SignatureError if key is not None else CorruptStoreError
            raise error(
                f"{what}: the manifest is that of checkpoint {parsed.id!r}: an older checkpoint was put"
                " in this one's place"
            )
        return parsed


def _create(backend: LocalBackend | FsspecBackend, config: layout.Config) -> None:
    backend.create_root()
    backend.write_new(layout.CONFIG, config.to_json())  # the first of two creators wins
    backend.sync()


def init_store(
    location: Any,
    *,
    chunk_size: int | None = None,
    pack_below: int | None = None,
    hash: str | None = None,
    storage_options: dict | None = None,
) -> Store:
    """Make a store with these settings (tests and benchmarks: the defaults
    suit sessions); an existing store must already have them."""
    backend = open_backend(location, storage_options)
    config = layout.Config(
        hash or hashing.default_name(),
        layout.DEFAULT_CHUNK_SIZE if chunk_size is None else chunk_size,
        min(layout.DEFAULT_PACK_BELOW, (chunk_size or layout.DEFAULT_CHUNK_SIZE)) if pack_below is None else pack_below,
    )
    problem = config.problem()
    if problem:
        raise ValueError(problem)
    hashing.by_name(config.hash)
    if backend.kind() == "missing" or (backend.kind() == "directory" and backend.is_empty()):
        _create(backend, config)
    store = Store.open(location, storage_options)
    if (store.config.hash, store.config.chunk_size, store.config.pack_below) != (
        config.hash,
        config.chunk_size,
        config.pack_below,
    ):
        raise StoreError(f"{store.label}: a store with other settings is already there")
    return store


def _parse_time(text: str, what: str) -> Any:
    from datetime import datetime

    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise CorruptStoreError(f"{what}: created {text[:40]!r} is not a time") from None
    if value.tzinfo is None:
        raise CorruptStoreError(f"{what}: created {text[:40]!r} has no time zone")
    return value
