"""Checkpoints taken by a forked child (mason._store.background, behind
``%autocheckpoint``): the caller's state at the fork is what is saved, the
caller learns the new checkpoint's id, and a child that fails or is killed
is reported without leaving anything half listed.  Each test drives a fresh
interpreter, which forks."""

from __future__ import annotations

import json
import os
import sys

import pytest
from conftest import run_python

import mason
from mason._store import background

pytest.importorskip("numpy")
pytestmark = pytest.mark.skipif(not hasattr(os, "fork") or sys.platform == "win32", reason="needs fork()")

SETUP = r"""
import json, os, sys
import numpy as np
import mason
from mason._store import api, background
store = sys.argv[1] if len(sys.argv) > 1 else STORE
weights = np.zeros(2_000_000)
label = "before"
"""


def _script(store, body: str) -> str:
    return SETUP.replace("STORE", repr(str(store))) + body


def test_the_child_saves_the_state_at_the_fork_and_the_caller_learns_its_id(tmp_path):
    store = tmp_path / "store"
    proc = run_python(
        _script(
            store,
            r"""
pending = background.start(lambda: mason.checkpoint(store, message="forked"))
weights += 1            # the caller goes on at once; the child saw the state at the fork
label = "after"
outcome = pending.wait()
assert pending.done() and outcome.error is None, outcome
following = mason.checkpoint(store, message="in the caller")
print(json.dumps({"id": outcome.id, "following": following, "pid": os.getpid()}))
""",
        ),
    )
    said = json.loads(proc.stdout)
    history = mason.checkpoints(str(store))
    assert [c.id for c in history] == [said["id"], said["following"]]
    assert history[1].parent == said["id"]  # the caller named the child's checkpoint as parent
    first = mason.restore_asdict(str(store), id=said["id"], names=["weights", "label"])
    assert first["label"] == "before" and first["weights"].max() == 0.0
    second = mason.restore_asdict(str(store), id=said["following"], names=["weights", "label"])
    assert second["label"] == "after" and second["weights"].min() == 1.0


def test_a_failed_checkpoint_is_reported_and_nothing_is_listed(tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the store should be")
    proc = run_python(
        _script(
            blocker,
            r"""
outcome = background.start(lambda: mason.checkpoint(store)).wait()
print(json.dumps(outcome._asdict()))
""",
        ),
    )
    outcome = json.loads(proc.stdout)
    assert outcome["id"] is None and outcome["error"], outcome
    assert blocker.read_text() == "a file where the store should be"


def test_a_killed_child_is_reported_and_the_store_keeps_every_listed_checkpoint(tmp_path):
    store = tmp_path / "store"
    proc = run_python(
        _script(
            store,
            r"""
import time
kept = mason.checkpoint(store, message="kept")
weights[:] = 7
pending = background.start(lambda: (time.sleep(30), mason.checkpoint(store))[1])
time.sleep(0.5)
os.kill(pending.pid, 9)
outcome = pending.wait(timeout=60)
print(json.dumps({"kept": kept, "outcome": outcome._asdict()}))
""",
        ),
    )
    said = json.loads(proc.stdout)
    assert said["outcome"]["id"] is None and "SIGKILL" in said["outcome"]["error"], said
    assert [c.id for c in mason.checkpoints(str(store))] == [said["kept"]]
    assert mason.verify_store(str(store)).checkpoints == 1


def test_cancel_ends_a_running_child(tmp_path):
    store = tmp_path / "store"
    proc = run_python(
        _script(
            store,
            r"""
import time
pending = background.start(lambda: (time.sleep(30), mason.checkpoint(store))[1])
started = time.monotonic()
outcome = pending.cancel()
print(json.dumps({"outcome": outcome._asdict(), "waited": time.monotonic() - started}))
""",
        ),
    )
    said = json.loads(proc.stdout)
    assert said["outcome"]["id"] is None and "SIGKILL" in said["outcome"]["error"]
    assert said["waited"] < 20  # not the child's 30 s sleep
    assert not store.exists()


def test_the_child_ignores_interrupts_and_leaves_the_process_group(tmp_path):
    store = tmp_path / "store"
    proc = run_python(
        _script(
            store,
            r"""
import signal, time
pending = background.start(lambda: (time.sleep(1), mason.checkpoint(store))[1])
time.sleep(0.3)
group = os.getpgid(pending.pid)
os.kill(pending.pid, signal.SIGINT)   # what an interrupted kernel's group gets
outcome = pending.wait()
print(json.dumps({"outcome": outcome._asdict(), "own_group": group == pending.pid != os.getpgid(0)}))
""",
        ),
    )
    said = json.loads(proc.stdout)
    assert said["outcome"]["error"] is None and said["outcome"]["id"], said
    assert said["own_group"], said


def test_what_cannot_be_checkpointed_in_a_child_is_named():
    assert background.unsuitable("s3://bucket/store") == "the store is remote"
    proc = run_python(
        r"""
import sys, types
from mason._store import background
assert background.unsuitable("/tmp/x") is None
sys.modules["distributed"] = types.ModuleType("distributed")
print(background.unsuitable("/tmp/x"))
"""
    )
    assert proc.stdout.strip() == "Dask's distributed is imported"


def test_the_child_writes_nothing_to_the_callers_streams(tmp_path):
    store = tmp_path / "store"
    proc = run_python(
        _script(
            store,
            r"""
import warnings
def noisy():
    print("from the child's stdout")
    os.write(2, b"from the child's fd 2\n")
    warnings.warn("a warning in the child")
    return mason.checkpoint(store)
outcome = background.start(noisy).wait()
print(json.dumps(outcome._asdict()))
""",
        ),
    )
    outcome = json.loads(proc.stdout)
    assert outcome["id"] and ["UserWarning", "a warning in the child"] in outcome["warnings"]
    assert "child" not in proc.stderr


def test_the_time_limit_ends_a_stuck_child(tmp_path):
    store = tmp_path / "store"
    proc = run_python(
        _script(
            store,
            r"""
import threading, time
background.TIME_LIMIT = 1
held = threading.Lock()
held.acquire()                      # as if another thread held it at the fork
outcome = background.start(lambda: held.acquire() and mason.checkpoint(store)).wait(timeout=30)
print(json.dumps(outcome._asdict() if outcome else None))
""",
        ),
    )
    outcome = json.loads(proc.stdout)
    assert outcome is not None and outcome["id"] is None and "SIGALRM" in outcome["error"], outcome
    assert not store.exists()  # it never got as far as the store


def test_the_child_never_runs_the_callers_finalizers(tmp_path):
    store = tmp_path / "store"
    log = tmp_path / "finalized"
    proc = run_python(
        _script(
            store,
            r"""
import gc
gc.disable()
class Temporary:
    def __del__(self):
        with open(LOG, "a") as f:
            f.write(f"{os.getpid()}\n")
cycle = Temporary()
cycle.me = cycle
del cycle                               # garbage, not collected yet
pending = background.start(lambda: (gc.collect(), mason.checkpoint(store))[1])
outcome = pending.wait()
gc.collect()                            # the caller's own collection finalizes it, once
print(json.dumps({"id": outcome.id, "child": pending.pid, "me": os.getpid()}))
""".replace("LOG", repr(str(log))),
        ),
    )
    said = json.loads(proc.stdout)
    assert said["id"]
    assert log.read_text().split() == [str(said["me"])]


def test_a_checkpoint_outlives_its_kernel_killed_with_its_process_group(tmp_path):
    """What Jupyter does to a kernel it restarts (SIGKILL to the kernel's
    process group) right after a cell: the checkpoint still completes."""
    import subprocess
    import time

    store = tmp_path / "store"
    code = _script(
        store,
        r"""
import time
class Slow:
    def __reduce__(self):
        time.sleep(1.0)
        return (Slow, ())
marker = Slow()
pending = background.start(lambda: mason.checkpoint(store, message="outlived"))
print(pending.pid, flush=True)
time.sleep(60)
""",
    )
    kernel = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        child = int(kernel.stdout.readline())
        os.killpg(kernel.pid, 9)
        kernel.wait(timeout=30)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (store.exists() and mason.checkpoints(str(store))):
            time.sleep(0.1)
    finally:
        if kernel.poll() is None:
            kernel.kill()
        kernel.stdout.close()
    assert [c.message for c in mason.checkpoints(str(store))] == ["outlived"]
    assert mason.restore_asdict(str(store), names=["label"])["label"] == "before"
    with pytest.raises(ProcessLookupError):  # it ended on its own
        for _ in range(100):
            os.kill(child, 0)
            time.sleep(0.1)


@pytest.mark.skipif(not os.path.exists("/proc/self/oom_score_adj"), reason="Linux only")
def test_the_child_yields_to_the_caller_for_memory_and_cpu(tmp_path):
    store = tmp_path / "store"
    proc = run_python(
        _script(
            store,
            r"""
def run():
    with open("/proc/self/oom_score_adj") as fh:
        adj = int(fh.read())
    return mason.checkpoint(store, message=f"{adj} {os.nice(0)}")
outcome = background.start(run).wait()
print(json.dumps(outcome._asdict()))
""",
        ),
    )
    outcome = json.loads(proc.stdout)
    assert outcome["error"] is None, outcome
    adj, nice = map(int, mason.checkpoints(str(store))[0].message.split())
    assert adj >= 500 and nice >= 5


def test_a_kernel_bigger_than_free_memory_checkpoints_itself(monkeypatch):
    real_open = open

    def fake(path, *args, **kwds):
        if path == "/proc/meminfo":
            import io

            return io.BytesIO(b"MemTotal: 1000 kB\nMemAvailable: 1 kB\n")
        return real_open(path, *args, **kwds)

    monkeypatch.setattr("builtins.open", fake)
    reason = background._memory_problem()  # what unsuitable() says, when nothing else is first
    assert reason is not None and "of memory are free" in reason, reason
