"""The ``mason`` command line: each subcommand through ``main()``, and the
installed console script and ``python -m mason`` in fresh processes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import run_python

import mason
from mason._format import ContainerReader, spec
from mason.cli import main

MASON_SCRIPT = Path(sys.executable).parent / "mason"

# A session saved from __main__ of a fresh interpreter: plain data, a function,
# a class and instance, a module reference, a numpy array (an out-of-band
# blob) and a generator, which cannot be saved and is recorded as skipped.
BASIC = """
    import math
    import numpy as np
    x = 21
    data = {"a": [1, 2, 3], "s": "text"}
    big = list(range(2000))
    arr = np.arange(10.0)
    def double(v):
        return 2 * v
    class Point:
        def __init__(self, x):
            self.x = x
    p = Point(4)
    gen = (i for i in range(3))
    import mason, warnings
    warnings.simplefilter("ignore")
    mason.dump_module({path!r})
"""


def save_session(directory: Path, code: str, name: str = "s.mason", **values) -> Path:
    """Run ``code`` in a fresh interpreter; ``{path!r}`` and ``{key!r}`` for each of ``values`` are filled in."""
    path = directory / name
    code = textwrap.dedent(code)
    for key, value in {"path": str(path), **values}.items():
        code = code.replace(f"{{{key}!r}}", repr(value))
    run_python(code, cwd=directory)
    return path


@pytest.fixture(scope="module")
def sessions(tmp_path_factory):
    directory = tmp_path_factory.mktemp("sessions")
    basic = save_session(directory, BASIC)
    return directory, basic


@pytest.fixture
def basic(sessions):
    return sessions[1]


def cli(capsys, *argv):
    """(exit status, stdout, stderr) of ``main(argv)``."""
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def run_cli(*argv, stdin=None, cwd=None, module=False, env=None):
    command = [sys.executable, "-m", "mason"] if module else [str(MASON_SCRIPT)]
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run(
        command + [str(a) for a in argv],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        env=full_env,
        timeout=120,
    )


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


# ====================================================================== inspect


def test_inspect_prints_an_aligned_table_and_the_environment(capsys, basic):
    status, out, err = cli(capsys, "inspect", basic)
    assert status == 0, err
    assert f"file:     {basic}" in out
    assert "module:   __main__ (main)" in out
    v = sys.version_info
    assert f"python:   {v.major}.{v.minor}.{v.micro}" in out
    assert "mason 0.1.0" in out
    assert re.search(r"packages: .*numpy \d", out)
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("NAME"))
    end = lines.index("", header)
    table = {line.split()[-4 if "skipped" not in line else 0].lstrip("!"): line for line in lines[header + 1 : end]}
    table = {line.split()[1] if line.startswith("! ") else line.split()[0]: line for line in lines[header + 1 : end]}
    # what a data-only load would refuse is named below the table
    assert "refused under mason.DATA:" in out and re.search(r"^  double: .*mason:code", out, re.M)
    assert table["x"].split() == ["x", "int", "5", "B", "value"]
    assert table["double"].startswith("! double")
    assert table["math"].split()[-1] == "reference"
    assert re.search(r"KiB", table["big"])  # sizes are human-readable
    assert "skipped: gen: cannot pickle 'generator' object" in table["gen"]
    # aligned: every column starts at the same place in every row
    type_col = lines[header].index("TYPE")
    assert all(line[type_col - 2 : type_col] == "  " for line in table.values())
    assert re.search(r"^\d+ variables, [\d.]+ KiB; 1 skipped when saving$", out, re.M)


def test_inspect_json(capsys, basic):
    status, out, _ = cli(capsys, "inspect", basic, "--json")
    assert status == 0
    info = json.loads(out)
    names = [v["name"] for v in info["variables"]]
    assert {"x", "data", "double", "Point", "p", "arr", "math"} <= set(names)
    assert names == sorted(names)
    assert info["module"] == "__main__" and info["module_kind"] == "main"
    assert info["format_version"] == f"{spec.FORMAT_MAJOR}.{spec.FORMAT_MINOR}"  # small: plain crc32
    assert info["skipped"][0]["name"] == "gen"
    assert info["environment"]["python"][:2] == list(sys.version_info[:2])
    assert set(info["environment"]) >= {"platform", "mason", "packages", "created"}
    assert info["total_size"] == sum(v["size"] for v in info["variables"])
    by_name = {v["name"]: v for v in info["variables"]}
    assert by_name["x"] == {"name": "x", "type": "int", "stored": "value", "size": 5}


def test_inspect_and_verify_never_unpickle(tmp_path, capsys):
    # The saved instance's class lives in a helper module that is gone at
    # load time: loading fails, inspecting and verifying do not.
    (tmp_path / "helper.py").write_text("class Thing:\n    pass\n")
    path = save_session(tmp_path, "import helper\nthing = helper.Thing()\nimport mason\nmason.dump_module({path!r})\n")
    (tmp_path / "helper.py").unlink()
    status, out, _ = cli(capsys, "inspect", path)
    assert status == 0 and "helper.Thing" in out
    assert cli(capsys, "verify", path)[0] == 0
    proc = run_cli("load", path, "--strict", cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.startswith("mason: error: ") and "helper" in proc.stderr
    assert "Traceback" not in proc.stderr


# ====================================================================== verify


def test_verify_ok(capsys, basic):
    status, out, err = cli(capsys, "verify", basic)
    assert status == 0, err
    size = basic.stat().st_size
    assert re.fullmatch(rf"ok: \d+ variables, 1 blob, {size:,} bytes verified\n", out)


def test_verify_finds_a_damaged_record(tmp_path, capsys, basic):
    damaged = tmp_path / "damaged.mason"
    damaged.write_bytes(basic.read_bytes())
    with ContainerReader.open(damaged) as reader:
        offset = reader.blob_info(0)["offset"]
    flip_byte(damaged, offset + 3)
    # the index is intact, so inspect still works; the checksums do not
    assert cli(capsys, "inspect", damaged)[0] == 0
    status, out, err = cli(capsys, "verify", damaged)
    assert status == 1 and out == ""
    assert err.startswith(f"mason: error: {damaged}: blob 0") and "checksum mismatch" in err


def test_verify_reads_stdin(basic):
    proc = subprocess.run([str(MASON_SCRIPT), "verify", "-"], input=basic.read_bytes(), capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode().startswith("ok: ")


# ====================================================================== errors


@pytest.fixture
def bad_files(tmp_path, basic):
    data = basic.read_bytes()
    files = {
        "missing": (tmp_path / "missing.mason", "no mason session file here"),
        "directory": (tmp_path, "this is a directory, not a session file"),
        "empty": (tmp_path / "empty.mason", "not a mason file: it is empty"),
        "foreign": (tmp_path / "foreign.txt", "not a mason file (it starts with b'hello"),
        "pickle": (tmp_path / "plain.pkl", "not a mason file: this looks like a plain pickle"),
        "truncated": (tmp_path / "truncated.mason", "truncated"),
        "header only": (tmp_path / "short.mason", "truncated"),
    }
    files["empty"][0].write_bytes(b"")
    files["foreign"][0].write_text("hello, world\n")
    files["pickle"][0].write_bytes(__import__("pickle").dumps({"a": 1}))
    files["truncated"][0].write_bytes(data[: len(data) // 2])
    files["header only"][0].write_bytes(data[:12])
    return files


@pytest.mark.parametrize("command", ["inspect", "verify", "load", "diff A", "diff B", "inspect --json"])
@pytest.mark.parametrize("kind", ["missing", "directory", "empty", "foreign", "pickle", "truncated", "header only"])
def test_bad_files_give_one_clear_line(capsys, bad_files, basic, command, kind):
    path, expected = bad_files[kind]
    name, _, extra = command.partition(" ")
    if name == "diff":
        argv = ["diff", path, basic] if extra == "A" else ["diff", basic, path]
    else:
        argv = [name, path, *extra.split()]
    status, out, err = cli(capsys, *argv)
    assert status == (2 if name == "diff" else 1)
    assert out == ""
    assert err.startswith("mason: error: ") and err.count("\n") == 1, err
    assert expected in err
    assert str(path) in err


def test_truncated_file_in_the_middle_of_a_record(tmp_path, capsys, basic):
    data = basic.read_bytes()
    with ContainerReader.open(basic) as reader:
        cut = reader.segment_info(1)["offset"] + 1
    path = tmp_path / "cut.mason"
    path.write_bytes(data[:cut])
    for command in ("inspect", "verify", "load"):
        status, _, err = cli(capsys, command, path)
        assert status == 1 and err.startswith("mason: error: ") and "Traceback" not in err


def test_a_container_without_a_session(tmp_path, capsys):
    from mason._format import ContainerWriter

    path = tmp_path / "plain.mason"
    with open(path, "wb") as f:
        writer = ContainerWriter(f)
        writer.add_segment(b"\x80\x05K\x01.")
        writer.finish({"kind": "something else"})
    status, _, err = cli(capsys, "inspect", path)
    assert status == 1 and "holds no session" in err
    status, out, _ = cli(capsys, "verify", path)
    assert status == 0 and out.startswith("ok: 1 segment, 0 blobs")
    status, _, err = cli(capsys, "diff", path, path)
    assert status == 2 and "holds no session" in err


def test_usage_errors(capsys):
    status, _, err = cli(capsys)
    assert status == 2 and "a command is required" in err
    status, _, err = cli(capsys, "frobnicate")
    assert status == 2 and "invalid choice" in err
    status, out, _ = cli(capsys, "--help")
    assert status == 0 and "inspect" in out and "diff" in out
    status, out, _ = cli(capsys, "diff", "--help")
    assert status == 0 and "memo" in out and "exit status: 0 identical, 1 different, 2 trouble" in out
    status, out, _ = cli(capsys, "--version")
    assert status == 0 and out.strip() == f"mason {mason.__version__}"


def test_traceback_flag_reraises(capsys, tmp_path):
    with pytest.raises(FileNotFoundError):
        main(["--traceback", "inspect", str(tmp_path / "missing.mason")])


# ====================================================================== diff

DIFF_SESSION = """
    import sys, mason, numpy as np
    variant = {variant!r}
    if variant == "b":
        aa = {"k": ["v", "w"], "z": (1, 2)}  # memoizes objects before all the others
    shared = {"list": [1, 2, 3], "name": "hello"}
    holder = ["x", "y", shared]
    arr = np.arange(100.0)
    if variant == "b":
        arr[3] = -1.0
        added = 5
        gen = (i for i in range(2))
    else:
        removed = 1
        gen = 3
    del sys
    import warnings; warnings.simplefilter("ignore")
    mason.dump_module({path!r}, compression={compression!r})
"""


@pytest.fixture(scope="module")
def diff_sessions(tmp_path_factory):
    directory = tmp_path_factory.mktemp("diff")
    made = {}
    for name, variant, compression in [("a", "a", None), ("b", "b", None), ("a2", "a", None), ("az", "a", "zlib")]:
        made[name] = save_session(directory, DIFF_SESSION, f"{name}.mason", variant=variant, compression=compression)
    return made


def test_diff_identical(capsys, diff_sessions):
    status, out, _ = cli(capsys, "diff", diff_sessions["a"], diff_sessions["a2"])
    assert status == 0
    assert out.splitlines()[-1].startswith("no differences (")


def test_diff_reports_added_removed_changed(capsys, diff_sessions):
    a, b = diff_sessions["a"], diff_sessions["b"]
    status, out, _ = cli(capsys, "diff", a, b)
    assert status == 1
    lines = out.splitlines()
    assert lines[:2] == [f"--- {a}", f"+++ {b}"]
    marks = {line.split()[1]: line.split()[0] for line in lines[2:-1]}
    # shared and holder are unchanged although aa, added before them, shifts every memo number
    assert marks == {"aa": "+", "added": "+", "removed": "-", "arr": "~", "variant": "~", "gen": "-"}
    gen_line = next(line for line in lines if line.split()[1] == "gen")
    assert "skipped when B was saved" in gen_line
    assert lines[-1] == "2 added, 2 removed, 2 changed, 7 unchanged"


def test_diff_json_and_quiet(capsys, diff_sessions):
    status, out, _ = cli(capsys, "diff", "--json", diff_sessions["a"], diff_sessions["b"])
    assert status == 1
    result = json.loads(out)
    assert result["identical"] is False
    assert [e["name"] for e in result["added"]] == ["aa", "added"]
    assert [e["name"] for e in result["removed"]] == ["gen", "removed"]
    assert [e["name"] for e in result["changed"]] == ["arr", "variant"]
    assert result["changed"][0] == {"name": "arr", "type_a": "numpy.ndarray", "type_b": "numpy.ndarray"}
    status, out, err = cli(capsys, "diff", "-q", diff_sessions["a"], diff_sessions["b"])
    assert (status, out, err) == (1, "", "")
    status, out, _ = cli(capsys, "diff", "-q", diff_sessions["a"], diff_sessions["a2"])
    assert (status, out) == (0, "")


def test_diff_ignores_compression(capsys, diff_sessions):
    # Stored checksums differ (zlib), contents do not.
    status, out, _ = cli(capsys, "diff", diff_sessions["a"], diff_sessions["az"])
    assert status == 0, out


def test_diff_errors_exit_2(capsys, diff_sessions, tmp_path):
    status, _, err = cli(capsys, "diff", diff_sessions["a"], tmp_path / "nope.mason")
    assert status == 2 and err.startswith("mason: error: ")
    status, _, err = cli(capsys, "diff", "-", "-")
    assert status == 2 and "only one of A and B" in err


# ====================================================================== load


def test_load_prints_a_summary_and_restores_main(capsys, basic):
    main_before = sys.modules["__main__"]
    status, out, err = cli(capsys, "load", basic)
    assert status == 0, err
    count = len(mason.inspect(basic).variables)
    assert out == f"restored {count} variables from {basic} into __main__; 1 skipped when saving\n"
    assert "mason: warning: not in the file: gen: cannot pickle 'generator' object" in err
    assert sys.modules["__main__"] is main_before
    assert not hasattr(main_before, "double")


def test_load_names(capsys, basic):
    status, out, err = cli(capsys, "load", basic, "--names", "x, double", "--names", "p")
    assert status == 0, err
    assert out == f"restored 3 variables from {basic} into __main__\n"
    assert err == ""
    status, _, err = cli(capsys, "load", basic, "--names", "nope")
    assert status == 1 and "'nope' is not in this session" in err
    status, _, err = cli(capsys, "load", basic, "--names", "gen")
    assert status == 1 and "'gen' is not in the file: it was skipped when saving" in err
    status, _, err = cli(capsys, "load", basic, "--names", ",")
    assert status == 2 and "no variable names" in err


def test_load_interactive_plain(basic):
    proc = run_cli("load", basic, "-i", "--plain", stdin="print(x * 2)\nprint(double(p.x), data['s'])\n", module=True)
    assert proc.returncode == 0, proc.stderr
    assert "42" in proc.stdout and "8 text" in proc.stdout
    assert "restored" in proc.stderr  # the banner
    assert "Traceback" not in proc.stderr


def test_load_interactive_without_a_terminal_uses_the_plain_prompt(basic):
    proc = run_cli("load", basic, "-i", stdin="print(x + 1)\nexit(3)\n")
    assert proc.returncode == 3, proc.stderr
    assert "22" in proc.stdout


def test_load_interactive_starts_ipython_on_a_terminal(capsys, basic, monkeypatch):
    IPython = pytest.importorskip("IPython")
    seen = {}

    def fake_start_ipython(argv=None, **kwargs):
        seen["argv"] = argv
        seen.update(kwargs)
        seen["main"] = sys.modules["__main__"]

    monkeypatch.setattr(IPython, "start_ipython", fake_start_ipython)
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True, raising=False)
    main_before = sys.modules["__main__"]
    status, out, _ = cli(capsys, "load", basic, "-i")
    assert status == 0
    assert seen["argv"] == []
    assert seen["user_ns"]["x"] == 21 and seen["user_ns"]["double"](5) == 10
    assert seen["main"] is seen["user_module"] and seen["user_module"].__dict__ is seen["user_ns"]
    assert out.startswith("restored ")
    assert sys.modules["__main__"] is main_before


def test_load_shows_an_environment_mismatch(tmp_path):
    (tmp_path / "fakepkg.py").write_text("__version__ = '1.0'\nclass Thing:\n    pass\n")
    path = save_session(
        tmp_path, "import fakepkg\nthing = fakepkg.Thing()\nimport mason\nmason.dump_module({path!r})\n"
    )
    (tmp_path / "fakepkg.py").write_text("__version__ = '2.0'\nclass Thing:\n    pass\n")
    proc = run_cli("load", path, cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    # fakepkg is a module in the current directory, not an installed package:
    # its version is not known before the load, which never imports what the
    # file names to ask; it is checked once the load has imported it.
    assert "mason: warning: this session was saved with fakepkg 1.0 (installed here: 2.0)" in proc.stderr
    assert re.fullmatch(r"restored \d+ variables from \S+ into __main__\n", proc.stdout)


def test_load_imports_modules_from_the_current_directory(tmp_path):
    # As `python -i` would: the console script's own directory is sys.path[0], not the cwd.
    (tmp_path / "helper3.py").write_text("class Thing:\n    def hello(self):\n        return 'hi from helper3'\n")
    path = save_session(
        tmp_path, "import helper3\nthing = helper3.Thing()\nimport mason\nmason.dump_module({path!r})\n"
    )
    proc = run_cli("load", path, "-i", "--plain", stdin="print(thing.hello())\n", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "hi from helper3" in proc.stdout


def test_load_a_variable_that_fails(tmp_path, capsys):
    (tmp_path / "helper2.py").write_text("class Thing:\n    pass\n")
    code = "import helper2\nthing = helper2.Thing()\nok = 1\nimport mason\nmason.dump_module({path!r})\n"
    path = save_session(tmp_path, code)
    (tmp_path / "helper2.py").unlink()
    saved = len(mason.inspect(path).variables)
    proc = run_cli("load", path, cwd=tmp_path)
    assert proc.returncode == 1  # useful for checking that a file loads
    # the module helper2 fails, and every variable that refers to it
    assert re.search(r"mason: warning: \d+ of \d+ variables not restored:\n", proc.stderr)
    assert "\n  helper2: ModuleNotFoundError" in proc.stderr
    assert "\n  thing: ModuleNotFoundError: No module named 'helper2'" in proc.stderr
    failed = len(re.findall(r"^  \w+: ", proc.stderr, re.M))
    assert (
        proc.stdout
        == f"restored {saved - failed} variables from {path} into __main__; {failed} could not be restored\n"
    )
    # with --strict, the first failure stops the load
    proc = run_cli("load", path, "--strict", cwd=tmp_path)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.startswith("mason: error: ") and "helper2" in proc.stderr and "Traceback" not in proc.stderr


# ====================================================================== run

SCRIPT = """
import sys
args = sys.argv[1:]
argv0 = sys.argv[0]
data = {"a": [1, 2, 3]}
def double(v):
    return 2 * v
class Point:
    def __init__(self, x):
        self.x = x
p = Point(4)
is_main = __name__ == "__main__"
print("ran with", args)
"""


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "script.py"
    path.write_text(SCRIPT)
    return path


def test_run_saves_the_scripts_namespace(capsys, tmp_path, script):
    out_file = tmp_path / "out.mason"
    argv_before, path_before, main_before = list(sys.argv), list(sys.path), sys.modules["__main__"]
    status, out, err = cli(capsys, "run", "--save", out_file, script, "-v", "--save", "x")
    assert status == 0, err
    # the script's 8 names and __doc__, as in a real __main__
    assert out.splitlines() == ["ran with ['-v', '--save', 'x']", f"saved 9 variables of {script} to {out_file}"]
    assert (sys.argv, sys.path, sys.modules["__main__"]) == (argv_before, path_before, main_before)
    ns = mason.load_module_asdict(out_file)
    assert ns["args"] == ["-v", "--save", "x"] and ns["argv0"] == str(script)
    assert ns["is_main"] is True
    assert ns["double"](ns["p"].x) == 8


def test_run_options(capsys, tmp_path, script):
    out_file = tmp_path / "out.mason"
    status, _, err = cli(
        capsys, "run", "--save", out_file, "--exclude", "d*", "--exclude", "p", "--compression", "zlib", script
    )
    assert status == 0, err
    assert set(mason.inspect(out_file).names()) == {"__doc__", "Point", "args", "argv0", "is_main", "sys"}


def test_run_save_after_the_script_is_refused_with_a_hint(capsys, tmp_path, script):
    status, out, err = cli(capsys, "run", script, "--save", tmp_path / "out.mason")
    assert status == 2 and out == ""
    assert "put --save FILE before SCRIPT" in err
    assert not (tmp_path / "out.mason").exists()
    status, _, err = cli(capsys, "run", script)
    assert status == 2 and "--save FILE is required" in err


def test_run_script_failures_save_nothing(capsys, tmp_path):
    out_file = tmp_path / "out.mason"
    cases = {
        "raise ValueError('boom')\n": (1, "ValueError: boom"),
        "import sys\nsys.exit(3)\n": (3, "exited with status 3"),
        "import sys\nsys.exit('bad things')\n": (1, "bad things"),
        "x = (\n": (1, "does not compile"),
    }
    for source, (expected_status, message) in cases.items():
        script = tmp_path / "bad.py"
        script.write_text(source)
        status, _, err = cli(capsys, "run", "--save", out_file, script)
        assert status == expected_status and message in err, (source, err)
        assert not out_file.exists()
    status, _, err = cli(capsys, "run", "--save", out_file, tmp_path / "missing.py")
    assert status == 1 and err.startswith("mason: error: cannot run ")
    # sys.exit(0) ends the script normally: its namespace is saved
    script.write_text("import sys\nkept = 1\nsys.exit(0)\n")
    status, _, err = cli(capsys, "run", "--save", out_file, script)
    assert status == 0 and "kept" in mason.inspect(out_file).names()


def test_run_warns_about_skipped_variables(capsys, tmp_path):
    script = tmp_path / "gen.py"
    script.write_text("g = (i for i in range(3))\nkept = 1\n")
    status, out, err = cli(capsys, "run", "--save", tmp_path / "o.mason", script)
    assert status == 0
    assert "mason: warning: not saved: g: cannot pickle 'generator' object" in err


# ====================================================================== the installed script


def test_console_script_inspect_verify_run_load(tmp_path, script):
    assert MASON_SCRIPT.exists(), "pip install -e . creates the mason console script"
    out_file = tmp_path / "out.mason"
    proc = run_cli("run", "--save", out_file, script, "one", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == f"saved 9 variables of {script} to {out_file}"

    proc = run_cli("inspect", out_file)
    assert proc.returncode == 0, proc.stderr
    # a script's functions carry their source: other Python versions can load them
    assert re.search(r"^! double\s+function\s+\d+ B\s+value\s+portable$", proc.stdout, re.M)

    proc = run_cli("inspect", "--json", out_file)
    assert json.loads(proc.stdout)["module"] == "__main__"

    proc = run_cli("verify", out_file)
    assert proc.returncode == 0 and proc.stdout.startswith("ok: 9 variables, 0 blobs, ")

    proc = run_cli("load", out_file, "-i", "--plain", stdin="print(double(p.x), args)\n")
    assert proc.returncode == 0, proc.stderr
    assert "8 ['one']" in proc.stdout


def test_console_script_errors_have_no_traceback(tmp_path):
    (tmp_path / "foreign.txt").write_text("hello")
    for argv in (["inspect", tmp_path / "missing.mason"], ["verify", tmp_path / "foreign.txt"], ["load", tmp_path]):
        proc = run_cli(*argv)
        assert proc.returncode == 1
        assert proc.stderr.startswith("mason: error: ") and "Traceback" not in proc.stderr


def test_python_m_mason(basic):
    proc = run_cli("--version", module=True)
    assert proc.returncode == 0 and proc.stdout.strip() == f"mason {mason.__version__}"
    proc = run_cli("verify", basic, module=True)
    assert proc.returncode == 0 and proc.stdout.startswith("ok: ")


def test_broken_pipe_is_quiet(basic, monkeypatch, capsys):
    class ClosedPipe:
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            pass

    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    assert main(["inspect", str(basic)]) == 1
    assert capsys.readouterr().err == ""
