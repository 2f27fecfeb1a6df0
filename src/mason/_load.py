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
    from collections.abc import Mapping

    from ._sessionmeta import SessionReader

import builtins
import contextlib
import io
import os
import pickle
import stat
import sys
import types
import warnings

from . import _namespace, _progress, _rebuild
from ._allowlist import Allowlist
from ._collector import collector_paused
from ._format import ContainerReader
from ._format.signing import resolve_key
from ._segments import CheckedSegments, _Overrun, _SegmentLoader, _SegmentStream, held_segments
from ._sessionmeta import _Options, _options, check_session_meta
from ._storage import default_session_path, is_url, open_for_read, open_input, peek
from ._unpickler import check_map_location, translate_error
from .errors import (
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
    # The collector rests from the first byte read: the index of thousands
    # of variables is thousands of objects too.
    with collector_paused() as collector:
        with _open_plan(source, options) as plan:
            timer.lap("opened and checked")
            result = _module_from_plan(plan, module, timer)
        collector.keep = plan.kept_all
        return result


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
    with collector_paused() as collector:
        with _open_plan(source, options) as plan:
            timer.lap("opened and checked")
            name = (
                source
                if isinstance(source, str)
                else (os.fspath(source) if isinstance(source, os.PathLike) else getattr(source, "name", None))
            )
            result = _dict_from_plan(plan, module, update, name, timer)
        collector.keep = plan.kept_all
        return result


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

    #: set by ``restore``: every object it built is kept (for ``collector_paused``)
    kept_all = False

    def __init__(self, session: SessionReader, options: _LoadOptions, location: str | None = None):
        self.session = session
        self.options = options
        self.meta = meta = session.meta
        self.variables = meta["variables"]
        self.wanted, count = _wanted(self.variables, options.names)
        self.needed = self.variables[:count]
        numbers = [v["segment"] for v in self.needed]
        self.allowlist = Allowlist.from_arg(options.allow)
        # Segment number -> its checked payload, and (a plain load) all of
        # them back to back, as the loader reads them: every record is checked here.
        self.held = None if self.allowlist is not None else held_segments(session, numbers)
        self.payloads: Mapping[int, memoryview]
        if self.held is None:
            self.payloads = dict(zip(numbers, session.segments(numbers)))
        else:
            self.payloads = CheckedSegments(session, numbers)
        session.verify_records([], [blob for var in self.needed for blob in var["blobs"]])
        self.unversioned = _check_environment(meta.get("environment", {}))
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
            self.held,
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
        # Thousands of variables: while they are plain (the common case),
        # the loader runs them with a few C calls each, and hands the others
        # (and one that failed) to _load_one.
        needed = self.needed
        with loader.running(), collector_paused() as collector:
            if not (refused or progress.on):
                position = 0
                while position < len(needed):
                    position, error = loader.load_plain(needed, position, loaded)
                    if position < len(needed):
                        var = needed[position]
                        if error is None:
                            self._load_one(loader, position, var, loaded, failures)
                        else:
                            self._failed(var, error, failures)
                            loader.recover(var, needed[:position])
                        position += 1
            else:
                for position, var in progress.track(enumerate(needed), size=lambda item: item[1].get("size", 0)):
                    self._load_one(loader, position, var, loaded, failures)
            # Everything built is kept, and the loader's own objects die with
            # it (the restricted machine's form cycles: not then).
            self.kept_all = self.allowlist is None and not failures and len(loaded) == len(needed) == len(wanted)
            collector.keep = self.kept_all
        # A connection, not a value (a Dask client): named, left out.
        for name in [name for name, value in loaded.items() if type(value) is _rebuild._LeftOut]:
            left_out[name] = loaded.pop(name).note
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

    def _load_one(self, loader: _SegmentLoader, position: int, var: dict, loaded: dict, failures: dict) -> None:
        """Unpickle one variable into ``loaded``, or say in ``failures`` why it is not."""
        name = var["name"]
        if var.get("memo_reset"):
            loader.reset()
        refused = self.refused
        if refused and name in refused:
            loader.skip(var, self.needed[:position])
            failures[name] = f"refused by the allowlist: it would use {refused[name]}"
            return
        blocked = loader.blocked_by(var) if loader.holes else None
        if blocked is not None:
            loader.skip(var, self.needed[:position])
            failures[name] = f"it refers to objects of {blocked!r}, which could not be restored"
            return
        try:
            loaded[name] = loader.load(var)
        except Exception as exc:  # the variable's own reconstruction failed
            self._failed(var, exc, failures)
            loader.recover(var, self.needed[:position])

    def _failed(self, var: dict, exc: Exception, failures: dict) -> None:
        """``var`` raised ``exc``: the load stops (``on_error='raise'``, or a
        malformed file), or the variable is named in ``failures``."""
        name = var["name"]
        if isinstance(exc, _Overrun) or (self.options.on_error == "raise" and name in self.wanted):
            if isinstance(exc, _Overrun):
                raise exc
            raise _load_error(name, exc) from exc
        failures[name] = f"{type(exc).__name__}: {exc}"


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


def scan_session(
    session: SessionReader, variables, allowlist: Allowlist | None = None, payloads: Mapping | None = None
):
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
