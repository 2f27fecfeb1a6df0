"""IPython and Jupyter integration: the ``%save_session``, ``%load_session``
and ``%session_info`` line magics, and the checkpoint history's
``%checkpoint``, ``%checkpoints``, ``%restore`` and ``%autocheckpoint``.

The only module of mason that imports IPython; ``import mason`` never does.
Load it in a shell or notebook with ``%load_ext mason.ipython``.

Without a FILE argument the magics use a file per notebook, next to it and
named after it (``analysis.ipynb`` -> ``analysis.mason``), when the kernel
knows the notebook's path; otherwise mason's private per-user default
(:func:`mason.default_session_path`).  Likewise the checkpoint magics use a
store per notebook (``analysis.checkpoints/``) or mason's default store.

IPython's own bookkeeping (``In``, ``Out``, ``_``, ``_i3``, ``_3``,
``get_ipython``, ``exit``, its ``open`` ...) is never saved, and is never
overwritten by a load, so the kernel's history and display hooks keep
working afterwards.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from . import checkpoint, checkpoints, default_session_path, dump_module, load_module, restore
from . import inspect as inspect_session
from ._filter import shell_owns
from ._storage import is_url
from .errors import CorruptSessionError, SkippedVariableWarning

__all__ = ["MasonMagics", "load_ipython_extension", "notebook_session_path"]

#: Names the shell binds in the user namespace that ``user_ns_hidden`` does
#: not always list: the output and input caches (``_``, ``_3``, ``_i``,
#: ``_i3``), the exit code of ``!cmd``, what IPython sets at startup, and the
#: notebook path VS Code sets (restored elsewhere, it would name the wrong
#: notebook).
_SHELL_NAMES = re.compile(r"_{1,3}|_\d+|_i{1,3}|_i\d+|_exit_code|__builtin__|__doc__|__vsc_ipynb_file__")

#: Where kernels say which notebook they run, best first: VS Code's variable,
#: then Jupyter's (ipykernel copies $JPY_SESSION_NAME into ``__session__``).
_NOTEBOOK_VARIABLES = ("__vsc_ipynb_file__", "__session__")
_NOTEBOOK_ENV = "JPY_SESSION_NAME"


def load_ipython_extension(ipython) -> None:
    """Register mason's magics: ``%load_ext mason.ipython``."""
    ipython.register_magics(MasonMagics)


def unload_ipython_extension(ipython) -> None:
    """``%unload_ext mason.ipython``: stops automatic checkpoints."""
    _AutoCheckpoint.stop(ipython)


# ====================================================================== paths


def notebook_session_path(shell) -> Path | None:
    """``<notebook>.mason`` next to the notebook this shell runs, if known."""
    notebook = _notebook_path(shell)
    return None if notebook is None else notebook.with_suffix(".mason")


def _notebook_path(shell) -> Path | None:
    candidates = [shell.user_ns.get(name) for name in _NOTEBOOK_VARIABLES]
    candidates.append(os.environ.get(_NOTEBOOK_ENV))
    for candidate in candidates:
        # ``__session__`` may also name a console session, or a .mason file
        # (mason.load_module_asdict sets it): only a notebook counts.
        if isinstance(candidate, str) and candidate.endswith(".ipynb"):
            return _resolve(Path(candidate).expanduser())
    return None


def _resolve(path: Path) -> Path:
    if path.is_absolute():
        return path
    # Jupyter may give the path relative to the server's root, while the
    # kernel runs in the notebook's directory.
    here = Path.cwd() / path
    return here if here.exists() else Path.cwd() / path.name


def _user_module(shell):
    # An embedded shell (IPython.embed()) runs in a function's locals, which
    # are not a module's namespace: saving the module would miss them.
    if shell.user_ns is not vars(shell.user_module):
        raise UsageError("mason's magics work in a notebook or a top-level IPython shell, not an embedded one")
    return shell.user_module


def _session_file(shell, given: str | None):
    if given:
        return given if is_url(given) else Path(given).expanduser()
    return notebook_session_path(shell) or default_session_path()


def notebook_store_path(shell) -> Path | None:
    """``<notebook>.checkpoints/`` next to the notebook this shell runs, if known."""
    notebook = _notebook_path(shell)
    return None if notebook is None else notebook.with_suffix(".checkpoints")


def _store(shell, given: str | None):
    """The checkpoint store: the one given, the notebook's, or None (mason's default)."""
    if given:
        return given if is_url(given) else str(Path(given).expanduser())
    path = notebook_store_path(shell)
    return None if path is None else str(path)


# ====================================================================== bookkeeping


def _is_shell_own(shell):
    """``(name, obj) -> bool``: whether a variable is IPython's, not the user's."""
    hidden = shell.user_ns_hidden
    missing = object()

    def own(name: str, obj: object) -> bool:
        if _SHELL_NAMES.fullmatch(name) is not None:
            return True
        # Identity, as %who does: a user's own ``open = ...`` is kept; and
        # what %pylab imported is the user's too.
        return hidden.get(name, missing) is obj and shell_owns(name, obj)

    return own


def _is_shell_name(shell, name: str) -> bool:
    return name in shell.user_ns_hidden or _SHELL_NAMES.fullmatch(name) is not None


def _split_names(values) -> list[str]:
    return [name.strip() for value in values or () for name in value.split(",") if name.strip()]


def _format_size(size: int) -> str:
    value, unit = float(size), "B"
    for larger in ("kB", "MB", "GB"):
        if value < 1000:
            break
        value, unit = value / 1000, larger
    return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"


def _table(rows: Sequence[Sequence[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [indent + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _names_line(names: list[str], limit: int = 20) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


# ====================================================================== magics


# Options several magics share (an argument decorator can be applied to many).
_EXCLUDE = argument(
    "--exclude",
    "-e",
    nargs="+",
    action="extend",
    default=[],
    metavar="PATTERN",
    help="names or glob patterns of variables not to save",
)
_STORE = argument(
    "--store", "-s", default=None, help="the store (default: <notebook>.checkpoints next to the notebook)"
)


@magics_class
class MasonMagics(Magics):
    """``%save_session``, ``%load_session`` and ``%session_info``."""

    @magic_arguments()
    @argument("file", nargs="?", help="the session file (default: <notebook>.mason next to the notebook)")
    @_EXCLUDE
    @argument(
        "--include",
        "-i",
        nargs="+",
        action="extend",
        default=None,
        metavar="PATTERN",
        help="save only the variables matching these names or glob patterns",
    )
    @line_magic
    def save_session(self, line: str) -> None:
        """Save the notebook's variables, functions and classes to a file.

        Usage: ``%save_session [FILE] [--exclude PATTERN ...] [--include PATTERN ...]``.
        Variables that cannot be saved are left out with a warning.
        """
        args = parse_argstring(self.save_session, line)
        shell = self.shell
        path = _session_file(shell, args.file)
        exclude = [*args.exclude, _is_shell_own(shell)]
        dump_module(path, module=_user_module(shell), exclude=exclude, include=args.include)
        info = inspect_session(path)
        message = f"Saved {_count(len(info.variables), 'variable')} to {path}"
        if info.skipped:
            message += f" ({len(info.skipped)} skipped: {_names_line([s['name'] for s in info.skipped])})"
        print(message)

    @magic_arguments()
    @argument("file", nargs="?", help="the session file (default: <notebook>.mason next to the notebook)")
    @argument(
        "--names",
        "-n",
        nargs="+",
        action="extend",
        default=None,
        metavar="NAME",
        help="restore only these variables (comma or space separated)",
    )
    @line_magic
    def load_session(self, line: str) -> None:
        """Restore variables saved with ``%save_session`` into the notebook.

        Usage: ``%load_session [FILE] [--names a,b]``.

        Loading runs code from the file: only load files you trust.
        """
        args = parse_argstring(self.load_session, line)
        shell = self.shell
        path = _session_file(shell, args.file)
        info = _read_index(path)
        names = _split_names(args.names) if args.names is not None else info.names()
        missing = [n for n in names if n not in info.names()]
        if missing:
            raise UsageError(f"not in {path}: {', '.join(missing)}")
        # A file saved elsewhere (a script, another tool) may hold ``_`` or
        # ``exit``: the running shell's own objects win.
        kept = [n for n in names if not _is_shell_name(shell, n)]
        left_out = [n for n in names if n not in kept]
        if kept:
            load_module(path, module=_user_module(shell), names=kept)
        message = f"Loaded {_count(len(kept), 'variable')} from {path}"
        if kept:
            message += f": {_names_line(sorted(kept))}"
        print(message)
        if left_out:
            print(f"Not loaded (IPython's own names): {', '.join(left_out)}")

    @magic_arguments()
    @argument("file", nargs="?", help="the session file (default: <notebook>.mason next to the notebook)")
    @line_magic
    def session_info(self, line: str) -> None:
        """List what a session file holds, without unpickling anything.

        Usage: ``%session_info [FILE]``.  Safe on files you do not trust.
        """
        args = parse_argstring(self.session_info, line)
        path = _session_file(self.shell, args.file)
        print("\n".join(_describe(path, _read_index(path))))

    # ------------------------------------------------------------ checkpoints

    @magic_arguments()
    @argument("message", nargs="*", help="what this checkpoint is (free text)")
    @_STORE
    @_EXCLUDE
    @line_magic
    def checkpoint(self, line: str) -> None:
        """Save the notebook's state as a new checkpoint; only what changed is written.

        Usage: ``%checkpoint [MESSAGE] [--store DIR] [--exclude PATTERN ...]``.
        """
        args = parse_argstring(self.checkpoint, line)
        shell = self.shell
        _AutoCheckpoint.settle(shell)
        store = _store(shell, args.store)
        message = " ".join(args.message) or None
        ident = checkpoint(
            store, module=_user_module(shell), message=message, exclude=[*args.exclude, _is_shell_own(shell)]
        )
        print(_checkpoint_line(_find(store, ident), "Checkpoint"))

    @magic_arguments()
    @_STORE
    @line_magic
    def checkpoints(self, line: str) -> None:
        """List the checkpoints of this notebook's store, oldest first.

        Usage: ``%checkpoints [--store DIR]``.
        """
        args = parse_argstring(self.checkpoints, line)
        _AutoCheckpoint.settle(self.shell)
        store = _store(self.shell, args.store)
        items = _listed(store)
        if not items:
            print(f"No checkpoints in {store or 'the default store'}")
            return
        rows: list[tuple[str, ...]] = [("#", "id", "created", "variables", "size", "written", "message")]
        rows += [
            (
                str(number),
                item.id,
                _when(item.created),
                str(len(item.names)),
                _format_size(item.bytes_total),
                _format_size(item.bytes_written),
                item.message or "",
            )
            for number, item in enumerate(items)
        ]
        print("\n".join(_table(rows, indent="")))

    @magic_arguments()
    @argument(
        "id",
        nargs="?",
        default=None,
        help="the checkpoint: its # in %%checkpoints (-1: the latest), its id, or the part after Z- (default: the latest)",
    )
    @argument("names", nargs="*", help="restore only these variables")
    @_STORE
    @line_magic
    def restore(self, line: str) -> None:
        """Bring the notebook back to a checkpoint: all its variables, or some.

        Usage: ``%restore [ID] [NAME ...] [--store DIR]``.  Variables the
        checkpoint does not hold are left as they are.  Restoring runs code
        from the store: only restore stores you trust.
        """
        args = parse_argstring(self.restore, line)
        shell = self.shell
        _AutoCheckpoint.settle(shell)
        store = _store(shell, args.store)
        item = _find(store, args.id)
        names = _split_names(args.names) or list(item.names)
        missing = [n for n in names if n not in item.names]
        if missing:
            raise UsageError(f"not in checkpoint {item.id}: {', '.join(missing)}")
        kept = [n for n in names if not _is_shell_name(shell, n)]
        if kept:
            restore(store, id=item.id, module=_user_module(shell), names=kept)
        print(f"Restored {_count(len(kept), 'variable')} from checkpoint {item.id}: {_names_line(sorted(kept))}")

    @magic_arguments()
    @argument("state", nargs="?", choices=("on", "off"), default=None, help="on or off (default: say which)")
    @_STORE
    @argument(
        "--wait",
        action="store_true",
        help="checkpoint in the kernel, the cell waiting for it (default: in the background)",
    )
    @line_magic
    def autocheckpoint(self, line: str) -> None:
        """Take a checkpoint after every cell that runs.

        Usage: ``%autocheckpoint on|off [--store DIR] [--wait]``.  Off by
        default.  A checkpoint writes only what changed; one that fails is
        reported and never stops the cell's own output.

        Checkpoints run in the background: a forked copy of the kernel saves
        the state the cell left while the next cell runs (the cell waits for
        the fork, about a millisecond).  A checkpoint still running when the
        next cell ends is waited for, so they are taken in order; problems
        are reported after the next cell.  ``--wait`` (and a remote store,
        CUDA, Dask's distributed, or a platform without fork) checkpoints in
        the kernel instead.
        """
        args = parse_argstring(self.autocheckpoint, line)
        shell = self.shell
        if args.state == "on":
            store = _store(shell, args.store)
            if store is not None and not is_url(store):
                store = os.path.abspath(store)  # the same store after a %cd
            hook = _AutoCheckpoint.start(shell, store, background=not args.wait)
            how = "in the background" if hook.reason is None else f"in the kernel ({hook.reason})"
            print(f"Automatic checkpoints on, after every cell, {how}, in {store or 'the default store'}")
        elif args.state == "off":
            stopped = _AutoCheckpoint.stop(shell)
            print("Automatic checkpoints off" if stopped else "Automatic checkpoints were not on")
        else:
            _AutoCheckpoint.settle(shell)
            running = _AutoCheckpoint.running(shell)
            print("Automatic checkpoints are " + ("on" if running else "off"))


class _AutoCheckpoint:
    """The ``post_run_cell`` hook of ``%autocheckpoint on``: one per shell."""

    #: seconds a cell waits for the previous background checkpoint before saying so
    PATIENCE = 1.0

    def __init__(self, shell, store, background: bool = True):
        from ._store import background as _background

        self.shell = shell
        self.store = store
        self.background = background
        self.reason: str | None = _background.unsuitable(store) if background else "--wait"
        self.pending: tuple[Any, str] | None = None  # the background checkpoint running: (Pending, message)
        self.failed: str | None = None  # the last failure's text: said once, not after every cell

    @classmethod
    def running(cls, shell) -> _AutoCheckpoint | None:
        for callback in shell.events.callbacks["post_run_cell"]:
            owner = getattr(callback, "__self__", None)
            if isinstance(owner, cls):
                return owner
        return None

    @classmethod
    def start(cls, shell, store, background: bool = True) -> _AutoCheckpoint:
        cls.stop(shell)
        hook = cls(shell, store, background)
        shell.events.register("post_run_cell", hook.after_cell)
        return hook

    @classmethod
    def stop(cls, shell) -> bool:
        hook = cls.running(shell)
        if hook is None:
            return False
        hook.wait_for_pending()
        shell.events.unregister("post_run_cell", hook.after_cell)
        return True

    @classmethod
    def settle(cls, shell) -> None:
        """Wait for (and report) a background checkpoint still running."""
        hook = cls.running(shell)
        if hook is not None:
            hook.wait_for_pending()

    def after_cell(self, result) -> None:
        cell = (getattr(result.info, "raw_cell", None) or "").strip()
        if not cell or _is_checkpoint_magic(cell):
            return  # nothing ran, or the cell managed checkpoints itself
        first = cell.splitlines()[0][:60]
        number = result.execution_count
        message = f"after cell [{number}]: {first}" if number is not None else f"after cell: {first}"
        if not self.wait_for_pending():
            return  # the user interrupted the wait: no new checkpoint after this cell
        shell = self.shell
        module, exclude = _user_module(shell), [_is_shell_own(shell)]
        if self.background:
            from ._store import background as _background

            reason = _background.unsuitable(self.store)
            if reason is not None and reason != self.reason:  # e.g. CUDA initialized by this cell
                print(f"mason: automatic checkpoints run in the kernel from now on: {reason}", file=sys.stderr)
            self.reason = reason
            if reason is None:
                store = self.store

                def run() -> str:
                    return checkpoint(store, module=module, message=message, exclude=exclude)

                self.pending = (_background.start(run), message)
                return
        import warnings

        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                checkpoint(self.store, module=module, message=message, exclude=exclude)
        except Exception as exc:  # a failed checkpoint must not break the notebook
            self._report(message, f"{type(exc).__name__}: {exc}", [])
            return
        self._report(message, None, [(w.category.__name__, str(w.message)) for w in caught])

    def wait_for_pending(self) -> bool:
        """Wait for the background checkpoint, if one runs, and report how it
        went; False if the user interrupted the wait (the checkpoint is then
        cancelled: it is not listed)."""
        if self.pending is None:
            return True
        pending, message = self.pending
        try:
            outcome = pending.wait(self.PATIENCE)
            if outcome is None:
                print(f"mason: waiting for the checkpoint {message} (Ctrl-C cancels it) ...", file=sys.stderr)
                outcome = pending.wait()
        except KeyboardInterrupt:
            pending.cancel()
            self.pending = None
            print(f"mason: interrupted: the checkpoint {message} was cancelled", file=sys.stderr)
            return False
        self.pending = None
        self._report(message, outcome.error, outcome.warnings)
        return True

    def _report(self, message: str, error: str | None, caught: list) -> None:
        if error is not None:
            if error != self.failed:
                print(f"mason: automatic checkpoint failed ({message}): {error}", file=sys.stderr)
            self.failed = error
            return
        self.failed = None
        skipped = [text for category, text in caught if category == SkippedVariableWarning.__name__]
        if skipped:
            print(f"mason: automatic checkpoint {message}: " + "; ".join(skipped), file=sys.stderr)


def _is_checkpoint_magic(cell: str) -> bool:
    return re.match(r"%(auto)?checkpoints?\b|%restore\b", cell) is not None and "\n" not in cell


def _find(store, ident: str | None):
    """The checkpoint ``ident`` names: its position in ``%checkpoints`` (``-1``:
    the latest), its id, a unique prefix of it, or its random tail (the part
    after ``Z-``); None: the latest."""
    items = _listed(store)
    where = store or "the default store"
    if not items:
        raise UsageError(f"no checkpoints in {where}")
    if ident is None:
        return items[-1]
    if re.fullmatch(r"-?\d{1,5}", ident):
        position = int(ident)
        if not -len(items) <= position < len(items):
            raise UsageError(f"no checkpoint #{position} in {where} (it has {len(items)})")
        return items[position]
    found = [item for item in items if item.id == ident]
    found = found or [item for item in items if item.id.startswith(ident) or item.id.endswith("-" + ident)]
    if len(found) != 1:
        what = "no checkpoint" if not found else f"{len(found)} checkpoints"
        raise UsageError(f"{what} in {where} with id {ident!r}")
    return found[0]


def _listed(store) -> list:
    """The checkpoints of ``store``; none for a notebook's store not made yet."""
    if store is not None and not is_url(store) and not os.path.exists(store):
        return []
    return checkpoints(store)


def _when(created) -> str:
    text = created.isoformat(sep=" ", timespec="seconds") if hasattr(created, "isoformat") else str(created)
    return text.replace("+00:00", "Z")


def _checkpoint_line(item, what: str) -> str:
    return (
        f"{what} {item.id}: {_count(len(item.names), 'variable')}, {_format_size(item.bytes_total)}"
        f" ({_format_size(item.bytes_written)} written)"
    )


def _read_index(path):
    try:
        return inspect_session(path)
    except FileNotFoundError:
        raise UsageError(f"no session file at {path}") from None
    except CorruptSessionError as exc:
        raise UsageError(f"{path}: {exc}") from None


def _describe(path, info) -> list[str]:
    lines = [f"{path}: module {info.module}, {_count(len(info.variables), 'variable')}"]
    if info.variables:
        rows: list[tuple[str, ...]] = [("name", "type", "stored", "size")]
        rows += [(v["name"], v["type"], v["stored"], _format_size(v["size"])) for v in info.variables]
        lines += _table(rows)
    if info.skipped:
        lines.append(f"skipped when saved ({len(info.skipped)}):")
        lines += _table([(s["name"], s["type"], s["reason"]) for s in info.skipped])
    env = info.environment
    if env:
        lines.append("environment:")
        python = ".".join(map(str, env.get("python", ())))
        env_rows: list[tuple[str, ...]] = [("python", f"{python} ({env.get('implementation', '?')})")]
        env_rows += [(key, str(env[key])) for key in ("platform", "mason", "created") if key in env]
        env_rows += [(package, version) for package, version in sorted(env.get("packages", {}).items())]
        lines += _table(env_rows)
    return lines
