"""IPython and Jupyter integration: the ``%save_session``, ``%load_session``
and ``%session_info`` line magics.

The only module of mason that imports IPython; ``import mason`` never does.
Load it in a shell or notebook with ``%load_ext mason.ipython``.

Without a FILE argument the magics use a file per notebook, next to it and
named after it (``analysis.ipynb`` -> ``analysis.mason``), when the kernel
knows the notebook's path; otherwise mason's private per-user default
(:func:`mason.default_session_path`).

IPython's own bookkeeping (``In``, ``Out``, ``_``, ``_i3``, ``_3``,
``get_ipython``, ``exit``, its ``open`` ...) is never saved, and is never
overwritten by a load, so the kernel's history and display hooks keep
working afterwards.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from . import default_session_path, dump_module, load_module
from . import inspect as inspect_session
from ._storage import is_url
from .errors import CorruptSessionError

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


# ====================================================================== bookkeeping


def _is_shell_own(shell):
    """``(name, obj) -> bool``: whether a variable is IPython's, not the user's."""
    hidden = shell.user_ns_hidden
    missing = object()

    def own(name: str, obj: object) -> bool:
        # Identity, as %who does: a user's own ``open = ...`` is kept.
        return hidden.get(name, missing) is obj or _SHELL_NAMES.fullmatch(name) is not None

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


@magics_class
class MasonMagics(Magics):
    """``%save_session``, ``%load_session`` and ``%session_info``."""

    @magic_arguments()
    @argument("file", nargs="?", help="the session file (default: <notebook>.mason next to the notebook)")
    @argument(
        "--exclude",
        "-e",
        nargs="+",
        action="extend",
        default=[],
        metavar="PATTERN",
        help="names or glob patterns of variables not to save",
    )
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
