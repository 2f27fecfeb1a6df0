"""``mason run`` and ``mason convert``: the commands that run code (a
script; a file written by dill) and save what it leaves.  Part of
:mod:`mason.cli`, which owns the error handling and output helpers."""

from __future__ import annotations

import argparse
import builtins
import os
import sys
import traceback
import types

from . import cli
from ._cliformat import _plural, _printable
from ._dillsession import is_pickle, restore_dill_file
from ._format import spec
from ._session import dump_module, inspect
from ._storage import is_url, open_for_read, open_input
from .errors import MasonError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_RUN_NOTE = """\
--save and the other options go BEFORE the script: everything after the
script's path is passed to the script, as `python SCRIPT ARGS` would.

The script runs as __main__ (sys.argv = [SCRIPT, ARGS...], its directory
first on sys.path).  When it ends normally or by sys.exit(0), its namespace
is saved; when it raises or exits with another status, nothing is saved and
mason exits with the script's status (1 for an exception).
"""

_OBJECT_NAME = "obj"


def add_commands(commands: Any) -> None:
    p = commands.add_parser(
        "run",
        usage="mason run --save FILE [--exclude PATTERN] [--compression NAME] SCRIPT [ARGS ...]",
        help="run a Python script as __main__ and save its final namespace",
        description="Run SCRIPT as __main__ with ARGS, then save its namespace to FILE.",
        epilog=_RUN_NOTE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # Not required=True: a --save after the script is the script's, and gets a hint.
    p.add_argument("--save", metavar="FILE", help="the session file or URL to write (required; replaced atomically)")
    p.add_argument(
        "--exclude",
        action="append",
        metavar="PATTERN",
        help="leave out variables with this name or glob pattern (may be repeated)",
    )
    p.add_argument(
        "--compression", choices=sorted(n for n in spec.COMPRESSION_IDS if n), help="compress the saved records"
    )
    p.add_argument("script", metavar="SCRIPT", help="the Python file to run")
    p.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS", help="arguments for the script")
    p.set_defaults(handler=_cmd_run)

    p = commands.add_parser(
        "convert",
        help="make a mason session of a file written by dill (dump_module, dump_session or dump)",
        description="Load OLD, a file written by dill 0.3.6 to 0.4.x (dill need not be installed), in a"
        " fresh namespace and save it as the mason session NEW (written atomically; OLD is never"
        " changed). A dill session becomes a session of the same module; a file of one object"
        f" (dill.dump) becomes a session of __main__ holding it as the variable {_OBJECT_NAME!r} (see --name)."
        " What mason cannot save is left out and named, and the exit status is then 1."
        " Loading runs code from the file: only convert files you trust.",
    )
    p.add_argument("file", metavar="OLD", help=f"the dill file ({cli.STDIN} for stdin)")
    p.add_argument("new", metavar="NEW", help="the mason session file or URL to write")
    p.add_argument(
        "--name",
        default=_OBJECT_NAME,
        metavar="NAME",
        help=f"the variable that holds the object of a dill.dump file (default: {_OBJECT_NAME})",
    )
    p.add_argument("--force", action="store_true", help="replace NEW if it exists")
    p.add_argument(
        "--compression", choices=sorted(n for n in spec.COMPRESSION_IDS if n), help="compress the saved records"
    )
    cli._allow_argument(
        p,
        "load only what uses nothing but these modules (prefixes) or module:name globals"
        " (else the whole file is refused); 'mason:code' allows functions saved by value",
    )
    p.set_defaults(handler=_cmd_convert)


# ====================================================================== convert


def _cmd_convert(args: argparse.Namespace) -> int:
    if not args.name.isidentifier():
        raise cli._UsageError(f"--name: {args.name!r} is not a variable name")
    data = sys.stdin.buffer.read() if args.file == cli.STDIN else _read_old(args.file)
    label = cli._label(args.file)
    if data.startswith(spec.MAGIC):
        raise cli._Failure(f"{label}: already a mason file")
    if not is_pickle(data[:1]):
        raise cli._Failure(f"{label}: not a file written by dill (it is not a pickle: it starts with {data[:10]!r})")
    _check_new(args.file, args.new, args.force)
    allow = cli._allow(args)
    previous_path = sys.path[:]
    if allow is None:  # as `mason load`: a plain load finds the helper modules next to you
        sys.path.insert(0, os.getcwd())
    else:
        sys.path[:] = [entry for entry in sys.path if not cli._is_cwd(entry)]
    try:
        try:
            module, is_session = restore_dill_file(data, allow=allow, object_name=args.name)
        except Exception as exc:
            if isinstance(exc, (MasonError, OSError, ValueError)) or args.traceback:
                raise
            raise cli._Failure(f"{label}: cannot load: {type(exc).__name__}: {exc}") from exc
        with cli._warnings_to_stderr():
            dump_module(args.new, module=module, compression=args.compression)
    finally:
        sys.path[:] = previous_path
    info = inspect(args.new)
    what = f"session of {module.__name__}" if is_session else f"object, as {args.name!r}"
    summary = f"converted {label} (a dill {what}) into {args.new}: {_plural(len(info.variables), 'variable')}"
    if info.skipped:
        names = ", ".join(record["name"] for record in info.skipped)
        summary += f"; {len(info.skipped)} could not be converted ({names})"
    print(_printable(summary))
    return cli.EXIT_FAILURE if info.skipped else cli.EXIT_OK


def _read_old(path: str) -> bytes:
    with open_input(path) as opened:
        if isinstance(opened, (str, os.PathLike)):
            with open_for_read(opened) as file:
                return file.read()
        return opened.read()


def _check_new(old: str, new: str, force: bool) -> None:
    """NEW may not be OLD, nor (without --force) an existing file."""
    if is_url(new):
        return
    if old != cli.STDIN and os.path.exists(new) and os.path.samefile(old, new):
        raise cli._UsageError(f"{new}: is the file being converted; convert into another file")
    if os.path.lexists(new) and not force:
        raise cli._UsageError(f"{new}: exists already (use --force to replace it)")


# ====================================================================== run


def _cmd_run(args: argparse.Namespace) -> int:
    script = args.script
    if args.save is None:
        if any(a == "--save" or a.startswith("--save=") for a in args.args):
            raise cli._UsageError(
                "put --save FILE before SCRIPT: everything after the script's path is passed to the script"
            )
        raise cli._UsageError("--save FILE is required: mason run --save FILE SCRIPT [ARGS ...]")
    try:
        with open(script, "rb") as f:  # io.open_code is for imports; a plain read is what `python FILE` does
            source = f.read()
    except OSError as exc:
        raise cli._Failure(f"cannot run {script}: {exc.strerror or exc}") from None
    try:
        code_obj = compile(source, script, "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as exc:
        traceback.print_exception(type(exc), exc, None)
        raise cli._Failure(f"{script} does not compile; nothing was saved") from None

    module = types.ModuleType("__main__")
    module.__dict__.update({"__file__": script, "__builtins__": builtins, "__spec__": None, "__loader__": None})
    saved_main, saved_argv, saved_path = sys.modules.get("__main__"), sys.argv, sys.path[:]
    sys.modules["__main__"] = module
    sys.argv = [script, *args.args]
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    try:
        with cli._warnings_to_stderr():
            status = _exec_script(code_obj, module, script)
            if status != cli.EXIT_OK:
                return status
            options = {"compression": args.compression}
            if args.exclude:
                options["exclude"] = args.exclude
            dump_module(args.save, module=module, **options)
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path
        if saved_main is not None:
            sys.modules["__main__"] = saved_main
    count = len(inspect(args.save).variables)
    print(f"saved {_plural(count, 'variable')} of {script} to {args.save}")
    return cli.EXIT_OK


def _exec_script(code_obj: types.CodeType, module: types.ModuleType, script: str) -> int:
    """Run the script; cli.EXIT_OK when its namespace should be saved, else its exit status."""
    try:
        exec(code_obj, module.__dict__)
    except SystemExit as exc:
        if exc.code is None or exc.code == 0:
            return cli.EXIT_OK
        if isinstance(exc.code, int):
            status = exc.code
        else:
            print(exc.code, file=sys.stderr)
            status = cli.EXIT_FAILURE
        cli._error(f"{script} exited with status {status}; nothing was saved")
        return status
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # the script's own error: show its traceback, as python would
        traceback.print_exception(type(exc), exc, exc.__traceback__.tb_next if exc.__traceback__ else None)
        cli._error(f"{script} raised {type(exc).__name__}; nothing was saved")
        return cli.EXIT_FAILURE
    return cli.EXIT_OK
