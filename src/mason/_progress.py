"""Progress of long saves and loads, and timings of their phases.

A save or load shows a progress bar (variables done, and bytes) once it has
handled ``THRESHOLD`` bytes, or from the start when its total is known to be
that large (a load).  ``progress=None`` (auto) shows it only when stderr is
a terminal or the code runs in a Jupyter kernel; ``True`` always shows it,
whatever the size; ``False`` never.  The bar is tqdm's, imported here only
and only when a bar is shown; without tqdm, progress is logged at INFO on
the ``mason`` logger instead, at most every ``LOG_INTERVAL`` seconds.

Off, the cost is none per variable: ``track`` hands back the sequence itself.
Phase timings go to the ``mason`` logger at DEBUG.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time: `import mason` stays fast
    from typing import Any, Callable

#: bytes a save or load must reach before a bar appears in auto mode
THRESHOLD = 256 * 2**20
#: seconds between two progress lines of the logging fallback
LOG_INTERVAL = 5.0


class _LazyLogger:
    """The ``mason`` logger, with ``logging`` imported on first use: a plain
    ``import mason`` does not pay for it."""

    def __getattr__(self, name):
        import logging

        logger = logging.getLogger("mason")
        globals()["_log"] = logger
        return getattr(logger, name)

    def isEnabledFor(self, level: int) -> bool:  # noqa: N802 - logging's name
        # Nobody configured logging if nobody imported it.
        return "logging" in sys.modules and self.__getattr__("isEnabledFor")(level)


_log: Any = _LazyLogger()


# ====================================================================== progress


class Progress:
    """Counts the variables and bytes of one save or load, and shows them when asked to."""

    def __init__(self, action: str, variables: int, *, total_bytes: int | None = None, progress: bool | None = None):
        if progress not in (None, True, False):
            raise ValueError(f"progress must be None (auto), True or False, not {progress!r}")
        self.action = action
        self.variables = variables
        self.total_bytes = total_bytes
        self.on = progress is True or (progress is None and _interactive())
        self._forced = progress is True
        self.done = 0
        self.bytes = 0
        self._display: Any = None

    def track(self, items: Iterable, size: Callable[[Any], int] | None = None) -> Iterable:
        """``items``, counting one variable per item as the loop moves past it.

        ``size(item)`` gives the bytes an item counts for, when known up front;
        otherwise the loop's body reports them with :meth:`add`.  The display is
        closed when the loop ends, however it ends.
        """
        if not self.on:
            return items
        return self._tracked(items, size)

    def add(self, nbytes: int) -> None:
        """Count ``nbytes`` more bytes done (for a variable whose size was not known up front)."""
        if self.on:
            self.bytes += nbytes

    def _tracked(self, items: Iterable, size: Callable[[Any], int] | None) -> Iterator:
        try:
            for item in items:
                yield item
                self.done += 1
                if size is not None:
                    self.bytes += size(item)
                self._show()
        finally:
            if self._display is not None:
                self._display.close(self)
                self._display = None

    def _show(self) -> None:
        if self._display is None:
            large = max(self.bytes, self.total_bytes or 0) >= THRESHOLD
            if not (self._forced or large):
                return
            self._display = _open_display(self)
        self._display.update(self)


def _interactive() -> bool:
    """Whether someone is watching: stderr is a terminal, or this is a Jupyter kernel."""
    isatty = getattr(sys.stderr, "isatty", None)  # sys.stderr may be None (pythonw)
    try:
        terminal = bool(isatty and isatty())
    except ValueError:  # a closed stream
        terminal = False
    return terminal or _in_notebook()


def _in_notebook() -> bool:
    ipython = sys.modules.get("IPython")  # only when already imported: never import it here
    get_ipython = getattr(ipython, "get_ipython", None)
    shell = get_ipython() if callable(get_ipython) else None
    return type(shell).__name__ == "ZMQInteractiveShell"


def _open_display(progress: Progress) -> Any:
    try:
        import tqdm  # noqa: F401 - optional: the 'progress' extra
    except ImportError:
        return _LogDisplay(progress)
    return _BarDisplay(progress)


def human_size(n: float) -> str:
    """``n`` bytes for people: 512 B, 1.5 KiB, 3.2 GiB."""
    if n < 1024:
        return f"{n} B"
    for unit in ("KiB", "MiB", "GiB"):
        n /= 1024
        if n < 1024:
            return f"{n:.1f} {unit}"
    return f"{n / 1024:.1f} TiB"


def _bytes_text(progress: Progress) -> str:
    if progress.total_bytes is None:
        return human_size(progress.bytes)
    return f"{human_size(progress.bytes)}/{human_size(progress.total_bytes)}"


class _BarDisplay:
    """A tqdm bar over the variables, with the bytes as its postfix."""

    def __init__(self, progress: Progress):
        self._bar = _make_bar(
            total=progress.variables,
            initial=progress.done,  # a bar that appears midway starts there
            postfix=_bytes_text(progress),
            desc=progress.action,
            unit="var",
            file=sys.stderr,
            dynamic_ncols=True,
        )

    def update(self, progress: Progress) -> None:
        self._bar.set_postfix_str(_bytes_text(progress), refresh=False)
        self._bar.update(progress.done - self._bar.n)

    def close(self, progress: Progress) -> None:
        self._bar.close()


def _make_bar(**kwargs: Any) -> Any:
    if _in_notebook():
        try:
            from tqdm.notebook import tqdm as notebook_bar

            return notebook_bar(**kwargs)
        except ImportError:  # the notebook bar needs ipywidgets: fall back to text
            pass
    from tqdm import tqdm as text_bar

    return text_bar(**kwargs)


class _LogDisplay:
    """Progress as INFO lines on the ``mason`` logger, for when tqdm is not installed."""

    def __init__(self, progress: Progress):
        self._last = -LOG_INTERVAL

    def update(self, progress: Progress) -> None:
        now = time.monotonic()
        if now - self._last >= LOG_INTERVAL:
            self._last = now
            self._log(progress)

    def close(self, progress: Progress) -> None:
        self._log(progress)

    @staticmethod
    def _log(progress: Progress) -> None:
        _log.info("%s: %d/%d variables, %s", progress.action, progress.done, progress.variables, _bytes_text(progress))


# ====================================================================== timings


class Timer:
    """Logs, at DEBUG, how long each phase of one operation took."""

    def __init__(self, operation: str):
        self._operation = operation
        self._start = self._last = time.perf_counter()

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        if _log.isEnabledFor(10):  # logging.DEBUG
            _log.debug("%s: %s in %.3f s", self._operation, phase, now - self._last)
        self._last = now

    def total(self) -> None:
        if _log.isEnabledFor(10):  # logging.DEBUG
            _log.debug("%s: done in %.3f s", self._operation, time.perf_counter() - self._start)
