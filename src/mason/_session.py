"""Sessions and modules: save a whole namespace to a container file, inspect
it without unpickling, and restore all or some of it.

save:  module -> filter -> entries -> one shared Pickler, a segment per
       variable, out-of-band buffers as blobs -> container writer -> storage
load:  storage -> container reader (index and checksums verified) ->
       environment check -> one Unpickler over the segments in order ->
       a new dict -> the target namespace, updated in one step
"""

from __future__ import annotations

import builtins
import contextlib
import io
import os
import pickle
import pickletools
import sys
import traceback
import types
import warnings

from . import _imported, _namespace, _progress, _rebuild
from ._allowlist import Allowlist, ScanReport, StreamScanner
from ._diagnose import find_culprit
from ._filter import make_filter
from ._format import ContainerReader, ContainerWriter
from ._format import signing as _signing
from ._format.signing import resolve_key
from ._pickler import Pickler
from ._storage import default_session_path, open_input, open_output
from ._unpickler import Unpickler, check_map_location, translate_error
from .errors import (
    CorruptSessionError,
    EnvironmentMismatchWarning,
    MasonError,
    PicklingError,
    SkippedVariableWarning,
    UnpicklingError,
)

__all__ = [
    "dump_module",
    "load_module",
    "load_module_asdict",
    "dump_session",
    "load_session",
    "inspect",
    "sign",
    "SessionInfo",
]

#: what the ``"kind"`` key of a session file's metadata says
SESSION_KIND = "mason.session"
_PROTOCOL = 5
_ON_ERROR = ("warn", "raise")


# ====================================================================== save


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
    'lz4') and ``checksum`` for the container; ``key`` (bytes or str) signs
    the file with HMAC-SHA256 (default: the ``MASON_SIGNING_KEY``
    environment variable when set; ``key=False``: never sign);
    ``storage_options`` (a dict for fsspec, with a URL); ``progress`` (None:
    a bar for large saves when someone watches stderr; True: always; False:
    never).

    A path is written atomically: to a private temporary file in the same
    directory, fsynced, then renamed over the target, so the previous file
    survives any failure.  So is a URL on S3, GCS or Azure, and on other
    backends as far as they allow (see docs/storage.md).
    """
    timer = _progress.Timer("dump_module")
    options = _SaveOptions.from_kwds(kwds)
    module = _namespace.resolve_module(module)
    keep = make_filter(options.exclude, options.include, ipython=_in_ipython(module))
    entries = _namespace.entries(module, keep, refimported)
    target = default_session_path() if filename is None else filename
    timer.lap(f"collected {len(entries)} variables")
    with _output(target, options.storage_options) as stream:
        _write_session(stream, module, entries, options)
        timer.lap("pickled and written")
    timer.lap("stored")


class _Options:
    """Keyword options with defaults (plain classes: dataclasses would add
    milliseconds to ``import mason``)."""

    DEFAULTS: dict = {}

    def __init__(self, **kwds):
        for name, default in self.DEFAULTS.items():
            setattr(self, name, kwds.pop(name, default))
        if kwds:
            raise TypeError(f"unexpected option(s): {', '.join(sorted(kwds))}")


class _SaveOptions(_Options):
    DEFAULTS = dict(
        exclude=None, include=None, on_error="warn", byref=None, recurse=None, fmode=None,
        compression=None, checksum=None, key=None, storage_options=None, progress=None,
    )

    @classmethod
    def from_kwds(cls, kwds: dict) -> _SaveOptions:
        kwds = dict(kwds)
        kwds.pop("protocol", None)  # sessions always use protocol 5 (out-of-band buffers)
        return _options(cls, kwds, "dump_module")


def _options(cls, kwds: dict, function: str):
    """An options object from keyword arguments; unknown ones are an error."""
    unknown = sorted(set(kwds) - set(cls.DEFAULTS))
    if unknown:
        raise TypeError(f"unexpected keyword argument(s) for {function}: {', '.join(unknown)}")
    options = cls(**kwds)
    if options.on_error not in _ON_ERROR:
        raise ValueError(f"on_error must be 'warn' or 'raise', not {options.on_error!r}")
    return options


@contextlib.contextmanager
def _output(target, storage_options=None):
    if isinstance(target, (str, os.PathLike)):
        with open_output(target, storage_options) as stream:
            yield stream
    elif hasattr(target, "write"):
        if storage_options:
            raise ValueError("storage_options apply to URLs only, not to a stream")
        if isinstance(target, io.TextIOBase):
            raise TypeError("a session must be written to a binary stream (open the file with 'wb')")
        yield target
    else:
        raise TypeError(f"filename must be a path or a binary stream, not {type(target).__name__}")


def _write_session(stream, module, entries, options: _SaveOptions) -> None:
    writer = ContainerWriter(
        stream, checksum=options.checksum, compression=options.compression, key=resolve_key(options.key)
    )
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
        with raw:
            try:
                blob_ids.append(writer.add_blob(raw))
            except BaseException as exc:
                write_failed = True
                # The failed write's frames (the stream's among them) still
                # hold views of ``raw``; without this, releasing it would
                # raise BufferError and hide the real error.
                traceback.clear_frames(exc.__traceback__)
                raise
            blob_sizes.append(raw.nbytes)
        return False

    # Imported objects inside other variables are references too (the
    # variables themselves are pickled as their ModuleAttributeRef).
    imported = {
        id(entry.value): (entry.saved.module, entry.saved.name)
        for entry in entries
        if isinstance(entry.saved, _imported.ModuleAttributeRef)
    }

    def make_pickler(file, callback=None):
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
        )

    pickler = make_pickler(segment, on_buffer)
    variables, skipped = [], []
    memo_reset = False
    rollback = _MemoRollback()
    progress = _progress.Progress("saving", len(entries), progress=options.progress)
    for entry in progress.track(entries):
        first_blob = len(blob_ids)
        value = entry.saved
        if type(value) in (bytes, bytearray) and len(value) >= _LargeBytes.THRESHOLD:
            value = _LargeBytes(value)
        try:
            pickler.dump(value)
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
        "variables": variables,
        "skipped": skipped,
        "environment": _namespace.environment(e.value for e in entries),
    }
    writer.finish(meta)


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
    stream = _SegmentStream()
    scanner = StreamScanner(stream)
    for data in segments:
        stream.switch(data)
        scanner.scan()
    return len(scanner.memo.copy())


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
    # A hidden name the user has since rebound to their own value is theirs.
    return [name for name, value in hidden.items() if namespace.get(name, value) is value]


def sign(filename, key=None) -> None:
    """Sign an existing session file with HMAC-SHA256, replacing it atomically.

    ``key``: bytes or str, default the ``MASON_SIGNING_KEY`` environment
    variable.  Every checksum is verified first: a damaged file is not
    signed.  The records are copied byte for byte; only the header's minor
    version and the index (which gains the signature) change.  An existing
    signature is replaced.
    """
    key = resolve_key(key)
    if key is None:
        raise ValueError(f"no signing key: pass key= or set {_signing.ENV_VAR}")
    if not isinstance(filename, (str, os.PathLike)):
        raise TypeError(f"sign() rewrites a file: filename must be a path, not {type(filename).__name__}")
    with _open_session(filename, _LoadOptions(key=False)) as session:
        with _output(filename) as stream:
            writer = ContainerWriter(stream, checksum=session.checksum_name, key=key)
            for kind, stored, compression, raw_length in session.records():
                writer.copy_record(kind, stored, compression, raw_length)
            writer.finish(session.meta)


def dump_session(filename=None, main=None, byref=False, **kwds) -> None:
    """Deprecated alias of :func:`dump_module` (``main`` -> ``module``,
    ``byref`` -> ``refimported``), as in dill."""
    warnings.warn("dump_session() has been renamed dump_module()", PendingDeprecationWarning, stacklevel=2)
    dump_module(filename, module=main, refimported=byref, **kwds)


# ====================================================================== load


class _LoadOptions(_Options):
    DEFAULTS = dict(
        names=None, on_error="raise", ignore=None, mmap=True, verify_blobs=True, key=None, allow=None,
        storage_options=None, progress=None, map_location=None,
    )

    @classmethod
    def from_kwds(cls, kwds: dict, function: str) -> _LoadOptions:
        options = _options(cls, kwds, function)
        if isinstance(options.names, str):
            options.names = [options.names]
        Allowlist.from_arg(options.allow)  # bad patterns fail before the file is opened
        check_map_location(options.map_location)
        return options


def load_module(filename=None, module=None, **kwds):
    """Restore a saved module from ``filename``.

    Loading runs code from the file: only load files you trust.

    Into ``__main__`` (a file saved from ``__main__``): updates it and returns
    None.  A file saved from an importable module updates that module in
    place and returns it; one saved from a module that was not in
    ``sys.modules`` comes back as a new module (not registered).  ``module``
    (object or name) must match the saved module's name and kind, else
    ``ValueError``.

    Keywords: ``names=[...]`` restores only those variables (and what they
    refer to); ``on_error='warn'`` leaves out, with a warning, variables
    that cannot be restored here instead of failing (default ``'raise'``);
    ``ignore`` as for :func:`mason.load`; ``mmap=False`` reads blobs into
    memory instead of mapping the file (a URL's blobs are always read);
    ``storage_options`` and ``progress`` as for :func:`dump_module`;
    ``map_location`` puts torch tensors on other devices, as for
    ``torch.load`` (``'cpu'`` restores tensors saved on a GPU on a machine
    without one).

    ``key`` (bytes or str; default: the ``MASON_SIGNING_KEY`` environment
    variable when set): the file must carry a valid HMAC-SHA256 signature
    made with this key, checked before anything is unpickled; unsigned or
    altered files raise :class:`SignatureError`.  ``key=False`` loads
    without checking a signature, even with the variable set.
    ``allow=[...]``: module prefixes (``'numpy'``) and globals
    (``'collections:OrderedDict'``) the file may use, plus ``mason.CODE``
    for functions saved by value; the file is scanned without running it
    and refused with :class:`ForbiddenGlobalError`, listing every offender,
    if it needs anything else.

    The file is read, verified and unpickled completely before the module
    changes, in one step: if loading fails, the module is as before.
    """
    timer = _progress.Timer("load_module")
    options = _LoadOptions.from_kwds(kwds, "load_module")
    source = default_session_path() if filename is None else filename
    with _open_session(source, options) as session:
        timer.lap("opened (index read and checked)")
        target = _target_module(session.meta, module)
        loaded = _restore(session, options, target.__dict__, target)
        timer.lap(f"unpickled {len(loaded)} variables")
        target.__dict__.update(loaded)
    return None if target is sys.modules.get("__main__") else target


def load_module_asdict(filename=None, update=False, **kwds) -> dict:
    """The variables saved in ``filename``, as a new dict.

    Loading runs code from the file: only load files you trust.

    Neither ``sys.modules`` nor the live module changes; functions restored
    from the session have the returned dict as their globals.  ``update=True``
    starts from a copy of the live module's namespace.  ``__session__`` holds
    the file name.  Keywords as for :func:`load_module` (and ``module=``).
    """
    module = kwds.pop("module", None)
    timer = _progress.Timer("load_module_asdict")
    options = _LoadOptions.from_kwds(kwds, "load_module_asdict")
    source = default_session_path() if filename is None else filename
    with _open_session(source, options) as session:
        timer.lap("opened (index read and checked)")
        name = session.meta["module"]
        live = _namespace.resolve_module(module) if module is not None else sys.modules.get(name)
        if update and live is not None:
            result = dict(live.__dict__)
        else:
            result = {"__name__": name, "__builtins__": builtins}
        result["__session__"] = source if isinstance(source, str) else (os.fspath(source) if isinstance(source, os.PathLike) else getattr(source, "name", None))
        selfref = live if live is not None else types.ModuleType(name)
        loaded = _restore(session, options, result, selfref)
        timer.lap(f"unpickled {len(loaded)} variables")
        result.update(loaded)
    return result


def load_session(filename=None, main=None, **kwds):
    """Deprecated alias of :func:`load_module` (``main`` -> ``module``), as in dill.

    Loading runs code from the file: only load files you trust.
    """
    warnings.warn("load_session() has been renamed load_module()", PendingDeprecationWarning, stacklevel=2)
    load_module(filename, module=main, **kwds)


@contextlib.contextmanager
def _open_session(source, options: _LoadOptions):
    if not isinstance(source, (str, os.PathLike)) and not hasattr(source, "read"):
        raise TypeError(f"filename must be a path or a binary stream, not {type(source).__name__}")
    with open_input(source, options.storage_options) as opened, _open_reader(opened, options) as reader:
        yield reader


@contextlib.contextmanager
def _open_reader(source, options: _LoadOptions):
    reader = ContainerReader.open(
        source, mmap=options.mmap, verify_blobs=options.verify_blobs, key=resolve_key(options.key)
    )
    try:
        check_session_meta(reader)
        yield reader
    finally:
        # Blobs mapped into loaded arrays keep the mapping alive on their own.
        with contextlib.suppress(BufferError):
            reader.close()


def check_session_meta(reader: ContainerReader) -> list[dict]:
    """The index's variable records, after checking that the session
    metadata fits the file (see :func:`session_meta_problem`)."""
    meta = reader.meta
    if meta.get("kind") != SESSION_KIND:
        raise CorruptSessionError("this mason file holds no session (no session metadata in its index)")
    problem = session_meta_problem(meta, reader.segment_count, reader.blob_count)
    if problem:
        raise CorruptSessionError(f"index: the session metadata is malformed: {problem}")
    return meta["variables"]


def session_meta_problem(meta: dict, segments: int, blobs: int) -> str:
    """What is wrong with the shape of a session's metadata, or "" if nothing.

    The index passed its checksum, so a bad shape means a file mason did not
    write: refuse it here rather than with a KeyError or TypeError halfway
    through loading or inspecting it.  ``segments`` and ``blobs`` are how many
    the container holds.
    """
    if not isinstance(meta.get("module"), str) or not isinstance(meta.get("module_kind", ""), str):
        return "module or module_kind is not a string"
    variables = meta.get("variables")
    if not isinstance(variables, list):
        return "variables is not a list"
    for number, var in enumerate(variables):
        if not (
            isinstance(var, dict)
            and all(isinstance(var.get(key), str) for key in ("name", "type", "stored"))
            and _is_count(var.get("size"))
            and _is_count(var.get("segment"))
            and var["segment"] < segments
            and isinstance(var.get("blobs"), list)
            and all(_is_count(blob) and blob < blobs for blob in var["blobs"])
            and isinstance(var.get("memo_reset", False), bool)
        ):
            return f"variable {number} is not a saved variable's record, or refers to no record of the file"
    skipped = meta.get("skipped", [])
    if not isinstance(skipped, list) or not all(isinstance(s, dict) and isinstance(s.get("name"), str) for s in skipped):
        return "skipped is not a list of records with names"
    env = meta.get("environment", {})
    packages = env.get("packages", {}) if isinstance(env, dict) else None
    if (
        not isinstance(packages, dict)
        or not isinstance(env.get("python", []), list)
        # Top-level package names, as saved: looked up (maybe imported) to compare versions.
        or not all(name and "." not in name and isinstance(v, str) for name, v in packages.items())
    ):
        return "environment is not an object of the expected shape"
    return ""


def _is_count(value) -> bool:
    return type(value) is int and value >= 0


def _target_module(meta: dict, module) -> types.ModuleType:
    name, kind = meta["module"], meta.get("module_kind", "importable")
    if module is None:
        if kind == "main":
            return sys.modules["__main__"]
        if kind == "importable":
            return _namespace.resolve_module(name)
        return types.ModuleType(name)
    target = _namespace.resolve_module(module)
    if target.__name__ != name:
        raise ValueError(f"cannot load the saved state of module {name!r} into module {target.__name__!r}")
    target_kind = _namespace.module_kind(target)
    if target_kind != kind and not (kind == "dynamic" and target_kind == "importable"):
        raise ValueError(f"cannot load the saved state of a {kind} module {name!r} into a {target_kind} module")
    return target


def _restore(session: ContainerReader, options: _LoadOptions, namespace: dict, module) -> dict:
    """Unpickle the saved variables into a new dict (the namespace is untouched)."""
    meta = session.meta
    variables = meta["variables"]
    wanted = _wanted(variables, options.names)
    # Every record to unpickle is checked first (checksums, and MACs with a
    # key): damage must surface before the first object is rebuilt (rebuilding
    # can have side effects), not halfway, when a damaged record comes up.
    needed = variables[: wanted[1]]
    payloads = dict(zip((v["segment"] for v in needed), session.segments([v["segment"] for v in needed])))
    session.verify_records([], [blob for var in needed for blob in var["blobs"]])
    _check_environment(meta.get("environment", {}))
    allowlist = Allowlist.from_arg(options.allow, session_module=meta["module"])
    if allowlist is not None:
        allowlist.check(scan_session(session, needed, allowlist))
    loader = _SegmentLoader(
        session, payloads, meta["module"], namespace, module, options.ignore, allowlist, options.map_location
    )
    loaded: dict = {}
    failures: dict[str, str] = {}
    total = sum(var.get("size", 0) for var in needed)
    progress = _progress.Progress("loading", len(needed), total_bytes=total, progress=options.progress)
    for position, var in progress.track(enumerate(needed), size=lambda item: item[1].get("size", 0)):
        if var.get("memo_reset"):
            loader.reset()
        blocked = loader.blocked_by(var)
        if blocked is not None:
            loader.skip(var)
            failures[var["name"]] = f"it refers to objects of {blocked!r}, which could not be restored"
            continue
        try:
            loaded[var["name"]] = loader.load(var)
        except Exception as exc:  # the variable's own reconstruction failed
            if options.on_error == "raise" and var["name"] in wanted[0]:
                raise _load_error(var["name"], exc) from exc
            failures[var["name"]] = f"{type(exc).__name__}: {exc}"
            loader.recover(var, variables[:position])
    for name, reason in failures.items():
        if name in wanted[0]:
            warnings.warn(f"not restored: {name}: {reason}", SkippedVariableWarning, stacklevel=4)
    return {name: value for name, value in loaded.items() if name in wanted[0]}


def _wanted(variables, names) -> tuple[set, int]:
    """(names to return, how many leading segments must be unpickled)."""
    all_names = [v["name"] for v in variables]
    if names is None:
        return set(all_names), len(variables)
    missing = [n for n in names if n not in all_names]
    if missing:
        raise KeyError(f"not in this session: {', '.join(map(repr, missing))}")
    # Shared objects are memoized by whichever variable came first, so the
    # variables before the last wanted one are unpickled too (and dropped).
    return set(names), max(all_names.index(n) for n in names) + 1


def _load_error(name: str, exc: BaseException) -> UnpicklingError:
    if isinstance(exc, (EOFError, pickle.UnpicklingError)) and not isinstance(exc, MasonError):
        exc = translate_error(exc)
    error_type = type(exc) if isinstance(exc, UnpicklingError) else UnpicklingError
    try:
        return error_type(f"cannot restore variable {name!r}: {exc}")
    except TypeError:
        return UnpicklingError(f"cannot restore variable {name!r}: {exc}")


class _SegmentStream(io.BytesIO):
    """A readable stream over one segment at a time, for one shared Unpickler.

    The unpickler binds the stream's methods once; switching copies the next
    segment into the same BytesIO (segments are small), so every read the
    unpickler makes is a C call, not a Python method.
    """

    def switch(self, data) -> None:
        self.seek(0)
        self.truncate()
        self.write(data)
        self.seek(0)


class _Buffers:
    """The out-of-band buffers of the segment being unpickled, in order."""

    def __init__(self, session: ContainerReader):
        self._session = session
        self._pending: list[int] = []

    def switch(self, blob_ids) -> None:
        self._pending = list(reversed(blob_ids))

    def __iter__(self):
        return self

    def __next__(self):
        if not self._pending:
            raise CorruptSessionError("a segment asks for more out-of-band buffers than the file holds for it")
        return self._session.blob(self._pending.pop())


class _SegmentLoader:
    """One Unpickler reading the segments in order, with a shared memo."""

    def __init__(self, session, payloads: dict, saved_module: str, namespace: dict, module, ignore,
                 allowlist=None, map_location=None):
        self._session = session
        self._payloads = payloads  # segment number -> its verified payload
        self._stream = _SegmentStream()
        self._buffers = _Buffers(session)
        # dill's class rebinding is for single objects: in a session, the
        # saved classes replace the live ones, so instances keep theirs.
        ignore = True if ignore is None else ignore
        self._make = lambda: _SessionUnpickler(
            self._stream, saved_module, namespace, module, ignore=ignore, buffers=self._buffers, allow=allowlist,
            map_location=map_location,
        )
        self._unpickler = self._make()
        # memo index ranges [start, end) holding placeholders for objects of
        # variables that could not be restored, with the variable's name
        self._holes: list[tuple[int, int, str]] = []
        self._counted_until = 0  # memo size after the segments counted so far

    def load(self, var):
        self._stream.switch(self._payloads[var["segment"]])
        self._buffers.switch(var["blobs"])
        return self._unpickler.load()

    def reset(self) -> None:
        # A fresh Unpickler: assigning ``memo`` does not reset the C
        # unpickler's count of memo entries, which MEMOIZE numbers from.
        self._unpickler = self._make()
        self._holes.clear()
        self._counted_until = 0

    # -- recovery: only after a variable failed, so speed matters less ----

    def recover(self, var, earlier) -> None:
        """Make the memo look as if ``var`` had loaded, with placeholders."""
        start = self._memo_size(earlier)
        end = start + _memo_puts(self._session.segment(var["segment"]))
        self._pad(start, end, var["name"])

    def skip(self, var) -> None:
        start = self._counted_until
        end = start + _memo_puts(self._session.segment(var["segment"]))
        self._pad(start, end, var["name"])

    def blocked_by(self, var):
        if not self._holes:
            return None
        for index in _memo_gets(self._session.segment(var["segment"])):
            for start, end, name in self._holes:
                if start <= index < end:
                    return name
        self._counted_until += _memo_puts(self._session.segment(var["segment"]))
        return None

    def _memo_size(self, earlier) -> int:
        size = 0
        for var in earlier:
            if var.get("memo_reset"):
                size = 0
            size += _memo_puts(self._session.segment(var["segment"]))
        return size

    def _pad(self, start: int, end: int, name: str) -> None:
        """Continue with a fresh Unpickler whose memo counts ``end`` entries.

        A failed load leaves the rest of its frame buffered inside the C
        unpickler, so a new one is needed.  MEMOIZE numbers entries from a
        count that only MEMOIZE itself advances, so a tiny pickle memoizes
        ``end`` placeholders first; then the old memo is copied over (through
        its proxy: CPython's ``memo = dict`` setter loses the entries).
        Slots of the failed variable stay empty; variables that refer to
        them are skipped (``blocked_by``).
        """
        old = self._unpickler
        self._unpickler = self._make()
        if end > 0:
            self._stream.switch(b"\x80\x05" + b"N\x940" * end + b"N.")
            self._unpickler.load()
            self._unpickler.memo = old.memo
        self._holes.append((start, end, name))
        self._counted_until = end


_PUT_OPS = frozenset({"MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT"})
_GET_OPS = frozenset({"GET", "BINGET", "LONG_BINGET"})


def _memo_puts(segment) -> int:
    return sum(1 for op, _, _ in _genops(segment) if op.name in _PUT_OPS)


def _memo_gets(segment):
    return [arg for op, arg, _ in _genops(segment) if op.name in _GET_OPS]


def _genops(segment):
    try:
        yield from pickletools.genops(bytes(segment))
    except (ValueError, EOFError) as exc:
        raise CorruptSessionError(f"damaged pickle segment: {exc}") from None


class _SessionUnpickler(Unpickler):
    """Points the saved module's globals and self-references at the target."""

    def __init__(self, file, saved_module, namespace, module, **kwds):
        super().__init__(file, **kwds)
        self._saved_module = saved_module
        self._namespace = namespace
        self._module = module

    def _resolve(self, module_name, name):
        if module_name == "mason._rebuild":
            if name == "module_dict":
                return self._module_dict
            if name == "import_module":
                return self._import_module
        return super()._resolve(module_name, name)

    def _module_dict(self, name):
        return self._namespace if name == self._saved_module else _rebuild.module_dict(name)

    def _import_module(self, name):
        return self._module if name == self._saved_module else _rebuild.import_module(name)


def scan_session(session: ContainerReader, variables, allowlist: Allowlist | None = None) -> ScanReport:
    """What the segments of ``variables`` would import and call, found
    without running anything (offenders listed when given an allowlist)."""
    stream = _SegmentStream()
    report = ScanReport()
    scanner = None
    for var in variables:
        if scanner is None or var.get("memo_reset"):
            scanner = StreamScanner(stream, allowlist)
            scanner.report = report
        stream.switch(session.segment(var["segment"]))
        scanner.scan()
    return report


def _check_environment(env: dict) -> None:
    """Warn, before anything is unpickled, when the saving interpreter differs."""
    problems = []
    saved_python = tuple(env.get("python", ())[:2])
    here = sys.version_info[:2]
    if saved_python and saved_python != here:
        problems.append(f"Python {saved_python[0]}.{saved_python[1]} (this is {here[0]}.{here[1]}: functions saved by value cannot run)")
    for package, version in sorted(env.get("packages", {}).items()):
        installed = _namespace.installed_version(package)
        if installed is None:
            problems.append(f"{package} {version} (not installed here)")
        elif installed != version:
            problems.append(f"{package} {version} (installed here: {installed})")
    if problems:
        warnings.warn(
            "this session was saved with " + "; ".join(problems), EnvironmentMismatchWarning, stacklevel=5
        )


# ====================================================================== inspect


class SessionInfo:
    """What a session file holds, read without running anything from it.

    ``imports``: the modules loading it would import (found by scanning the
    pickle segments with inert placeholders), None if they could not be
    scanned (``scan_error`` says why); ``functions``: names of the functions
    saved by value (code that loading would create); ``signed``: whether the
    file carries a signature (checked only by a load or verify with a key).
    """

    _FIELDS = (
        "module", "module_kind", "variables", "skipped", "environment", "format_version",
        "signed", "imports", "functions", "scan_error",
    )

    def __init__(self, module: str, module_kind: str, variables=(), skipped=(), environment=None,
                 format_version=(), signed=False, imports=None, functions=(), scan_error=None):
        self.module = module
        self.module_kind = module_kind
        self.variables: list[dict] = list(variables)
        self.skipped: list[dict] = list(skipped)
        self.environment: dict = dict(environment or {})
        self.format_version: tuple = tuple(format_version)
        self.signed = signed
        self.imports: list | None = imports
        self.functions: list = list(functions)
        self.scan_error: str | None = scan_error

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._FIELDS)
        return f"SessionInfo({fields})"

    def __eq__(self, other):
        if not isinstance(other, SessionInfo):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in self._FIELDS)

    __hash__ = None  # mutable, like the dataclass it replaces

    def names(self) -> list[str]:
        return [v["name"] for v in self.variables]


def inspect(filename=None, storage_options=None) -> SessionInfo:
    """Describe a session file (a path, URL or binary stream) without
    running anything from it.

    Safe for untrusted files: the JSON index is parsed after its checksum is
    verified, and the pickle segments are only scanned for the modules they
    name, with inert placeholders instead of real objects.
    ``storage_options``: a dict for fsspec, with a URL.
    """
    source = default_session_path() if filename is None else filename
    with _open_session(source, _LoadOptions(mmap=False, key=False, storage_options=storage_options)) as session:
        meta = session.meta
        info = SessionInfo(
            module=meta["module"],
            module_kind=meta.get("module_kind", ""),
            variables=[{k: v[k] for k in ("name", "type", "stored", "size")} for v in meta["variables"]],
            skipped=list(meta.get("skipped", [])),
            environment=dict(meta.get("environment", {})),
            format_version=tuple(session.version),
            signed=session.signature is not None,
        )
        try:
            report = scan_session(session, meta["variables"])
        except UnpicklingError as exc:  # CorruptSessionError included: a damaged segment
            info.scan_error = str(exc)
        else:
            info.imports = sorted(m for m in report.modules if m != meta["module"])
            info.functions = list(report.functions)
        return info
