"""Crashes and races while saving: nothing lost.

A child interpreter builds a session in ``__main__`` (numpy arrays, data, a
function, a class) and saves it to one path again and again, each save with
a new ``gen_<n>`` variable; the test kills it with SIGKILL at a random moment
(seeded: the seed is in every failure message; MASON_CRASH_SEED=<seed>
repeats the delays) and then checks that the path holds the complete
previous save or the complete new one, never anything else, and that
temporaries of killed saves do not pile up.  20 kills of a ~24 MB session in
the normal run, 200 of a ~256 MB session with ``--runslow``.

Two writers saving different sessions to one path, with a reader checking
the file meanwhile: it is always one complete session of one of them.
"""

from __future__ import annotations

import io
import os
import random
import select
import signal
import statistics
import subprocess
import sys
import time
import types

import pytest
from conftest import run_python

import mason
from mason._format import ContainerReader
from mason._storage import local

pytest.importorskip("numpy")
pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL (POSIX)")

SAVER = r"""
import sys
import time

import numpy as np

import mason

path, first, megabytes = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
big = np.arange(int(megabytes * 2**20) // 8, dtype=np.float64)
parts = [np.full(4096, i, dtype=np.int32) for i in range(8)]
table = {f"k{i}": list(range(i)) for i in range(200)}
text = "session " * 5000

def area(r):
    return 3 * r * r

class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y

origin = Point(3, 4)
print("ready", flush=True)
for generation in range(first, first + 10_000):
    globals().pop(f"gen_{generation - 1}", None)
    globals()[f"gen_{generation}"] = generation
    stamp = np.full(16, generation)
    started = time.perf_counter()
    mason.dump_module(path)
    # One write per line: a kill between print()'s pieces must not leave half a report.
    sys.stdout.write(f"saved {generation} {time.perf_counter() - started}\n")
    sys.stdout.flush()
"""

SAVED_NAMES = {
    "__builtins__",
    "big",
    "parts",
    "table",
    "text",
    "area",
    "Point",
    "origin",
    "stamp",
    "generation",
    "started",
}


def temporaries(directory) -> list[str]:
    return sorted(name for name in os.listdir(directory) if local._TEMP_MARK in name)


def _temp_pid(target, name: str) -> int:
    return int(name[len(local._temp_prefix(target)) :].partition("-")[0])


def _generation(path) -> int | None:
    """The generation a complete, verified session file holds (None: no file)."""
    if not path.exists():
        return None
    with ContainerReader.open(path) as reader:
        reader.verify()  # every record's checksum
    names = set(mason.inspect(path).names())
    generations = [name for name in names if name.startswith("gen_")]
    assert len(generations) == 1, f"not one generation variable: {sorted(names)}"
    missing = SAVED_NAMES - names - {"__builtins__"}
    assert not missing, f"variables missing: {missing}"
    return int(generations[0][4:])


def _seed() -> int:
    return int(os.environ.get("MASON_CRASH_SEED") or random.SystemRandom().randrange(1 << 32))


def _wait_for_line(proc: subprocess.Popen, timeout: float) -> str:
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    return proc.stdout.readline() if ready else ""


def kill_saves(tmp_path, kills: int, megabytes: float, sample_every: int) -> list[str]:
    """Kill ``kills`` saving children at random moments, checking the file after each."""
    seed = _seed()
    rng = random.Random(seed)
    path = tmp_path / "session.mason"
    script = tmp_path / "saver.py"
    script.write_text(SAVER)
    # A first child, killed after its first save, tells how long a save takes
    # here: the kill window (2.5 saves from "ready") follows the reports.
    calibrate = subprocess.Popen(
        [sys.executable, str(script), str(path), "0", str(megabytes)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        lines = [_wait_for_line(calibrate, 120), _wait_for_line(calibrate, 600)]
    finally:
        calibrate.kill()
        out, err = calibrate.communicate()
    assert lines[1].startswith("saved 0 "), f"the saving child failed:\n{lines}\n{err}"
    durations = [float(line.split()[2]) for line in [lines[1], *out.splitlines()] if line.startswith("saved")]
    held = _generation(path)  # the generation the file holds
    first = held + 2  # of the next child
    stale_ok = {calibrate.pid}  # pids whose temporaries may still be there
    log = []
    midway = newer = 0  # kills that left a temporary; kills after which the file was newer
    for kill in range(kills):
        window = 2.5 * statistics.median(durations[-9:])
        delay = rng.uniform(0, window)
        proc = subprocess.Popen(
            [sys.executable, str(script), str(path), str(first), str(megabytes)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
        )
        try:
            line = _wait_for_line(proc, 120)
            time.sleep(delay)
        finally:
            proc.kill()
            out, err = proc.communicate()
        where = (
            f"seed {seed} (MASON_CRASH_SEED), kill {kill}: SIGKILL {delay:.3f} s after ready (window {window:.3f} s)"
        )
        assert line == "ready\n", f"{where}: the child did not start:\n{line}{out}\n{err}"
        assert proc.returncode == -signal.SIGKILL, f"{where}: the child ended by itself ({proc.returncode}):\n{err}"
        reports = [line.split() for line in out.splitlines() if line.startswith("saved ")]
        reports = [fields for fields in reports if len(fields) == 3]  # a kill can cut the last line
        saved = [int(fields[1]) for fields in reports]
        durations += [float(fields[2]) for fields in reports]
        if not saved and delay > statistics.median(durations[-9:]):
            durations.append(delay)  # saves got slower (writeback): one took longer than this
        in_flight = saved[-1] + 1 if saved else first
        allowed = {saved[-1] if saved else held, in_flight}
        try:
            found = _generation(path)
        except Exception as exc:
            raise AssertionError(
                f"{where}: the file is not a complete session: {exc!r}\nsaves reported: {saved}; before: {held}"
            ) from exc
        assert found in allowed, f"{where}: the file holds generation {found}, expected one of {allowed}"
        # A save removes the temporaries of dead writers before writing its own:
        # only children that never completed a save since then may have left one.
        stale_ok = {proc.pid} if saved else stale_ok | {proc.pid}
        left = temporaries(tmp_path)
        strays = [name for name in left if _temp_pid(path, name) not in stale_ok]
        assert not strays, f"{where}: temporaries of earlier saves were not cleaned: {strays}"
        if sample_every and (kill % sample_every == 0 or kill == kills - 1) and found is not None:
            run_python(
                f"""
                import mason
                mason.load_module({str(path)!r})
                assert gen_{found} == {found} and (stamp == {found}).all()
                assert big.nbytes == {int(megabytes * 2**20) // 8 * 8} and big[-1] == big.size - 1
                assert [int(p[0]) for p in parts] == list(range(8)) and table['k5'] == [0, 1, 2, 3, 4]
                assert area(2) == 12 and (origin.x, origin.y) == (3, 4) and isinstance(origin, Point)
                """,
                cwd=tmp_path,
            )
        log.append(
            f"kill {kill}: {delay:.3f}s of {window:.3f}s, {len(saved)} saves, file gen {found}, {len(left)} temporaries"
        )
        midway += any(_temp_pid(path, name) == proc.pid for name in left)
        newer += found != held
        held = found
        first = in_flight + 1
    # The kills must have hit both inside a save and after one (if not, the
    # window above is wrong, and the test would test little).
    assert midway and newer, f"seed {seed}: {midway} kills inside a save, {newer} after one:\n" + "\n".join(log)
    # One more save, in this process: every stale temporary goes.
    module = types.ModuleType("after")
    module.x = 1
    mason.dump_module(path, module=module)
    assert temporaries(tmp_path) == [], f"seed {seed}: temporaries left after a following save"
    assert mason.load_module_asdict(path)["x"] == 1
    log.append(f"seed {seed}: {kills} kills, {midway} inside a save, {newer} after a new file was in place")
    return log


def test_killed_saves_leave_old_or_new_file(tmp_path):
    kill_saves(tmp_path, kills=20, megabytes=24, sample_every=6)


@pytest.mark.slow
def test_killed_saves_many(tmp_path):
    log = kill_saves(tmp_path, kills=200, megabytes=256, sample_every=20)
    print("\n".join(log[-3:]))


# --------------------------------------------------------- concurrent writers

WRITER = r"""
import sys

import numpy as np

import mason

path, who, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
values = np.full(250_000, {"A": 1.0, "B": 2.0}[who])
labels = [who] * 1000
if who == "A":
    only_a = True
else:
    only_b = True

def whoami():
    return who

for round_no in range(rounds):
    mason.dump_module(path)
print("done", rounds)
"""


def _check_snapshot(namespace: dict, names: set[str] | None = None) -> str:
    who = namespace["who"]
    assert who in ("A", "B"), who
    assert (namespace["values"] == {"A": 1.0, "B": 2.0}[who]).all(), f"{who}'s values are mixed"
    assert namespace["labels"] == [who] * 1000 and namespace["whoami"]() == who
    assert ("only_a" in namespace) == (who == "A") and ("only_b" in namespace) == (who == "B")
    if names is not None:
        assert names == {n for n in namespace if n not in ("__session__", "__name__", "__builtins__")}, names
    return who


def concurrent_writers(tmp_path, rounds: int) -> dict[str, int]:
    path = tmp_path / "shared.mason"
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    writers = [
        subprocess.Popen(
            [sys.executable, str(script), str(path), who, str(rounds)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
        )
        for who in ("A", "B")
    ]
    seen = {"A": 0, "B": 0}
    try:
        reads = 0
        while any(w.poll() is None for w in writers):
            if not path.exists():
                time.sleep(0.005)
                continue
            reads += 1
            if reads % 2:
                # One snapshot of the bytes, checked three ways.
                data = path.read_bytes()
                ContainerReader.open(data).verify()
                names = set(mason.inspect(io.BytesIO(data)).names())
                who = _check_snapshot(mason.load_module_asdict(io.BytesIO(data)), names)
            else:
                # Straight from the path (memory-mapped) while it is being replaced.
                who = _check_snapshot(mason.load_module_asdict(path))
            seen[who] += 1
    finally:
        results = [w.communicate(timeout=120) for w in writers]
    for writer, (out, err) in zip(writers, results):
        assert writer.returncode == 0 and out.startswith("done"), f"a writer failed:\n{err}"
    seen[_check_snapshot(mason.load_module_asdict(path))] += 1
    run_python(
        f"""
        import mason
        mason.load_module({str(path)!r})
        assert who in ('A', 'B') and (values == {{'A': 1.0, 'B': 2.0}}[who]).all() and whoami() == who
        assert labels == [who] * 1000 and ('only_a' in globals()) == (who == 'A')
        """,
        cwd=tmp_path,
    )
    assert temporaries(tmp_path) == []
    return seen


def test_concurrent_writers_leave_one_complete_session(tmp_path):
    concurrent_writers(tmp_path, rounds=20)


@pytest.mark.slow
def test_concurrent_writers_many_rounds(tmp_path):
    print(concurrent_writers(tmp_path, rounds=100))
