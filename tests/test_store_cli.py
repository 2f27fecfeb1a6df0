"""``mason store ...``: the checkpoint history from the command line, run as
a user runs it (the console script, in fresh processes)."""

from __future__ import annotations

import json
import re

import pytest
from conftest import run_python
from test_cli import run_cli

import mason

pytest.importorskip("numpy")

HISTORY = """
import numpy as np
import mason
big = np.arange(600_000, dtype=np.float64)
notes = ["first"]
def total():
    return float(big.sum()) + len(notes)
mason.checkpoint("store", message="first")
big[:100] = -1.0
notes.append("second")
extra = {"k": 1}
mason.checkpoint("store", message="second")
"""


@pytest.fixture
def history(tmp_path):
    run_python(HISTORY, cwd=tmp_path)
    return tmp_path


def store_cli(history, *argv, **kwds):
    return run_cli("store", *argv, "--store", history / "store", cwd=history, **kwds)


def test_list_and_show(history):
    listing = store_cli(history, "list")
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    assert lines[0].split() == ["#", "id", "created", "variables", "size", "written", "message"]
    assert lines[1].split()[0] == "0" and lines[1].rstrip().endswith("first")
    assert lines[2].split()[0] == "1" and lines[2].rstrip().endswith("second")
    rows = json.loads(store_cli(history, "list", "--json").stdout)
    assert [r["message"] for r in rows] == ["first", "second"] and rows[1]["parent"] == rows[0]["id"]
    assert rows[1]["bytes_written"] < rows[0]["bytes_written"]
    shown = store_cli(history, "show", rows[0]["id"].split("-")[-1])
    assert shown.returncode == 0, shown.stderr
    assert f"checkpoint #0 {rows[0]['id']}" in shown.stdout and "message   first" in shown.stdout
    assert re.search(r"^big\s+numpy\.ndarray", shown.stdout, re.M) and "extra" not in shown.stdout
    assert "total" in shown.stdout and "a restricted load would refuse" in shown.stdout
    data = json.loads(store_cli(history, "show", "-1", "--json").stdout)
    assert data["checkpoint"]["message"] == "second" and "extra" in [v["name"] for v in data["variables"]]


def test_diff_names_what_changed(history):
    diff = store_cli(history, "diff", "0", "1")
    assert diff.returncode == 1, diff.stderr  # differences
    assert "+ extra" in diff.stdout and "~ big" in diff.stdout and "~ notes" in diff.stdout
    data = json.loads(store_cli(history, "diff", "0", "-1", "--json").stdout)
    assert data["added"] == ["extra"] and data["removed"] == [] and {"big", "notes"} <= set(data["changed"])
    same = store_cli(history, "diff", "1", "1")
    assert same.returncode == 0 and "no difference" in same.stdout


def test_restore_checks_exports_and_opens_a_prompt(history):
    check = store_cli(history, "restore", "0")
    assert check.returncode == 0, check.stderr
    assert re.fullmatch(r"restored \d+ variables from \S+@\S+ into __main__\n", check.stdout)
    out = history / "first.mason"
    export = store_cli(history, "restore", "0", "--to", out)
    assert export.returncode == 0, export.stderr
    got = mason.load_module_asdict(out)
    assert got["notes"] == ["first"] and got["big"][0] == 0.0 and "extra" not in got
    prompt = store_cli(history, "restore", "-1", "-i", "--plain", stdin="print('T', total(), notes)\n")
    assert prompt.returncode == 0, prompt.stderr
    assert f"T {float(sum(range(600_000)) - 100 - sum(range(100)) + 2)} ['first', 'second']" in prompt.stdout
    some = store_cli(history, "restore", "0", "--names", "notes")
    assert some.returncode == 0 and "restored 1 variable" in some.stdout
    bad = store_cli(history, "restore", "0", "--names", "nope")
    assert bad.returncode == 2 and "nope" in bad.stderr


def test_errors_are_one_line(history):
    for argv in (("show", "nosuch"), ("show", "7"), ("restore", "nosuch")):
        proc = store_cli(history, *argv)
        assert proc.returncode != 0 and proc.stderr.startswith("mason: error:"), (argv, proc.stderr)
        assert "Traceback" not in proc.stderr
    typo = run_cli("store", "list", "--store", history / "stroe", cwd=history)
    assert typo.returncode == 1 and "no checkpoint store here" in typo.stderr, typo.stderr


def test_verify_finds_damage_and_prune_frees_space(history):
    ok = store_cli(history, "verify")
    assert ok.returncode == 0 and "OK: 2 checkpoints" in ok.stdout, ok.stderr
    pruned = store_cli(history, "prune", "--keep", "1")
    assert pruned.returncode == 0 and "removed 1 checkpoint, kept 1" in pruned.stdout, pruned.stderr
    [left] = json.loads(store_cli(history, "list", "--json").stdout)
    assert left["message"] == "second"
    assert store_cli(history, "restore").returncode == 0
    # damage one object: verify names the problem and fails
    objects = sorted((history / "store").rglob("objects/*/*"), key=lambda p: p.stat().st_size)
    victim = objects[-1]
    data = bytearray(victim.read_bytes())
    data[-1] ^= 0xFF
    victim.write_bytes(bytes(data))
    bad = store_cli(history, "verify")
    assert bad.returncode == 1 and bad.stderr.startswith("mason: error:"), bad.stderr
    restore = store_cli(history, "restore")
    assert restore.returncode == 1 and "mason: error:" in restore.stderr, restore.stderr
