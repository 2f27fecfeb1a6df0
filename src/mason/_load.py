"""Loading a session: storage -> container reader (index and checksums
verified) -> environment check -> (with an allowlist) a scan -> one
unpickler over the segments in order -> a new dict -> the target namespace,
updated in one step.  A session file written by dill (a plain pickle) takes
the same way through its own plan (``_dillsession.py``).  Loading runs code
from the file: only load files you trust, or load with ``allow=`` (see
docs/security.md)."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time
    from collections.abc import Callable
    from typing import Any

    from ._sessionmeta import SessionReader

import builtins
import contextlib
import gc
import io
import os
import pickle
import stat
import sys
import types
import warnings
from itertools import accumulate

from . import _namespace, _progress, _rebuild
from ._allowlist import Allowlist
from ._format import ContainerReader
from ._format.signing import resolve_key
from ._memo import UNKNOWN, StaticCall, StaticGlobal, may_read, memo_gets, segment_effects
from ._sessionmeta import _Options, _options, check_session_meta
from ._storage import default_session_path, is_url, open_for_read, open_input, peek
from ._unpickler import Unpickler, check_map_location, translate_error
from .errors import (
    CorruptSessionError,
    EnvironmentMismatchWarning,
    MasonError,
    MasonWarning,
    SkippedVariableWarning,
    UnpicklingError,
)


class _LoadOptions(_Options):
    names: list | None
    on_error: str
    ignore: bool | None
    mmap: bool
    verify_blobs: bool
    key: object
    allow: object
    storage_options: dict | None
    progress: bool | None
    map_location: object
    dask_storage_options: dict | None
    DEFAULTS = dict(
        names=None,
        on_error="warn",
        ignore=None,
        mmap=True,
        verify_blobs=True,
        key=None,
        allow=None,
        storage_options=None,
        progress=None,
        map_location=None,
        dask_storage_options=None,
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

    Dask: persisted collections and futures come back persisted on the
    cluster of the running ``distributed.Client`` (its workers read the
    partition files; the data does not pass through this process), or,
    with no client running, as lazy collections that read the files when
    computed.  ``dask_storage_options``: fsspec options for partitions at
    URLs (default: ``storage_options``).  A saved ``Client`` is left out,
    with a note naming its scheduler.  See docs/dask.md.

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

    A session file written by dill 0.3.6 to 0.4.x (``dill.dump_module``)
    loads the same way, without dill (see docs/types.md, "Reading dill
    files"); being one pickle, it loads as a whole.
    """
    timer = _progress.Timer("load_module")
    options = _LoadOptions.from_kwds(kwds, "load_module")
    source = default_session_path() if filename is None else filename
    with _open_plan(source, options) as plan:
        timer.lap("opened and checked")
        return _module_from_plan(plan, module, timer)


def _module_from_plan(plan: _LoadPlan, module, timer: _progress.Timer):
    """``load_module``'s result, from a plan that passed every check (a
    checkpoint's too): the target module, updated in one step."""
    # Only now, with every check passed, may the module the file names be imported.
    target = _target_module(plan.meta, module, restricted=plan.allowlist is not None)
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
    with _open_plan(source, options) as plan:
        timer.lap("opened and checked")
        name = (
            source
            if isinstance(source, str)
            else (os.fspath(source) if isinstance(source, os.PathLike) else getattr(source, "name", None))
        )
        return _dict_from_plan(plan, module, update, name, timer)


def _dict_from_plan(plan: _LoadPlan, module, update: bool, session_name, timer: _progress.Timer) -> dict:
    """``load_module_asdict``'s result, from a plan that passed every check
    (a checkpoint's too); ``session_name`` goes in ``__session__``."""
    name = plan.meta["module"]
    live: types.ModuleType | None
    if module is not None:
        live = _namespace.resolve_module(module)
    else:  # restricted: the name the file gives means nothing
        live = None if plan.allowlist is not None else sys.modules.get(name)
    if update and live is not None:
        result = dict(live.__dict__)
    else:
        result = {"__name__": name, "__builtins__": builtins}
    result["__session__"] = session_name
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
def _open_plan(source, options: _LoadOptions):
    """The plan of a load from ``source``: a mason session, or a session
    file written by dill (a plain pickle, read whole: it is scanned, then
    loaded from the very bytes scanned)."""
    if not isinstance(source, (str, os.PathLike)) and not hasattr(source, "read"):
        raise TypeError(f"filename must be a path or a binary stream, not {type(source).__name__}")
    if isinstance(source, io.TextIOBase):
        raise TypeError("a mason file must be opened in binary mode ('rb')")
    with open_input(source, options.storage_options) as opened, contextlib.ExitStack() as stack:
        if isinstance(opened, (str, os.PathLike)):
            # Opened as the container reader opens it (no symlinks, no directories).
            file = stack.enter_context(open_for_read(opened))
            if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
                opened = file  # a FIFO or device can be read once only: peek at this stream
            elif not is_pickle(file.read(1)):
                file.close()  # a mason file: the reader opens (and maps) the path itself
                file = None  # type: ignore[assignment]
        else:
            file = opened
        if file is not None:
            data, opened = _read_pickle(file, opened)
            if data is not None:
                from ._dillsession import DillSessionPlan  # dill's files only: not a cost of mason's

                yield DillSessionPlan(
                    data, allow=options.allow, key=options.key, names=options.names, map_location=options.map_location
                )
                return
        with _open_reader(opened, options) as reader:
            yield _LoadPlan(reader, options, location=_location(source))


def _location(source) -> str | None:
    """Where a session was read from (absolute path or URL), or None for a stream."""
    if isinstance(source, str) and is_url(source):
        return source
    if isinstance(source, (str, os.PathLike)):
        return os.path.abspath(os.fsdecode(source))
    return None


def is_pickle(head: bytes) -> bool:
    """Whether a file starting with ``head`` is a pickle (protocol 2 or later,
    as every dill writes by default) rather than a mason container."""
    return head[:1] == b"\x80"


def _read_pickle(file, opened):
    """(the whole file, ``opened``) if ``file`` is a pickle rather than a
    mason file, else (None, a source that still starts where ``opened`` did)."""
    if file is not opened:  # a regular file whose first byte said pickle
        file.seek(0)
        return file.read(), opened
    head, opened = peek(opened, 1)
    return (opened.read(), opened) if is_pickle(head) else (None, opened)


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

    def __init__(self, session: SessionReader, options: _LoadOptions, location: str | None = None):
        self.session = session
        self.options = options
        self.meta = meta = session.meta
        self.variables = meta["variables"]
        self.wanted, count = _wanted(self.variables, options.names)
        self.needed = self.variables[:count]
        numbers = [v["segment"] for v in self.needed]
        self.payloads = dict(zip(numbers, session.segments(numbers)))
        session.verify_records([], [blob for var in self.needed for blob in var["blobs"]])
        self.unversioned = _check_environment(meta.get("environment", {}))
        self.allowlist = Allowlist.from_arg(options.allow)
        self.refused: dict[str, str] = {}  # variable -> what the allowlist refuses in it
        if self.allowlist is not None:
            report = scan_session(session, self.needed, self.allowlist, payloads=self.payloads)
            if options.on_error == "raise":
                self.allowlist.check(report.problems, report.functions)
            else:  # lenient: what needs more than the list is never run, and named
                self.refused = {
                    name: ", ".join(sorted(set(problems))) for name, problems in report.by_variable.items() if problems
                }
        self.partitions = None
        if "dask" in meta:  # checked before anything is unpickled, like the rest of the index
            from ._dask.source import PartitionSource

            storage_options = options.dask_storage_options
            if storage_options is None:
                storage_options = options.storage_options
            self.partitions = PartitionSource(meta["dask"], location, storage_options, self.allowlist)

    def restore(self, namespace: dict, module) -> dict:
        """Unpickle the saved variables into a new dict (the namespace is untouched)."""
        options = self.options
        if self.allowlist is not None:
            self.allowlist.target = module.__name__
        loader = _SegmentLoader(
            self.session,
            self.payloads,
            self.session.meta["module"],
            namespace,
            module,
            options.ignore,
            self.allowlist,
            options.map_location,
            self.partitions,
        )
        wanted = self.wanted
        loaded: dict = {}
        failures: dict[str, str] = {}
        refused = self.refused
        left_out: dict[str, str] = {}
        total = sum(var.get("size", 0) for var in self.needed)
        progress = _progress.Progress("loading", len(self.needed), total_bytes=total, progress=options.progress)
        # Thousands of variables: what runs per variable is kept to the few
        # lookups and calls it needs.
        with loader.running(), _collector_paused():
            for position, var in progress.track(enumerate(self.needed), size=lambda item: item[1].get("size", 0)):
                name = var["name"]
                if var.get("memo_reset"):
                    loader.reset()
                if refused and name in refused:
                    loader.skip(var, self.needed[:position])
                    failures[name] = f"refused by the allowlist: it would use {refused[name]}"
                    continue
                blocked = loader.blocked_by(var) if loader.holes else None
                if blocked is not None:
                    loader.skip(var, self.needed[:position])
                    failures[name] = f"it refers to objects of {blocked!r}, which could not be restored"
                    continue
                try:
                    value = loader.load(var)
                except _Overrun:
                    raise
                except Exception as exc:  # the variable's own reconstruction failed
                    if options.on_error == "raise" and name in wanted:
                        raise _load_error(name, exc) from exc
                    failures[name] = f"{type(exc).__name__}: {exc}"
                    loader.recover(var, self.needed[:position])
                    continue
                if isinstance(value, _rebuild._LeftOut):  # a connection, not a value (a Dask client)
                    left_out[name] = value.note
                else:
                    loaded[name] = value
        _check_versions_after(self.unversioned)
        notes = "".join(f"\n  {name}: {note}" for name, note in left_out.items() if name in wanted)
        if notes:
            warnings.warn(f"left out, not values:{notes}", MasonWarning, stacklevel=4)
        failures = {name: reason for name, reason in failures.items() if name in wanted}
        if failures:
            lines = "".join(f"\n  {name}: {reason}" for name, reason in failures.items())
            message = f"{len(failures)} of {len(wanted)} variables not restored:{lines}"
            warnings.warn(SkippedVariableWarning(message, failures), stacklevel=4)
        return {name: value for name, value in loaded.items() if name in wanted}


@contextlib.contextmanager
def _collector_paused():
    """The cyclic garbage collector off while the block runs (unless it was off already).

    Unpickling creates objects and frees almost none, which is the worst case
    for a generational collector: it runs every few hundred allocations and,
    as the survivors pile up, rescans them all again and again.  A session
    of 200,000 small dicts loaded in 55 ms of CPU time with it on, 37 ms off;
    the one collection that follows scans each new object once.
    """
    paused = gc.isenabled()
    if paused:
        gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()


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


# The most segment bytes a plain load copies into its one stream: past this,
# segments are copied in one at a time (a few hundred ns more per variable).
_HOLD_BYTES = 64 << 20


class _Overrun(CorruptSessionError):
    """A segment's pickle read past the segment's end: the whole load stops."""


class _SegmentStream(io.BytesIO):
    """A readable stream for one shared Unpickler, which binds the stream's
    methods once, so that every read it makes is a C call, not a Python method.

    It holds either every segment of a plain load back to back (``hold``:
    moving to the next segment is then a ``seek``, since the unpickler
    stops right after a pickle's STOP), or one piece of bytes at a time
    (``switch``), copied in after the held segments, which stay.
    """

    _held = 0

    def hold(self, pieces) -> list[int]:
        """Hold ``pieces`` back to back; returns where each one ends."""
        self.seek(0)
        self.truncate()
        ends = [self.write(piece) for piece in pieces]
        self._held = self.tell()
        return list(accumulate(ends))

    def switch(self, data) -> None:
        self.seek(self._held)
        self.truncate()
        self.write(data)
        self.seek(self._held)


class _Buffers:
    """The out-of-band buffers of the segment being unpickled, in order."""

    def __init__(self, session: SessionReader):
        self._session = session
        self._pending: list[int] = []

    def switch(self, blob_ids) -> None:
        if blob_ids or self._pending:
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

    def __init__(
        self,
        session,
        payloads: dict,
        saved_module: str,
        namespace: dict,
        module,
        ignore,
        allowlist=None,
        map_location=None,
        partitions=None,
    ):
        self._payloads = payloads  # segment number -> its verified payload
        self._stream = _SegmentStream()
        self._buffers = _Buffers(session)
        self._state = _rebuild._LoadState(namespace, partitions)
        self._restricted = allowlist is not None
        self._make: Callable[[], Any]
        if allowlist is not None:
            from ._restricted import RestrictedUnpickler  # restricted loads only: plain ones never import it

            self._make = lambda: RestrictedUnpickler(
                self._stream,
                allowlist,
                buffers=self._buffers,
                session=(saved_module, namespace, module),
                load_state=self._state,
                map_location=map_location,
            )
        else:
            # dill's class rebinding is for single objects: in a session, the
            # saved classes replace the live ones, so instances keep theirs.
            ignore = True if ignore is None else ignore
            self._make = lambda: _SessionUnpickler(
                self._stream,
                saved_module,
                namespace,
                module,
                ignore=ignore,
                buffers=self._buffers,
                map_location=map_location,
                load_state=self._state,
            )
        self._unpickler: Any = self._make()
        self.holes: dict[int, str] = {}  # memo index -> the variable that would have filled it
        # A plain load reads its segments from one stream that holds them all
        # (segment -> (start, end)), unless that copy would take too much memory.
        self._spans: dict[int, tuple[int, int]] = {}
        if not self._restricted and sum(map(len, payloads.values())) <= _HOLD_BYTES:
            ends = self._stream.hold(payloads.values())
            self._spans = dict(zip(payloads, zip([0, *ends], ends)))

    def running(self):
        """The context in which ``load`` runs, set once for all the variables."""
        return contextlib.nullcontext() if self._restricted else self._unpickler.loading()

    def load(self, var):
        span = self._spans.get(var["segment"])
        if span is None:  # the segment alone in the stream
            data = self._payloads[var["segment"]]
            self._stream.switch(data)
            self._buffers.switch(var["blobs"])
            if not self._restricted:
                return self._unpickler.load_next()
            self._unpickler.stream_bytes += len(data)
            self._unpickler.start_undo()
            return self._unpickler.load()
        start, end = span
        self._stream.seek(start)
        self._buffers.switch(var["blobs"])
        try:
            return self._unpickler.load_next()
        finally:
            if self._stream.tell() > end:
                # Its pickle went on into the next segment (a pickler's segment
                # always ends in STOP: the file is malformed).  What that ran
                # is in the memo now, so no later variable can be trusted.
                raise _Overrun(f"segment {var['segment']}: its pickle does not end within the segment")

    def reset(self) -> None:
        # A fresh unpickler: assigning ``memo`` does not reset the C
        # unpickler's count of memo entries, which MEMOIZE numbers from.
        self._unpickler = self._make()
        self.holes.clear()

    # -- recovery: only after a variable failed, so speed matters less ----

    def blocked_by(self, var):
        """The failed variable whose objects ``var`` would use, or None."""
        if not self.holes:
            return None
        data = self._payloads[var["segment"]]
        if len(self.holes) <= 16 and not may_read(data, self.holes):
            return None
        for index in memo_gets(data):
            name = self.holes.get(index)
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
        memo: dict
        if self._restricted:
            memo = self._unpickler.memo  # a plain dict: numbered exactly as MEMOIZE numbers
            size = len(memo)
            has_key: Callable[[int], bool] = memo.__contains__
        else:
            # The C unpickler's memo is contiguous for mason's streams
            # (MEMOIZE only); its size is what the earlier segments made it.
            memo = self._unpickler.memo.copy()
            size = self._memo_size(earlier)
            has_key = size.__gt__
        effects = segment_effects(
            self._payloads[var["segment"]], has_key, size, known=lambda i: _constant(memo.get(i, UNKNOWN))
        )
        for index, value in effects.writes.items():
            resolved = self._resolve_static(value)
            if resolved is UNKNOWN:
                self.holes[index] = var["name"]
                memo[index] = None
            else:
                self.holes.pop(index, None)
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
    """``value`` if it is a plain constant that can stand in a memo entry
    (one of mason's reconstructors: the global that names it), else UNKNOWN."""
    if value is None or type(value) in (str, bytes, int, float, bool):
        return value
    if type(value) is tuple and all(_constant(v) is v for v in value):
        return value
    if (
        type(value) is types.FunctionType
        and value.__module__ == _REBUILD
        and getattr(_rebuild, value.__name__, None) is value
    ):
        return StaticGlobal(_REBUILD, value.__name__)
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


def scan_session(session: SessionReader, variables, allowlist: Allowlist | None = None, payloads: dict | None = None):
    """What the segments of ``variables`` would import and call, found
    without running anything (offenders listed when given an allowlist).
    ``payloads``: the segments already read and verified, by number."""
    from ._scan import Scanner, ScanReport

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


def _check_environment(env: dict) -> list[tuple[str, str]]:
    """Warn, before anything is unpickled, when the saving interpreter differs.

    ``env`` passed :func:`session_meta_problem`.  Versions are read from
    installed metadata and already imported modules only: the package names
    come from the file, and nothing it names is imported before the checks.
    Returns the (package, saved version) pairs that are installed but whose
    version only an import would tell (``sklearn`` has no metadata under
    that name): :func:`_check_versions_after` checks them once the load
    has imported them.
    """
    problems = []
    saved_python = tuple(env.get("python", ())[:2])
    here = sys.version_info[:2]
    if saved_python and saved_python != here:
        problems.append(
            f"Python {saved_python[0]}.{saved_python[1]} (this is {here[0]}.{here[1]}: functions and classes saved by"
            " value are compiled again from their saved source; code saved without source cannot run)"
        )
    unversioned = []
    for package, version in sorted(env.get("packages", {}).items()):
        installed = _namespace.installed_version(package)
        if installed is None and _namespace.importable(package):
            unversioned.append((package, version))
        else:
            problems.append(_version_problem(package, version, installed))
    _warn_environment([p for p in problems if p], stacklevel=6)
    return unversioned


def _check_versions_after(unversioned: list[tuple[str, str]]) -> None:
    """The version check of packages :func:`_check_environment` could not
    version without importing them, now that the load imported what it used."""
    problems = []
    for package, version in unversioned:
        installed = getattr(sys.modules.get(package), "__version__", None)
        problems.append(_version_problem(package, version, installed if isinstance(installed, str) else None))
    _warn_environment([p for p in problems if p], stacklevel=5)


def _version_problem(package: str, version: str, installed: str | None) -> str:
    if installed is None:
        return f"{package} {version} (no installed version found here)"
    return f"{package} {version} (installed here: {installed})" if installed != version else ""


def _warn_environment(problems: list[str], stacklevel: int) -> None:
    if problems:
        warnings.warn(
            "this session was saved with " + "; ".join(problems), EnvironmentMismatchWarning, stacklevel=stacklevel
        )
