"""A/B of mason's fixed cost: two source trees, each timing the first
``dump_module`` and ``load_module`` of a tiny session in fresh interpreters,
interleaved (A, B, then B, A, ...), medians printed.

    .venv/bin/python benchmarks/ab_fixed_cost.py OLD/src src --runs 31

Make OLD with ``git worktree add /tmp/old <commit>``.  Each child imports
mason, warms it up with one ``dumps``/``loads`` (as bench_session.py does),
builds the tiny session in ``__main__`` and times one save and one load of
it (files in ``--tmpdir``, default /dev/shm).  The millisecond figures
drift with the machine's load: compare A with B of the same run only.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile

_CHILD = r"""
import gc, sys, time, __main__
import mason
mason.loads(mason.dumps({"a": [1, 2.5, "x", (3, None)], "b": {4, 5}, "c": b"y"}))
exec(compile('a = 1\nb = 2.5\nname = "tiny"\nitems = [1, 2, 3, "four"]\n'
             'def f(x):\n    return x + a\n', "<session>", "exec"), __main__.__dict__)
gc.collect()
path = sys.argv[1]
t0 = time.perf_counter()
mason.dump_module(path, module=__main__)
t1 = time.perf_counter()
mason.load_module(path)
t2 = time.perf_counter()
print(t1 - t0, t2 - t1)
"""


def _one(src: str, path: str) -> tuple[float, float]:
    env = dict(os.environ, PYTHONPATH=src, PYTHONHASHSEED="0")
    out = subprocess.run([sys.executable, "-c", _CHILD, path], env=env, capture_output=True, text=True, check=True)
    save, load = map(float, out.stdout.split())
    return save, load


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", help="first source tree (the folder that holds the mason package)")
    parser.add_argument("b", help="second source tree")
    parser.add_argument("--runs", type=int, default=21, help="fresh interpreters per tree (default 21)")
    parser.add_argument("--tmpdir", default="/dev/shm" if os.path.isdir("/dev/shm") else None)
    args = parser.parse_args(argv)
    trees = [os.path.abspath(args.a), os.path.abspath(args.b)]
    times: dict[str, list[tuple[float, float]]] = {tree: [] for tree in trees}
    with tempfile.TemporaryDirectory(dir=args.tmpdir) as tmp:
        for run in range(args.runs):
            for tree in trees if run % 2 == 0 else trees[::-1]:
                times[tree].append(_one(tree, os.path.join(tmp, "tiny.mason")))
    for label, tree in zip("AB", trees):
        saves = [s for s, _ in times[tree]]
        loads = [x for _, x in times[tree]]
        print(
            f"{label} {tree}: first save {statistics.median(saves) * 1e3:.3f} ms, "
            f"first load {statistics.median(loads) * 1e3:.3f} ms (medians of {args.runs})"
        )


if __name__ == "__main__":
    main()
