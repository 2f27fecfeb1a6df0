"""Which objects of dill's own catalog (``dill._objects``) each pickler round-trips.

How to run (from the repository root, with the project's virtualenv)::

    .venv/bin/python benchmarks/catalog_report.py             # copy inside one process
    .venv/bin/python benchmarks/catalog_report.py --fresh     # dump and load in two processes
    .venv/bin/python benchmarks/catalog_report.py --markdown  # the table in docs/types.md

The catalog is ``{**dill._objects.a, **dill._objects.x}``: the objects dill
expects to pickle and the ones it knows it fails on.  Every implementation
runs in its own child process (dill's copy of an anonymous temporary file
closes the original's descriptor, which would spoil the next pickler's
attempt on the same object).

For each name and pickler the cell says:

* ``ok``: the copy has the original's type;
* ``~``: the copy has an equivalent type (a dict or set iterator comes back
  as a ``list_iterator`` over the remaining items, for every pickler);
* ``type``: the copy loads but as another type (e.g. dill turns a raw
  ``FileIO`` into a ``BufferedReader``);
* ``x``: dumping or loading raised.

The totals count ``ok`` plus ``~`` ("round-trips"), and also every copy that
loads without an error, whatever its type.  With ``--markdown`` a last column
says how mason rebuilds each object: the first global its pickle names (a
``mason._rebuild`` reconstructor, the callable of the object's own
``__reduce__``, or "by reference" when the pickle is only that name).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

IMPLS = ("pickle", "cloudpickle", "dill", "mason")

#: iterators every pickler turns into a ``list_iterator`` over what is left
EQUIVALENT_TYPES = {
    "dict_keyiterator": "list_iterator",
    "dict_valueiterator": "list_iterator",
    "dict_itemiterator": "list_iterator",
    "dict_reversekeyiterator": "list_iterator",
    "dict_reversevalueiterator": "list_iterator",
    "dict_reverseitemiterator": "list_iterator",
    "odict_iterator": "list_iterator",
    "set_iterator": "list_iterator",
}

_CHILD = r'''
import json, pickle, sys, warnings
warnings.filterwarnings("ignore")
impl, step, path = sys.argv[1:4]
if impl == "dill":
    import dill
    dumps, loads = dill.dumps, dill.loads
elif impl == "mason":
    import mason
    dumps, loads = mason.dumps, mason.loads
elif impl == "cloudpickle":
    import cloudpickle
    dumps, loads = cloudpickle.dumps, pickle.loads
else:
    dumps, loads = (lambda obj: pickle.dumps(obj, protocol=5)), pickle.loads

def describe_type(obj):
    return type(obj).__module__ + "." + type(obj).__qualname__

def how(data):
    """How a stream rebuilds its object: the first global it names (the
    outermost callable, or the object itself when that is all there is)."""
    import pickletools
    strings, names, others = [], [], set()
    for op, arg, _ in pickletools.genops(data):
        if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
            strings.append(arg)
        elif op.name == "STACK_GLOBAL":
            names.append(".".join(strings[-2:]))
        elif op.name == "GLOBAL":
            names.append(arg.replace(" ", "."))
        elif op.name not in ("PROTO", "FRAME", "MEMOIZE", "BINPUT", "PUT", "STOP"):
            others.add(op.name)
    if not names:
        return "pickle data"
    if len(names) == 1 and not others:
        return "by reference " + names[0]
    return names[0]

def error(exc):
    return "x: " + type(exc).__name__ + ": " + " ".join(str(exc).split())[:120]

if step in ("dump", "copy"):
    import dill._objects
    catalog = {**dill._objects.a, **dill._objects.x}
    dumped = {}
    for name in sorted(catalog):
        try:
            dumped[name] = (describe_type(catalog[name]), dumps(catalog[name]))
        except Exception as exc:
            dumped[name] = (describe_type(catalog[name]), error(exc))
    if step == "dump":
        with open(path, "wb") as f:
            pickle.dump(dumped, f)
        sys.exit(0)
else:
    with open(path, "rb") as f:
        dumped = pickle.load(f)

results = {}
for name, (original, data) in dumped.items():
    if isinstance(data, str):
        results[name] = (original, data)
        continue
    try:
        results[name] = (original, describe_type(loads(data)), how(data))
    except Exception as exc:
        results[name] = (original, error(exc))
print(json.dumps(results))
'''


def run_impl(impl: str, fresh: bool) -> dict[str, list[str]]:
    """``name -> [original type, copy's type or 'x: error', how]`` for one
    pickler; ``how`` (the first global its stream names) only when it loads."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "catalog.pkl")
        steps = ("dump", "load") if fresh else ("copy",)
        for step in steps:
            # cwd: the child's scratch files (dill's catalog makes some) stay in tmp
            proc = subprocess.run(
                [sys.executable, "-c", _CHILD, impl, step, path],
                cwd=tmp,
                capture_output=True,
                text=True,
                timeout=300,
            )
            if proc.returncode != 0:
                raise SystemExit(f"{impl} {step} child failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def status(original: str, copied: str, how: str = "") -> str:
    if copied.startswith("x: "):
        return "x"
    if copied == original:
        return "ok"
    if EQUIVALENT_TYPES.get(original.rpartition(".")[2]) == copied.rpartition(".")[2]:
        return "~"
    return "type"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fresh", action="store_true", help="dump and load in two fresh processes")
    parser.add_argument("--markdown", action="store_true", help="a markdown table, for docs/types.md")
    parser.add_argument("--impls", default=",".join(IMPLS), help="comma-separated, default: all")
    parser.add_argument("--verbose", action="store_true", help="show each failure's error")
    args = parser.parse_args(argv)
    impls = [impl for impl in args.impls.split(",") if impl]

    results = {impl: run_impl(impl, args.fresh) for impl in impls}
    names = sorted(next(iter(results.values())))
    cells = {name: {impl: status(*results[impl][name]) for impl in impls} for name in names}

    if args.markdown:
        show_how = "mason" in impls
        print("| name | type | " + " | ".join(impls) + (" | how mason rebuilds it |" if show_how else " |"))
        print("|---|---|" + "---|" * (len(impls) + show_how))
        for name in names:
            original = results[impls[0]][name][0]
            row = f"| {name} | `{original}` | " + " | ".join(cells[name][i] for i in impls)
            if show_how:
                mason = results["mason"][name]
                row += " | " + (f"`{mason[2]}`" if len(mason) > 2 else "refused")
            print(row + " |")
    else:
        width = max(map(len, names))
        print(f"{'name':<{width}}  " + "  ".join(f"{impl:>11}" for impl in impls))
        for name in names:
            print(f"{name:<{width}}  " + "  ".join(f"{cells[name][impl]:>11}" for impl in impls))
            if args.verbose:
                for impl in impls:
                    if cells[name][impl] in ("x", "type"):
                        print(f"{'':<{width}}    {impl}: {results[impl][name][1]}")
    print()
    where = "dump and load in fresh processes" if args.fresh else "copy in one process"
    round_trips = ", ".join(f"{impl} {sum(cells[n][impl] in ('ok', '~') for n in names)}" for impl in impls)
    loads = ", ".join(f"{impl} {sum(cells[n][impl] != 'x' for n in names)}" for impl in impls)
    print(f"totals ({where}, {len(names)} objects): round-trips {round_trips}; loads at all {loads}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
