"""The IPython extension: magics in a real Jupyter kernel, and in a plain
InteractiveShell in a fresh interpreter."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import run_python

import mason

needs_ipython = pytest.mark.skipif(importlib.util.find_spec("IPython") is None, reason="IPython is not installed")
needs_kernel = pytest.mark.skipif(
    any(importlib.util.find_spec(name) is None for name in ("IPython", "ipykernel", "jupyter_client")),
    reason="a Jupyter kernel needs IPython, ipykernel and jupyter_client",
)

#: what the first kernel defines and %save_session keeps (tmp* is excluded,
#: the generator cannot be pickled; it sorts last, as a skipped variable
#: currently resets the pickler's memo for the variables after it)
SAVED = {"Point", "data", "math", "p", "scale", "scaled", "square"}

SETUP_CELL = """\
import math
data = {"a": [1, 2, 3], "b": "text"}
scale = 10
def scaled(x):
    return x * scale + len(data["a"])
class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y
    def norm(self):
        return math.hypot(self.x, self.y)
p = Point(3, 4)
square = lambda v: v * v
tmp_scratch = [0] * 10
waiting = (i for i in range(3))
"""


# ====================================================================== kernel helpers


@dataclass
class Cell:
    stdout: str = ""
    stderr: str = ""
    results: list = field(default_factory=list)
    error: str | None = None
    expressions: dict = field(default_factory=dict)


class Kernel:
    """A blocking client of a running kernel that runs cells and collects their output."""

    def __init__(self, client):
        self.client = client
        self.manager = None  # the KernelManager (to interrupt the kernel)

    def run(self, code: str, expressions: dict | None = None, *, ok: bool = True) -> Cell:
        cell = Cell()

        def on_output(msg):
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                setattr(cell, content["name"], getattr(cell, content["name"]) + content["text"])
            elif kind == "execute_result":
                cell.results.append(content["data"]["text/plain"])

        reply = self.client.execute_interactive(
            code, user_expressions=expressions or {}, output_hook=on_output, timeout=60
        )["content"]
        if reply["status"] != "ok":
            cell.error = f"{reply.get('ename')}: {reply.get('evalue')}"
        for name, value in reply.get("user_expressions", {}).items():
            cell.expressions[name] = (
                value["data"]["text/plain"] if value["status"] == "ok" else f"{value['ename']}: {value['evalue']}"
            )
        if ok:
            assert cell.error is None, f"cell failed: {cell.error}\n{code}\n--- stderr\n{cell.stderr}"
        return cell

    def values(self, **expressions: str) -> dict:
        return self.run("", expressions).expressions


@contextlib.contextmanager
def kernel(workdir: Path, env: dict | None = None):
    """A fresh IPython kernel running this interpreter (the venv's python)."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    kernels = workdir / "kernels"
    spec = kernels / "mason-test"
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "mason test",
                "language": "python",
            }
        )
    )
    full_env = {k: v for k, v in os.environ.items() if k != "JPY_SESSION_NAME"}
    full_env.update(
        MASON_HOME=str(workdir / "mason-home"),
        IPYTHONDIR=str(workdir / "ipython"),
        JUPYTER_PLATFORM_DIRS="1",
        PYTHONWARNINGS="default",
    )
    full_env.update(env or {})
    manager = KernelManager(
        kernel_name="mason-test",
        kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels)]),
        connection_file=str(workdir / f"kernel-{uuid.uuid4().hex}.json"),
    )
    manager.start_kernel(env=full_env, cwd=str(workdir))
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)
        k = Kernel(client)
        k.manager = manager
        yield k
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A session saved by ``%save_session`` from a first kernel."""
    workdir = tmp_path_factory.mktemp("kernel1")
    path = workdir / "saved.mason"
    with kernel(workdir) as k:
        k.run("%load_ext mason.ipython")
        k.run(SETUP_CELL)
        echoed = k.run("data")  # fills Out, _, _N
        assert echoed.results
        k.run("!true")  # sets _exit_code
        cell = k.run(f"%save_session {path} --exclude tmp*")
    return SimpleNamespace(path=path, cell=cell)


# ====================================================================== kernel tests


@needs_kernel
def test_save_session_reports_and_warns(saved):
    assert saved.path.exists()
    assert f"Saved {len(SAVED)} variables to {saved.path} (1 skipped: waiting)" in saved.cell.stdout
    assert "SkippedVariableWarning" in saved.cell.stderr
    assert "cannot pickle 'generator' object" in saved.cell.stderr


@needs_kernel
def test_ipython_bookkeeping_is_not_saved(saved):
    info = mason.inspect(saved.path)
    assert set(info.names()) == SAVED
    assert [s["name"] for s in info.skipped] == ["waiting"]


@needs_kernel
def test_load_session_in_fresh_kernel(saved, tmp_path):
    with kernel(tmp_path) as k:
        k.run("%load_ext mason.ipython")
        info = k.run(f"%session_info {saved.path}").stdout
        for name in SAVED:
            assert f"\n  {name} " in info
        assert "skipped when saved (1):" in info and "waiting" in info
        assert "environment:" in info and "python" in info
        assert k.values(ns="sorted(globals())")["ns"].count("'scaled'") == 0

        cell = k.run(f"%load_session {saved.path}")
        assert f"Loaded {len(SAVED)} variables from {saved.path}" in cell.stdout
        got = k.values(
            data="data",
            scaled="scaled(2)",
            norm="p.norm()",
            cls="type(p) is Point",
            square="square(7)",
            tmp="'tmp_scratch' in globals()",
        )
        assert got == {
            "data": "{'a': [1, 2, 3], 'b': 'text'}",
            "scaled": "23",
            "norm": "5.0",
            "cls": "True",
            "square": "49",
            "tmp": "False",
        }
        # the function's globals are the kernel's namespace, not a copy
        k.run("scale = 1")
        assert k.values(v="scaled(2)")["v"] == "5"

        # the kernel's own history and display hooks still work
        assert k.run("6 * 7").results == ["42"]
        got = k.values(
            last="_",
            out="list(Out.values())[-1]",
            shell="type(get_ipython()).__name__",
            history="In[-1]",
        )
        assert got == {"last": "42", "out": "42", "shell": "'ZMQInteractiveShell'", "history": "'6 * 7'"}


@needs_kernel
def test_load_session_names(saved, tmp_path):
    with kernel(tmp_path) as k:
        k.run("%load_ext mason.ipython")
        cell = k.run(f"%load_session {saved.path} --names data,square")
        assert "Loaded 2 variables" in cell.stdout
        got = k.values(
            data="data['a']", square="square(3)", others="[n for n in ('p', 'Point', 'scaled') if n in globals()]"
        )
        assert got == {"data": "[1, 2, 3]", "square": "9", "others": "[]"}

        bad = k.run(f"%load_session {saved.path} --names nope", ok=False)
        assert bad.error is not None and bad.error.startswith("UsageError") and "nope" in bad.error


@needs_kernel
def test_default_file_is_next_to_the_notebook(tmp_path):
    notebook = tmp_path / "analysis.ipynb"
    with kernel(tmp_path, env={"JPY_SESSION_NAME": str(notebook)}) as k:
        assert k.values(s="__session__")["s"] == repr(str(notebook))
        k.run("%load_ext mason.ipython")
        k.run("answer = 41")
        assert str(tmp_path / "analysis.mason") in k.run("%save_session").stdout
        k.run("del answer")
        k.run("%load_session")
        assert k.values(a="answer + 1")["a"] == "42"
        assert "answer" in k.run("%session_info").stdout
    assert mason.inspect(tmp_path / "analysis.mason").names() == ["answer"]
    assert not (tmp_path / "mason-home" / "session.mason").exists()


# ====================================================================== plain shell, fresh interpreter

SHELL_PRELUDE = """\
from IPython.core.interactiveshell import InteractiveShell
shell = InteractiveShell.instance()
def cell(code):
    result = shell.run_cell(code, store_history=True)
    result.raise_error()
    return result.result
"""


@needs_ipython
def test_magics_in_interactive_shell(tmp_path):
    notebook = tmp_path / "nb.ipynb"
    run_python(
        SHELL_PRELUDE
        + f"""
import mason
shell.user_ns["__vsc_ipynb_file__"] = {str(notebook)!r}
cell("%load_ext mason.ipython")
cell("x = 20\\ndef f():\\n    return x + 1")
cell("x * 2")
cell("!true")
cell("%save_session")
path = {str(tmp_path / "nb.mason")!r}
assert sorted(mason.inspect(path).names()) == ["f", "x"], mason.inspect(path).names()
cell("del x, f")
cell("%load_session")
assert cell("f()") == 21
assert cell("3 + 4") == 7 and cell("_") == 7 and cell("Out[len(In) - 2]") == 7
assert shell.user_ns["get_ipython"]() is shell
""",
        cwd=tmp_path,
        env={"MASON_HOME": str(tmp_path / "home")},
    )
    assert not (tmp_path / "home" / "session.mason").exists()


@needs_ipython
def test_default_file_without_notebook_is_per_user(tmp_path):
    run_python(
        SHELL_PRELUDE
        + """
cell("%load_ext mason.ipython")
cell("y = [1, 2]")
cell("%save_session --include y")
""",
        cwd=tmp_path,
        env={"MASON_HOME": str(tmp_path / "home"), "JPY_SESSION_NAME": ""},
    )
    assert mason.inspect(tmp_path / "home" / "session.mason").names() == ["y"]


@needs_ipython
def test_load_leaves_shell_names_alone(tmp_path):
    """A file saved outside IPython may hold ``_`` or ``exit``: not loaded over the shell's."""
    path = tmp_path / "script.mason"
    run_python(f"import mason\n_ = 'script'\nexit = 'mine'\nz = 3\nmason.dump_module({str(path)!r})\n")
    proc = run_python(
        SHELL_PRELUDE
        + f"""
cell("%load_ext mason.ipython")
exit_before = shell.user_ns["exit"]
cell("%load_session {path}")
assert shell.user_ns["z"] == 3
assert shell.user_ns["exit"] is exit_before
assert shell.user_ns.get("_") != "script"
""",
    )
    left_out = proc.stdout.partition("Not loaded (IPython's own names): ")[2].strip().split(", ")
    assert {"_", "exit"} <= set(left_out) and "z" not in left_out


@needs_ipython
def test_importing_mason_does_not_import_ipython():
    run_python("import sys, mason\nassert 'IPython' not in sys.modules, 'mason imported IPython'\n")


@needs_ipython
def test_load_ext_mason(tmp_path):
    run_python(
        SHELL_PRELUDE
        + """
import sys
assert "mason.ipython" not in sys.modules
cell("%load_ext mason")
assert "save_session" in shell.magics_manager.magics["line"]
""",
        cwd=tmp_path,
    )


@needs_ipython
def test_dump_module_from_ipython_filters_bookkeeping(tmp_path):
    path = tmp_path / "plain.mason"
    run_python(
        SHELL_PRELUDE
        + f"""
import mason
cell("v = 1\\n_idx = 2")
cell("v + 1")
cell("!true")
mason.dump_module({str(path)!r})
names = mason.inspect({str(path)!r}).names()
assert sorted(names) == ["_idx", "v"], names  # mason was imported outside the shell
""",
        cwd=tmp_path,
    )


# ====================================================================== notebook path, unit


@needs_ipython
def test_notebook_session_path(tmp_path, monkeypatch):
    from mason.ipython import notebook_session_path

    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    monkeypatch.chdir(tmp_path)

    def shell(**ns):
        return SimpleNamespace(user_ns=ns)

    assert notebook_session_path(shell()) is None
    # VS Code's variable wins over Jupyter's
    vsc = str(tmp_path / "a" / "vsc.ipynb")
    assert (
        notebook_session_path(shell(__vsc_ipynb_file__=vsc, __session__="other.ipynb")) == tmp_path / "a" / "vsc.mason"
    )
    # a path relative to the server root, while the kernel runs next to the notebook
    assert notebook_session_path(shell(__session__="sub/dir/nb.ipynb")) == tmp_path / "nb.mason"
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "nb.ipynb").touch()
    assert notebook_session_path(shell(__session__="sub/nb.ipynb")) == tmp_path / "sub" / "nb.mason"
    # a console session, or a .mason file from load_module_asdict: not a notebook
    assert notebook_session_path(shell(__session__="console-1")) is None
    assert notebook_session_path(shell(__session__=str(tmp_path / "x.mason"))) is None
    monkeypatch.setenv("JPY_SESSION_NAME", str(tmp_path / "env.ipynb"))
    assert notebook_session_path(shell()) == tmp_path / "env.mason"


@needs_kernel
def test_pylab_names_are_the_users_session(tmp_path):
    # %pylab hides what it imports in user_ns_hidden, as IPython does its own
    # names; a function using them must still work once restored.
    pytest.importorskip("matplotlib")
    path = tmp_path / "pylab.mason"
    with kernel(tmp_path, env={"MPLBACKEND": "agg"}) as k:
        k.run("%load_ext mason.ipython")
        k.run("%pylab inline")
        k.run("def f():\n    return float(linspace(0, 1, 3).sum() + np.pi)")
        k.run(f"%save_session {path}")
    names = set(mason.inspect(path).names())
    assert {"f", "linspace", "np", "plt"} <= names, sorted(names)[:50]
    assert not names & {"In", "Out", "exit", "quit", "get_ipython", "open", "_ih", "_oh", "_dh"}, names
    with kernel(tmp_path, env={"MPLBACKEND": "agg"}) as k:
        k.run("%load_ext mason.ipython")
        k.run(f"%load_session {path}")
        got = k.values(f="f()", shell="type(get_ipython()).__name__", sum="3 + 4")
        assert got == {"f": repr(1.5 + 3.141592653589793), "shell": "'ZMQInteractiveShell'", "sum": "7"}


@needs_kernel
def test_autocheckpoint_and_restore_in_a_kernel(tmp_path):
    notebook = tmp_path / "exp.ipynb"
    store = tmp_path / "exp.checkpoints"
    with kernel(tmp_path, env={"JPY_SESSION_NAME": str(notebook)}) as k:
        k.run("%load_ext mason.ipython")
        k.run("import numpy as np\nbig = np.arange(1_000_000, dtype=np.float64)\nsmall = [1, 2, 3]")
        first = k.run("%checkpoint before the experiment").stdout
        assert first.startswith("Checkpoint ") and "written" in first
        assert "Automatic checkpoints on" in k.run("%autocheckpoint on").stdout
        k.run("small.append(4)")  # [1]
        k.run("big[:10] += 1")  # [2]: an array changed in place
        k.run("def total():\n    return float(big.sum()) + sum(small)")  # [3]
        k.run("1 / 0", ok=False)  # a failing cell still ran: checkpointed too
        listing = k.run("%checkpoints").stdout
        assert "before the experiment" in listing and "after cell" in listing, listing
        assert "Automatic checkpoints off" in k.run("%autocheckpoint off").stdout
        k.run("small = None\nbig = None\ndel total")
        history = mason.checkpoints(str(store))
        assert len(history) == 5, [c.message for c in history]
        assert history[0].message == "before the experiment"
        # back to the state after the in-place change, then to the very first
        k.run("%restore 2")  # its position in %checkpoints
        got = k.values(small="small", head="float(big[:10].sum())", has_total="'total' in dir()")
        assert got == {"small": "[1, 2, 3, 4]", "head": repr(float(sum(range(10)) + 10)), "has_total": "False"}
        k.run(f"%restore {history[0].id.split('-')[-1]} small")  # the id's random tail will do
        assert k.values(small="small", head="float(big[:10].sum())")["small"] == "[1, 2, 3]"
        k.run(f"%restore {history[4].id}")
        k.run("del total")
        k.run("%restore")  # the latest: total is back, and works
        assert k.values(t="total()")["t"] == repr(float(sum(range(1_000_000)) + 10 + 10))
        bad = k.run("%restore nosuchid", ok=False)
        assert bad.error is not None and bad.error.startswith("UsageError") and "nosuchid" in bad.error
    # a fresh process sees the same history, restorable without the kernel
    restored = mason.restore_asdict(str(store), id=history[1].id)
    assert restored["small"] == [1, 2, 3, 4] and restored["big"][0] == 0.0


def _saver_pids_cell(pids, cls: str, sleep: float = 0.0) -> str:
    """A cell defining ``cls``, whose pickling appends the pid of the process
    that pickles it to ``pids`` (after ``sleep`` s), and ``kernel_pid``."""
    return (
        "import os, time\n"
        f"class {cls}:\n"
        "    def __reduce__(self):\n"
        f"        with open({str(pids)!r}, 'a') as f:\n"
        "            f.write(f'{os.getpid()}\\n')\n"
        f"        time.sleep({sleep})\n"
        f"        return ({cls}, ())\n"
        "kernel_pid = os.getpid()"
    )


def test_autocheckpoint_saves_the_cells_state_in_a_forked_process(tmp_path):
    """Background checkpoints: made by another process (the cell does not wait
    for them), of the state the cell left even while the next cell changes it
    at once, taken in order, with problems reported after a later cell."""
    store = tmp_path / "bg.checkpoints"
    pids = tmp_path / "pids"
    with kernel(tmp_path) as k:
        k.run("%load_ext mason.ipython")
        k.run("import numpy as np\n" + _saver_pids_cell(pids, "Slow", sleep=0.5))
        on = k.run(f"%autocheckpoint on --store {store}").stdout
        assert "in the background" in on, on
        k.run("x = np.zeros(100_000)\nmarker = Slow()")  # [4]: its checkpoint pickles slowly
        k.run("x += 1")  # [5]: runs while the checkpoint of [4] may still be going
        k.run("gen = (i for i in range(3))")  # [6]
        reported = k.run("y = 1")  # [7]: says how the checkpoint of [6] went
        assert "after cell [6]" in reported.stderr and "generator" in reported.stderr, reported.stderr
        k.run("del gen")
        listing = k.run("%checkpoints").stdout  # waits for the last one
        kernel_pid = int(k.values(p="kernel_pid")["p"])
        assert "Automatic checkpoints off" in k.run("%autocheckpoint off").stdout
    history = mason.checkpoints(str(store))
    assert [c.message.split(":")[0] for c in history] == [f"after cell [{n}]" for n in (4, 5, 6, 7, 8)], listing
    savers = {int(line) for line in pids.read_text().split()}
    assert kernel_pid not in savers and len(savers) == 5, (kernel_pid, savers)
    for item, value in zip(history, (0.0, 1.0, 1.0)):  # each its cell's state, not the next cell's
        assert mason.restore_asdict(str(store), id=item.id, names=["x"])["x"].max() == value
    assert history[1].parent == history[0].id  # the kernel remembers what its children made
    assert mason.verify_store(str(store)).checkpoints == 5


def test_autocheckpoint_wait_checkpoints_in_the_kernel(tmp_path):
    store = tmp_path / "fg.checkpoints"
    pids = tmp_path / "pids"
    with kernel(tmp_path) as k:
        k.run("%load_ext mason.ipython")
        k.run(_saver_pids_cell(pids, "Mark"))
        on = k.run("%autocheckpoint on --wait --store fg.checkpoints").stdout  # relative to the kernel's folder
        assert "in the kernel (--wait)" in on and str(store) in on, on
        k.run("m = Mark()")
        k.run("os.mkdir('elsewhere')\nos.chdir('elsewhere')")  # the store stays where it was
        gen = k.run("gen = (i for i in range(3))")  # reported by the cell itself
        assert "generator" in gen.stderr, gen.stderr
        kernel_pid = int(k.values(p="kernel_pid")["p"])
    assert {int(line) for line in pids.read_text().split()} == {kernel_pid}
    assert len(mason.checkpoints(str(store))) == 3
    assert not (tmp_path / "elsewhere" / "fg.checkpoints").exists()


def test_autocheckpoint_moves_into_the_kernel_when_a_cell_makes_forking_unsafe(tmp_path):
    store = tmp_path / "switch.checkpoints"
    pids = tmp_path / "pids"
    with kernel(tmp_path) as k:
        k.run("%load_ext mason.ipython")
        k.run("import sys, types\n" + _saver_pids_cell(pids, "Mark"))
        assert "in the background" in k.run(f"%autocheckpoint on --store {store}").stdout
        k.run("m = Mark()")  # checkpointed by a child
        # as if the cell had started a Dask client: a child could not reach it
        switched = k.run("sys.modules.setdefault('distributed', types.ModuleType('distributed'))")
        assert "run in the kernel from now on: Dask's distributed is imported" in switched.stderr, switched.stderr
        k.run("n = 1")
        kernel_pid = int(k.values(p="kernel_pid")["p"])
        k.run("%checkpoints")
    savers = [int(line) for line in pids.read_text().split()]
    assert len(savers) == 3 and savers[0] != kernel_pid and savers[1:] == [kernel_pid, kernel_pid], savers


def test_interrupting_the_wait_for_a_background_checkpoint_cancels_it(tmp_path):
    """Ctrl-C while a cell waits for the previous cell's checkpoint: that
    checkpoint is cancelled (never listed), the kernel goes on."""
    import time

    store = tmp_path / "int.checkpoints"
    with kernel(tmp_path) as k:
        k.run("%load_ext mason.ipython")
        k.run("import time\nclass Slow:\n    def __reduce__(self):\n        time.sleep(60)\n        return (Slow, ())")
        k.run(f"%autocheckpoint on --store {store}")
        k.run("marker = Slow()")  # its checkpoint would take a minute, in a child
        msg_id = k.client.execute("y = 1")  # ends, then waits for that checkpoint
        time.sleep(3)
        k.manager.interrupt_kernel()
        stderr, deadline = "", time.monotonic() + 60
        while time.monotonic() < deadline:
            msg = k.client.get_iopub_msg(timeout=60)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "stream" and msg["content"]["name"] == "stderr":
                stderr += msg["content"]["text"]
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                break
        assert "waiting for the checkpoint after cell [4]" in stderr and "Ctrl-C cancels it" in stderr, stderr
        assert "interrupted: the checkpoint after cell [4]" in stderr and "cancelled" in stderr, stderr
        assert k.values(y="y")["y"] == "1"  # the kernel goes on
        k.run("%autocheckpoint off")
    assert not store.exists() or mason.checkpoints(str(store)) == []
