"""Local session files: atomic private writes, symlink refusal, the default location."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from mason._format import ContainerReader, ContainerWriter
from mason._storage import atomic_write, default_session_path, local, open_for_read

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes, symlinks and pids")


def temporaries(directory: Path) -> list[str]:
    return [name for name in os.listdir(directory) if local._TEMP_MARK in name]


def test_atomic_write_creates_file(tmp_path):
    target = tmp_path / "s.mason"
    with atomic_write(target) as f:
        f.write(b"hello")
        assert not target.exists()  # nothing visible until the block succeeds
    assert target.read_bytes() == b"hello"
    assert temporaries(tmp_path) == []


@posix_only
def test_new_file_is_private_even_over_a_public_one(tmp_path):
    target = tmp_path / "s.mason"
    target.write_bytes(b"old")
    target.chmod(0o644)
    with atomic_write(target) as f:
        f.write(b"new")
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert target.read_bytes() == b"new"


@pytest.mark.parametrize("exc_type", [RuntimeError, KeyboardInterrupt])
def test_failure_keeps_old_file_and_leaves_no_temporary(tmp_path, exc_type):
    target = tmp_path / "s.mason"
    target.write_bytes(b"old contents")
    with pytest.raises(exc_type), atomic_write(target) as f:
        f.write(b"half a new file")
        raise exc_type("stop")
    assert target.read_bytes() == b"old contents"
    assert temporaries(tmp_path) == []


def test_failure_without_old_file_creates_nothing(tmp_path):
    with pytest.raises(ValueError), atomic_write(tmp_path / "s.mason"):
        raise ValueError
    assert os.listdir(tmp_path) == []


@posix_only
def test_symlink_target_is_refused_for_write(tmp_path):
    real = tmp_path / "real.mason"
    real.write_bytes(b"real")
    link = tmp_path / "link.mason"
    link.symlink_to(real)
    with pytest.raises(OSError) as info, atomic_write(link) as f:
        f.write(b"x")
    assert info.value.errno == errno.ELOOP
    assert "link.mason" in str(info.value) and "symlink" in str(info.value)
    assert real.read_bytes() == b"real" and link.is_symlink()
    assert temporaries(tmp_path) == []


@posix_only
def test_symlink_is_refused_for_read(tmp_path):
    real = tmp_path / "real.mason"
    real.write_bytes(b"real")
    link = tmp_path / "link.mason"
    link.symlink_to(real)
    with pytest.raises(OSError) as info:
        open_for_read(link)
    assert info.value.errno == errno.ELOOP and "link.mason" in str(info.value)


def test_open_for_read_errors_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.mason"):
        open_for_read(tmp_path / "missing.mason")
    with pytest.raises(IsADirectoryError):
        open_for_read(tmp_path)
    (tmp_path / "ok.mason").write_bytes(b"data")
    with open_for_read(tmp_path / "ok.mason") as f:
        assert f.read() == b"data"


def test_atomic_write_refuses_directory_and_missing_parent(tmp_path):
    with pytest.raises(IsADirectoryError), atomic_write(tmp_path):
        pass
    with pytest.raises(FileNotFoundError, match="nowhere"):
        with atomic_write(tmp_path / "nowhere" / "s.mason"):
            pass


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@posix_only
def test_stale_temporaries_of_dead_writers_are_removed(tmp_path):
    target = tmp_path / "s.mason"
    prefix = local._temp_prefix(target)
    dead = tmp_path / f"{prefix}{_dead_pid()}-0badf00d"
    alive = tmp_path / f"{prefix}{os.getppid()}-0badf00d"  # our parent is running
    other_host = tmp_path / f".s.mason{local._TEMP_MARK}ffffffff-{_dead_pid()}-0badf00d"
    other_target = tmp_path / f"{local._temp_prefix(tmp_path / 'other.mason')}{_dead_pid()}-0badf00d"
    unrelated = tmp_path / "notes.txt"
    for path in (dead, alive, other_host, other_target, unrelated):
        path.write_bytes(b"x")
    with atomic_write(target) as f:
        f.write(b"new")
    assert not dead.exists()
    assert alive.exists() and other_host.exists() and other_target.exists() and unrelated.exists()


def test_long_names_still_get_a_temporary(tmp_path):
    target = tmp_path / ("n" * 200 + ".mason")
    with atomic_write(target) as f:
        f.write(b"ok")
    assert target.read_bytes() == b"ok"


def test_container_through_storage(tmp_path):
    target = tmp_path / "s.mason"
    with atomic_write(target) as f:
        writer = ContainerWriter(f)
        writer.add_segment(b"seg")
        writer.add_blob(b"blob")
        writer.finish({"k": 1})
    with ContainerReader.open(target) as reader:
        assert reader.meta == {"k": 1}
        assert bytes(reader.segment(0)) == b"seg" and bytes(reader.blob(0)) == b"blob"


def _clear_location_env(monkeypatch, tmp_path):
    monkeypatch.delenv("MASON_HOME", raising=False)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


@posix_only
def test_default_session_path_uses_mason_home_and_is_private(monkeypatch, tmp_path):
    _clear_location_env(monkeypatch, tmp_path)
    monkeypatch.setenv("MASON_HOME", str(tmp_path / "mh"))
    path = default_session_path()
    assert path == tmp_path / "mh" / "session.mason"
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="XDG layout is Linux's")
def test_default_session_path_follows_xdg(monkeypatch, tmp_path):
    _clear_location_env(monkeypatch, tmp_path)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_session_path() == tmp_path / "xdg" / "mason" / "session.mason"
    monkeypatch.setenv("XDG_DATA_HOME", "relative/ignored")
    assert default_session_path() == tmp_path / "home" / ".local" / "share" / "mason" / "session.mason"
    assert not Path("relative").exists()


@posix_only
def test_a_large_old_file_is_freed_after_the_save_and_nothing_is_left(tmp_path, monkeypatch):
    monkeypatch.setattr(local, "RETIRE_FROM", 1000)
    target = tmp_path / "s.mason"
    target.write_bytes(b"o" * 5000)
    with open(target, "rb") as reader_of_the_old:  # someone still reading the old file
        with atomic_write(target) as f:
            f.write(b"new")
        assert target.read_bytes() == b"new"
        assert reader_of_the_old.read() == b"o" * 5000
    assert local._discarding  # a thread freed it
    for worker in list(local._discarding):
        worker.join()
    assert os.listdir(tmp_path) == ["s.mason"]


@posix_only
def test_a_failed_rename_keeps_the_large_old_file_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(local, "RETIRE_FROM", 1000)
    target = tmp_path / "s.mason"
    target.write_bytes(b"o" * 5000)

    def refuse(src, dst):
        raise OSError(errno.EIO, "simulated")

    monkeypatch.setattr(local.os, "replace", refuse)
    with pytest.raises(OSError), atomic_write(target) as f:
        f.write(b"new")
    assert target.read_bytes() == b"o" * 5000
    assert os.listdir(tmp_path) == ["s.mason"]


@posix_only
def test_an_interpreter_that_exits_right_after_a_save_leaves_no_old_copy(tmp_path):
    target = tmp_path / "s.mason"
    target.write_bytes(b"o" * (1 << 20))
    code = (
        "import sys\nfrom mason._storage import atomic_write, local\nlocal.RETIRE_FROM = 1000\n"
        "with atomic_write(sys.argv[1]) as f:\n    f.write(b'new')\n"
    )
    subprocess.run([sys.executable, "-c", code, str(target)], check=True, timeout=60)
    assert target.read_bytes() == b"new"
    assert os.listdir(tmp_path) == ["s.mason"]
