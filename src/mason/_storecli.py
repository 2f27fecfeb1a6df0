"""``mason store ...``: the checkpoint history from the command line.

    mason store list                  the checkpoints, oldest first
    mason store show [ID]             one checkpoint's variables (nothing is unpickled)
    mason store diff A B              which variables were added, removed or changed
    mason store restore [ID] ...      restore into a Python prompt (-i), or export (--to FILE)
    mason store prune --keep N        remove old checkpoints and the data only they used
    mason store verify                check every object of every checkpoint

Every subcommand takes ``--store DIR`` (or a URL); the default is the store
``mason.checkpoint()`` writes to without one.  ``list``, ``show``, ``diff``,
``verify`` and ``prune`` never unpickle; ``restore`` runs code from the store.
Part of :mod:`mason.cli`, which owns the error handling and output helpers.
"""

from __future__ import annotations

import argparse
import json
import sys
import types
import warnings

from . import _cliformat as fmt
from . import cli
from ._store import api, views

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def add_commands(commands: Any) -> None:
    p = commands.add_parser(
        "store",
        help="the checkpoint history: list, show, diff, restore, prune, verify",
        description="Work with a checkpoint store (mason.checkpoint, %%checkpoint). Only 'restore' runs code"
        " from the store; the others read its catalog, manifests and objects.",
    )
    p.set_defaults(handler=lambda args: _usage(p))
    actions = p.add_subparsers(title="actions", dest="action", metavar="ACTION")

    def action(name: str, help: str, handler, **kwds) -> argparse.ArgumentParser:
        sub = actions.add_parser(name, help=help, description=kwds.pop("description", help[0].upper() + help[1:]))
        sub.add_argument(
            "--store",
            "-s",
            metavar="STORE",
            help="the store: a directory or URL (default: the one mason.checkpoint() uses without one)",
        )
        sub.set_defaults(handler=handler)
        return sub

    ident = "a checkpoint: its # in 'mason store list' (-1: the latest), its id, a unique prefix, or the part after Z-"

    sub = action("list", "list the checkpoints, oldest first", _cmd_list)
    sub.add_argument("--json", action="store_true", help="print one JSON array")

    sub = action("show", "show one checkpoint's variables and environment (nothing is unpickled)", _cmd_show)
    sub.add_argument("id", nargs="?", metavar="ID", help=ident + " (default: the latest)")
    sub.add_argument("--json", action="store_true", help="print one JSON object")

    sub = action(
        "diff",
        "which variables were added, removed or changed from checkpoint A to B",
        _cmd_diff,
        description="Compare two checkpoints by the stored bytes of each variable, as 'mason diff' compares"
        " files (references to objects of earlier variables count by what they point to, not by memo"
        " number; nothing is unpickled). Exit status 0: no difference, 1: differences.",
    )
    sub.add_argument("a", metavar="A", help=ident)
    sub.add_argument("b", metavar="B", nargs="?", help=ident + " (default: the latest)")
    sub.add_argument("--json", action="store_true", help="print one JSON object")

    sub = action(
        "restore",
        "restore a checkpoint into a Python prompt (-i), check that it loads, or export it (--to FILE)",
        _cmd_restore,
        description="Without options: restore the checkpoint into a fresh __main__, print what was restored"
        " and exit (status 1 if a variable could not be restored). -i: open a Python prompt in it. --to FILE:"
        " write it as one session file, byte for byte (nothing is unpickled). Restoring runs code from the"
        " store: only restore stores you trust, or use --allow or a key.",
    )
    sub.add_argument("id", nargs="?", metavar="ID", help=ident + " (default: the latest)")
    sub.add_argument("-i", "--interactive", action="store_true", help="open a Python prompt in the restored state")
    sub.add_argument("--plain", action="store_true", help="with -i: the standard prompt even if IPython is installed")
    sub.add_argument("--names", action="append", metavar="A,B,...", help="restore only these variables")
    sub.add_argument("--to", metavar="FILE", help="export the checkpoint as a session file (replaced atomically)")
    sub.add_argument("--strict", action="store_true", help="fail on the first variable that cannot be restored")
    cli._allow_argument(sub, "restore only what uses nothing but these modules or module:name globals (DATA: data)")
    cli._key_arguments(sub)

    sub = action("prune", "remove all but the newest checkpoints, and the data only the removed ones used", _cmd_prune)
    sub.add_argument("--keep", type=int, required=True, metavar="N", help="how many of the newest to keep")

    sub = action("verify", "check every object of every checkpoint (and signatures, with a key)", _cmd_verify)
    cli._key_arguments(sub)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return cli.EXIT_USAGE


def _store(args: argparse.Namespace):
    return args.store


def _label(args: argparse.Namespace) -> str:
    return args.store or str(api.default_store_path())


def _find(args: argparse.Namespace, ident: str | None):
    """(the store's checkpoints, the one ``ident`` names): as %restore finds it."""
    from .errors import CheckpointNotFoundError

    items = api.checkpoints(_store(args))
    label = _label(args)
    if not items:
        raise cli._Failure(f"{label}: no checkpoints")
    if ident is None:
        return items, items[-1]
    if ident.lstrip("-").isdigit() and len(ident) <= 6:
        position = int(ident)
        if not -len(items) <= position < len(items):
            raise cli._Failure(f"{label}: no checkpoint #{position} (there are {len(items)})")
        return items, items[position]
    found = [item for item in items if item.id == ident]
    found = found or [item for item in items if item.id.startswith(ident) or item.id.endswith("-" + ident)]
    if len(found) != 1:
        what = "no checkpoint" if not found else f"{len(found)} checkpoints"
        raise CheckpointNotFoundError(f"{label}: {what} with id {ident!r}")
    return items, found[0]


def _row(number: int, item) -> dict:
    return {
        "#": number,
        "id": item.id,
        "created": item.created.isoformat(),
        "message": item.message,
        "parent": item.parent,
        "names": list(item.names),
        "bytes_total": item.bytes_total,
        "bytes_written": item.bytes_written,
    }


# ====================================================================== list, show


def _cmd_list(args: argparse.Namespace) -> int:
    items = api.checkpoints(_store(args))
    if args.json:
        print(json.dumps([_row(n, item) for n, item in enumerate(items)], indent=2))
        return cli.EXIT_OK
    if not items:
        print(f"{_label(args)}: no checkpoints")
        return cli.EXIT_OK
    rows = [("#", "id", "created", "variables", "size", "written", "message")]
    for number, item in enumerate(items):
        rows.append(
            (
                str(number),
                item.id,
                item.created.strftime("%Y-%m-%d %H:%M:%S"),
                str(len(item.names)),
                fmt._human_size(item.bytes_total),
                fmt._human_size(item.bytes_written),
                fmt._printable(item.message or ""),
            )
        )
    print("\n".join(_columns(rows)))
    return cli.EXIT_OK


def _columns(rows: list) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]


def _cmd_show(args: argparse.Namespace) -> int:
    from ._inspect import describe
    from ._load import _LoadOptions

    items, item = _find(args, args.id)
    with views.open_reader(_store(args), item.id, _LoadOptions(mmap=False, key=False)) as reader:
        info = describe(reader, signed=reader.signed)
    label = f"{_label(args)}@{item.id}"
    if args.json:
        data = fmt._info_as_json(info, label)
        data["checkpoint"] = _row(items.index(item), item)
        print(json.dumps(data, indent=2, sort_keys=True))
        return cli.EXIT_OK
    head = [
        f"checkpoint #{items.index(item)} {item.id}",
        f"  created   {item.created.isoformat(sep=' ', timespec='seconds')}",
        f"  message   {fmt._printable(item.message or '')}",
        f"  parent    {item.parent or '-'}",
        f"  size      {fmt._human_size(item.bytes_total)} ({fmt._human_size(item.bytes_written)} written by it)",
    ]
    print("\n".join(head))
    print(fmt._info_as_text(info, label))
    return cli.EXIT_OK


# ====================================================================== diff


def _cmd_diff(args: argparse.Namespace) -> int:
    from . import _diff
    from ._load import _LoadOptions

    _, a = _find(args, args.a)
    _, b = _find(args, args.b)
    options = _LoadOptions(mmap=False, key=False)
    with (
        views.open_reader(_store(args), a.id, options) as reader_a,
        views.open_reader(_store(args), b.id, options) as reader_b,
    ):
        result = _diff.compare(
            _diff.Side(reader_a, reader_a.meta["variables"]), _diff.Side(reader_b, reader_b.meta["variables"])
        )
    added, removed, changed = ([entry["name"] for entry in result[key]] for key in ("added", "removed", "changed"))
    if args.json:
        print(json.dumps({"a": a.id, "b": b.id, "added": added, "removed": removed, "changed": changed}, indent=2))
    else:
        print(f"from {a.id} to {b.id}:")
        for mark, names in (("+", added), ("-", removed), ("~", changed)):
            for name in names:
                print(f"  {mark} {name}")
        if not (added or removed or changed):
            print("  no difference")
    return cli.EXIT_FAILURE if added or removed or changed else cli.EXIT_OK


# ====================================================================== restore


def _cmd_restore(args: argparse.Namespace) -> int:
    _, item = _find(args, args.id)
    store = _store(args)
    label = f"{_label(args)}@{item.id}"
    key = cli._key(args)
    names = cli._split_names(args.names)
    if args.to is not None:
        if args.interactive or names is not None or args.allow:
            raise cli._UsageError("--to exports the whole checkpoint as it is: not with -i, --names or --allow")
        views.export(store, item.id, args.to, key=key or False)
        print(f"wrote checkpoint {item.id} to {args.to}")
        return cli.EXIT_OK
    unknown = [name for name in names or () if name not in item.names]
    if unknown:
        raise cli._UsageError(f"not in checkpoint {item.id}: {', '.join(unknown)}")
    module = types.ModuleType("__main__")
    module.__dict__["__builtins__"] = __builtins__
    previous_main = sys.modules.get("__main__")
    sys.modules["__main__"] = module
    try:
        with cli._warnings_to_stderr() as shown:
            api.restore(
                store,
                id=item.id,
                module=module,
                names=names,
                on_error="raise" if args.strict else "warn",
                key=key or False,
                allow=cli._allow(args),
            )
            failed = sum(len(w.failures) for w in shown if isinstance(w, cli.SkippedVariableWarning))
        wanted = len(names) if names is not None else len(item.names)
        summary = f"restored {fmt._plural(wanted - failed, 'variable')} from {label} into __main__"
        if failed:
            summary += f"; {failed} could not be restored"
        if not args.interactive:
            print(fmt._printable(summary))
            return cli.EXIT_FAILURE if failed else cli.EXIT_OK
        return cli._interact(module.__dict__, module, summary, plain=args.plain)
    finally:
        if previous_main is not None:
            sys.modules["__main__"] = previous_main


# ====================================================================== prune, verify


def _cmd_prune(args: argparse.Namespace) -> int:
    report = api.prune(_store(args), keep=args.keep)
    print(
        f"removed {fmt._plural(len(report.removed), 'checkpoint')}, kept {report.kept};"
        f" {fmt._plural(report.objects_removed, 'object')} removed, {fmt._human_size(report.bytes_freed)} freed"
    )
    return cli.EXIT_OK


def _cmd_verify(args: argparse.Namespace) -> int:
    with warnings.catch_warnings():
        report = api.verify_store(_store(args), key=cli._key(args) or False)
    print(
        f"{_label(args)}: OK: {fmt._plural(report.checkpoints, 'checkpoint')},"
        f" {fmt._plural(report.objects, 'object')} ({fmt._human_size(report.bytes)}) checked"
        + (f"; {report.unreferenced} unreferenced (a prune removes them)" if report.unreferenced else "")
    )
    return cli.EXIT_OK
