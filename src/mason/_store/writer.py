"""Write one checkpoint: what the session writer calls on a container writer
(``add_segment``, ``add_blob``, ``finish``, ``bytes_written``), into a store.

Every segment and blob is cut into pieces of the store's chunk size (a
segment or blob smaller than that is one piece) and each piece is hashed:
that hash, not the identity of any Python object, decides what is new, so an
array changed in place is found changed, in the chunks that changed.  A piece
already stored, by this checkpoint, by its parent (the pieces its manifest
lists) or as an object of that name, is referred to, not written.  A new
piece of at least ``pack_below`` bytes becomes an object of its own; smaller
ones are packed together into objects of about one chunk, so that a session
of many small variables is a few files, not thousands.

``finish`` writes the manifest, then, once every object is durable and the
writer's lock is confirmed, the catalog entry: the checkpoint is listed
whole, or not at all.
"""

from __future__ import annotations

import os
import pickle
import traceback
from collections import deque

from .._format import compression as _compression
from .._sessionmeta import unpack_variables
from . import hashing, layout, manifest, objects

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time: `import mason` stays fast
    from typing import Any

    from .catalog import Store
    from .locks import Lock

#: piece name -> (object name, object raw length, offset in the object, length)
Index = dict
#: blobs of at least this many chunks are hashed ahead by _THREADS threads, _RUN chunks a task
_PARALLEL_FROM = 1
_RUN = 8
#: big blobs hashed ahead at once, at most (each holds its buffer until stored)
_AHEAD = 4
_THREADS = min(4, os.cpu_count() or 1)
_MANIFEST_CODEC = _compression.CODECS["zlib"]


class StoreWriter:
    """Writes the objects of one checkpoint as the session is pickled, then
    (``finish``) its manifest and catalog entry.

    ``known``: the pieces of the parent checkpoint (an Index), reused
    without being written again.  ``key``: sign the checkpoint (HMAC-SHA256
    of every piece and of the manifest).
    """

    def __init__(
        self,
        store: Store,
        lock: Lock,
        *,
        checkpoint_id: str,
        created: str,
        parent: str | None,
        message: str | None,
        known: Index | None = None,
        compression: str | None = None,
        level: int | None = None,
        key: bytes | None = None,
    ) -> None:
        self._store = store
        self._backend = store.backend
        self._lock = lock
        self._digest = store.hash.digest
        self._chunk = store.config.chunk_size
        self._pack_below = store.config.pack_below
        self._codec = _compression.by_name(compression)
        if self._codec is None:
            if level is not None:
                raise ValueError("level given without compression")
            self._level = 0
        else:
            self._level = self._codec.check_level(level)
        self._key = key
        self._mac_cache = hashing.MAC_CACHE.table(key) if key is not None else None
        self._macs: list[str] | None = [] if key is not None else None
        self._known: Index = known or {}
        self._id = checkpoint_id
        self._created = created
        self._parent = parent
        self._message = message
        self._objects: list[list[Any]] = []  # [name, raw length]
        self._object_numbers: dict[str, int] = {}
        self._pieces: list[list[Any]] = []  # [name, object number, offset, length]
        self._piece_numbers: dict[str, int] = {}
        self._segments: list[list[int]] = []
        self._blobs: list[list[int]] = []
        self._pack = bytearray()
        self._pack_pieces: list[int] = []  # pieces waiting for the pack to become an object
        self._present: set[str] = set()  # objects known to be in the store now
        self._absent: set[str] = set()  # known objects found missing (damage): written again
        self._written = 0
        self._pool: Any = None  # hashing threads, started for the first big buffer
        self._ahead: Any = deque()  # big blobs being hashed: (number, holder, view, parts, futures)
        self._finished = False
        self.entry: dict | None = None  # the catalog entry, once finished

    @property
    def store(self) -> Store:
        return self._store

    def add_external(self, parts: list, written: int = 0, check: bool = False) -> None:
        """List objects that others wrote into the store (Dask workers: one
        object per piece, ``parts`` as lists of [name, length]) in this
        checkpoint's manifest, as pieces no segment or blob uses, so that
        prune keeps them and verify_store checks them.  ``written``: bytes
        they added.  ``check``: fail (CorruptStoreError) if one is missing."""
        if self._macs is not None:
            raise ValueError("a signed checkpoint cannot list objects it did not write")
        for pieces in parts:
            for name, length in pieces:
                if name in self._object_numbers:
                    continue
                if check and not self._present_object(name):
                    from ..errors import CorruptStoreError

                    raise CorruptStoreError(f"{objects.describe(self._backend, name)} is missing")
                self._present.add(name)
                self._piece_numbers.setdefault(name, len(self._pieces))
                self._pieces.append([name, self._object_number(name, length), 0, length])
        self._written += written
        self._lock.refresh_if_due()

    @property
    def bytes_written(self) -> int:
        """Bytes this checkpoint has added to the store so far."""
        return self._written

    def add_segment(self, data: Any) -> int:
        """Store one pickle segment; returns its number 0, 1, 2, ..."""
        self._settle(_AHEAD)
        self._segments.append(self._add(data))
        return len(self._segments) - 1

    def add_blob(self, data: Any) -> int:
        """Store one out-of-band buffer (any contiguous buffer); returns its number.

        A big buffer handed over as a memoryview of a whole object (what a
        pickler's buffer callback gets) is hashed ahead by threads while the session goes on pickling; it is
        stored once named, in order, and by ``finish`` at the latest.  The
        caller may release its view at once: the writer holds its own."""
        number = len(self._blobs)
        base = data.obj if isinstance(data, memoryview) else None
        if (
            base is not None
            and _THREADS >= 2
            and data.nbytes >= _PARALLEL_FROM * self._chunk
            and self._hash_ahead(number, base, data.nbytes)
        ):
            self._blobs.append([])  # filled in when its pieces are named
            self._settle(_AHEAD)
            return number
        self._settle(0)  # in order: the pieces of earlier blobs first
        self._blobs.append(self._add(data))
        return number

    def finish(self, meta: dict) -> None:
        """Write the manifest (``meta`` as a container's index holds it), then list the checkpoint."""
        if self._finished:
            raise ValueError("checkpoint is already finished")
        self._settle(0)
        self._flush_pack()
        self.close()
        payload = manifest.build(
            checkpoint_id=self._id,
            created=self._created,
            parent=self._parent,
            message=self._message,
            hash_name=self._store.hash.name,
            objects=self._objects,
            pieces=self._pieces,
            segments=self._segments,
            blobs=self._blobs,
            meta=meta,
            macs=self._macs,
            key=self._key,
        )
        manifest_name = self._digest(payload)
        # Rewritten by every checkpoint, and JSON: always worth compressing.
        self._store_object(manifest_name, [payload], self._codec or _MANIFEST_CODEC, self._level or 1)
        self._backend.sync()  # objects and manifest durable before the entry names them
        self._lock.confirm()
        variables = meta["variables"]
        if isinstance(variables, dict):  # the columns a session file stores (see _sessionmeta)
            variables = unpack_variables(variables, self._lengths(self._segments), self._lengths(self._blobs))
        entry = {
            "bytes_total": sum(v["size"] for v in variables),
            "bytes_written": 0,
            "created": self._created,
            "format": layout.ENTRY_FORMAT,
            "id": self._id,
            "manifest": manifest_name,
            "manifest_length": len(payload),
            "message": self._message,
            "names": [v["name"] for v in variables],
            "parent": self._parent,
            "version": 1,
        }
        # The entry counts itself: a few digits more or less do not matter.
        entry["bytes_written"] = self._written + len(layout.dumps(entry)) + 8
        self._store.add_entry(entry)
        self._written = entry["bytes_written"]
        self._finished = True
        self.entry = entry

    def _lengths(self, items: list[list[int]]) -> list[int]:
        pieces = self._pieces
        return [sum(pieces[p][3] for p in numbers) for numbers in items]

    def index(self) -> Index:
        """This checkpoint's pieces, for the next checkpoint to reuse."""
        objects_ = self._objects
        return {name: (*objects_[number], offset, length) for name, number, offset, length in self._pieces}

    # -- pieces ------------------------------------------------------------------

    def abandon(self) -> None:
        """After a failure: let every write started end (its object is then an
        orphan, for prune), and the threads stop."""
        self.close()
        self._backend.settle(quiet=True)

    def close(self) -> None:
        """Stop the hashing threads (``finish`` does; call it after a failure too)."""
        while self._ahead:  # after a failure: let go of the buffers, once no thread reads them
            self._let_go(self._ahead.popleft())
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def _add(self, data: Any) -> list[int]:
        # PickleBuffer gives a flat byte view of any contiguous buffer, without copying.
        buffer = pickle.PickleBuffer(data)
        try:
            with buffer.raw() as view:
                chunk = self._chunk
                parts = [view[at : at + chunk] for at in range(0, len(view), chunk)]
                try:
                    return [self._piece(part, self._digest(part)) for part in parts]
                except BaseException as exc:
                    traceback.clear_frames(exc.__traceback__)  # as in _settle
                    raise
                finally:
                    parts.clear()
        finally:
            buffer.release()  # let go of the caller's buffer now, not when a traceback dies

    # -- big buffers, hashed ahead -----------------------------------------------
    #
    # Every byte of the session is hashed on every checkpoint: threads hash
    # runs of a big buffer's parts (both hashes release the GIL) while this
    # thread stores the parts already named and goes on pickling; so a first
    # checkpoint's hashing overlaps its writes, and a later one's overlaps
    # the pickling of the next variables.

    def _hash_ahead(self, number: int, base: Any, size: int) -> bool:
        holder = pickle.PickleBuffer(base)  # our own view: the caller releases its own
        try:
            view = holder.raw()
        except BufferError:
            holder.release()
            return False
        if view.nbytes != size:  # not the whole buffer the caller gave: store it the plain way
            view.release()
            holder.release()
            return False
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(_THREADS, thread_name_prefix="mason-hash")
        chunk, digest = self._chunk, self._digest
        parts = [view[at : at + chunk] for at in range(0, len(view), chunk)]

        def names(run: list[Any]) -> list[str]:
            return [digest(part) for part in run]

        # Runs, not one task per part: hundreds of 4 MiB tasks cost ~10% more in wake-ups.
        futures = [self._pool.submit(names, parts[at : at + _RUN]) for at in range(0, len(parts), _RUN)]
        self._ahead.append((number, holder, view, parts, futures))
        return True

    def _settle(self, keep: int) -> None:
        """Store the pieces of blobs hashed ahead, oldest first, until at most
        ``keep`` are left; waits for their names only when more are left."""
        ahead = self._ahead
        while ahead and (len(ahead) > keep or all(f.done() for f in ahead[0][4])):
            job = ahead.popleft()
            try:
                self._blobs[job[0]] = self._named_pieces(job[3], job[4])
            except BaseException as exc:
                # A kept traceback (IPython keeps the last) must not keep
                # views of the session's buffer through the frames that saw it.
                traceback.clear_frames(exc.__traceback__)
                raise
            finally:
                self._let_go(job)

    def _named_pieces(self, parts: list[Any], futures: list[Any]) -> list[int]:
        numbers: list[int] = []
        for at, future in enumerate(futures):
            run = parts[at * _RUN : (at + 1) * _RUN]
            numbers += [self._piece(part, name) for part, name in zip(run, future.result())]
        return numbers

    @staticmethod
    def _let_go(job: tuple) -> None:
        _, holder, view, parts, futures = job
        for future in futures:
            future.cancel()
        from concurrent.futures import wait

        wait(futures)  # none may still read the buffer
        parts.clear()
        view.release()
        holder.release()

    def _piece(self, view: Any, name: str) -> int:
        number = self._piece_numbers.get(name)
        if number is not None:
            return number
        length = len(view)
        number = len(self._pieces)
        location = self._known.get(name)
        if location is not None and (location[3] != length or not self._present_object(location[0])):
            location = None
        if location is not None:
            self._pieces.append([name, self._object_number(location[0], location[1]), location[2], length])
        elif length >= self._pack_below:
            self._store_object(name, [view])
            self._pieces.append([name, self._object_number(name, length), 0, length])
        else:
            self._pieces.append([name, -1, len(self._pack), length])
            self._pack += view
            self._pack_pieces.append(number)
        self._piece_numbers[name] = number
        if self._macs is not None:
            self._macs.append(self._mac(name, view))
        if len(self._pack) >= self._chunk:
            self._flush_pack()
        self._lock.refresh_if_due()
        return number

    def _mac(self, name: str, view: Any) -> str:
        assert self._mac_cache is not None and self._key is not None
        mac = self._mac_cache.get(name)
        if mac is None:
            # Always of the bytes being saved, never of what the store holds.
            mac = self._mac_cache[name] = hashing.piece_mac(self._key, view)
        return mac

    def _flush_pack(self) -> None:
        if not self._pack:
            return
        pack = self._pack
        name = self._digest(pack)
        self._store_object(name, [pack])
        number = self._object_number(name, len(pack))
        for piece in self._pack_pieces:
            self._pieces[piece][1] = number
        self._pack = bytearray()
        self._pack_pieces = []

    # -- objects -----------------------------------------------------------------

    def _object_number(self, name: str, raw_length: int) -> int:
        number = self._object_numbers.get(name)
        if number is None:
            number = self._object_numbers[name] = len(self._objects)
            self._objects.append([name, raw_length])
        return number

    def _present_object(self, name: str) -> bool:
        """Whether an object a known piece lives in is still in the store.

        Locally a stat per object and checkpoint: a store damaged by hand (an
        object deleted) heals at the next checkpoint instead of passing the
        loss on.  At a URL that would be a request per object: listed
        checkpoints' objects are trusted to be there (a prune never removes
        them)."""
        if name in self._present:
            return True
        if name in self._absent:
            return False
        if not self._backend.remote and self._backend.size(layout.object_name(name)) is None:
            self._absent.add(name)
            return False
        self._present.add(name)
        return True

    def _store_object(self, name: str, views: list[Any], codec: Any = None, level: int = 0) -> None:
        if codec is None:
            codec, level = self._codec, self._level
        if name in self._present:
            return
        path = layout.object_name(name)
        size = None if name in self._absent else self._backend.size(path)
        if size is None or size <= layout.TRAILER_SIZE:
            parts, size = objects.encode(views, codec, level)
            self._backend.write_soon(path, parts)
            self._written += size
        self._present.add(name)
        self._absent.discard(name)
