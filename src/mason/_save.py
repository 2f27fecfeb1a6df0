"""Saving a session: module -> filter -> entries -> one shared Pickler, a
segment per variable, out-of-band buffers as blobs -> container writer ->
storage (atomically)."""

from __future__ import annotations

import io
import os
import pickle
import sys
import traceback
import warnings

from . import _imported, _namespace, _progress, _rebuild
from ._diagnose import find_culprit
from ._filter import make_filter, shell_owns
from ._format import ContainerWriter
from ._format import checksum as _checksum
from ._format import signing as _signing
from ._format.signing import resolve_key
from ._load import _LoadOptions, _open_session
from ._memo import segment_effects
from ._pickler import Pickler
from ._sessionmeta import SESSION_KIND, _Options, _options, _output, pack_variables
from ._storage import default_session_path
from .errors import (
    MasonError,
    PicklingError,
    SkippedVariableWarning,
)

_PROTOCOL = 5


class _SaveOptions(_Options):
    exclude: object
    include: object
    on_error: str
    byref: bool | None
    recurse: bool | None
    fmode: int | None
    compression: str | None
    checksum: str | None
    key: object
    storage_options: dict | None
    progress: bool | None
    dask_storage: object
    dask_storage_options: dict | None
    DEFAULTS = dict(
        exclude=None,
        include=None,
        on_error="warn",
        byref=None,
        recurse=None,
        fmode=None,
        compression=None,
        checksum=None,
        key=None,
        storage_options=None,
        progress=None,
        dask_storage=None,
        dask_storage_options=None,
    )

    @classmethod
    def from_kwds(cls, kwds: dict) -> _SaveOptions:
        kwds = dict(kwds)
        kwds.pop("protocol", None)  # sessions always use protocol 5 (out-of-band buffers)
        return _options(cls, kwds, "dump_module")


def dump_module(filename=None, module=None, refimported=False, **kwds) -> None:
    """Save a module's namespace (``__main__`` by default) to ``filename``.

    ``filename``: a path, a URL (``s3://bucket/key``, any ``scheme://`` that
    fsspec knows; needs ``mason[remote]``), or a binary stream (it may be
    non-seekable); by default a private per-user file (see
    :func:`default_session_path`).
    ``module``: a module object, an importable module's name, or None.
    ``refimported``: also save objects found under the same name in any
    other loaded module as references to it (dill's rule).  Without it,
    variables that are the very object a public attribute of another
    module holds (``from sympy import *`` gives ``CC``) are saved by
    reference anyway (see docs/types.md, "Imported objects").

    Keywords: ``exclude=`` / ``include=`` rules (names, glob patterns,
    compiled regexes, types, predicates ``(name, obj) -> bool``, or lists of
    them); ``on_error='warn'`` (default: a variable that cannot be saved is
    left out, named in a :class:`SkippedVariableWarning` and recorded in the
    file) or ``'raise'``; ``byref``, ``recurse``, ``fmode`` as for
    :func:`mason.dump`; ``compression`` (None, 'zlib', 'lzma', 'zstd',
    'lz4'; with None, the variables that hold code are compressed with
    zlib's fastest level all the same) and ``checksum`` for the container;
    ``key`` (bytes or str) signs
    the file with HMAC-SHA256 (default: the ``MASON_SIGNING_KEY``
    environment variable when set; ``key=False``: never sign);
    ``storage_options`` (a dict for fsspec, with a URL); ``progress`` (None:
    a bar for large saves when someone watches stderr; True: always; False:
    never).

    Data held on a Dask cluster (persisted collections, futures) is written
    by the workers that hold it, one file per partition, into a new folder
    under ``dask_storage`` (a path or URL that the workers and later readers
    reach; default: ``<filename>.dask/`` beside the session file), with
    ``dask_storage_options`` for a URL (default: ``storage_options``).  The
    folders of the file being replaced are removed once the new file is in
    place.  See docs/dask.md.

    A path is written atomically: to a private temporary file in the same
    directory, fsynced, then renamed over the target, so the previous file
    survives any failure.  So is a URL on S3, GCS or Azure, and on other
    backends as far as they allow (see docs/storage.md).
    """
    timer = _progress.Timer("dump_module")
    options = _SaveOptions.from_kwds(kwds)
    module, entries = _collect(module, options, refimported)
    target = default_session_path() if filename is None else filename
    timer.lap(f"collected {len(entries)} variables")
    partitions = _partition_sink(target, options)
    try:
        with _output(target, options.storage_options) as stream:
            writer = ContainerWriter(
                stream, checksum=options.checksum, compression=options.compression, key=resolve_key(options.key)
            )
            _write_session(writer, module, entries, options, partitions, compress_code=True)
            timer.lap("pickled and written")
    except BaseException as exc:
        _let_go_of_the_session(exc)
        if partitions is not None:
            partitions.abort()  # the previous file and its partitions are as they were
        raise
    if partitions is not None:
        partitions.commit()
    timer.lap("stored")


def _collect(module, options: _SaveOptions, refimported: bool):
    """(the module to save, its entries after the filters)."""
    module = _namespace.resolve_module(module)
    keep = make_filter(options.exclude, options.include, ipython=_in_ipython(module))
    return module, _namespace.entries(module, keep, refimported)


def _partition_sink(target, options: _SaveOptions):
    """Where the workers write the session's Dask partitions, or None when
    neither dask nor distributed is loaded (and no Dask object can exist),
    unless the file being replaced has partitions to clean up."""
    if "dask" not in sys.modules and "distributed" not in sys.modules:
        if options.dask_storage is None and not _has_partition_folder(target):
            return None
    from ._dask.sink import sink_for

    return sink_for(target, options, signed=resolve_key(options.key) is not None)


def _has_partition_folder(target) -> bool:
    return isinstance(target, (str, os.PathLike)) and os.path.isdir(os.fsdecode(target) + ".dask")


def _write_session(writer, module, entries, options: _SaveOptions, partitions=None, compress_code=False) -> None:
    """Pickle ``entries`` into ``writer``: anything with a container writer's
    ``add_segment``, ``add_blob`` and ``finish(meta)`` (a checkpoint store's
    writer too).  ``partitions``: where Dask futures' data goes (None: a
    session holding futures cannot be saved).  ``compress_code``: the
    writer is a container writer, asked to compress the segments that hold
    code objects (``add_segment(compress=True)``) when it compresses
    nothing else: bytecode and source text shrink 6 to 7 times at zlib's
    fastest level, which any reader decompresses (2,800 functions and
    classes: 1.58 MB -> 0.28 MB, 2 ms to decompress); other segments stay
    as they are."""
    segment = io.BytesIO()
    blob_ids: list[int] = []
    blob_sizes: list[int] = []

    write_failed = False

    def on_buffer(buffer: pickle.PickleBuffer):
        nonlocal write_failed
        try:
            raw = buffer.raw()
        except BufferError:  # not contiguous: let pickle copy it in-band
            return True
        size = raw.nbytes
        try:
            blob_ids.append(writer.add_blob(raw))
        except BaseException as exc:
            write_failed = True
            # The failed write's frames (the stream's among them) still
            # hold views of ``raw``; without this, releasing it would
            # raise BufferError and hide the real error.
            traceback.clear_frames(exc.__traceback__)
            raise
        finally:
            _release(raw)
        blob_sizes.append(size)
        return False

    # Imported objects inside other variables are references too (the
    # variables themselves are pickled as their ModuleAttributeRef).
    imported = {
        id(entry.value): (entry.saved.module, entry.saved.name)
        for entry in entries
        if isinstance(entry.saved, _imported.ModuleAttributeRef)
    }

    # Pickling a failed variable again, to name the culprit, writes nothing.
    dry = None
    if partitions is not None:
        from ._dask.sink import DrySink

        dry = DrySink()

    def make_pickler(file, callback=None, sink=None):
        return Pickler(
            file,
            _PROTOCOL,
            options.byref,
            options.fmode,
            options.recurse,
            buffer_callback=callback,
            by_value_modules=(module.__name__,),
            session_module=module,
            imported=imported,
            partitions=dry if sink is None else sink,
        )

    pickler = make_pickler(segment, on_buffer, partitions)
    variables, skipped = [], []
    memo_reset = False
    rollback = _MemoRollback()
    progress = _progress.Progress("saving", len(entries), progress=options.progress)
    for entry in progress.track(entries):
        first_blob = len(blob_ids)
        value = entry.saved
        if type(value) in (bytes, bytearray) and len(value) >= _LargeBytes.THRESHOLD:
            value = _LargeBytes(value)
        if partitions is not None:
            partitions.begin(entry.name)
        codes_before = pickler.codes_pickled
        try:
            pickler.dump(value)
            if partitions is not None:
                partitions.flush()  # the workers write this variable's partitions
        except Exception as exc:  # any failure skips (or raises for) this one variable
            if write_failed:
                # The output failed (disk full, I/O error) halfway through a
                # blob: not this variable's fault, and the container is now
                # unfinishable.  Skipping it would write a broken file.
                raise
            reason = _explain(entry, exc, make_pickler)
            if options.on_error == "raise":
                raise PicklingError(reason) from exc
            warnings.warn(f"not saved: {reason}", SkippedVariableWarning, stacklevel=3)
            skipped.append({"name": entry.name, "type": _type_name(entry.value), "reason": reason})
            # What the failed dump memoized never reached the file: later
            # variables must not refer back to it.
            if not rollback.undo(pickler):
                pickler.clear_memo()
                memo_reset = True
                rollback = _MemoRollback()
            segment.seek(0)
            segment.truncate()
            continue
        data = segment.getbuffer()
        if compress_code and pickler.codes_pickled != codes_before:
            index = writer.add_segment(data, compress=True)
        else:
            index = writer.add_segment(data)
        rollback.keep(data)
        size = len(data) + sum(blob_sizes[first_blob:])
        progress.add(size)
        del data
        segment.seek(0)
        segment.truncate()
        record = {
            "name": entry.name,
            "type": _type_name(entry.value),
            "stored": entry.stored,
            "segment": index,
            "blobs": blob_ids[first_blob:],
            "size": size,
        }
        if memo_reset:
            record["memo_reset"] = True
            memo_reset = False
        variables.append(record)
    meta = {
        "kind": SESSION_KIND,
        "module": module.__name__,
        "module_kind": _namespace.module_kind(module),
        "variables": pack_variables(variables),
        "skipped": skipped,
        "environment": _namespace.environment(e.value for e in entries),
    }
    dask = partitions.record() if partitions is not None else None
    if dask is not None:
        meta["dask"] = dask
    writer.finish(meta)


def _let_go_of_the_session(exc: BaseException) -> None:
    """After a failed save: clear the finished frames of ``exc``'s traceback
    (the pickler, its memo, the variable being saved), so that a kept
    traceback (IPython keeps the last one) does not keep the session's
    buffers exported: a bytearray could not grow, an array not resize.
    Along the chain too: the error a storage layer raised from it holds the
    pickling frames as its cause.
    Only mason's own frames: a user's (a ``__reduce__`` that raised) keep
    their variables for a post-mortem ``%debug``."""
    ours = os.path.dirname(os.path.abspath(__file__)) + os.sep
    seen: set[int] = set()
    error: BaseException | None = exc
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        tb = error.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code.co_filename.startswith(ours):
                try:
                    tb.tb_frame.clear()
                except RuntimeError:  # still running (the caller's own frame)
                    pass
            tb = tb.tb_next
        error = error.__cause__ or error.__context__


def _release(view: memoryview) -> None:
    """Release ``view``, once a library that kept a view of it in a
    reference cycle (an error it caught, with the frames that saw the view)
    has let go: the cycle is collected first."""
    try:
        view.release()
    except BufferError:
        import gc

        gc.collect()
        view.release()


class _LargeBytes:
    """A big ``bytes``/``bytearray`` variable, saved as an out-of-band blob.

    The C pickler writes bytes in-band before any hook sees them, so the
    whole value would be copied into the segment (doubling a save's memory
    for a 1 GB variable).  Wrapping top-level variables sends their memory
    straight to the file instead; bytes nested in containers stay in-band.
    """

    THRESHOLD = 64 * 1024
    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def __reduce__(self):
        return _rebuild.bytes_from_buffer, (type(self.value) is bytearray, pickle.PickleBuffer(self.value))


class _MemoRollback:
    """Takes the shared Pickler's memo back to where it was before a variable
    that failed, so sharing with later variables survives a skipped one.

    The C pickler tells neither its memo's size nor which entries a dump
    added; entries are numbered in order, so the size before the failure is
    the number of objects the segments written so far memoize.  That is
    counted, only after a failure, by replaying the kept segments through an
    unpickler that builds nothing but placeholders (no code runs).  Segments
    are kept up to a budget; past it a failure clears the memo instead, and
    the loader starts a fresh memo there too (``memo_reset``).
    """

    # Kept segments are copies: memory a save holds on top of the session.
    BUDGET = 8 * 1024 * 1024

    def __init__(self):
        self._segments: list[bytes] | None = []
        self._size = 0

    def keep(self, data) -> None:
        if self._segments is None:
            return
        self._size += len(data)
        if self._size > self.BUDGET:
            self._segments = None
        else:
            self._segments.append(bytes(data))

    def undo(self, pickler) -> bool:
        if self._segments is None:
            return False
        size_before = _count_memo(self._segments)
        memo = pickler.memo.copy()
        pickler.memo = {key: value for key, value in memo.items() if value[0] < size_before}
        return True


def _count_memo(segments) -> int:
    """How many memo entries the given segments create, in order (nothing runs)."""
    size = 0
    for data in segments:
        size = segment_effects(data, lambda i, n=size: i < n, size).size
    return size


def _explain(entry, exc, make_pickler) -> str:
    if isinstance(exc, MasonError):
        return f"{entry.name}: {exc}"
    found = find_culprit(entry.saved, lambda f: make_pickler(f), root=entry.name)
    if found is None:
        return f"{entry.name}: {type(exc).__name__}: {exc}"
    path, culprit, culprit_exc = found
    message = str(culprit_exc) or type(culprit_exc).__name__
    return f"{path}: {message}"


def _type_name(value) -> str:
    cls = type(value)
    module = cls.__module__
    return cls.__qualname__ if module in ("builtins", "__main__") else f"{module}.{cls.__qualname__}"


def _in_ipython(module):
    """The names IPython put in ``module`` when it is an IPython user namespace, else None."""
    if module.__name__ != "__main__" or "IPython" not in sys.modules:
        return None
    get_ipython = vars(module).get("get_ipython")
    shell = get_ipython() if callable(get_ipython) else None
    if shell is None:
        return None
    hidden = getattr(shell, "user_ns_hidden", {})
    namespace = vars(module)
    # A hidden name the user has since rebound to their own value is theirs,
    # and so are the names %pylab imports.
    return [name for name, value in hidden.items() if namespace.get(name, value) is value and shell_owns(name, value)]


def sign(filename, key=None) -> None:
    """Sign an existing session file with HMAC-SHA256, replacing it atomically.

    ``key``: bytes or str, default the ``MASON_SIGNING_KEY`` environment
    variable.  Every checksum is verified first: a damaged file is not
    signed.  The records are copied byte for byte; only the header's version
    (a file of format 1 becomes one of the current format) and the index
    (which gains the signature) change, and, where the xxhash package is
    missing, ``crc32+xxh3`` sums, which become plain CRC-32 ones.  An
    existing signature is replaced.
    """
    key = resolve_key(key)
    if key is None:
        raise ValueError(f"no signing key: pass key= or set {_signing.ENV_VAR}")
    if not isinstance(filename, (str, os.PathLike)):
        raise TypeError(f"sign() rewrites a file: filename must be a path, not {type(filename).__name__}")
    with _open_session(filename, _LoadOptions(key=False)) as session:
        _check_partitions_signable(session.meta)
        with _output(filename) as stream:
            writer = ContainerWriter(stream, checksum=_checksum.for_copy(session.checksum_name), key=key)
            for record in session.records():
                writer.copy_record(*record)
            blobs = [session.blob_info(i)["raw_length"] for i in range(session.blob_count)]
            variables = pack_variables(session.meta["variables"], session.segment_lengths, blobs)
            writer.finish({**session.meta, "variables": variables})


def _check_partitions_signable(meta: dict) -> None:
    """A signature must cover what loading reads: Dask partitions (outside
    the file) are covered only by SHA-256 digests, which a save with a key
    records; a session saved without one has checksums that anyone can forge."""
    dask = meta.get("dask")
    entries = dask.get("partitions") if isinstance(dask, dict) else None
    if isinstance(entries, list) and any(
        isinstance(entry, dict) and not str(entry.get("digest", "")).startswith("sha256:") for entry in entries
    ):
        raise ValueError(
            "this session's Dask partitions are checked by checksums only, which a signature could not vouch"
            " for: save the session again with key= (its partitions then get SHA-256 digests, which it signs)"
        )


def dump_session(filename=None, main=None, byref=False, **kwds) -> None:
    """Deprecated alias of :func:`dump_module` (``main`` -> ``module``,
    ``byref`` -> ``refimported``), as in dill."""
    warnings.warn("dump_session() has been renamed dump_module()", PendingDeprecationWarning, stacklevel=2)
    dump_module(filename, module=main, refimported=byref, **kwds)
