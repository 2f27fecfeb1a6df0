"""Progress bars and log lines for large saves and loads; phase timings at DEBUG."""

from __future__ import annotations

import io
import logging
import sys
import types

import pytest

import mason
from mason import _progress

tqdm = pytest.importorskip("tqdm")


def make_module(count: int = 3) -> types.ModuleType:
    module = types.ModuleType("progress_case")
    for i in range(count):
        module.__dict__[f"v{i}"] = list(range(100 * i))
    del module.__dict__["__doc__"]
    return module


class Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture
def small_threshold(monkeypatch):
    monkeypatch.setattr(_progress, "THRESHOLD", 1)


def test_forced_bar_counts_variables(tmp_path, capsys):
    # capsys's stderr is not a terminal: progress=True shows the bar anyway
    path = tmp_path / "s.mason"
    mason.dump_module(path, module=make_module(3), progress=True)
    saved = capsys.readouterr().err
    assert "saving" in saved and "3/3" in saved and "var" in saved
    mason.load_module_asdict(path, progress=True)
    loaded = capsys.readouterr().err
    assert "loading" in loaded and "3/3" in loaded
    total = sum(v["size"] for v in mason.inspect(path).variables)
    assert f"{_progress.human_size(total)}/{_progress.human_size(total)}" in loaded  # bytes done / total


def test_forced_bar_for_some_names_counts_what_is_unpickled(tmp_path, capsys):
    path = tmp_path / "s.mason"
    mason.dump_module(path, module=make_module(4), progress=False)
    mason.load_module_asdict(path, names=["v1"], progress=True)
    assert "2/2" in capsys.readouterr().err  # v0 and v1: the ones up to the last name wanted


def test_progress_false_writes_nothing(tmp_path, small_threshold, caplog, monkeypatch):
    monkeypatch.setattr(sys, "stderr", Terminal())
    caplog.set_level(logging.INFO, logger="mason")
    mason.dump_module(tmp_path / "s.mason", module=make_module(), progress=False)
    mason.load_module_asdict(tmp_path / "s.mason", progress=False)
    assert sys.stderr.getvalue() == ""
    assert [r for r in caplog.records if r.levelno >= logging.INFO] == []


def test_auto_is_off_when_stderr_is_not_a_terminal(tmp_path, capsys, small_threshold):
    assert not sys.stderr.isatty()
    mason.dump_module(tmp_path / "s.mason", module=make_module())
    mason.load_module_asdict(tmp_path / "s.mason")
    assert capsys.readouterr().err == ""


def test_auto_on_a_terminal_waits_for_the_threshold(tmp_path, monkeypatch):
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    mason.dump_module(tmp_path / "s.mason", module=make_module())  # a few bytes: under the threshold
    mason.load_module_asdict(tmp_path / "s.mason")
    assert terminal.getvalue() == ""
    monkeypatch.setattr(_progress, "THRESHOLD", 1)
    mason.dump_module(tmp_path / "s.mason", module=make_module())
    assert "saving" in terminal.getvalue() and "3/3" in terminal.getvalue()


def test_without_tqdm_progress_is_logged_at_info(tmp_path, capsys, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm now raises ImportError
    caplog.set_level(logging.INFO, logger="mason")
    mason.dump_module(tmp_path / "s.mason", module=make_module(3), progress=True)
    mason.load_module_asdict(tmp_path / "s.mason", progress=True)
    messages = [r.getMessage() for r in caplog.records if r.name == "mason" and r.levelno == logging.INFO]
    assert any(m.startswith("saving: 3/3 variables") for m in messages), messages
    assert any(m.startswith("loading: 3/3 variables") for m in messages), messages
    assert capsys.readouterr().err == ""  # logged, never printed


def test_log_lines_are_spaced_out(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    caplog.set_level(logging.INFO, logger="mason")
    progress = _progress.Progress("saving", 1000, progress=True)
    for _ in progress.track(range(1000)):
        progress.add(10)
    lines = [r.getMessage() for r in caplog.records if r.name == "mason"]
    # one when it starts, one at the end: 1000 variables in far less than LOG_INTERVAL
    assert lines == ["saving: 1/1000 variables, 10 B", "saving: 1000/1000 variables, 9.8 KiB"]


def test_bar_is_closed_when_a_save_fails(tmp_path, capsys):
    class Bad:
        def __reduce__(self):
            raise RuntimeError("no")

    module = make_module(2)
    module.z = Bad()
    with pytest.raises(mason.PicklingError):
        mason.dump_module(tmp_path / "s.mason", module=module, progress=True, on_error="raise")
    assert "saving" in capsys.readouterr().err
    assert len(tqdm.tqdm._instances) == 0  # closed, not left to the garbage collector


def test_progress_must_be_none_or_a_bool(tmp_path):
    with pytest.raises(ValueError, match="progress must be"):
        mason.dump_module(tmp_path / "s.mason", module=make_module(), progress="yes")


def test_phase_timings_at_debug(tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="mason")
    mason.dump_module(tmp_path / "s.mason", module=make_module())
    mason.load_module(tmp_path / "s.mason", module=make_module())
    messages = [r.getMessage() for r in caplog.records if r.name == "mason" and r.levelno == logging.DEBUG]
    assert any(m.startswith("dump_module: collected 3 variables in ") for m in messages), messages
    assert any(m.startswith("dump_module: stored in ") for m in messages), messages
    assert any(m.startswith("load_module: unpickled 3 variables in ") for m in messages), messages


def test_human_size():
    assert _progress.human_size(0) == "0 B"
    assert _progress.human_size(1023) == "1023 B"
    assert _progress.human_size(1536) == "1.5 KiB"
    assert _progress.human_size(3 * 2**30) == "3.0 GiB"
    assert _progress.human_size(5 * 2**40) == "5.0 TiB"
