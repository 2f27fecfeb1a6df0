"""Unpickling a session's segments, one variable at a time, in order, with
one unpickler whose memo carries across them; and, after a variable fails,
the memo put back exactly as the segments alone determine it (``_memo.py``),
so that only the variables that use what failed are held back.  Used by
``_load._LoadPlan``."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time
    from collections.abc import Callable
    from typing import Any

    from ._sessionmeta import SessionReader

import contextlib
import functools
import io
import pickle
import types
from collections.abc import Mapping
from itertools import accumulate

from . import _rebuild
from ._memo import UNKNOWN, StaticCall, StaticGlobal, may_read, memo_gets, segment_effects
from ._unpickler import Unpickler, translate_error
from .errors import CorruptSessionError, UnpicklingError

# The most segment bytes a plain load copies into its one stream: past this,
# segments are copied in one at a time (a few hundred ns more per variable).
_HOLD_BYTES = 64 << 20


def held_segments(session, numbers: list[int]):
    """``(bytes, spans)`` for a plain load from a reader that hands out its
    leading segments joined (``joined_segments``: a container's): the
    payloads of segments ``numbers`` back to back, every record checked, and
    where each lies (segment -> (start, end)); it saves the view of each
    segment and the copy that joins them.  None from other readers, for
    other segments, or when they are too many bytes to hold."""
    joined = getattr(session, "joined_segments", None)
    count = len(numbers)
    if joined is None or numbers != list(range(count)):
        return None
    ends = list(accumulate(session.segment_lengths[:count]))
    if ends and ends[-1] > _HOLD_BYTES:
        return None
    return joined(count), dict(zip(numbers, zip([0, *ends], ends)))


def _hold(payloads):
    """``held_segments`` from the payloads themselves (segment -> view), or None."""
    if sum(map(len, payloads.values())) > _HOLD_BYTES:
        return None
    ends = list(accumulate(map(len, payloads.values())))
    return b"".join(payloads.values()), dict(zip(payloads, zip([0, *ends], ends)))


class CheckedSegments(Mapping):
    """Segment number -> its payload, for segments a reader has checked
    (``held_segments``): each view made when first asked for."""

    def __init__(self, session, numbers: list[int]):
        self._session = session
        self._numbers = dict.fromkeys(numbers)

    def __getitem__(self, number: int):
        if number not in self._numbers:
            raise KeyError(number)
        return self._session.segment(number)

    def __iter__(self):
        return iter(self._numbers)

    def __len__(self) -> int:
        return len(self._numbers)


class _Overrun(CorruptSessionError):
    """A segment's pickle read past the segment's end: the whole load stops."""


class _SegmentStream(io.BytesIO):
    """A readable stream for one shared Unpickler, which binds the stream's
    methods once, so that every read it makes is a C call, not a Python method.

    It holds either every segment of a plain load back to back (``held``,
    the bytes it starts with, shared, not copied: moving to the next
    segment is then a ``seek``, since the unpickler stops right after a
    pickle's STOP), or one piece of bytes at a time (``switch``), copied
    in after the held segments, which stay.
    """

    def __init__(self, held: bytes = b""):
        super().__init__(held)
        self._held = len(held)

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
        payloads,
        held,
        saved_module: str,
        namespace: dict,
        module,
        ignore,
        allowlist=None,
        map_location=None,
        partitions=None,
    ):
        self._payloads = payloads  # segment number -> its verified payload
        self._restricted = allowlist is not None
        # A plain load reads its segments from one stream that holds them all
        # (``held``, from held_segments: segment -> (start, end)), unless that
        # copy would take too much memory.
        if held is None and not self._restricted:
            held = _hold(payloads)
        self._spans: dict[int, tuple[int, int]] = {} if held is None else held[1]
        self._stream = _SegmentStream(b"" if held is None else held[0])
        self._buffers = _Buffers(session)
        self._state = _rebuild._LoadState(namespace, partitions)
        # Plain: nothing but the C unpickler runs per variable (load_plain).
        self._plain = allowlist is None and (ignore is None or bool(ignore))
        # A maker of fresh unpicklers (after a memo reset or a failure).  It
        # holds what they share, not this loader: no reference cycle keeps the
        # memo and the held segments alive after the load.
        self._make: Callable[[], Any]
        if allowlist is not None:
            from ._restricted import RestrictedUnpickler  # restricted loads only: plain ones never import it

            self._make = functools.partial(
                RestrictedUnpickler,
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
            self._make = functools.partial(
                _SessionUnpickler,
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
                raise _Overrun(_overrun(var))

    def load_plain(self, variables: list, position: int, loaded: dict):
        """Unpickle ``variables[position:]`` into ``loaded`` (name -> value)
        while each is plain: held in the stream, without out-of-band buffers
        or a memo reset, and nothing held back.  Returns ``(position, error)``:
        where it stopped, ``len(variables)`` when done; ``error`` is the
        exception the variable there raised (it ran: the caller recovers),
        or None (it did not run: the caller takes it the careful way).

        The per-variable work of :meth:`load`, for the thousands of small
        variables a session of functions has, as a few C calls each."""
        spans = self._spans
        if not (spans and self._plain) or self.holes:
            return position, None
        self._buffers.switch(())  # none left over from an earlier variable
        seek, tell = self._stream.seek, self._stream.tell
        unpickle = types.MethodType(pickle.Unpickler.load, self._unpickler)  # load_next without rebinding
        count = len(variables)
        while position < count:
            var = variables[position]
            span = spans.get(var["segment"])
            if span is None or var["blobs"] or "memo_reset" in var:
                return position, None
            seek(span[0])
            try:
                loaded[var["name"]] = unpickle()
            except Exception as exc:
                if tell() > span[1]:
                    return position, _Overrun(_overrun(var))
                return position, translate_error(exc) if isinstance(exc, _STREAM_ERRORS) else exc
            if tell() > span[1]:
                return position, _Overrun(_overrun(var))
            position += 1
        return position, None

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
#: what the C unpickler raises for a malformed stream (load_next translates them)
_STREAM_ERRORS = (EOFError, pickle.UnpicklingError)


def _overrun(var) -> str:
    return f"segment {var['segment']}: its pickle does not end within the segment"


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
        # Not bound methods: the memo keeps what this returns, and a memo
        # that refers back to its unpickler is a cycle that only the
        # collector frees (with every object the memo holds).
        if module_name == _REBUILD:
            if name == "module_dict":
                return functools.partial(_module_dict, self._saved_module, self._namespace)
            if name == "import_module":
                return functools.partial(_import_module, self._saved_module, self._module)
        return super()._resolve(module_name, name)

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


def _module_dict(saved_module: str, namespace: dict, name):
    """``module_dict`` of a session load: the saved module's is the namespace being restored."""
    return namespace if name == saved_module else _rebuild.module_dict(name)


def _import_module(saved_module: str, module, name):
    """``import_module`` of a session load: the saved module is the one being restored."""
    return module if name == saved_module else _rebuild.import_module(name)
