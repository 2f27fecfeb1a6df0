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
from dataclasses import dataclass, field

from . import _namespace, _rebuild
from ._diagnose import find_culprit
from ._filter import make_filter
from ._format import ContainerReader, ContainerWriter
from ._pickler import Pickler
from ._storage import atomic_write, default_session_path
from ._unpickler import Unpickler, translate_error
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
    "SessionInfo",
]

#: what the ``"kind"`` key of a session file's metadata says
SESSION_KIND = "mason.session"
_PROTOCOL = 5
_ON_ERROR = ("warn", "raise")


# ====================================================================== save


def dump_module(filename=None, module=None, refimported=False, **kwds) -> None:
    """Save a module's namespace (``__main__`` by default) to ``filename``.

    ``filename``: a path, or a binary stream (it may be non-seekable); by
    default a private per-user file (see :func:`default_session_path`).
    ``module``: a module object, an importable module's name, or None.
    ``refimported``: also save objects imported from other modules (not only
    functions and classes) as references to them.

    Keywords: ``exclude=`` / ``include=`` rules (names, glob patterns,
    compiled regexes, types, predicates ``(name, obj) -> bool``, or lists of
    them); ``on_error='warn'`` (default: a variable that cannot be saved is
    left out, named in a :class:`SkippedVariableWarning` and recorded in the
    file) or ``'raise'``; ``byref``, ``recurse``, ``fmode`` as for
    :func:`mason.dump`; ``compression`` (None, 'zlib', 'lzma', 'zstd',
    'lz4') and ``checksum`` for the container.

    A path is written atomically: to a private temporary file in the same
    directory, fsynced, then renamed over the target, so the previous file
    survives any failure.
    """
    options = _SaveOptions.from_kwds(kwds)
    module = _namespace.resolve_module(module)
    keep = make_filter(options.exclude, options.include, ipython=_in_ipython(module))
    entries = _namespace.entries(module, keep, refimported)
    target = default_session_path() if filename is None else filename
    with _output(target) as stream:
        _write_session(stream, module, entries, options)


@dataclass
class _SaveOptions:
    exclude: object = None
    include: object = None
    on_error: str = "warn"
    byref: object = None
    recurse: object = None
    fmode: object = None
    compression: object = None
    checksum: object = None

    @classmethod
    def from_kwds(cls, kwds: dict) -> _SaveOptions:
        kwds = dict(kwds)
        kwds.pop("protocol", None)  # sessions always use protocol 5 (out-of-band buffers)
        return _options(cls, kwds, "dump_module")


def _options(cls, kwds: dict, function: str):
    """An options dataclass from keyword arguments; unknown ones are an error."""
    unknown = sorted(set(kwds) - set(cls.__dataclass_fields__))
    if unknown:
        raise TypeError(f"unexpected keyword argument(s) for {function}: {', '.join(unknown)}")
    options = cls(**kwds)
    if options.on_error not in _ON_ERROR:
        raise ValueError(f"on_error must be 'warn' or 'raise', not {options.on_error!r}")
    return options


@contextlib.contextmanager
def _output(target):
    if isinstance(target, (str, os.PathLike)):
        with atomic_write(target) as stream:
            yield stream
    elif hasattr(target, "write"):
        if isinstance(target, io.TextIOBase):
            raise TypeError("a session must be written to a binary stream (open the file with 'wb')")
        yield target
    else:
        raise TypeError(f"filename must be a path or a binary stream, not {type(target).__name__}")


def _write_session(stream, module, entries, options: _SaveOptions) -> None:
    writer = ContainerWriter(stream, checksum=options.checksum, compression=options.compression)
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
        )

    pickler = make_pickler(segment, on_buffer)
    variables, skipped = [], []
    memo_reset = False
    rollback = _MemoRollback()
    for entry in entries:
        first_blob = len(blob_ids)
        try:
            pickler.dump(entry.value)
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

    BUDGET = 64 * 1024 * 1024

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


class _PlaceholderMeta(type):
    """Every operation an unpickler applies to an object, as a no-op."""

    def __call__(cls, *args, **kwargs):
        return cls

    def __setitem__(cls, key, value):
        pass

    def __setstate__(cls, state):
        pass

    def append(cls, value):
        pass

    def extend(cls, values):
        pass

    def add(cls, value):
        pass


class _Placeholder(metaclass=_PlaceholderMeta):
    """Stands for every rebuilt object while counting memo entries: a class,
    so NEWOBJ accepts it, and its own ``__new__`` returns itself."""

    def __new__(cls, *args, **kwargs):
        return cls


class _CountingUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        return _Placeholder

    def persistent_load(self, pid):
        return _Placeholder


def _count_memo(segments) -> int:
    """How many memo entries the given segments create, in order."""
    import itertools

    stream = _SegmentStream()
    unpickler = _CountingUnpickler(stream, buffers=itertools.repeat(b""))
    for data in segments:
        stream.switch(data)
        unpickler.load()
    return len(unpickler.memo.copy())


def _explain(entry, exc, make_pickler) -> str:
    if isinstance(exc, MasonError):
        return f"{entry.name}: {exc}"
    found = find_culprit(entry.value, lambda f: make_pickler(f), root=entry.name)
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


def dump_session(filename=None, main=None, byref=False, **kwds) -> None:
    """Deprecated alias of :func:`dump_module` (``main`` -> ``module``,
    ``byref`` -> ``refimported``), as in dill."""
    warnings.warn("dump_session() has been renamed dump_module()", PendingDeprecationWarning, stacklevel=2)
    dump_module(filename, module=main, refimported=byref, **kwds)


# ====================================================================== load


@dataclass
class _LoadOptions:
    names: object = None
    on_error: str = "raise"
    ignore: object = None
    mmap: bool = True
    verify_blobs: bool = True

    @classmethod
    def from_kwds(cls, kwds: dict, function: str) -> _LoadOptions:
        options = _options(cls, kwds, function)
        if isinstance(options.names, str):
            options.names = [options.names]
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
    memory instead of mapping the file.

    The file is read, verified and unpickled completely before the module
    changes, in one step: if loading fails, the module is as before.
    """
    options = _LoadOptions.from_kwds(kwds, "load_module")
    source = default_session_path() if filename is None else filename
    with _open_session(source, options) as session:
        target = _target_module(session.meta, module)
        loaded = _restore(session, options, target.__dict__, target)
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
    options = _LoadOptions.from_kwds(kwds, "load_module_asdict")
    source = default_session_path() if filename is None else filename
    with _open_session(source, options) as session:
        name = session.meta["module"]
        live = _namespace.resolve_module(module) if module is not None else sys.modules.get(name)
        if update and live is not None:
            result = dict(live.__dict__)
        else:
            result = {"__name__": name, "__builtins__": builtins}
        result["__session__"] = source if isinstance(source, str) else (os.fspath(source) if isinstance(source, os.PathLike) else getattr(source, "name", None))
        selfref = live if live is not None else types.ModuleType(name)
        loaded = _restore(session, options, result, selfref)
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
    reader = ContainerReader.open(source, mmap=options.mmap, verify_blobs=options.verify_blobs)
    try:
        if reader.meta.get("kind") != SESSION_KIND:
            raise CorruptSessionError("this mason file holds no session (no session metadata in its index)")
        problem = session_meta_problem(reader.meta, reader.segment_count, reader.blob_count)
        if problem:
            raise CorruptSessionError(f"index: the session metadata is malformed: {problem}")
        yield reader
    finally:
        # Blobs mapped into loaded arrays keep the mapping alive on their own.
        with contextlib.suppress(BufferError):
            reader.close()


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
    # Damage must surface before the first object is rebuilt (rebuilding can
    # have side effects), not halfway, when a damaged record comes up.
    needed = variables[: wanted[1]]
    session.verify_records([var["segment"] for var in needed], [blob for var in needed for blob in var["blobs"]])
    _check_environment(meta.get("environment", {}))
    loader = _SegmentLoader(session, meta["module"], namespace, module, options.ignore)
    loaded: dict = {}
    failures: dict[str, str] = {}
    for position, var in enumerate(variables[: wanted[1]]):
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


class _SegmentStream:
    """A readable stream over one segment at a time, for one shared Unpickler."""

    def __init__(self):
        self._data = memoryview(b"")
        self._pos = 0

    def switch(self, data) -> None:
        self._data = memoryview(data)
        self._pos = 0

    def read(self, n=-1):
        end = len(self._data) if n is None or n < 0 else min(len(self._data), self._pos + n)
        chunk = self._data[self._pos : end].tobytes()
        self._pos = end
        return chunk

    def readinto(self, buffer):
        chunk = self.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)

    def readline(self):
        data = self._data
        end = self._pos
        while end < len(data) and data[end] != 0x0A:
            end += 1
        return self.read(end + 1 - self._pos)


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

    def __init__(self, session, saved_module: str, namespace: dict, module, ignore):
        self._session = session
        self._stream = _SegmentStream()
        self._buffers = _Buffers(session)
        # dill's class rebinding is for single objects: in a session, the
        # saved classes replace the live ones, so instances keep theirs.
        ignore = True if ignore is None else ignore
        self._make = lambda: _SessionUnpickler(
            self._stream, saved_module, namespace, module, ignore=ignore, buffers=self._buffers
        )
        self._unpickler = self._make()
        # memo index ranges [start, end) holding placeholders for objects of
        # variables that could not be restored, with the variable's name
        self._holes: list[tuple[int, int, str]] = []
        self._counted_until = 0  # memo size after the segments counted so far

    def load(self, var):
        self._stream.switch(self._session.segment(var["segment"]))
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

    def find_class(self, module_name, name):
        if module_name == "mason._rebuild":
            if name == "module_dict":
                return self._module_dict
            if name == "import_module":
                return self._import_module
        return super().find_class(module_name, name)

    def _module_dict(self, name):
        return self._namespace if name == self._saved_module else _rebuild.module_dict(name)

    def _import_module(self, name):
        return self._module if name == self._saved_module else _rebuild.import_module(name)


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


@dataclass
class SessionInfo:
    """What a session file holds, read from its index alone."""

    module: str
    module_kind: str
    variables: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    environment: dict = field(default_factory=dict)
    format_version: tuple = ()

    def names(self) -> list[str]:
        return [v["name"] for v in self.variables]


def inspect(filename=None) -> SessionInfo:
    """Describe a session file without unpickling anything from it.

    Safe for untrusted files: only the JSON index is parsed (after its
    checksum is verified).
    """
    source = default_session_path() if filename is None else filename
    with _open_session(source, _LoadOptions(mmap=False)) as session:
        meta = session.meta
        return SessionInfo(
            module=meta["module"],
            module_kind=meta.get("module_kind", ""),
            variables=[{k: v[k] for k in ("name", "type", "stored", "size")} for v in meta["variables"]],
            skipped=list(meta.get("skipped", [])),
            environment=dict(meta.get("environment", {})),
            format_version=tuple(session.version),
        )
