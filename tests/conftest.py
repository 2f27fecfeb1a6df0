"""Shared test helpers: fresh interpreters for round trips."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", help="run slow tests too")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: use --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def run_python(code: str, *, cwd=None, env=None, check=True, timeout=120) -> subprocess.CompletedProcess:
    """Run ``code`` as ``__main__`` of a fresh interpreter."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"fresh interpreter failed (exit {proc.returncode})\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
        )
    return proc


@pytest.fixture
def fresh(tmp_path):
    """``fresh(setup, check, dump_args='')``: ``setup`` binds ``obj`` in
    ``__main__`` of one interpreter, which dumps it; a second interpreter
    loads it as ``obj`` and runs ``check`` (plain asserts)."""

    def roundtrip(setup: str, check: str, dump_args: str = "", load_args: str = ""):
        path = tmp_path / "obj.pkl"
        sep = ", " if dump_args else ""
        run_python(
            textwrap.dedent(setup)
            + f"\nimport mason\nwith open({str(path)!r}, 'wb') as _f:\n    mason.dump(obj, _f{sep}{dump_args})\n",
            cwd=tmp_path,
        )
        sep = ", " if load_args else ""
        run_python(
            f"import mason\nwith open({str(path)!r}, 'rb') as _f:\n    obj = mason.load(_f{sep}{load_args})\n"
            + textwrap.dedent(check),
            cwd=tmp_path,
        )

    return roundtrip
