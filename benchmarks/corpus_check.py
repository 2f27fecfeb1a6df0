"""Run real notebooks, save each session with mason, restore it elsewhere, compare.

Opt-in (not part of the test suite or CI); needs the notebooks' own
packages (numpy, pandas, matplotlib, seaborn, scikit-learn, scipy, sympy,
IPython, nbformat is not needed).  From the repository root::

    python benchmarks/corpus/fetch_corpus.py --cache DIR           # once: clone + export the trees
    python benchmarks/corpus_check.py --cache DIR                  # the whole corpus, ~15 min on 2 cores
    python benchmarks/corpus_check.py --cache DIR --only tools_    # notebooks whose path contains this
    python benchmarks/corpus_check.py --cache DIR --json bench-results/corpus.json --details

``DIR`` may also come from ``MASON_CORPUS_CACHE``.  The notebooks are listed
in ``benchmarks/corpus/manifest.json`` (repository, commit, path, why).

For each notebook:

1. **save child** (a fresh ``python -c``; ``__main__`` holds nothing of
   ours): the code cells run in ``__main__`` through an IPython
   ``InteractiveShell`` with matplotlib's Agg backend (``%matplotlib X`` and
   ``%pylab X`` become ``... agg``; ``!pip``/``%pip`` lines are left out;
   ``%timeit`` runs once).  A cell that raises is counted and skipped; after
   ``--budget`` seconds the running cell is interrupted and the rest are not
   run.  Then ``mason.dump_module(file)``; the variables ``mason.inspect``
   lists are described (type, a fingerprint of the value, the identity facts
   below) and zero-argument functions that read a global are called.
   The notebook runs in a scratch copy of its directory (symbolic links), so
   files it writes land there, not in the cache.
2. **load child** (another fresh interpreter, plain ``python``, same
   working directory so the notebook's helper modules import):
   ``mason.load_module(file)`` (lenient: what cannot be rebuilt is named in
   one ``SkippedVariableWarning``), then the same descriptions.

Compared per variable:

* **value**: a fingerprint computed the same way in both processes: numpy
  arrays by dtype, shape and bytes; pandas objects column by column;
  sympy objects by ``srepr``; figures and axes by size, titles, limits and
  line data; containers and instances recursively (``__dict__``, slots,
  else ``__reduce_ex__``); functions of ``__main__`` by code, defaults and
  closure; classes of ``__main__`` by their attributes.  A part that can
  only be described by its type (an iterator, an object whose repr has an
  address) makes the comparison ``coarse``;
* **type**;
* **identity**: a variable that was the very object a module attribute
  holds (``pi is numpy.pi``, ``CC is sympy.CC``, a module) must still be;
  variables that were one object must still be; ``x.attr is y`` and
  ``x[i] is y`` one level down must still hold;
* **live globals**: every function of ``__main__`` (and method of its
  classes) must have ``__globals__ is vars(__main__)``; functions callable
  without arguments that read a global are called in both processes (random
  generators seeded) and their results compared (the ``calls`` column;
  a difference there is reported but not counted as "not equal").

Columns: ``cells`` ok/failed(/not run), ``saved`` (variables in the file),
``skipped`` (left out at save, with reasons), ``restored``, ``equal``,
``not eq`` (with examples), ``load fail`` (named by the load's warning), ``missing`` (neither
restored nor named), ``calls`` (same/called), ``save s``, ``load s``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE / "corpus"))
import fetch_corpus  # noqa: E402

_CHILD = "__import__('sys').path.append({dir!r}); __import__('_mason_corpus_child').main()"


def scratch_copy(repo_root: Path, nb_dir: Path, scratch: Path) -> Path:
    """``scratch`` mirrors ``repo_root`` with symbolic links; the folders on
    the way to ``nb_dir`` are real, so the notebook's own writes stay there
    and ``../data`` still resolves."""
    rel = nb_dir.relative_to(repo_root)
    source, target = repo_root, scratch
    target.mkdir(parents=True, exist_ok=True)
    for part in [*rel.parts, None]:
        for entry in source.iterdir():
            if entry.name == part or entry.name == fetch_corpus._DONE:
                continue
            (target / entry.name).symlink_to(entry)
        if part is None:
            break
        source, target = source / part, target / part
        target.mkdir()
    return target


def _env(src: Path, extra_path=()) -> dict:
    env = dict(os.environ)
    paths = [str(src), *map(str, extra_path)]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["MPLBACKEND"] = "Agg"
    env["PYTHONHASHSEED"] = "0"
    env["PYTHONWARNINGS"] = "ignore"
    # One thread each: the machine may be shared, and timings stay comparable.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, "1")
    return env


def _child(args, cwd, timeout, log, src: Path, extra_path=()) -> tuple[int | None, float]:
    cmd = [sys.executable, "-c", _CHILD.format(dir=str(HERE / "corpus")), *args]
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd,
            cwd=cwd,
            env=_env(src, extra_path),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=timeout,
        )
        code = proc.returncode
    except subprocess.TimeoutExpired:
        code = None
    return code, time.perf_counter() - start


def _read(path: Path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def check_notebook(cache: Path, nb: dict, budget: float, workdir: Path, src: Path = ROOT / "src") -> dict:
    tree = fetch_corpus.tree_dir(cache, nb["repo"], nb["commit"])
    nb_path = tree / nb["path"]
    row = {"notebook": nb_id(nb), "repo": nb["repo"], "path": nb["path"]}
    scratch = workdir / "scratch"
    cwd = scratch_copy(tree, nb_path.parent, scratch)
    session = workdir / "session.mason"
    report = workdir / "save.json"
    log_path = workdir / "log.txt"
    # ``sys_path``: folders of the repository the notebook expects importable
    # (its helper modules), as its own instructions install them.
    extra = [scratch / p for p in nb.get("sys_path", [])]
    with open(log_path, "w") as log:
        code, save_wall = _child(
            ["save", str(nb_path), str(session), str(report), str(budget), nb.get("prelude", "")],
            cwd,
            budget + 300,
            log,
            src,
            extra,
        )
        saved = _read(report)
        if saved is None:
            row["error"] = f"save child {'timed out' if code is None else f'exited {code}'}"
            row["log_tail"] = log_path.read_text(errors="replace")[-1500:]
            return row
        row["save_wall_s"] = save_wall
        loaded = None
        if saved.get("save_error") is None:
            code, load_wall = _child(["load", str(session), str(report)], cwd, 600, log, src, extra)
            loaded = _read(Path(str(report) + ".load")) or _read(Path(str(report) + ".partial"))
            row["load_wall_s"] = load_wall
            if loaded is None:
                row["error"] = f"load child {'timed out' if code is None else f'exited {code}'}"
                row["log_tail"] = log_path.read_text(errors="replace")[-1500:]
            row["file_bytes"] = session.stat().st_size
    row.update(compare(saved, loaded))
    return row


def compare(saved: dict, loaded: dict | None) -> dict:
    out = {
        "run": saved["run"],
        "save_s": saved["save_s"],
        "save_error": saved.get("save_error"),
        "skipped": dict(saved.get("skipped", {})),
        "save_warnings": saved.get("save_warnings", []),
    }
    names = saved.get("saved", [])
    out["saved"] = len(names)
    if loaded is None:
        return out
    out["load_s"] = loaded["load_s"]
    out["load_error"] = loaded.get("load_error")
    out["load_warnings"] = loaded.get("load_warnings", [])
    failures = loaded.get("load_failures", {})
    before = saved.get("descriptions", {})
    after = loaded.get("descriptions", {})
    broken = loaded.get("identity_broken", {})
    homes = saved.get("identity", {}).get("homes", {})
    stale = set(loaded.get("stale_globals", []))
    equal, coarse, not_equal, failed, missing, as_pickle = [], [], {}, {}, [], []
    for name in names:
        if name in failures:
            failed[name] = failures[name]
            continue
        if name not in after:
            if loaded.get("load_error") is None:
                missing.append(name)
            else:
                failed[name] = "the whole load failed: " + loaded["load_error"].splitlines()[0]
            continue
        a, b = before.get(name), after[name]
        problems = []
        if a is None:
            problems.append("not described at save")
        elif name in homes and not broken.get(name):
            pass  # the module's own object again: its value is the module's business
        else:
            differs = (a["type"], a["fp"]) != (b["type"], b["fp"])
            if differs and (a.get("pickle_type"), a.get("pickle_fp")) == (b["type"], b["fp"]):
                as_pickle.append(name)  # what the library's own pickling gives
            elif a["type"] != b["type"]:
                problems.append(f"type {a['type']} -> {b['type']}")
            elif a["fp"] != b["fp"]:
                where = [k for k in a["parts"] if a["parts"].get(k) != b["parts"].get(k)]
                where += [k for k in b["parts"] if k not in a["parts"]]
                hint = f" in {', '.join(where[:3])}" if where else ""
                problems.append(f"value differs{hint}: {first_difference(a['text'], b['text'])}")
                if a.get("pickle_text"):
                    problems.append(f"(pickle gives {first_difference(a['pickle_text'], b['text'])})")
        problems += broken.get(name, [])
        problems += [f"{p}: __globals__ is not __main__'s" for p in sorted(stale) if p.split(".")[0] == name]
        if problems:
            not_equal[name] = "; ".join(problems)
        elif name in as_pickle:
            equal.append(name)
        elif a.get("coarse") or b.get("coarse"):
            coarse.append(name)
            equal.append(name)
        else:
            equal.append(name)
    calls_before, calls_after = saved.get("calls", {}), loaded.get("calls", {})
    call_diffs = {
        n: f"{calls_before[n]} -> {calls_after.get(n)}" for n in calls_before if calls_after.get(n) != calls_before[n]
    }
    out.update(
        restored=len(names) - len(failed) - len(missing),
        equal=len(equal),
        coarse=len(coarse),
        as_pickle=as_pickle,
        not_equal=not_equal,
        load_failed=failed,
        missing=missing,
        calls=[len(calls_before) - len(call_diffs), len(calls_before)],
        call_diffs=call_diffs,
        stored_by_reference=sum(1 for v in saved.get("stored", {}).values() if v == "reference"),
    )
    return out


def first_difference(a: str, b: str) -> str:
    """Where two descriptions part: a little context from each."""
    i = next((k for k, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    start = max(0, i - 25)
    return f"...{a[start : i + 45]!r} -> ...{b[start : i + 45]!r}"


def nb_id(nb: dict) -> str:
    return f"{nb['repo'].split('/')[1]}:{nb['path']}"


# --------------------------------------------------------------------- report


def _reason_class(reason: str) -> str:
    """A failure message without the names in it, to group failures by cause."""
    text = re.sub(r"^\S+?: ", "", reason.strip(), count=1) if re.match(r"^[\w.\[\]'\"]+: ", reason) else reason
    text = re.sub(r"'[^']*'", "'…'", text)
    text = re.sub(r"\b0x[0-9a-f]+\b", "0x…", text)
    text = re.sub(r"\d+", "N", text)
    return text[:110]


def table(rows: list[dict]) -> str:
    head = (
        "| notebook | cells ok/fail | saved | skipped | restored | equal | (as pickle) | not eq | load fail "
        "| missing | calls | save s | load s |"
    )
    lines = [head, "|" + "---|" * 13]
    tot = Counter()
    for r in rows:
        if "run" not in r:
            lines.append(f"| {r['notebook']} | {r.get('error', '?')} |" + " |" * 11)
            tot["broken"] += 1
            continue
        run = r["run"]
        cells = f"{run['cells_ok']}/{run['cells_failed']}" + (
            f"/{run['cells_not_run']} not run" if run["cells_not_run"] else ""
        )
        if "restored" not in r:
            err = r.get("error") or r.get("save_error") or "?"
            lines.append(f"| {r['notebook']} | {cells} | {r['saved']} | {len(r['skipped'])} | {err[:60]} |" + " |" * 8)
            tot["broken"] += 1
            continue
        calls = f"{r['calls'][0]}/{r['calls'][1]}" if r["calls"][1] else "-"
        lines.append(
            f"| {r['notebook']} | {cells} | {r['saved']} | {len(r['skipped'])} | {r['restored']} | {r['equal']} "
            f"| {len(r['as_pickle']) or ''} | {len(r['not_equal'])} | {len(r['load_failed'])} | {len(r['missing'])} | {calls} "
            f"| {r['save_s']:.2f} | {r['load_s']:.2f} |"
        )
        tot["nb"] += 1
        tot["cells_ok"] += run["cells_ok"]
        tot["cells_failed"] += run["cells_failed"]
        for key in ("saved", "restored", "equal"):
            tot[key] += r[key]
        tot["skipped"] += len(r["skipped"])
        tot["not_equal"] += len(r["not_equal"])
        tot["as_pickle"] += len(r["as_pickle"])
        tot["load_failed"] += len(r["load_failed"])
        tot["missing"] += len(r["missing"])
        tot["calls_same"] += r["calls"][0]
        tot["calls"] += r["calls"][1]
        tot["save_s"] += r["save_s"]
        tot["load_s"] += r["load_s"]
        tot["fully"] += not (r["not_equal"] or r["load_failed"] or r["missing"] or r["skipped"])
    lines.append(
        f"| **total: {tot['nb']} sessions ({tot['fully']} fully equal)** | {tot['cells_ok']}/{tot['cells_failed']} "
        f"| {tot['saved']} | {tot['skipped']} | {tot['restored']} | {tot['equal']} | {tot['as_pickle']} | {tot['not_equal']} "
        f"| {tot['load_failed']} | {tot['missing']} | {tot['calls_same']}/{tot['calls']} "
        f"| {tot['save_s']:.1f} | {tot['load_s']:.1f} |"
    )
    if tot["broken"]:
        lines.append(f"\n{tot['broken']} notebook(s) gave no comparison (see above).")
    return "\n".join(lines)


def details(rows: list[dict], examples: int = 4) -> str:
    out = []
    for r in rows:
        bits = []
        for label, items in (
            ("skipped at save", r.get("skipped", {})),
            ("not equal", r.get("not_equal", {})),
            ("failed at load", r.get("load_failed", {})),
            ("call results differ", r.get("call_diffs", {})),
        ):
            if items:
                shown = "; ".join(f"`{k}`: {v[:160]}" for k, v in list(items.items())[:examples])
                more = f" (+{len(items) - examples} more)" if len(items) > examples else ""
                bits.append(f"  - {label} ({len(items)}): {shown}{more}")
        if r.get("missing"):
            bits.append(f"  - missing ({len(r['missing'])}): {', '.join(r['missing'][:8])}")
        for key in ("save_error", "load_error", "error"):
            if r.get(key):
                bits.append(f"  - {key}: {r[key].splitlines()[0][:300]}")
        if bits:
            out.append(f"- **{r['notebook']}**\n" + "\n".join(bits))
    return "\n".join(out)


def failure_classes(rows: list[dict]) -> str:
    counts: dict[tuple[str, str], Counter] = {}
    for r in rows:
        for label, items in (
            ("skipped at save", r.get("skipped", {})),
            ("not equal", r.get("not_equal", {})),
            ("failed at load", r.get("load_failed", {})),
        ):
            for _name, reason in items.items():
                key = (label, _reason_class(reason))
                counts.setdefault(key, Counter())[r["notebook"]] += 1
    ranked = sorted(counts.items(), key=lambda kv: -sum(kv[1].values()))
    lines = ["| where | cause (names elided) | variables | notebooks |", "|---|---|---|---|"]
    for (label, cause), per in ranked[:25]:
        lines.append(f"| {label} | {cause.replace('|', '/')} | {sum(per.values())} | {len(per)} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", help="corpus cache directory (default: $MASON_CORPUS_CACHE)")
    parser.add_argument(
        "--mirror",
        action="append",
        default=[],
        type=Path,
        help="existing git copies (OWNER+NAME[/repo]), as for fetch_corpus.py",
    )
    parser.add_argument("--manifest", type=Path, default=fetch_corpus.MANIFEST)
    parser.add_argument("--only", action="append", default=[], help="substring of notebook ids to run; repeatable")
    parser.add_argument("--budget", type=float, default=60.0, help="seconds of cell execution per notebook")
    parser.add_argument("--json", type=Path, help="write every row (all reasons) here")
    parser.add_argument("--details", action="store_true", help="list reasons and examples per notebook")
    parser.add_argument("--keep", type=Path, help="keep each notebook's session file and log under this folder")
    parser.add_argument(
        "--src", type=Path, default=ROOT / "src", help="the src/ folder of the mason to test (default: this checkout's)"
    )
    args = parser.parse_args(argv)

    cache = fetch_corpus.cache_dir(args.cache)
    notebooks = fetch_corpus.load_manifest(args.manifest)
    if args.only:
        notebooks = [nb for nb in notebooks if any(s in nb_id(nb) for s in args.only)]
    fetch_corpus.ensure_trees(cache, args.mirror, notebooks)
    rows = []
    started = time.perf_counter()
    for i, nb in enumerate(notebooks, 1):
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="mason-corpus-") as tmp:
            row = check_notebook(cache, nb, args.budget, Path(tmp), args.src.resolve())
            if args.keep:
                dest = args.keep / nb_id(nb).replace("/", "_").replace(":", "__")
                dest.mkdir(parents=True, exist_ok=True)
                for name in ("session.mason", "log.txt", "save.json", "save.json.load"):
                    if (Path(tmp) / name).exists():
                        shutil.copy(Path(tmp) / name, dest / name)
        row["wall_s"] = time.perf_counter() - t0
        rows.append(row)
        summary = (
            f"saved {row.get('saved', '?')}, equal {row.get('equal', '?')}, not equal "
            f"{len(row.get('not_equal', {}))}, load failed {len(row.get('load_failed', {}))}"
            if "restored" in row
            else row.get("error") or row.get("save_error") or "?"
        )
        print(f"[{i}/{len(notebooks)}] {nb_id(nb)}: {summary} ({row['wall_s']:.0f} s)", file=sys.stderr, flush=True)
    total = time.perf_counter() - started
    print(table(rows))
    print(f"\nwall time: {total:.0f} s for {len(rows)} notebooks")
    print("\n### Failure classes\n")
    print(failure_classes(rows))
    if args.details:
        print("\n### Per notebook\n")
        print(details(rows))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "wall_s": total}, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
