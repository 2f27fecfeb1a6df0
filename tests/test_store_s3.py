"""Checkpoint stores on a real S3 API (moto's server on a loopback port),
written and read by fresh interpreters."""

from __future__ import annotations

import textwrap
import uuid

import pytest
from conftest import run_python
from test_remote import BUCKET, options, s3, s3_client  # noqa: F401 - s3 is a fixture

pytest.importorskip("numpy")

PRELUDE = """
import numpy as np
import mason
STORE = {store!r}
OPTIONS = {options!r}
"""


def _run(code: str, store: str, endpoint: str, env: dict, tmp_path):
    prelude = PRELUDE.format(store=store, options=options(endpoint))
    return run_python(prelude + textwrap.dedent(code), cwd=tmp_path, env=env)


def test_checkpoints_on_s3_write_only_what_changed_and_restore(s3, tmp_path):  # noqa: F811
    endpoint, env = s3
    store = f"s3://{BUCKET}/{uuid.uuid4().hex}/history"
    _run(
        """
        big = np.arange(2_000_000, dtype=np.float64)  # 16 MB
        notes = ["first"]
        def scaled(k):
            return big[:3] * k
        first = mason.checkpoint(STORE, message="first", storage_options=OPTIONS)
        big[:1000] = -1.0  # in place: about one chunk changes
        notes.append("second")
        second = mason.checkpoint(STORE, message="second", storage_options=OPTIONS)
        a, b = mason.checkpoints(STORE, storage_options=OPTIONS)
        assert (a.id, b.id) == (first, second) and b.parent == first, (a, b)
        assert a.bytes_written >= 16_000_000, a
        assert b.bytes_written < 0.5 * a.bytes_written, (a.bytes_written, b.bytes_written)
        print(a.bytes_written, b.bytes_written)
        """,
        store,
        endpoint,
        env,
        tmp_path,
    )
    proc = _run(
        """
        first, second = mason.checkpoints(STORE, storage_options=OPTIONS)
        old = mason.restore_asdict(STORE, id=first.id, storage_options=OPTIONS)
        assert old["notes"] == ["first"] and old["big"][0] == 0.0 and old["big"][-1] == 1_999_999.0
        mason.restore(STORE, storage_options=OPTIONS)  # the latest, into __main__
        assert notes == ["first", "second"] and big[999] == -1.0 and big[1000] == 1000.0
        assert list(scaled(2)) == [-2.0, -2.0, -2.0]
        report = mason.verify_store(STORE, storage_options=OPTIONS)
        assert report.checkpoints == 2, report
        mason.prune(STORE, keep=1, storage_options=OPTIONS)
        [left] = mason.checkpoints(STORE, storage_options=OPTIONS)
        assert left.id == second.id
        assert mason.restore_asdict(STORE, storage_options=OPTIONS)["notes"] == ["first", "second"]
        assert mason.verify_store(STORE, storage_options=OPTIONS).unreferenced == 0
        print("ok")
        """,
        store,
        endpoint,
        env,
        tmp_path,
    )
    assert "ok" in proc.stdout


def test_two_writers_on_one_s3_store(s3, tmp_path):  # noqa: F811
    import subprocess
    import sys

    endpoint, env = s3
    store = f"s3://{BUCKET}/{uuid.uuid4().hex}/shared"
    code = PRELUDE.format(store=store, options=options(endpoint)) + textwrap.dedent(
        """
        import sys
        who = sys.argv[1]
        data = np.full(300_000, float(len(who)))
        ids = [mason.checkpoint(STORE, message=f"{who} {i}", storage_options=OPTIONS) for i in range(3)]
        print(" ".join(ids))
        """
    )
    import os

    full_env = {**os.environ, **env}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, who],
            cwd=tmp_path,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for who in ("alice", "bob")
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    for proc, (_out, err) in zip(procs, outs):
        assert proc.returncode == 0, err
    made = {i for out, _ in outs for i in out.split()}
    assert len(made) == 6
    proc = _run(
        f"""
        listed = mason.checkpoints(STORE, storage_options=OPTIONS)
        assert {{c.id for c in listed}} == {made!r}, listed
        for c in listed:
            got = mason.restore_asdict(STORE, id=c.id, storage_options=OPTIONS)
            assert float(got["data"][0]) == len(c.message.split()[0]), (c.message, got["data"][0])
        print("ok")
        """,
        store,
        endpoint,
        env,
        tmp_path,
    )
    assert "ok" in proc.stdout
    assert s3_client(endpoint)  # the server is still up
