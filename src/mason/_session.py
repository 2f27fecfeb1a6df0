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
import sys
import traceback
import types
import warnings

from . import _imported, _namespace, _progress, _rebuild
from ._allowlist import DATA, Allowlist
from ._memo import UNKNOWN, StaticCall, StaticGlobal, memo_gets, segment_effects
from ._diagnose import find_culprit
from ._filter import make_filter
from ._format import ContainerReader, ContainerWriter
from ._format import signing as _signing
from ._format.signing import resolve_key
from ._pickler import Pickler
from ._storage import default_session_path, open_input, open_output
from ._unpickler import Unpickler, check_map_location, translate_error
from ._vm import RestrictedUnpickler, Scanner, ScanReport
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
        names=None, on_error="warn", ignore=None, mmap=True, verify_blobs=True, key=None, allow=None,
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
    ``ValueError``; with ``allow=`` the file's module name counts for
    nothing: its variables go into ``__main__`` or the ``module`` given.

    Keywords: ``names=[...]`` restores only those variables (and what they
    refer to).  ``on_error='warn'`` (default): every variable that can be
    restored is; the others, and only the variables that refer to objects
    they would have built, are left out and named in one
    :class:`SkippedVariableWarning` (its ``failures`` says why each);
    ``on_error='raise'``: the first failure raises and nothing changes;
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
    for functions saved by value, or the data-only preset
    :data:`mason.DATA`; the file is scanned without running it, then loaded
    by a machine that enforces the list on every step.  Variables that need
    more are never run and are named in the warning; with
    ``on_error='raise'`` the whole file is refused with
    :class:`ForbiddenGlobalError`, listing every offender.

    The file is read, verified and unpickled completely before the module
    changes, in one step: if loading fails, the module is as before.
    """
    timer = _progress.Timer("load_module")
    options = _LoadOptions.from_kwds(kwds, "load_module")
    source = default_session_path() if filename is None else filename
    with _open_session(source, options) as session:
        timer.lap("opened (index read and checked)")
        plan = _LoadPlan(session, options)
        # Only now, with every check passed, may the module the file names be imported.
        target = _target_module(session.meta, module, restricted=plan.allowlist is not None)
        loaded = plan.restore(target.__dict__, target)
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
        plan = _LoadPlan(session, options)
        name = session.meta["module"]
        if module is not None:
            live = _namespace.resolve_module(module)
        else:  # restricted: the name the file gives means nothing
            live = None if plan.allowlist is not None else sys.modules.get(name)
        if update and live is not None:
            result = dict(live.__dict__)
        else:
            result = {"__name__": name, "__builtins__": builtins}
        result["__session__"] = source if isinstance(source, str) else (os.fspath(source) if isinstance(source, os.PathLike) else getattr(source, "name", None))
        selfref = live if live is not None else types.ModuleType(name)
        loaded = plan.restore(result, selfref)
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
    write: refuse it here, naming the field, rather than with a KeyError,
    TypeError or OverflowError halfway through loading or inspecting it.
    ``segments`` and ``blobs`` are how many the container holds.
    """
    problem = _module_problem(meta.get("module"), meta.get("module_kind"))
    if problem:
        return problem
    variables = meta.get("variables")
    if type(variables) is not list:
        return "variables is not a list"
    # Sessions have hundreds of thousands of variables: one inline test per
    # record, and the field is only looked for once one fails.
    for var in variables:
        if not (
            type(var) is dict
            and type(var.get("name")) is str
            and type(var.get("type")) is str
            and type(var.get("stored")) is str
            and type(var.get("size")) is int
            and 0 <= var["size"] < _MAX_COUNT
            and type(var.get("segment")) is int
            and 0 <= var["segment"] < segments
            and type(var.get("blobs")) is list
            and (not var["blobs"] or all(type(blob) is int and 0 <= blob < blobs for blob in var["blobs"]))
            and type(var.get("memo_reset", False)) is bool
        ):
            number = next(i for i, v in enumerate(variables) if v is var)
            return f"variable {number}: {_variable_problem(var, segments, blobs)}"
    skipped = meta.get("skipped", [])
    if type(skipped) is not list:
        return "skipped is not a list"
    for number, record in enumerate(skipped):
        if type(record) is not dict or type(record.get("name")) is not str:
            return f"skipped {number}: not a record with a name"
        for key in ("type", "reason"):
            if type(record.get(key, "")) is not str:
                return f"skipped {number}: {key} is not a string"
    return _environment_problem(meta.get("environment", {}))


# What _namespace.module_kind returns, and so all that mason writes.
_MODULE_KINDS = ("main", "importable", "dynamic")
# Sizes fit in 64 bits; a larger int is no size mason wrote (and breaks float formatting).
_MAX_COUNT = 1 << 63


def _module_problem(module, kind) -> str:
    if type(module) is not str or not module:
        return f"module {_brief(module)} is not a module name"
    if kind is not None and kind not in _MODULE_KINDS:
        return f"module_kind {_brief(kind)} is not one of {', '.join(_MODULE_KINDS)}"
    if kind == "main" and module != "__main__":
        return f"module {_brief(module)} is of kind main, which only __main__ is"
    # A dynamic module is only ever created under its name, never imported, and
    # mason saves it whatever name it has (types.ModuleType("my-mod")); the
    # others have importable names.
    parts = module.split(".")
    if not all(parts) or (kind != "dynamic" and not all(part.isidentifier() for part in parts)):
        return f"module {_brief(module)} is not a dotted module name"
    return ""


def _variable_problem(var, segments: int, blobs: int) -> str:
    """Which field of a variable's record is wrong (it failed the fast test)."""
    if type(var) is not dict:
        return "not an object"
    for key in ("name", "type", "stored"):
        if type(var.get(key)) is not str:
            return f"{key} is not a string"
    if not _is_count(var.get("size")):
        return f"size {_brief(var.get('size'))} is not a byte count"
    segment = var.get("segment")
    if not _is_count(segment) or segment >= segments:
        return f"segment {_brief(segment)} is not one of the file's {segments} segments"
    numbers = var.get("blobs")
    if type(numbers) is not list:
        return "blobs is not a list"
    for blob in numbers:
        if not _is_count(blob) or blob >= blobs:
            return f"blob {_brief(blob)} is not one of the file's {blobs} blobs"
    return "memo_reset is not true or false"


def _environment_problem(env) -> str:
    """What is wrong with the shape of the environment record, or ""."""
    if type(env) is not dict:
        return "environment is not an object"
    python = env.get("python", [3, 0])
    if not (type(python) is list and len(python) >= 2 and all(type(n) is int and 0 <= n < 1 << 31 for n in python)):
        return f"environment: python {_brief(python)} is not a version (a list of at least two small ints >= 0)"
    for key in ("implementation", "platform", "byteorder", "mason", "created"):
        if type(env.get(key, "")) is not str:
            return f"environment: {key} is not a string"
    packages = env.get("packages", {})
    if type(packages) is not dict:
        return "environment: packages is not an object"
    for name, version in packages.items():
        # Top-level import names, as saved: their versions are looked up here.
        if not name.isidentifier():
            return f"environment: packages: {_brief(name)} is not a top-level package name"
        if type(version) is not str:
            return f"environment: packages: the version of {name} is not a string"
    return ""


def _is_count(value) -> bool:
    return type(value) is int and 0 <= value < _MAX_COUNT


def _brief(value) -> str:
    # The value came from the file: bounded, so a huge one cannot flood the message.
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _target_module(meta: dict, module, restricted: bool = False) -> types.ModuleType:
    """The module a load updates.  With an allowlist the file's own word
    counts for nothing: its variables go into ``__main__`` or the module the
    caller named, and no module is imported because the file names it."""
    name, kind = meta["module"], meta.get("module_kind", "importable")
    if module is None:
        if kind == "main":
            return sys.modules["__main__"]
        if restricted:
            raise ValueError(
                f"this file holds the state of module {name!r}; a restricted load (allow=) does not"
                " load into a module the file chooses: pass module= to name one"
            )
        if kind == "importable":
            return _namespace.resolve_module(name)
        return types.ModuleType(name)
    target = _namespace.resolve_module(module)
    if restricted:
        return target
    if target.__name__ != name:
        raise ValueError(f"cannot load the saved state of module {name!r} into module {target.__name__!r}")
    target_kind = _namespace.module_kind(target)
    if target_kind != kind and not (kind == "dynamic" and target_kind == "importable"):
        raise ValueError(f"cannot load the saved state of a {kind} module {name!r} into a {target_kind} module")
    return target


class _LoadPlan:
    """Everything a load checks before anything is unpickled, and the load itself.

    Every record to unpickle is checked first (checksums, and MACs with a
    key): damage must surface before the first object is rebuilt (rebuilding
    can have side effects), not halfway.  With an allowlist, the very
    payloads that were checked are scanned, and later unpickled.
    """

    def __init__(self, session: ContainerReader, options: _LoadOptions):
        self.session = session
        self.options = options
        meta = session.meta
        self.variables = meta["variables"]
        self.wanted, count = _wanted(self.variables, options.names)
        self.needed = self.variables[:count]
        numbers = [v["segment"] for v in self.needed]
        self.payloads = dict(zip(numbers, session.segments(numbers)))
        session.verify_records([], [blob for var in self.needed for blob in var["blobs"]])
        _check_environment(meta.get("environment", {}))
        self.allowlist = Allowlist.from_arg(options.allow)
        self.refused: dict[str, str] = {}  # variable -> what the allowlist refuses in it
        if self.allowlist is not None:
            report = scan_session(session, self.needed, self.allowlist, payloads=self.payloads)
            if options.on_error == "raise":
                self.allowlist.check(report.problems, report.functions)
            else:  # lenient: what needs more than the list is never run, and named
                self.refused = {name: ", ".join(sorted(set(problems)))
                                for name, problems in report.by_variable.items() if problems}

    def restore(self, namespace: dict, module) -> dict:
        """Unpickle the saved variables into a new dict (the namespace is untouched)."""
        options = self.options
        if self.allowlist is not None:
            self.allowlist.target = module.__name__
        loader = _SegmentLoader(
            self.session, self.payloads, self.session.meta["module"], namespace, module, options.ignore,
            self.allowlist, options.map_location,
        )
        wanted = self.wanted
        loaded: dict = {}
        failures: dict[str, str] = {}
        total = sum(var.get("size", 0) for var in self.needed)
        progress = _progress.Progress("loading", len(self.needed), total_bytes=total, progress=options.progress)
        for position, var in progress.track(enumerate(self.needed), size=lambda item: item[1].get("size", 0)):
            if var.get("memo_reset"):
                loader.reset()
            refused = self.refused.get(var["name"])
            if refused is not None:
                loader.skip(var, self.needed[:position])
                failures[var["name"]] = f"refused by the allowlist: it would use {refused}"
                continue
            blocked = loader.blocked_by(var)
            if blocked is not None:
                loader.skip(var, self.needed[:position])
                failures[var["name"]] = f"it refers to objects of {blocked!r}, which could not be restored"
                continue
            try:
                loaded[var["name"]] = loader.load(var)
            except Exception as exc:  # the variable's own reconstruction failed
                if options.on_error == "raise" and var["name"] in wanted:
                    raise _load_error(var["name"], exc) from exc
                failures[var["name"]] = f"{type(exc).__name__}: {exc}"
                loader.recover(var, self.needed[:position])
        failures = {name: reason for name, reason in failures.items() if name in wanted}
        if failures:
            lines = "".join(f"\n  {name}: {reason}" for name, reason in failures.items())
            message = f"{len(failures)} of {len(wanted)} variables not restored:{lines}"
            warnings.warn(SkippedVariableWarning(message, failures), stacklevel=4)
        return {name: value for name, value in loaded.items() if name in wanted}


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
    """One unpickler reading the segments in order, with a shared memo.

    When a variable fails (or is held back), the memo is made to look as if
    its segment had run (see ``_memo.py``): entries the opcodes alone
    determine (globals, module references, constants) are filled again,
    the others become holes, and a later variable whose segment reads a hole
    is held back in turn.  Nothing else depends on the failed variable.
    """

    def __init__(self, session, payloads: dict, saved_module: str, namespace: dict, module, ignore,
                 allowlist=None, map_location=None):
        self._payloads = payloads  # segment number -> its verified payload
        self._stream = _SegmentStream()
        self._buffers = _Buffers(session)
        self._state = _rebuild._LoadState(namespace)
        self._restricted = allowlist is not None
        if allowlist is not None:
            self._make = lambda: RestrictedUnpickler(
                self._stream, allowlist, buffers=self._buffers, session=(saved_module, namespace, module),
                load_state=self._state, map_location=map_location,
            )
        else:
            # dill's class rebinding is for single objects: in a session, the
            # saved classes replace the live ones, so instances keep theirs.
            ignore = True if ignore is None else ignore
            self._make = lambda: _SessionUnpickler(
                self._stream, saved_module, namespace, module, ignore=ignore, buffers=self._buffers,
                map_location=map_location, load_state=self._state,
            )
        self._unpickler = self._make()
        self._holes: dict[int, str] = {}  # memo index -> the variable that would have filled it

    def load(self, var):
        data = self._payloads[var["segment"]]
        self._stream.switch(data)
        self._buffers.switch(var["blobs"])
        if self._restricted:
            self._unpickler.stream_bytes += len(data)
            self._unpickler.start_undo()
        return self._unpickler.load()

    def reset(self) -> None:
        # A fresh unpickler: assigning ``memo`` does not reset the C
        # unpickler's count of memo entries, which MEMOIZE numbers from.
        self._unpickler = self._make()
        self._holes.clear()

    # -- recovery: only after a variable failed, so speed matters less ----

    def blocked_by(self, var):
        """The failed variable whose objects ``var`` would use, or None."""
        if not self._holes:
            return None
        for index in memo_gets(self._payloads[var["segment"]]):
            name = self._holes.get(index)
            if name is not None:
                return name
        return None

    def recover(self, var, earlier) -> None:
        """``var`` failed halfway: undo what it wrote, then fill in its entries."""
        if self._restricted:
            self._unpickler.undo()
        self._fill(var, earlier)

    def skip(self, var, earlier) -> None:
        """``var`` is held back without running: fill in its entries."""
        self._fill(var, earlier)

    def _fill(self, var, earlier) -> None:
        if self._restricted:
            memo = self._unpickler.memo  # a plain dict: numbered exactly as MEMOIZE numbers
            size, has_key = len(memo), memo.__contains__
        else:
            # The C unpickler's memo is contiguous for mason's streams
            # (MEMOIZE only); its size is what the earlier segments made it.
            memo = self._unpickler.memo.copy()
            size = self._memo_size(earlier)
            has_key = size.__gt__
        effects = segment_effects(self._payloads[var["segment"]], has_key, size,
                                  known=lambda i: _constant(memo.get(i, UNKNOWN)))
        for index, value in effects.writes.items():
            resolved = self._resolve_static(value)
            if resolved is UNKNOWN:
                self._holes[index] = var["name"]
                memo[index] = None
            else:
                self._holes.pop(index, None)
                memo[index] = resolved
        if not self._restricted:
            self._unpickler = self._make()
            self._unpickler.install_memo(memo)

    def _memo_size(self, earlier) -> int:
        size = 0
        for var in earlier:
            if var.get("memo_reset"):
                size = 0
            size = segment_effects(self._payloads[var["segment"]], size.__gt__, size).size
        return size

    def _resolve_static(self, value):
        """The object a memo entry holds, rebuilt from what the opcodes say, or UNKNOWN."""
        if isinstance(value, StaticGlobal):
            resolve = lambda: self._unpickler.find_class(value.module, value.name)  # noqa: E731
        elif isinstance(value, StaticCall):
            resolve = lambda: self._unpickler.find_class(_REBUILD, value.function)(*value.args)  # noqa: E731
        else:
            return _constant(value)
        tokens = (_rebuild._LOAD.set(self._state),)
        try:
            return resolve()
        except Exception:  # it cannot be rebuilt without the variable either: a hole
            return UNKNOWN
        finally:
            _rebuild._LOAD.reset(tokens[0])


_REBUILD = "mason._rebuild"


def _constant(value):
    """``value`` if it is a plain constant that can stand in a memo entry, else UNKNOWN."""
    if value is None or type(value) in (str, bytes, int, float, bool):
        return value
    if type(value) is tuple and all(_constant(v) is v for v in value):
        return value
    return UNKNOWN


class _SessionUnpickler(Unpickler):
    """Points the saved module's globals and self-references at the target."""

    def __init__(self, file, saved_module, namespace, module, **kwds):
        super().__init__(file, **kwds)
        self._saved_module = saved_module
        self._namespace = namespace
        self._module = module
        self._memo_values: list | None = None

    def _resolve(self, module_name, name):
        if module_name == _REBUILD:
            if name == "module_dict":
                return self._module_dict
            if name == "import_module":
                return self._import_module
        return super()._resolve(module_name, name)

    def _module_dict(self, name):
        return self._namespace if name == self._saved_module else _rebuild.module_dict(name)

    def _import_module(self, name):
        return self._module if name == self._saved_module else _rebuild.import_module(name)

    def install_memo(self, memo: dict) -> None:
        """Make the memo exactly ``memo``: the C unpickler's own count of
        entries (which MEMOIZE numbers from) follows only entries it stores
        itself, so a small pickle stores each one (values passed by
        persistent id; nothing else runs)."""
        self._memo_values = list(memo.values())
        parts = [b"\x80\x05"]
        for position, index in enumerate(memo):
            parts.append(b"J" + position.to_bytes(4, "little", signed=True) + b"Q")
            parts.append(b"r" + index.to_bytes(4, "little") + b"0")
        parts.append(b"N.")
        self._file.switch(b"".join(parts))  # the segment stream this unpickler reads
        try:
            self.load()
        finally:
            self._memo_values = None

    def persistent_load(self, pid):
        if self._memo_values is None or type(pid) is not int:
            raise UnpicklingError("this stream uses persistent ids, which mason does not resolve")
        return self._memo_values[pid]


def scan_session(session: ContainerReader, variables, allowlist: Allowlist | None = None,
                 payloads: dict | None = None) -> ScanReport:
    """What the segments of ``variables`` would import and call, found
    without running anything (offenders listed when given an allowlist).
    ``payloads``: the segments already read and verified, by number."""
    stream = _SegmentStream()
    report = ScanReport()
    scanner = None
    for var in variables:
        if scanner is None or var.get("memo_reset"):
            scanner = Scanner(stream, allowlist, session_module=session.meta["module"])
            scanner.report = report
        data = payloads[var["segment"]] if payloads is not None else session.segment(var["segment"])
        stream.switch(data)
        scanner.stream_bytes += len(data)
        before = len(report.problems)
        scanner.scan()
        report.by_variable[var["name"]] = report.problems[before:]
    return report


def _check_environment(env: dict) -> None:
    """Warn, before anything is unpickled, when the saving interpreter differs.

    ``env`` passed :func:`session_meta_problem`.  Versions are read from
    installed metadata and already imported modules only: the package names
    come from the file, and nothing it names is imported before the checks.
    """
    problems = []
    saved_python = tuple(env.get("python", ())[:2])
    here = sys.version_info[:2]
    if saved_python and saved_python != here:
        problems.append(f"Python {saved_python[0]}.{saved_python[1]} (this is {here[0]}.{here[1]}: functions saved by value cannot run)")
    for package, version in sorted(env.get("packages", {}).items()):
        installed = _namespace.installed_version(package)
        if installed is None:
            problems.append(f"{package} {version} (no installed version found here)")
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
    file carries a signature (checked only by a load or verify with a key);
    ``refused``: variable -> what a restricted load with the allowlist
    ``checked_against`` (by default :data:`mason.DATA`, data only) would
    refuse in it.
    """

    _FIELDS = (
        "module", "module_kind", "variables", "skipped", "environment", "format_version",
        "signed", "imports", "functions", "scan_error", "refused", "checked_against",
    )

    def __init__(self, module: str, module_kind: str, variables=(), skipped=(), environment=None,
                 format_version=(), signed=False, imports=None, functions=(), scan_error=None,
                 refused=None, checked_against=""):
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
        self.refused: dict[str, list[str]] = dict(refused or {})
        self.checked_against = checked_against

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


def inspect(filename=None, storage_options=None, allow=None) -> SessionInfo:
    """Describe a session file (a path, URL or binary stream) without
    running anything from it.

    Safe for untrusted files: the JSON index is parsed after its checksum is
    verified, and the pickle segments are only scanned, by a machine that
    runs nothing, in time and memory linear in their size.
    ``storage_options``: a dict for fsspec, with a URL.  ``allow``: the
    allowlist to judge the file against (default :data:`mason.DATA`):
    ``refused`` tells, per variable, what a load with it would refuse.
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
        allowlist = Allowlist.from_arg(DATA if allow is None else allow)
        info.checked_against = "mason.DATA" if allow is None else ", ".join(map(str, allowlist.patterns))
        try:
            report = scan_session(session, meta["variables"], allowlist)
        except UnpicklingError as exc:  # CorruptSessionError included: a damaged segment
            info.scan_error = str(exc)
        else:
            info.imports = sorted(m for m in report.modules if m != meta["module"])
            info.functions = list(report.functions)
            info.refused = {name: sorted(set(p)) for name, p in report.by_variable.items() if p}
        return info
