"""Checkpoint store benchmark: ``mason.checkpoint`` / ``mason.restore`` against
``mason.dump_module`` / ``mason.load_module`` of the same session.

How to run (from the repository root, with the project's virtualenv)::

    .venv/bin/python benchmarks/bench_store.py                 # ~0.15 GB session, a minute
    .venv/bin/python benchmarks/bench_store.py --gib 1.5       # the issue's data-heavy session
    .venv/bin/python benchmarks/bench_store.py --gib 1.5 --repeat 3 --tmpdir /dev/shm --json out.json

The session is bench_session.py's ``data-heavy`` one scaled to ``--gib``
(numpy arrays, a dict of arrays, a DataFrame with numeric, categorical,
string and datetime columns).  One saving process builds it, then, in each
repetition (order rotating, so that neither side always runs first on a
warm or cold cache; ``--warmup`` rounds run first and are not counted):

* ``dump``: ``dump_module`` to a new file;
* ``first``: ``checkpoint`` into a new, empty store;
* ``second``: ``15 MB x (gib / 1.5)`` of ``weights`` (a float32 array, 200 MB at
  full size) changed in place (``weights[:n] += 1``), then ``checkpoint`` again.
  The same change is undone before the next repetition.

Each timed save is deleted right after it, so that every one starts with the
same free memory.  Then the file and the two checkpoints are made again
(untimed) and, in fresh interpreters (one per measurement, interleaved),
``load_module`` of the file and ``restore`` of the first and of the second
checkpoint are timed, each
followed by a touch of every array (sum of its bytes), so that lazily mapped
pages are paid for.  Files live in ``--tmpdir`` (default ``/dev/shm``, so that
the disk does not decide).  Reported: medians, and the ratios the issue sets
targets for (``first / dump <= 1.1``, ``second / first <= 0.10`` in time and
``<= 0.03`` in bytes written, ``restore / load <= 1.1``).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(BENCH_DIR)
sys.path.insert(0, BENCH_DIR)
sys.path.insert(0, os.path.join(REPO_ROOT, "src"))  # this checkout's mason, whatever is installed

LOADER = r"""
import json, sys, time
import numpy as np, pandas as pd
import mason
kind, where, ident = sys.argv[1], sys.argv[2], sys.argv[3]
mason.loads(mason.dumps(1))
started = time.perf_counter()
if kind == "load":
    mason.load_module(where)
else:
    mason.restore(where, ident or None)
loaded = time.perf_counter() - started

def touch(value):
    if isinstance(value, np.ndarray) and value.dtype != object:
        return float(value.view(np.uint8).sum(dtype=np.uint64))
    if isinstance(value, dict):
        return sum(touch(v) for v in value.values())
    if isinstance(value, pd.DataFrame):
        return sum(touch(np.asarray(value[c])) for c in value.columns if value[c].dtype != object)
    return 0.0

total = sum(touch(v) for k, v in list(globals().items()) if not k.startswith("_"))
elapsed = time.perf_counter() - started
print(json.dumps({"load": loaded, "load_touch": elapsed, "checksum": total}))
"""


def build_session(gib: float) -> None:
    from bench_session import data_heavy_source

    import __main__

    exec(data_heavy_source(gib / 1.5), __main__.__dict__)
    del __main__.__dict__["BENCH_META"]


def timed(function, *args, **kwds):
    gc.collect()
    started = time.perf_counter()
    result = function(*args, **kwds)
    return time.perf_counter() - started, result


def run_loader(kind: str, where: str, ident: str = "") -> dict:
    env = dict(os.environ, PYTHONPATH=os.path.join(REPO_ROOT, "src"), PYTHONHASHSEED="0")
    proc = subprocess.run(
        [sys.executable, "-c", LOADER, kind, where, ident], capture_output=True, text=True, env=env, timeout=3600
    )
    if proc.returncode:
        raise RuntimeError(f"{kind} child failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _checkpoint_pair(store, weights, changed, samples):
    """The first checkpoint, ``changed`` items of ``weights`` changed in place,
    the second; timed into ``samples`` unless it is None.  Returns (_, id, id)."""
    import __main__
    import mason

    seconds, first = timed(mason.checkpoint, store, module=__main__, message="first")
    weights[:changed] += 1
    seconds2, second = timed(mason.checkpoint, store, module=__main__, message="second")
    weights[:changed] -= 1
    if samples is not None:
        samples["first"].append(seconds)
        samples["second"].append(seconds2)
        listed = {c.id: c for c in mason.checkpoints(store)}
        samples["first_bytes"].append(listed[first].bytes_written)
        samples["second_bytes"].append(listed[second].bytes_written)
    return seconds, first, second


def _small_changes(store: str, rounds: int) -> dict[str, list[float]]:
    """``%autocheckpoint`` after cells that change only a small variable, both
    ways, interleaved: in the caller (``sync``), and forked as the magic does
    by default (``fork_wait``: what the cell waits for; ``fork_done``: until
    the checkpoint is listed)."""
    import __main__
    import mason
    from mason._store import background

    def run() -> str:
        return mason.checkpoint(store, module=__main__, message="small change")

    out: dict[str, list[float]] = {"sync": [], "fork_wait": [], "fork_done": []}
    mason.checkpoint(store, module=__main__, message="base")
    for number in range(2 * rounds):
        __main__.note = f"cell {number}"
        gc.collect()
        started = time.perf_counter()
        if number % 2 == 0:
            run()
            out["sync"].append(time.perf_counter() - started)
            continue
        pending = background.start(run)
        out["fork_wait"].append(time.perf_counter() - started)
        outcome = pending.wait()
        out["fork_done"].append(time.perf_counter() - started)
        if outcome.error is not None:
            raise RuntimeError(f"background checkpoint failed: {outcome.error}")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gib", type=float, default=0.15, help="session size in GiB (1.5: the issue's)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1, help="rounds run first and not counted")
    parser.add_argument("--tmpdir", default="/dev/shm" if os.path.isdir("/dev/shm") else None)
    parser.add_argument("--chunk-size", type=int, default=None, help="the store's chunk size (default 4 MiB)")
    parser.add_argument("--small-rounds", type=int, default=7, help="small-change checkpoints of each kind")
    parser.add_argument("--json", help="write samples and summary here")
    args = parser.parse_args(argv)

    import __main__
    import mason
    from mason._store.catalog import init_store

    build_session(args.gib)
    weights = __main__.weights
    changed = int(15e6 * args.gib / 1.5) // weights.itemsize
    session_bytes = sum(
        v.nbytes for v in vars(__main__).values() if hasattr(v, "nbytes") and not isinstance(v, type)
    ) + sum(a.nbytes for a in __main__.runs.values())
    print(
        f"session: ~{session_bytes / 1e6:.0f} MB of arrays + a {len(__main__.df):,}-row DataFrame;"
        f" second checkpoint changes {changed * weights.itemsize / 1e6:.1f} MB of"
        f" weights ({weights.nbytes / 1e6:.0f} MB) in place"
    )
    mason.dumps(1)  # warm up lazy imports
    base = tempfile.mkdtemp(prefix="mason-bench-store-", dir=args.tmpdir)
    samples: dict[str, list[float]] = {k: [] for k in ("dump", "first", "second", "first_bytes", "second_bytes")}
    loads: dict[str, list[float]] = {"load": [], "restore_first": [], "restore_second": []}
    try:
        for rep in range(-args.warmup, args.repeat):
            path = os.path.join(base, f"session-{rep}.mason")
            store = os.path.join(base, f"store-{rep}")
            # Saves: each timed one starts with the same free memory (the other's
            # files are gone), which on a VM that backs memory lazily matters.
            for step in ["dump", "checkpoints"] if rep % 2 == 0 else ["checkpoints", "dump"]:
                if step == "dump":
                    seconds, _ = timed(mason.dump_module, path, module=__main__)
                    samples["dump"].append(seconds)
                    os.unlink(path)
                else:
                    init_store(store, chunk_size=args.chunk_size)
                    seconds, first, second = _checkpoint_pair(store, weights, changed, samples)
                    shutil.rmtree(store)
            # Loads, in fresh interpreters, of files made again (untimed).
            mason.dump_module(path, module=__main__)
            init_store(store, chunk_size=args.chunk_size)
            ids = _checkpoint_pair(store, weights, changed, None)[1:]
            order = ["load", "restore_first", "restore_second"]
            order = order[rep % 3 :] + order[: rep % 3]
            for kind in order:
                if kind == "load":
                    result = run_loader("load", path)
                else:
                    result = run_loader("restore", store, ids[0] if kind == "restore_first" else ids[1])
                loads[kind].append(result["load_touch"])
            print(
                f"{'warm-up' if rep < 0 else f'rep {rep}'}: dump {samples['dump'][-1]:.3f}s first {samples['first'][-1]:.3f}s"
                f" second {samples['second'][-1]:.3f}s | load {loads['load'][-1]:.3f}s"
                f" restore first {loads['restore_first'][-1]:.3f}s second {loads['restore_second'][-1]:.3f}s",
                flush=True,
            )
            os.unlink(path)
            shutil.rmtree(store)
            if rep < 0:  # a warm-up round: forget it
                for values in (*samples.values(), *loads.values()):
                    values.pop()
        small = _small_changes(os.path.join(base, "store-small"), args.small_rounds)
    finally:
        shutil.rmtree(base, ignore_errors=True)

    med = {k: statistics.median(v) for k, v in {**samples, **loads}.items()}
    ratios = {
        "first_vs_dump": med["first"] / med["dump"],
        "second_vs_first_time": med["second"] / med["first"],
        "second_vs_first_bytes": med["second_bytes"] / med["first_bytes"],
        "restore_first_vs_load": med["restore_first"] / med["load"],
        "restore_second_vs_load": med["restore_second"] / med["load"],
    }
    targets = {
        "first_vs_dump": 1.1,
        "second_vs_first_time": 0.10,
        "second_vs_first_bytes": 0.03,
        "restore_first_vs_load": 1.1,
        "restore_second_vs_load": 1.1,
    }
    print(f"\nmedians of {args.repeat}: " + ", ".join(f"{k} {v:.3f}" for k, v in med.items() if "bytes" not in k))
    print(f"bytes written: first {med['first_bytes'] / 1e6:.1f} MB, second {med['second_bytes'] / 1e6:.2f} MB")
    for name, value in ratios.items():
        verdict = "ok" if value <= targets[name] else "MISSED"
        print(f"  {name:24s} {value:7.3f}   target <= {targets[name]:<5} {verdict}")
    small_med = {k: statistics.median(v) for k, v in small.items()}
    print(
        f"after a cell that changed a small variable (medians of {args.small_rounds}, target <= 50 ms):"
        f" in the background the cell waits {small_med['fork_wait'] * 1e3:.1f} ms"
        f" ({'ok' if small_med['fork_wait'] <= 0.05 else 'MISSED'}), listed after {small_med['fork_done'] * 1e3:.0f} ms;"
        f" in the kernel (--wait) {small_med['sync'] * 1e3:.0f} ms"
    )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(
                {"args": vars(args), "samples": samples, "loads": loads, "ratios": ratios, "small": small},
                fh,
                indent=1,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
