"""The ``mason`` command: inspect, verify, diff, sign and load session files
here; run scripts and convert files written by dill (_clirun.py); work with
checkpoint stores (``mason store``, _storecli.py); output in _cliformat.py.

Each subcommand is one function ``_cmd_<name>(args) -> exit status``; ``main``
parses the command line, runs one of them and turns the errors a user can
cause (a missing, foreign, damaged or truncated file) into one line on
stderr, ``mason: error: ...``, and a non-zero status, never a traceback.
Results go to stdout; mason's warnings go to stderr as ``mason: warning: ...``.

``inspect``, ``verify`` and ``diff`` read the index and the raw records only:
nothing is unpickled, so they are safe on files you do not trust.  ``load``,
``run`` and ``convert`` run code (the file's, the script's).

FILE may be a URL (``s3://bucket/key``, any fsspec protocol) when
``mason[remote]`` is installed; credentials and endpoints come from the
backend's usual configuration (environment variables, config files).
"""

from __future__ import annotations

import argparse
import builtins
import contextlib
import io
import json
import os
import sys
import types
import warnings
from collections.abc import Iterator
from typing import Any

from . import __version__, _diff
from ._allowlist import DATA
from ._cliformat import _diff_as_text, _info_as_json, _info_as_text, _plural, _printable
from ._format import ContainerReader
from ._format.signing import ENV_VAR as _KEY_ENV_VAR
from ._format.signing import resolve_key
from ._session import SESSION_KIND, SessionInfo, check_session_meta, inspect, load_module, sign
from ._storage import default_session_path, open_input
from ._storage import size as _file_size
from .errors import CorruptSessionError, MasonError, MasonWarning, SkippedVariableWarning

__all__ = ["main"]

EXIT_OK = 0
EXIT_FAILURE = 1  # the command ran and failed (a bad file, a failed load)
EXIT_USAGE = 2  # argparse's status for a bad command line; diff's "trouble" status
EXIT_INTERRUPTED = 130

STDIN = "-"


class _Failure(Exception):
    """A failure already worded for the user; main prints it and exits."""


class _UsageError(_Failure):
    """A command line argparse accepted but that makes no sense."""


# ====================================================================== main


def main(argv: list[str] | None = None) -> int:
    """Run the ``mason`` command line with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error argparse has printed
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if args.command is None:
        parser.print_usage(sys.stderr)
        _error("a command is required (inspect, verify, diff, sign, load, run, convert)")
        return EXIT_USAGE
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print("mason: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `mason inspect FILE | head`: the reader left, nothing to report
        _silence_stdout()
        return EXIT_FAILURE
    except (_Failure, MasonError, OSError, ValueError) as exc:
        if args.traceback:
            raise
        _error(_describe(exc, getattr(args, "file", None)))
        return EXIT_USAGE if isinstance(exc, _UsageError) else args.error_status


def _silence_stdout() -> None:
    # Python flushes stdout at exit and would complain about the closed pipe again.
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def _error(message: str) -> None:
    print(f"mason: error: {_printable(message, keep=chr(10))}", file=sys.stderr)


def _describe(exc: BaseException, path: Any = None) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    message = str(exc) or type(exc).__name__
    if isinstance(exc, MasonError) and isinstance(path, str) and path != STDIN and not message.startswith(path):
        message = f"{path}: {message}"
    return message


# ====================================================================== parser

_DIFF_NOTE = """\
A variable counts as changed when its stored bytes differ: its pickle
segment, compared with its memo references renumbered (so variables added or
removed before it do not make it differ), and its out-of-band buffers,
compared by checksum.  Limits of comparing stored bytes: an object shared by
several variables is stored once, with the first of them in name order, so a
change inside it shows on that variable only, and the others show as changed
when what they share moves within it or to another variable; and equal
values pickled differently (a set built in another order) show as changed.

exit status: 0 identical, 1 different, 2 trouble (as diff(1)).
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mason",
        description="Look into, check, compare, load and make mason session files.",
        epilog="inspect, verify and diff never unpickle: they are safe on untrusted files. load and run execute code.",
    )
    parser.add_argument("--version", action="version", version=f"mason {__version__}")
    parser.add_argument(
        "--traceback", action="store_true", help="show the full traceback of an error (for bug reports)"
    )
    parser.set_defaults(command=None, error_status=EXIT_FAILURE)
    commands = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND")
    file_help = f"a session file or URL, or {STDIN} for stdin (default: the per-user session file that mason.dump_module() writes)"

    p = commands.add_parser(
        "inspect",
        help="list the variables, environment and module of a session (nothing is unpickled)",
        description="Show what a session file holds, from its index alone: nothing is unpickled.",
    )
    p.add_argument("file", nargs="?", metavar="FILE", help=file_help)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    _allow_argument(p, "show what a load with this allowlist would refuse (default: DATA, the data-only preset)")
    p.set_defaults(handler=_cmd_inspect)

    p = commands.add_parser(
        "verify",
        help="check every checksum (and the signature, with a key) of a session file",
        description="Check the header, index and every record's checksum, and the Dask partition files the"
        f" session refers to; with a key (--key, --key-file or ${_KEY_ENV_VAR}), also that the file is signed"
        " with it. Exit status 0 when the file is intact. Nothing is unpickled.",
    )
    p.add_argument("file", nargs="?", metavar="FILE", help=file_help)
    _key_arguments(p)
    p.set_defaults(handler=_cmd_verify)

    p = commands.add_parser(
        "sign",
        help="sign a session file with HMAC-SHA256 (replaced atomically)",
        description="Verify a session file's checksums, then sign it with HMAC-SHA256 using the key from"
        f" --key, --key-file or ${_KEY_ENV_VAR}. The file is replaced atomically; records are copied as they are.",
    )
    p.add_argument("file", metavar="FILE", help="the session file to sign")
    _key_arguments(p)
    p.set_defaults(handler=_cmd_sign)

    p = commands.add_parser(
        "diff",
        help="which variables were added, removed or changed between two sessions",
        description="List the variables added, removed or changed from session A to session B,"
        " comparing stored bytes (nothing is unpickled).",
        epilog=_DIFF_NOTE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("a", metavar="A", help=f"the older session file ({STDIN} for stdin)")
    p.add_argument("b", metavar="B", help="the newer session file")
    output = p.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print one JSON object")
    output.add_argument("-q", "--quiet", action="store_true", help="print nothing; only the exit status tells")
    p.set_defaults(handler=_cmd_diff, error_status=EXIT_USAGE)

    p = commands.add_parser(
        "load",
        help="restore a session into __main__ and open a Python prompt (-i), or just check that it loads",
        description="Restore a session into a fresh __main__. Without -i, print what was restored and exit;"
        " with -i, open an interactive prompt in it (IPython when installed and stdin is a terminal, else"
        " the standard prompt). A plain load makes the current directory importable, as at Python's"
        " prompt, so that helper modules next to you that the session's objects come from are found."
        " With --allow, --key, --key-file or $" + _KEY_ENV_VAR + " the current directory is not on sys.path"
        " during the load: a file there must not be able to stand in for a module that the check"
        " approved. Loading runs code from the file: only load files you trust.",
    )
    p.add_argument("file", nargs="?", metavar="FILE", help=file_help)
    p.add_argument(
        "-i", "--interactive", action="store_true", help="open an interactive prompt in the restored namespace"
    )
    p.add_argument(
        "--plain",
        action="store_true",
        help="with -i: the standard Python prompt (code.interact), even if IPython is installed",
    )
    p.add_argument(
        "--names",
        action="append",
        metavar="A,B,...",
        help="restore only these variables (comma-separated; may be repeated)",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="fail on the first variable that cannot be restored (default: warn and go on)",
    )
    _allow_argument(
        p,
        "load only what uses nothing but these modules (prefixes) or module:name globals"
        " (the rest is refused and named, or the whole file with --strict); DATA is the data-only preset,"
        " 'mason:code' allows functions saved by value (may be repeated or comma-separated)",
    )
    _key_arguments(p)
    p.set_defaults(handler=_cmd_load)

    from . import _clirun, _storecli  # the commands that run code; the checkpoint history's

    _clirun.add_commands(commands)
    _storecli.add_commands(commands)
    return parser


def _allow_argument(p: argparse.ArgumentParser, text: str) -> None:
    p.add_argument("--allow", action="append", metavar="PATTERN", help=text)


def _allow(args: argparse.Namespace):
    """The --allow patterns, with DATA standing for the preset; None without any."""
    patterns = _split_names(args.allow, "--allow", "patterns")
    if patterns is None:
        return None
    return [DATA if pattern in ("DATA", "mason.DATA") else pattern for pattern in patterns]


def _key_arguments(p: argparse.ArgumentParser) -> None:
    keys = p.add_mutually_exclusive_group()
    keys.add_argument(
        "--key",
        metavar="KEY",
        help=f"the signing key (visible to other users in the process list: prefer --key-file or ${_KEY_ENV_VAR})",
    )
    keys.add_argument(
        "--key-file", metavar="PATH", help="read the signing key from this file (trailing newline ignored)"
    )


def _key(args: argparse.Namespace) -> bytes | None:
    """The key from --key, --key-file, or the environment (None: no key)."""
    if args.key is not None:
        return resolve_key(args.key)
    if args.key_file is not None:
        with open(args.key_file, "rb") as f:
            return resolve_key(f.read().rstrip(b"\r\n"))
    return resolve_key(None)


# ====================================================================== sources


def _source(path: str | None) -> Any:
    """What the session functions accept for FILE: a path, or stdin's bytes."""
    if path is None:
        return default_session_path()
    if path == STDIN:
        return io.BytesIO(sys.stdin.buffer.read())
    return path


def _label(path: str | None) -> str:
    return os.fspath(default_session_path()) if path is None else ("<stdin>" if path == STDIN else path)


@contextlib.contextmanager
def _open_container(source: Any, key: bytes | None = None) -> Iterator[ContainerReader]:
    with open_input(source) as opened:
        # Read, not memory-mapped: a file truncated under a map kills the
        # process (SIGBUS), where a read raises a mason error.
        reader = ContainerReader.open(opened, mmap=False, verify_blobs=False, key=key)
        try:
            yield reader
        finally:
            with contextlib.suppress(BufferError):
                reader.close()


def _session_variables(reader: ContainerReader, path: str | None) -> list[dict]:
    """The index's variable records, checked against the reader's tables."""
    if reader.meta.get("kind") != SESSION_KIND:
        raise _Failure(f"{_label(path)}: a mason file, but it holds no session (no session metadata in its index)")
    try:
        return check_session_meta(reader)
    except CorruptSessionError as exc:
        raise CorruptSessionError(f"{_label(path)}: {exc}") from None


# ====================================================================== warnings


@contextlib.contextmanager
def _warnings_to_stderr() -> Iterator[list]:
    """Show every mason warning as ``mason: warning: ...``; yield the warnings shown.

    Other warnings (the script's, the libraries') keep Python's usual format.
    """
    shown: list = []
    with warnings.catch_warnings():
        warnings.simplefilter("always", MasonWarning)
        original = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            if issubclass(category, MasonWarning):
                shown.append(message)
                print(f"mason: warning: {message}", file=sys.stderr)
            else:
                original(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        yield shown


# ====================================================================== inspect


def _cmd_inspect(args: argparse.Namespace) -> int:
    info = inspect(_source(args.file), allow=_allow(args))
    label = _label(args.file)
    if args.json:
        print(json.dumps(_info_as_json(info, label), indent=2, sort_keys=True))
    else:
        print(_info_as_text(info, label))
    return EXIT_OK


# ====================================================================== verify


def _cmd_verify(args: argparse.Namespace) -> int:
    source = _source(args.file)
    key = _key(args)
    with _open_container(source, key) as reader:
        reader.verify()
        if reader.meta.get("kind") == SESSION_KIND:
            what = _plural(len(_session_variables(reader, args.file)), "variable")
        else:
            what = _plural(reader.segment_count, "segment")
        blobs = reader.blob_count
        dask = reader.meta.get("dask")
    size = len(source.getbuffer()) if isinstance(source, io.BytesIO) else _file_size(source)
    partitions = ""
    if dask is not None:
        # Data a Dask cluster held is in partition files beside the session
        # (or where it says): they are part of what a load reads.
        from ._dask.source import verify_partitions
        from ._load import _location

        files, total = verify_partitions(dask, None if isinstance(source, io.BytesIO) else _location(source))
        if files:
            partitions = f", and {_plural(files, 'Dask partition file')} ({total:,} bytes)"
    signed = (
        "; signature verified"
        if key is not None
        else ("; signed (give a key to check the signature)" if reader.signature is not None else "")
    )
    print(f"ok: {what}, {_plural(blobs, 'blob')}, {size:,} bytes verified{partitions}{signed}")
    return EXIT_OK


# ====================================================================== sign


def _cmd_sign(args: argparse.Namespace) -> int:
    key = _key(args)
    if key is None:
        raise _UsageError(f"no signing key: give --key, --key-file or set ${_KEY_ENV_VAR}")
    sign(args.file, key)
    print(f"signed: {args.file}")
    return EXIT_OK


# ====================================================================== diff


def _cmd_diff(args: argparse.Namespace) -> int:
    if args.a == STDIN and args.b == STDIN:
        raise _UsageError("only one of A and B can be stdin")
    with _open_container(_source(args.a)) as reader_a, _open_container(_source(args.b)) as reader_b:
        a = _diff.Side(reader_a, _session_variables(reader_a, args.a))
        b = _diff.Side(reader_b, _session_variables(reader_b, args.b))
        result = _diff.compare(a, b)
    module_a, module_b = reader_a.meta.get("module"), reader_b.meta.get("module")
    if module_a != module_b:
        result["module"] = {"a": module_a, "b": module_b}
    different = bool(result["added"] or result["removed"] or result["changed"] or "module" in result)
    if args.json:
        print(
            json.dumps(
                {"a": _label(args.a), "b": _label(args.b), "identical": not different, **result},
                indent=2,
                sort_keys=True,
            )
        )
    elif not args.quiet:
        print(_diff_as_text(result, _label(args.a), _label(args.b)))
    return EXIT_FAILURE if different else EXIT_OK


# ====================================================================== load


def _cmd_load(args: argparse.Namespace) -> int:
    label = _label(args.file)
    names = _split_names(args.names)
    source = _source(args.file)
    info = inspect(source)
    if isinstance(source, io.BytesIO):
        source.seek(0)
    if names is not None:
        _check_names(names, info)
    key = _key(args)
    allow = _allow(args)
    module = types.ModuleType("__main__")
    module.__dict__["__builtins__"] = builtins
    previous_main, previous_path = sys.modules.get("__main__"), sys.path[:]
    sys.modules["__main__"] = module
    if key is None and allow is None:
        # A plain load trusts the file, as at Python's own prompt: modules
        # next to where you work (the helpers the session's objects come
        # from) are importable.
        sys.path.insert(0, os.getcwd())
    else:
        # A checked load: what the check approves by name must be what gets
        # imported, so no file in the current directory may stand in for it
        # (as `python -P`; `python -m mason` put it first on sys.path).
        sys.path[:] = [entry for entry in sys.path if not _is_cwd(entry)]
    try:
        with _warnings_to_stderr() as shown:
            for skipped in info.skipped:
                if names is None or skipped["name"] in names:
                    warnings.warn(
                        f"not in the file: {skipped.get('reason', skipped['name'])} (skipped when saving)", MasonWarning
                    )
            before = len(shown)
            try:
                loaded = load_module(
                    source,
                    names=names,
                    on_error="raise" if args.strict else "warn",
                    key=key or False,
                    allow=allow,
                )
            except Exception as exc:
                if isinstance(exc, (MasonError, OSError, ValueError)) or args.traceback:
                    raise
                # Code from the file failed in a way mason did not word: say so, without a traceback.
                raise _Failure(f"{label}: cannot load: {type(exc).__name__}: {exc}") from exc
            failed = sum(len(w.failures) for w in shown[before:] if isinstance(w, SkippedVariableWarning))
        namespace = (loaded if loaded is not None else module).__dict__
        target = info.module if info.module_kind != "main" else "__main__"
        wanted = len(names) if names is not None else len(info.variables)
        summary = f"restored {_plural(wanted - failed, 'variable')} from {label} into {target}"
        if failed:
            summary += f"; {failed} could not be restored"
        if info.skipped and names is None:
            summary += f"; {len(info.skipped)} skipped when saving"
        if not args.interactive:
            print(_printable(summary))
            return EXIT_FAILURE if failed else EXIT_OK
        return _interact(namespace, loaded or module, summary, plain=args.plain)
    finally:
        sys.path[:] = previous_path
        if previous_main is not None:
            sys.modules["__main__"] = previous_main


def _is_cwd(entry: str) -> bool:
    """Whether a sys.path entry names the current directory ("" does)."""
    try:
        return not entry or os.path.samefile(entry, os.curdir)
    except (OSError, TypeError, ValueError):  # a missing folder, a zip file's path, a non-str entry
        return False


def _split_names(values: list[str] | None, option: str = "--names", what: str = "variable names") -> list[str] | None:
    if values is None:
        return None
    names = [name.strip() for value in values for name in value.split(",") if name.strip()]
    if not names:
        raise _UsageError(f"{option}: no {what} given")
    return names


def _check_names(names: list[str], info: SessionInfo) -> None:
    saved = set(info.names())
    skipped = {s["name"]: s.get("reason", "") for s in info.skipped}
    for name in names:
        if name in skipped:
            raise _Failure(f"{name!r} is not in the file: it was skipped when saving ({skipped[name]})")
        if name not in saved:
            raise _Failure(f"{name!r} is not in this session (it has: {', '.join(sorted(saved)) or 'no variables'})")


def _interact(namespace: dict, module: types.ModuleType, summary: str, *, plain: bool) -> int:
    """An interactive prompt in ``namespace``: IPython when installed and on a terminal, else ``code``."""
    if not plain and sys.stdin.isatty():
        try:
            import IPython  # optional; the prompt falls back to the standard one
        except ImportError:
            pass
        else:
            print(_printable(summary))
            IPython.start_ipython(argv=[], user_module=module, user_ns=namespace)
            return EXIT_OK
    import code

    try:
        code.interact(banner=f"Python {sys.version.split()[0]}; mason: {summary}", local=namespace, exitmsg="")
    except SystemExit as exc:  # exit() / quit() in the prompt
        return exc.code if isinstance(exc.code, int) else (EXIT_OK if exc.code is None else EXIT_FAILURE)
    return EXIT_OK
