"""Crashes, concurrent writers and prune, on checkpoint stores.

A child interpreter checkpoints a changing session again and again into one
store; the test kills it with SIGKILL at random moments (seeded: the seed is
in every failure message; MASON_CRASH_SEED=<seed> repeats the delays), and
after each kill checks that every listed checkpoint is complete (every
object of every listed checkpoint verified), that every checkpoint the child
reported is listed, and now and then restores the latest in a fresh
interpreter.  12 kills of a ~16 MB session in the normal run, 100 of a
~128 MB session with ``--runslow``.

Two writers checkpointing into one store both succeed; a prune that runs
while a writer checkpoints never removes what a listed checkpoint needs.
"""

from __future__ import annotations

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
from mason._store import layout, locks
from mason._store.catalog import Store, init_store

pytest.importorskip("numpy")
pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL (POSIX)")

CHECKPOINTER = r"""
import sys
import time

import numpy as np

import mason

store, first, megabytes = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
big = np.arange(int(megabytes * 2**20) // 8, dtype=np.float64)
parts = [np.full(4096, i, dtype=np.int32) for i in range(8)]
table = {f"k{i}": list(range(i)) for i in range(200)}

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
    fresh = np.random.default_rng(generation).random(big.size // 8)  # new data: objects to write
    where = (generation * 7919) % (big.size - 1000)
    big[where : where + 1000] = -generation      # an in-place change somewhere
    started = time.perf_counter()
    ident = mason.checkpoint(store, message=f"gen {generation}")
    big[where : where + 1000] = np.arange(where, where + 1000)
    # One write per line: a kill between print()'s pieces must not leave half a report.
    sys.stdout.write(f"saved {generation} {ident} {time.perf_counter() - started}\n")
    sys.stdout.flush()
"""


def _seed() -> int:
    return int(os.environ.get("MASON_CRASH_SEED") or random.SystemRandom().randrange(1 << 32))


def _wait_for_line(proc: subprocess.Popen, timeout: float) -> str:
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    return proc.stdout.readline() if ready else ""


def _start(script, store, first, megabytes, cwd) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(script), str(store), str(first), str(megabytes)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
    )


def _check_latest(store, cwd, megabytes: float) -> None:
    run_python(
        f"""
        import mason, numpy as np
        latest = mason.checkpoints({str(store)!r})[-1]
        mason.restore({str(store)!r}, latest.id)
        g = int(latest.message.split()[1])
        assert globals()[f'gen_{{g}}'] == g and (stamp == g).all()
        assert (fresh == np.random.default_rng(g).random(big.size // 8)).all()
        where = (g * 7919) % (big.size - 1000)
        assert (big[where : where + 1000] == -g).all()
        assert big.size == {int(megabytes * 2**20) // 8} and big[(where + 5000) % big.size] == (where + 5000) % big.size
        assert [int(p[0]) for p in parts] == list(range(8)) and table['k5'] == [0, 1, 2, 3, 4]
        assert area(2) == 12 and (origin.x, origin.y) == (3, 4) and isinstance(origin, Point)
        """,
        cwd=cwd,
    )


def kill_checkpoints(tmp_path, kills: int, megabytes: float, sample_every: int) -> list[str]:
    seed = _seed()
    rng = random.Random(seed)
    store = tmp_path / "store"
    init_store(store, chunk_size=256 << 10)
    script = tmp_path / "checkpointer.py"
    script.write_text(CHECKPOINTER)
    calibrate = _start(script, store, 0, megabytes, tmp_path)
    try:
        lines = [_wait_for_line(calibrate, 120), _wait_for_line(calibrate, 600), _wait_for_line(calibrate, 600)]
    finally:
        calibrate.kill()
        calibrate.communicate()
    assert lines[2].startswith("saved 1 "), f"the checkpointing child failed:\n{lines}"
    durations = [float(line.split()[3]) for line in lines[1:]]
    first = 10
    log: list[str] = []
    midway = 0
    listed_before = len(mason.checkpoints(store))
    garbage = 0
    for kill in range(kills):
        # A few checkpoints' time (each writes about an eighth of the session anew).
        window = max(4 * statistics.median(durations[-9:]), 0.2)
        delay = rng.uniform(0, window)
        proc = _start(script, store, first, megabytes, tmp_path)
        try:
            line = _wait_for_line(proc, 120)
            time.sleep(delay)
        finally:
            proc.kill()
            out, err = proc.communicate()
        where = f"seed {seed} (MASON_CRASH_SEED), kill {kill}: SIGKILL {delay:.3f} s after ready"
        assert line == "ready\n", f"{where}: the child did not start:\n{line}{out}\n{err}"
        assert proc.returncode == -signal.SIGKILL, f"{where}: the child ended by itself:\n{err}"
        reports = [fields for fields in (line.split() for line in out.splitlines()) if len(fields) == 4]
        durations += [float(fields[3]) for fields in reports]
        listed = {c.id: c for c in mason.checkpoints(store)}
        missing = [fields[2] for fields in reports if fields[2] not in listed]
        assert not missing, f"{where}: checkpoints reported done are not listed: {missing}"
        try:
            report = mason.verify_store(store)  # every object of every listed checkpoint
        except mason.CorruptStoreError as exc:
            raise AssertionError(f"{where}: a listed checkpoint is incomplete: {exc}") from exc
        # Listed beyond the reports: the kill came after the entry, before the report.
        after_entry = len(listed) - listed_before - len(reports)
        listed_before = len(listed)
        midway += report.unreferenced > garbage  # this kill cut a checkpoint short
        garbage = report.unreferenced
        if sample_every and (kill % sample_every == 0 or kill == kills - 1):
            _check_latest(store, tmp_path, megabytes)
            # Prune after kills (stale locks and temporaries of killed writers
            # about): what is kept stays whole, and the store stays small.
            mason.prune(store, keep=4, lock_timeout=30)
            mason.verify_store(store)
            garbage = 0
            listed_before = len(mason.checkpoints(store))
        log.append(
            f"kill {kill}: {delay:.3f}s of {window:.3f}s, {len(reports)} reported, {after_entry} listed unreported,"
            f" {report.unreferenced} objects of unfinished checkpoints in all"
        )
        first += len(reports) + 1
    # Killed writers left locks and temporaries; a prune and a checkpoint go ahead anyway.
    result = mason.prune(store, keep=3, lock_timeout=30)
    assert result.kept == 3
    module = types.ModuleType("after")
    module.x = 1
    mason.checkpoint(store, module=module)
    assert os.listdir(store / layout.TMP) == []
    assert mason.verify_store(store).unreferenced == 0
    _check_latest_after = mason.restore_asdict(store, names=["x"])
    assert _check_latest_after["x"] == 1
    assert midway, f"seed {seed}: no kill left a partial checkpoint behind:\n" + "\n".join(log)
    log.append(f"seed {seed}: {kills} kills, {midway} left objects of an unfinished checkpoint")
    return log


def test_killed_checkpoints_leave_every_listed_one_whole(tmp_path):
    print("\n".join(kill_checkpoints(tmp_path, kills=12, megabytes=16, sample_every=4)))


@pytest.mark.slow
def test_killed_checkpoints_many(tmp_path):
    log = kill_checkpoints(tmp_path, kills=100, megabytes=128, sample_every=10)
    print("\n".join(log[-3:]))


# --------------------------------------------------------- concurrent writers and prune

WRITER = r"""
import sys

import numpy as np

import mason

store, who, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
values = np.full(250_000, {"A": 1.0, "B": 2.0, "C": 3.0}[who])
labels = [who] * 1000

def whoami():
    return who

for round_no in range(rounds):
    values[round_no] = -1.0
    mason.checkpoint(store, message=who)
print("done", rounds)
"""


def _start_writer(tmp_path, store, who: str, rounds: int) -> subprocess.Popen:
    script = tmp_path / "writer.py"
    if not script.exists():
        script.write_text(WRITER)
    return subprocess.Popen(
        [sys.executable, str(script), str(store), who, str(rounds)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )


def _check_all(store, tmp_path) -> None:
    """Every listed checkpoint restores to one writer's complete session."""
    mason.verify_store(store)
    for listed in mason.checkpoints(store):
        ns = mason.restore_asdict(store, listed.id)
        who = ns["who"]
        assert who == listed.message and ns["labels"] == [who] * 1000 and ns["whoami"]() == who
        value = {"A": 1.0, "B": 2.0, "C": 3.0}[who]
        changed = ns["round_no"] + 1
        assert (ns["values"][:changed] == -1.0).all() and (ns["values"][changed:] == value).all(), listed.id


def test_concurrent_writers_both_succeed(tmp_path):
    store = tmp_path / "store"
    init_store(store, chunk_size=64 << 10)
    writers = [_start_writer(tmp_path, store, who, 12) for who in ("A", "B")]
    results = [w.communicate(timeout=300) for w in writers]
    for writer, (out, err) in zip(writers, results):
        assert writer.returncode == 0 and out.startswith("done"), f"a writer failed:\n{err}"
    listed = mason.checkpoints(store)
    assert sorted(c.message for c in listed) == ["A"] * 12 + ["B"] * 12
    assert len({c.id for c in listed}) == 24
    # Each writer's parent is its own previous checkpoint (this process's history).
    for who in ("A", "B"):
        mine = [c for c in listed if c.message == who]
        assert [c.parent for c in mine[1:]] == [c.id for c in mine[:-1]]
    _check_all(store, tmp_path)
    run_python(
        f"""
        import mason
        mason.restore({str(store)!r})
        assert who in ('A', 'B') and whoami() == who and labels == [who] * 1000
        """,
        cwd=tmp_path,
    )


def test_prune_while_checkpointing_keeps_what_listed_checkpoints_need(tmp_path):
    store = tmp_path / "store"
    init_store(store, chunk_size=64 << 10)
    writers = [_start_writer(tmp_path, store, who, 25) for who in ("A", "C")]
    prunes = 0
    removed = 0
    try:
        while any(w.poll() is None for w in writers):
            if mason.checkpoints(store):
                report = mason.prune(store, keep=2, lock_timeout=60)
                prunes += 1
                removed += len(report.removed)
                mason.verify_store(store)  # what is listed right now is whole
            time.sleep(0.02)
    finally:
        results = [w.communicate(timeout=300) for w in writers]
    for writer, (out, err) in zip(writers, results):
        assert writer.returncode == 0 and out.startswith("done"), f"a writer failed:\n{err}"
    assert prunes >= 3 and removed, (prunes, removed)
    _check_all(store, tmp_path)
    final = mason.prune(store, keep=1)
    assert final.kept == 1
    _check_all(store, tmp_path)
    assert mason.verify_store(store).unreferenced == 0


def test_prune_removes_only_what_no_kept_checkpoint_uses(tmp_path):
    store = tmp_path / "store"
    init_store(store, chunk_size=64 << 10)
    module = types.ModuleType("prune_case")
    module.shared = np_arange(1 << 17)  # 1 MiB, in every checkpoint
    ids = []
    for i in range(4):
        setattr(module, f"only_{i}", np_arange(1 << 16) + (i + 1) * 10**6)  # 512 KiB each, new every time
        ids.append(mason.checkpoint(store, module=module))
        delattr(module, f"only_{i}")
    report = mason.prune(store, keep=2)
    assert report.removed == tuple(ids[:2]) and report.kept == 2
    assert report.bytes_freed > 2 * (512 << 10) and report.objects_removed >= 2 * 8 + 2
    assert [c.id for c in mason.checkpoints(store)] == ids[2:]
    for ident, i in zip(ids[2:], (2, 3)):
        ns = mason.restore_asdict(store, ident)
        assert (ns["shared"] == np_arange(1 << 17)).all() and ns[f"only_{i}"][0] == (i + 1) * 10**6
    assert mason.verify_store(store).unreferenced == 0
    assert mason.prune(store, keep=0).kept == 0 and mason.checkpoints(store) == []
    assert list(Store.open(store).backend.objects()) == []


def np_arange(n):
    import numpy

    return numpy.arange(n, dtype=numpy.float64)


# --------------------------------------------------------------------- locks

HOLDER = r"""
import sys, time
from mason._store import locks
from mason._store.catalog import Store
lock = locks.acquire(Store.open(sys.argv[1]), sys.argv[2])
print("held", flush=True)
time.sleep(600)
"""


def _hold(tmp_path, store, kind) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(store), kind], stdout=subprocess.PIPE, text=True, cwd=tmp_path
    )
    assert _wait_for_line(proc, 60) == "held\n"
    return proc


def test_prune_waits_for_a_running_checkpoint_and_not_for_a_dead_one(tmp_path):
    store = tmp_path / "store"
    init_store(store)
    holder = _hold(tmp_path, store, locks.CHECKPOINT)
    try:
        started = time.monotonic()
        with pytest.raises(mason.StoreLockedError, match="waits for running checkpoints") as caught:
            mason.prune(store, keep=1, lock_timeout=0.5)
        assert time.monotonic() - started >= 0.5 and f"pid {holder.pid}" in str(caught.value)
        assert isinstance(caught.value, TimeoutError)
        assert len(os.listdir(store / layout.LOCKS)) == 1  # the prune took its own lock back
    finally:
        holder.kill()
        holder.wait()
    # Killed: its lock is stale (its process is gone), and removed by the next prune.
    assert mason.prune(store, keep=1, lock_timeout=5).kept == 0
    assert os.listdir(store / layout.LOCKS) == []


def test_checkpoint_waits_for_a_running_prune(tmp_path):
    store = tmp_path / "store"
    init_store(store)
    holder = _hold(tmp_path, store, locks.PRUNE)
    module = types.ModuleType("waiting_case")
    try:
        with pytest.raises(mason.StoreLockedError, match="waits for a prune"):
            mason.checkpoint(store, module=module, lock_timeout=0.3)
        assert mason.checkpoints(store) == []
    finally:
        holder.kill()
        holder.wait()
    mason.checkpoint(store, module=module, lock_timeout=5)
    assert len(mason.checkpoints(store)) == 1


def test_a_lock_not_refreshed_for_its_lease_is_stale(tmp_path, monkeypatch):
    store = tmp_path / "store"
    init_store(store)
    opened = Store.open(store)
    lock = locks.Lock(opened, locks.CHECKPOINT)
    doc = layout.loads(opened.backend.read(lock.name), lock.name)
    doc.update(host="elsewhere", pid=1, refreshed=time.time() - locks.LEASE - 1)
    opened.backend.write(lock.name, [layout.dumps(doc)])
    assert locks.live(opened, locks.CHECKPOINT) == []  # and removed
    with pytest.raises(mason.StoreError, match="took it for dead"):
        lock.confirm()


class _LockThief:
    """Pickled in the middle of a checkpoint: removes its lock, as a prune that
    took the writer for dead would."""

    def __init__(self, store):
        self.store = store

    def __reduce__(self):
        for name in os.listdir(os.path.join(self.store, layout.LOCKS)):
            os.unlink(os.path.join(self.store, layout.LOCKS, name))
        return (int, (1,))


def test_a_checkpoint_whose_lock_was_taken_is_not_listed(tmp_path):
    store = tmp_path / "store"
    init_store(store)
    module = types.ModuleType("thief_case")
    module.thief = _LockThief(str(store))
    with pytest.raises(mason.StoreError, match="given up"):
        mason.checkpoint(store, module=module)
    assert mason.checkpoints(store) == []
