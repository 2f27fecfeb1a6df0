"""How far a session save is from the C pickler itself, on the same objects.

How to run (from the repository root, with the project's virtualenv)::

    .venv/bin/python benchmarks/bench_floor.py                       # small-objects, full size
    .venv/bin/python benchmarks/bench_floor.py --session code-heavy --repeat 7

One process builds a ``bench_session.py`` session in ``__main__``, then times,
interleaved (the order rotating), each of:

* ``c-pickler``: ``pickle.Pickler(f, protocol=5).dump(variables)`` of the
  user's variables into an in-memory file, with nothing else: no by-value
  classes (``__main__``'s classes are pickled by reference, which only works
  in this process), no file, no checksum.  The floor for any pickle-based save.
* ``mason``: ``mason.dump_module`` of the session to ``--tmpdir``;
* ``dill``: ``dill.dump_module`` of the session to ``--tmpdir``.

Prints medians and the ratios ``dill / c-pickler`` (the most any C-pickler
save can be ahead of dill on this session) and ``dill / mason``.  For the
200k-small-objects session this bounds the "save >= 15x dill" target.
"""

from __future__ import annotations

import argparse
import gc
import io
import os
import pickle
import statistics
import sys
import tempfile
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH_DIR)
sys.path.insert(0, os.path.join(os.path.dirname(BENCH_DIR), "src"))  # this checkout's mason


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--session", default="small-objects", help="a bench_session.py session (default small-objects)")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--tmpdir", default="/dev/shm" if os.path.isdir("/dev/shm") else None)
    args = parser.parse_args(argv)

    import dill
    from bench_session import SESSIONS

    import __main__
    import mason

    exec(SESSIONS[args.session].source(args.scale), __main__.__dict__)
    __main__.__dict__.pop("BENCH_META", None)
    names = [
        k
        for k, v in vars(__main__).items()
        if not k.startswith("_") and type(v).__name__ != "module" and k not in ("dill", "mason", "pickle")
    ]
    variables = {k: vars(__main__)[k] for k in names}
    mason.dumps(1)
    dill.dumps(1)
    where = tempfile.mkdtemp(prefix="mason-bench-floor-", dir=args.tmpdir)
    path = os.path.join(where, "session")

    def c_pickler() -> None:
        pickle.Pickler(io.BytesIO(), protocol=5).dump(variables)

    def mason_save() -> None:
        mason.dump_module(path, module=__main__)

    def dill_save() -> None:
        dill.dump_module(path, module=__main__)

    runs = {"c-pickler": c_pickler, "mason": mason_save, "dill": dill_save}
    samples: dict[str, list[float]] = {k: [] for k in runs}
    order = list(runs)
    for rep in range(args.repeat):
        for name in order[rep % 3 :] + order[: rep % 3]:
            gc.collect()
            started = time.perf_counter()
            runs[name]()
            samples[name].append(time.perf_counter() - started)
            if os.path.exists(path):
                os.unlink(path)
    os.rmdir(where)
    med = {k: statistics.median(v) for k, v in samples.items()}
    print(f"{args.session} (scale {args.scale}), {len(names)} variables, medians of {args.repeat}:")
    for name, value in med.items():
        print(f"  {name:10s} {value:8.3f} s")
    print(f"  dill / c-pickler {med['dill'] / med['c-pickler']:5.1f}x   (the most a C-pickler save can lead dill by)")
    print(f"  dill / mason     {med['dill'] / med['mason']:5.1f}x")
    print(f"  mason / c-pickler {med['mason'] / med['c-pickler']:4.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
