"""Dask session benchmark: a persisted array saved by its workers vs gathered to the client.

How to run (from the repository root; needs ``mason[dask]``)::

    PYTHONPATH=src .venv/bin/python benchmarks/bench_dask.py              # 0.25 GiB, a minute or so
    PYTHONPATH=src .venv/bin/python benchmarks/bench_dask.py --gib 2      # the issue's size

Options: ``--gib N`` (GiB of float64, default 0.25); ``--chunk-mib N``
(default 64); ``--workers N`` (default 2, one thread each); ``--tmpdir DIR``
(where the files go, default ``$TMPDIR``); ``--timeout`` (seconds per child
process); ``--json PATH``.

The session: one ``dask.array`` of random float64 (incompressible),
persisted on a ``LocalCluster`` of ``--workers`` worker processes (no memory
limit, so nothing spills), handed to each client process as a published
dataset.  Every measurement runs in a fresh client process, whose memory
growth is its peak RSS during the measured call minus its RSS just before
(the high-water mark reset through ``/proc/self/clear_refs``).

Saving (the cluster that persisted the array):

* ``mason``            -- ``mason.dump_module(path)``: the workers write the
  partitions beside the session file, the client writes the session file
* ``compute + dump``   -- ``arr = x.compute()`` then ``mason.dump_module(path2)``
  holding ``arr``: the whole array passes through the client

Restoring (a new cluster, fresh workers):

* ``mason``            -- ``mason.load_module(path)`` with a client running:
  the workers read the partitions (the call returns once every read is done)
* ``load + persist``   -- ``mason.load_module(path2)`` then
  ``da.from_array(arr, chunks).persist()`` and wait: the array goes from the
  file into the client, then to the workers

Both restores are checked: the sum of the restored array must equal the
original's.  Ratios: times as baseline / mason (> 1: mason is faster);
memory as baseline growth / mason growth.  MB are 10**6 bytes; GiB 2**30.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _harness  # noqa: E402

DATASET = "mason-bench-dask"
MB = 10**6


# ====================================================================== child side


def _child_main() -> None:
    spec = _harness.read_spec()
    try:
        result = _CHILDREN[spec["kind"]](spec)
    except BaseException as exc:  # the parent reports it
        result = _harness.error_fields(exc)
    _harness.finish_child(result)


def _connect(spec: dict):
    import distributed

    return distributed.Client(spec["address"])


def _measured(call) -> dict:
    """Time ``call()`` and the growth of this process's memory during it."""
    before = _harness.current_rss_kb() or 0
    _harness.reset_peak_rss()
    start = time.perf_counter()
    call()
    seconds = time.perf_counter() - start
    peak = _high_water_kb()
    return {"seconds": seconds, "growth_mb": max(peak - before, 0) * 1024 / MB}


def _high_water_kb() -> int:
    """This process's peak RSS since the last reset (Linux ``VmHWM``).

    Not ``ru_maxrss``: that also counts the memory of the process that
    started this one, as it was when it started it (the parent here holds a
    cluster's scheduler), so it can never fall below that.
    """
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise OSError("no VmHWM in /proc/self/status: this benchmark measures memory on Linux only")


def _child_save_mason(spec: dict) -> dict:
    import mason

    client = _connect(spec)
    main = _harness.clean_main()
    main.x = client.get_dataset(DATASET)
    result = _measured(lambda: mason.dump_module(spec["path"], module=main, on_error="raise"))
    result["session_mb"] = os.path.getsize(spec["path"]) / MB
    result["partitions_mb"] = _tree_size(spec["path"] + ".dask") / MB
    client.close()
    return result


def _child_save_gathered(spec: dict) -> dict:
    import mason

    client = _connect(spec)
    main = _harness.clean_main()
    x = client.get_dataset(DATASET)

    def gather_and_dump():
        main.arr = x.compute()
        mason.dump_module(spec["path"], module=main)

    result = _measured(gather_and_dump)
    result["session_mb"] = os.path.getsize(spec["path"]) / MB
    client.close()
    return result


def _child_restore_mason(spec: dict) -> dict:
    import dask.array  # noqa: F401 - imported before the measurement, as the other restore does

    import mason

    client = _connect(spec)
    main = _harness.clean_main()
    result = _measured(lambda: mason.load_module(spec["path"]))
    x = main.x
    result["on_workers"] = sum(1 for holders in client.who_has(x).values() if holders)
    result["total"] = float(x.sum().compute())
    client.close()
    return result


def _child_restore_gathered(spec: dict) -> dict:
    import dask.array as da
    import distributed

    import mason

    client = _connect(spec)
    main = _harness.clean_main()
    holder = {}

    def load_and_persist():
        mason.load_module(spec["path"])
        holder["x"] = da.from_array(main.arr, chunks=spec["chunk"]).persist()
        distributed.wait(holder["x"])

    result = _measured(load_and_persist)
    result["total"] = float(holder["x"].sum().compute())
    client.close()
    return result


_CHILDREN = {
    "save-mason": _child_save_mason,
    "save-gathered": _child_save_gathered,
    "restore-mason": _child_restore_mason,
    "restore-gathered": _child_restore_gathered,
}


def _tree_size(folder: str) -> int:
    total = 0
    for root, _, files in os.walk(folder):
        total += sum(os.path.getsize(os.path.join(root, name)) for name in files)
    return total


# ====================================================================== parent side


def _cluster(workers: int):
    import distributed

    cluster = distributed.LocalCluster(
        n_workers=workers,
        processes=True,
        threads_per_worker=1,
        memory_limit=0,  # nothing spills: the data stays in the workers' memory
        host="127.0.0.1",
        dashboard_address=None,
    )
    return cluster, distributed.Client(cluster)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gib", type=float, default=0.25)
    parser.add_argument("--chunk-mib", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--tmpdir", default=None)
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    import dask.array as da
    import distributed

    env = _harness.child_env()
    # The children run in another folder: a relative PYTHONPATH (``src``) would
    # let them import another mason than this one.
    if env.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.pathsep.join(os.path.abspath(p) for p in env["PYTHONPATH"].split(os.pathsep) if p)
    work = tempfile.mkdtemp(prefix="mason-bench-dask-", dir=args.tmpdir)
    chunk = args.chunk_mib * 2**20 // 8
    size = int(args.gib * 2**30) // 8
    paths = {"mason": os.path.join(work, "workers.mason"), "gathered": os.path.join(work, "gathered.mason")}
    results: dict = {"gib": args.gib, "chunk_mib": args.chunk_mib, "workers": args.workers}
    try:
        cluster, client = _cluster(args.workers)
        x = da.random.random(size, chunks=chunk).persist()
        distributed.wait(x)
        total = float(x.sum().compute())
        client.publish_dataset(x, name=DATASET)
        print(
            f"{size * 8 / 2**30:.2f} GiB in {x.npartitions} partitions of {args.chunk_mib} MiB,"
            f" persisted on {args.workers} workers; files in {work}",
            file=sys.stderr,
        )
        spec = {"address": cluster.scheduler_address, "chunk": chunk}
        results["save_mason"] = _run("save-mason", dict(spec, path=paths["mason"]), work, env, args.timeout)
        results["save_gathered"] = _run("save-gathered", dict(spec, path=paths["gathered"]), work, env, args.timeout)
        client.close()
        cluster.close()

        cluster, client = _cluster(args.workers)  # fresh workers: nothing in memory
        spec = {"address": cluster.scheduler_address, "chunk": chunk}
        results["restore_mason"] = _run("restore-mason", dict(spec, path=paths["mason"]), work, env, args.timeout)
        client.restart()
        results["restore_gathered"] = _run(
            "restore-gathered", dict(spec, path=paths["gathered"]), work, env, args.timeout
        )
        client.close()
        cluster.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for name in ("restore_mason", "restore_gathered"):
        got = results[name].get("total")
        if got is not None and abs(got - total) > 1e-6 * abs(total):
            results[name]["error"] = f"MISMATCH: sum {got} != {total}"
    _report(results, x.npartitions)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(results, fh, indent=2)
    return 1 if any("error" in value for value in results.values() if isinstance(value, dict)) else 0


def _run(kind: str, spec: dict, work: str, env: dict, timeout: float) -> dict:
    folder = os.path.join(work, kind)
    os.makedirs(folder, exist_ok=True)
    spec = dict(spec, kind=kind)
    result = _harness.run_child("bench_dask", spec, folder, env, timeout)
    if "error" in result:
        print(f"{kind}: {result['error']}\n{result.get('traceback', '')}", file=sys.stderr)
    return result


def _report(results: dict, partitions: int) -> None:
    def row(label: str, entry: dict, extra: str = "") -> str:
        if "error" in entry:
            return f"  {label:<28} {entry['error']}"
        return f"  {label:<28} {entry['seconds']:8.2f} s   client +{entry['growth_mb']:8.0f} MB{extra}"

    save, gathered = results["save_mason"], results["save_gathered"]
    restore, loaded = results["restore_mason"], results["restore_gathered"]
    print(f"\n{results['gib']} GiB persisted dask array, {partitions} partitions, {results['workers']} workers")
    print("save")
    files = ""
    if "partitions_mb" in save:
        files = f"   ({save['partitions_mb']:.0f} MB of partitions, session file {save['session_mb'] * 1000:.0f} kB)"
    print(row("mason (workers write)", save, files))
    print(row("compute() + dump_module", gathered))
    print("restore onto a new cluster")
    on = f"   ({restore['on_workers']} partitions on the workers)" if "on_workers" in restore else ""
    print(row("mason (workers read)", restore, on))
    print(row("load_module + persist", loaded))
    if not any("error" in entry for entry in (save, gathered, restore, loaded)):
        print("ratios (baseline / mason)")
        print(
            f"  save:    time {gathered['seconds'] / save['seconds']:.1f}x,"
            f" client memory {_ratio(gathered['growth_mb'], save['growth_mb'])}"
        )
        print(
            f"  restore: time {loaded['seconds'] / restore['seconds']:.1f}x,"
            f" client memory {_ratio(loaded['growth_mb'], restore['growth_mb'])}"
        )


def _ratio(baseline: float, mason: float) -> str:
    return f"{baseline / mason:.0f}x" if mason >= 1 else f"{baseline:.0f} MB vs < 1 MB"


if __name__ == "__main__":
    sys.exit(main())
