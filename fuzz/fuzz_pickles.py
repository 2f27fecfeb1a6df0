"""The property of tests/test_fuzz_pickles.py, at scale (opt-in; not run in CI).

    .venv/bin/python fuzz/fuzz_pickles.py --examples 20000 [--seconds 300] [--seed 1]

Draws cases (one to three generated pickle streams and an allowlist) with the
test's hypothesis strategies and runs each through ``mason.loads``, the
restricted machine alone, ``load_module_asdict`` of a session holding them
and ``mason inspect/verify/diff``.  Findings (a marker file, an import of
``evilmod``, an error that is not a mason error, a slow call, changed
process-wide state) are collected, not fatal: the run goes on and prints
each with the case that caused it.  At the end it prints what it covered:
cases and streams run, the opcodes emitted, outcomes per step (loaded,
refused, malformed), who refused what (the scan, or the machine alone,
which must refuse on its own), and the slowest call.

Exit status: 0 without findings, 1 with.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import pickletools
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

import test_fuzz_pickles as fuzz
from hypothesis import HealthCheck, Phase, given, seed, settings


class OutOfTime(BaseException):
    """Not an Exception: hypothesis lets it through (ends the run, no shrinking)."""


def run(examples: int, seconds: float, seed_value: int | None) -> tuple[fuzz.Stats, dict, float]:
    stats = fuzz.Stats()
    findings: dict[str, list] = {}  # message -> [count, the first case]
    started = time.perf_counter()

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=fuzz.cases())
    def property_(case):
        if time.perf_counter() - started > seconds:
            raise OutOfTime
        try:
            fuzz.run_case(case, trap, stats)
        except (fuzz.Finding, fuzz.Hang) as finding:
            message = f"{type(finding).__name__}: {finding}"[:300]
            findings.setdefault(message, [0, case])[0] += 1

    if seed_value is not None:
        property_ = seed(seed_value)(property_)
    with tempfile.TemporaryDirectory(prefix="mason-fuzz-pickles-") as directory, fuzz.Trap(directory) as trap:
        chatter = io.StringIO()  # hypothesis reports the end of time as a failure to reproduce
        try:
            with contextlib.redirect_stdout(chatter):
                property_()
        except OutOfTime:
            pass
        else:
            sys.stdout.write(chatter.getvalue())
    return stats, findings, time.perf_counter() - started


def report(stats: fuzz.Stats, findings: dict, elapsed: float) -> None:
    print(
        f"cases run: {stats.cases}  (pickle streams: {stats.streams})  in {elapsed:.0f} s"
        f"  ({stats.cases / max(elapsed, 1e-9):.0f} cases/s)"
    )
    every = {op.name for op in pickletools.opcodes}
    covered = set(stats.opcodes)
    print(
        f"distinct opcodes emitted: {len(covered)} of {len(every)}"
        f"; the grammar's required set: {len(covered & fuzz.REQUIRED_OPS)} of {len(fuzz.REQUIRED_OPS)}"
    )
    print(f"  never emitted: {', '.join(sorted(every - covered)) or '-'}")
    steps = sorted({step for step, _ in stats.outcomes}, key=_STEP_ORDER.index)
    print("outcomes per step (loaded / refused / malformed / an error that is not a MasonError):")
    for step in steps:
        counts = [stats.outcomes[step, kind] for kind in ("loaded", "refused", "malformed", "foreign")]
        total = sum(counts) or 1
        cells = " / ".join(f"{n} ({100 * n / total:.0f}%)" for n in counts)
        print(f"  {step:15} {cells}")
    print("refusals, by who refused, and the kinds of offender named (the scan names all of a stream's):")
    for who in ("scan", "machine after the scan", "machine alone"):
        kinds = {kind: n for (w, kind), n in stats.refusals.items() if w == who}
        if not kinds:
            continue
        print(f"  {who}: {stats.refused_by[who]} refusals")
        for kind, n in sorted(kinds.items(), key=lambda item: -item[1]):
            sample = stats.samples[who, kind].replace("this file uses ", "")[:110]
            print(f"    {n:7}  {kind:32} e.g. {sample}")
    seconds, step, case = stats.slowest
    print(f"slowest call: {seconds * 1000:.0f} ms ({step})")
    if case is not None:
        print("  " + repr(case).replace("\n", "\n  ")[:3000])
    print(f"findings: {sum(n for n, _ in findings.values())} cases, {len(findings)} distinct")
    for message, (n, case) in list(findings.items())[:10]:
        print(f"- {n} x {message}\n  " + repr(case).replace("\n", "\n  ")[:3000])


_STEP_ORDER = ["loads", "machine", "session-raise", "session-warn", "inspect", "cli-inspect", "cli-verify", "cli-diff"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=20_000, help="cases to run (default 20000)")
    parser.add_argument("--seconds", type=float, default=float("inf"), help="stop after this long")
    parser.add_argument("--seed", type=int, default=None, help="hypothesis seed, to repeat a run")
    args = parser.parse_args(argv)
    stats, findings, elapsed = run(args.examples, args.seconds, args.seed)
    report(stats, findings, elapsed)
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
