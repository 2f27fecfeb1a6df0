"""Disk full and I/O errors while saving.

A save that fails must say so with an OSError that keeps its errno (ENOSPC,
EIO) and names the file; a path keeps its previous file, intact and
loadable, and no temporary file is left behind.  Simulated by a file that
runs out of room after N bytes (in-process, at the level of the atomic
writer's file object) and, where this machine allows mounting, by a real
8 MiB tmpfs.
"""

from __future__ import annotations

import errno
import gc
import io
import os
import shutil
import subprocess
import sys
import types
import warnings

import pytest

import mason
from mason._format import ContainerReader
from mason._storage import local

np = pytest.importorskip("numpy")

ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def session_module(fill: float, size: int = 200_000) -> types.ModuleType:
    """A small session whose ``values`` array (out of band, a blob) is all ``fill``."""
    module = types.ModuleType("diskmod")
    module.label = f"generation {fill}"
    module.values = np.full(size, fill)
    module.after = list(range(100))  # a segment after the blob
    exec("def twice(x):\n    return 2 * x\n", module.__dict__)
    return module


def assert_loads_as(path, fill: float) -> None:
    namespace = mason.load_module_asdict(path)
    assert namespace["label"] == f"generation {fill}"
    assert (namespace["values"] == fill).all() and namespace["twice"](2) == 4


def temporaries(directory) -> list[str]:
    return [name for name in os.listdir(directory) if local._TEMP_MARK in name]


@pytest.fixture
def no_skipped_variables():
    """Fail if a save reports a variable as skipped: an output error is not a pickling error."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    skipped = [str(w.message) for w in caught if issubclass(w.category, mason.SkippedVariableWarning)]
    assert not skipped, f"an output error was reported as a skipped variable: {skipped}"


def _layout_points(data: bytes) -> dict[str, int]:
    """Byte counts at which a save of ``data`` is in each part of the container."""
    with ContainerReader.open(data) as reader:
        blob = reader.blob_info(0)
        last_segment = reader.segment_info(reader.segment_count - 1)
    return {
        "header": 5,
        "blob": blob["offset"] + blob["length"] // 2,
        "segment-after-blob": last_segment["offset"] + 2,
        "index": len(data) - 200,
        "trailer": len(data) - 10,
    }


_SAMPLE = io.BytesIO()
mason.dump_module(_SAMPLE, module=session_module(2.0))
POINTS = _layout_points(_SAMPLE.getvalue())


# ------------------------------------------------------------- a full stream


class FullStream(io.RawIOBase):
    """A writable stream with room for ``room`` bytes.  It takes what fits,
    then raises ENOSPC; ``transient``: only that once, then there is room again."""

    def __init__(self, room: int, transient: bool = False):
        self.data = bytearray()
        self.room = room
        self.transient = transient
        self.failures = 0

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        view = memoryview(b).cast("B")
        if self.room is not None and len(self.data) + len(view) > self.room:
            free = self.room - len(self.data)
            if free > 0:
                self.data += view[:free]
                return free
            self.failures += 1
            if self.transient:
                self.room = None
            raise OSError(ENOSPC.errno, ENOSPC.strerror)
        self.data += view
        return len(view)


@pytest.mark.parametrize("transient", [False, True], ids=["full", "transient"])
@pytest.mark.parametrize("where", sorted(POINTS))
def test_full_stream_raises_enospc(where, transient, no_skipped_variables):
    stream = FullStream(POINTS[where], transient)
    with pytest.raises(OSError) as caught:
        mason.dump_module(stream, module=session_module(2.0))
    assert caught.value.errno == errno.ENOSPC, caught.value
    assert stream.failures == 1


def test_full_stream_test_can_fail():
    """With room for everything the same stream takes the whole session."""
    stream = FullStream(len(_SAMPLE.getvalue()))
    mason.dump_module(stream, module=session_module(2.0))
    assert len(stream.data) == len(_SAMPLE.getvalue()) and stream.failures == 0
    assert_loads_as(io.BytesIO(bytes(stream.data)), 2.0)


# ------------------------------------------- a full disk under the atomic writer


class FillingFile(io.FileIO):
    """A real file that runs out of room after ``room`` bytes (see FullStream)."""

    room: int | None = None
    transient = False
    failures = 0

    def write(self, b) -> int:
        view = memoryview(b).cast("B")
        cls = type(self)
        if cls.room is not None:
            free = cls.room - self.tell()
            if len(view) > free:
                if free > 0:
                    return super().write(view[:free])
                cls.failures += 1
                if cls.transient:
                    cls.room = None
                raise OSError(ENOSPC.errno, ENOSPC.strerror)
        return super().write(view)


@pytest.fixture
def filling_disk(monkeypatch):
    """``filling_disk(room, transient)``: the atomic writer's next files run out of room."""
    real_fdopen = os.fdopen

    def fdopen(fd, mode="r", *args, **kwargs):
        if mode != "wb":
            return real_fdopen(fd, mode, *args, **kwargs)
        return io.BufferedWriter(FillingFile(fd, "wb"))

    def setup(room: int, transient: bool = False):
        monkeypatch.setattr(FillingFile, "room", room)
        monkeypatch.setattr(FillingFile, "transient", transient)
        monkeypatch.setattr(FillingFile, "failures", 0)
        monkeypatch.setattr(local.os, "fdopen", fdopen)

    return setup


def _check_failed_save(caught, path, fill_before) -> None:
    error = caught.value
    assert error.errno == errno.ENOSPC, repr(error)
    assert error.filename == str(path), repr(error)
    assert "not saved" in str(error) and ("unchanged" if fill_before is not None else "no file") in str(error)
    assert temporaries(path.parent) == []
    if fill_before is None:
        assert not path.exists()
    else:
        assert_loads_as(path, fill_before)


@pytest.mark.parametrize("transient", [False, True], ids=["full", "transient"])
@pytest.mark.parametrize("where", sorted(POINTS))
def test_full_disk_keeps_previous_file(where, transient, tmp_path, filling_disk, no_skipped_variables):
    path = tmp_path / "s.mason"
    mason.dump_module(path, module=session_module(1.0))
    before = path.read_bytes()
    filling_disk(POINTS[where], transient)
    with pytest.raises(OSError) as caught:
        mason.dump_module(path, module=session_module(2.0))
    assert FillingFile.failures >= 1  # closing the temporary may try (and fail) again
    assert path.read_bytes() == before
    _check_failed_save(caught, path, 1.0)


def test_full_disk_without_previous_file(tmp_path, filling_disk, no_skipped_variables):
    path = tmp_path / "s.mason"
    filling_disk(POINTS["blob"])
    with pytest.raises(OSError) as caught:
        mason.dump_module(path, module=session_module(2.0))
    _check_failed_save(caught, path, None)


@pytest.mark.parametrize("checksum", ["crc32", "crc32+xxh3", "xxh3_64"])
def test_full_disk_halfway_through_a_record_summed_while_written(
    checksum, tmp_path, filling_disk, no_skipped_variables
):
    """A large record is summed by worker threads while it is written: when
    the disk fills half way through, the error is ENOSPC (not a BufferError
    of the buffer those threads still held) and the session's buffer is let go."""
    if checksum != "crc32":
        pytest.importorskip("xxhash")
    module = types.ModuleType("diskmod")
    module.big = bytearray(os.urandom(1 << 20)) * 24  # 24 MiB, one blob
    path = tmp_path / "s.mason"
    filling_disk(12 << 20)
    with pytest.raises(OSError) as caught:
        mason.dump_module(path, module=module, checksum=checksum)
    _check_failed_save(caught, path, None)
    module.big.extend(b"x")  # BufferError if a view of it were still exported


def test_filling_disk_with_room_saves(tmp_path, filling_disk):
    """The simulation itself lets a save through when there is room."""
    path = tmp_path / "s.mason"
    filling_disk(10 << 20)
    mason.dump_module(path, module=session_module(2.0))
    assert_loads_as(path, 2.0)


def test_failed_fsync_keeps_previous_file(tmp_path, monkeypatch, no_skipped_variables):
    path = tmp_path / "s.mason"
    mason.dump_module(path, module=session_module(1.0))
    real_fsync = os.fsync

    def fsync(fd):
        if local._TEMP_MARK in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real_fsync(fd)

    if not os.path.exists("/proc/self/fd"):
        pytest.skip("needs /proc/self/fd")
    monkeypatch.setattr(local.os, "fsync", fsync)
    with pytest.raises(OSError) as caught:
        mason.dump_module(path, module=session_module(2.0))
    assert caught.value.errno == errno.EIO and caught.value.filename == str(path)
    assert_loads_as(path, 1.0)
    assert temporaries(tmp_path) == []


def test_failed_rename_keeps_previous_file(tmp_path, monkeypatch, no_skipped_variables):
    path = tmp_path / "s.mason"
    mason.dump_module(path, module=session_module(1.0))

    def replace(src, dst):
        raise OSError(errno.EPERM, os.strerror(errno.EPERM), str(src), str(dst))

    monkeypatch.setattr(local.os, "replace", replace)
    with pytest.raises(PermissionError):
        mason.dump_module(path, module=session_module(2.0))
    assert_loads_as(path, 1.0)
    assert temporaries(tmp_path) == []


# ------------------------------------------------------------- a real full disk


@pytest.fixture
def small_fs(tmp_path):
    """An 8 MiB tmpfs (Linux, root, and a sandbox that allows mounting)."""
    if not sys.platform.startswith("linux") or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs Linux and mount(8)")
    mount = tmp_path / "small"
    mount.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip() or f'exit {proc.returncode}'}")
    try:
        yield mount
    finally:
        gc.collect()  # loaded arrays (in cycles through function globals) map the files
        if subprocess.run(["umount", str(mount)]).returncode != 0:
            subprocess.run(["umount", "-l", str(mount)], check=True)


def test_real_full_disk_keeps_previous_file(small_fs, no_skipped_variables):
    path = small_fs / "s.mason"
    mason.dump_module(path, module=session_module(1.0))  # 1.6 MB
    before = path.read_bytes()
    with pytest.raises(OSError) as caught:
        mason.dump_module(path, module=session_module(2.0, size=1_500_000))  # 12 MB
    assert path.read_bytes() == before
    _check_failed_save(caught, path, 1.0)
    # The failed temporary's space came back: a save that fits succeeds.
    mason.dump_module(path, module=session_module(3.0))
    assert_loads_as(path, 3.0)
    assert sorted(os.listdir(small_fs)) == ["s.mason"]


def test_a_kept_traceback_of_a_failed_save_holds_no_buffer_of_the_session(tmp_path):
    """IPython keeps the last traceback: after a save that failed half way
    through a big buffer, the session's bytearray can still grow."""
    from conftest import run_python

    proc = run_python(
        f"""
import errno, os
import mason
from mason._format import writer
ba = bytearray(os.urandom(1 << 20))
real, calls = writer.ContainerWriter._write, []
def failing(self, data):
    calls.append(1)
    if len(calls) > 2:
        raise OSError(errno.ENOSPC, "No space left on device")
    return real(self, data)
writer.ContainerWriter._write = failing
try:
    mason.dump_module({str(tmp_path / "s.mason")!r})
except OSError as exc:
    kept = exc
writer.ContainerWriter._write = real
ba.extend(b"more")
print(kept.errno == errno.ENOSPC, len(ba))
"""
    )
    assert proc.stdout.split() == ["True", str((1 << 20) + 4)]
    assert not (tmp_path / "s.mason").exists()
