"""Checkpoint history (issue 14): checkpoint, list, restore each state, in fresh interpreters.

A child interpreter builds a session in ``__main__`` (numpy arrays, a pandas
DataFrame, a function, a class and an instance), checkpoints it, changes it
(an array in place, the DataFrame, the function), checkpoints again; fresh
interpreters then restore each checkpoint and check it is what was saved.
Then: what a checkpoint writes (only the chunks that changed), listing,
bad ids and bad stores, allow= and key=, compression, URLs (memory://).
Damage and tampering are in test_store_tamper.py; crashes, concurrent
writers and prune in test_store_crash.py.
"""

from __future__ import annotations

import os
import sys
import types

import pytest
from conftest import run_python

import mason
from mason._store import layout
from mason._store.catalog import init_store

np = pytest.importorskip("numpy")

SESSION = r"""
import sys
import numpy as np
import pandas as pd
import mason

store = sys.argv[1] if len(sys.argv) > 1 else STORE
big = np.arange(1_000_000, dtype=np.float64)          # 8 MB: many chunks
small = np.arange(10, dtype=np.int32)
frame = pd.DataFrame({"a": np.arange(1000), "b": ["x%d" % i for i in range(1000)]})
config = {"lr": 0.1, "layers": [64, 32]}
alias = config                                         # shared: stays one object

def area(r):
    return 3 * r * r

class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y
    def norm(self):
        return abs(self.x) + abs(self.y)

origin = Point(3, 4)
first = mason.checkpoint(store, message="start")

big[100:200] = -1.0                                    # in place: same object, new bytes
frame.loc[5, "a"] = 500
config["lr"] = 0.01
def area(r):
    return 4 * r * r
added = "new"
second = mason.checkpoint(store, message="after changes")
print(first, second)
"""


@pytest.fixture
def store(tmp_path):
    path = tmp_path / "store"
    init_store(path, chunk_size=64 << 10)  # small chunks: small test data still has many
    return path


def _make_history(tmp_path, store) -> tuple[str, str]:
    script = tmp_path / "session.py"
    script.write_text(SESSION.replace("STORE", repr(str(store))))
    out = run_python(
        f"import runpy, sys\nsys.argv = ['x', {str(store)!r}]\nrunpy.run_path({str(script)!r}, run_name='__main__')\n",
        cwd=tmp_path,
    ).stdout
    first, second = out.split()
    return first, second


def test_every_checkpoint_restores_to_what_was_saved(tmp_path, store):
    first, second = _make_history(tmp_path, store)
    listed = mason.checkpoints(store)
    assert [c.id for c in listed] == [first, second]
    assert [c.message for c in listed] == ["start", "after changes"]
    assert listed[0].parent is None and listed[1].parent == first
    assert "added" in listed[1].names and "added" not in listed[0].names
    run_python(
        f"""
        import mason, numpy as np
        mason.restore({str(store)!r}, {first!r})
        assert (big == np.arange(1_000_000, dtype=np.float64)).all()
        assert small.tolist() == list(range(10)) and frame.loc[5, 'a'] == 5 and frame['b'][7] == 'x7'
        assert config == {{'lr': 0.1, 'layers': [64, 32]}} and alias is config
        assert area(2) == 12 and isinstance(origin, Point) and origin.norm() == 7
        assert 'added' not in globals()
        """,
        cwd=tmp_path,
    )
    run_python(
        f"""
        import mason, numpy as np
        mason.restore({str(store)!r})   # the latest
        expected = np.arange(1_000_000, dtype=np.float64)
        expected[100:200] = -1.0
        assert (big == expected).all() and big.flags.writeable
        assert frame.loc[5, 'a'] == 500 and config['lr'] == 0.01 and alias is config
        assert area(2) == 16 and origin.norm() == 7 and added == 'new'
        big[:] = 0   # a restored array is the process's own: the store is not changed
        mason.restore({str(store)!r}, {second!r}, names=['big'])
        assert (big == expected).all()
        """,
        cwd=tmp_path,
    )


def test_restore_asdict_and_id_forms(tmp_path, store):
    first, second = _make_history(tmp_path, store)
    ns = mason.restore_asdict(store, first[:-3])  # a unique prefix
    assert ns["config"]["lr"] == 0.1 and ns["__session__"] == f"{store}@{first}"
    assert mason.restore_asdict(store, 0, names=["config"])["config"]["lr"] == 0.1
    assert mason.restore_asdict(store, -1, names=["added"])["added"] == "new"
    assert set(mason.restore_asdict(store, second, names=["small"])) >= {"small"}
    with pytest.raises(mason.CheckpointNotFoundError, match="no checkpoint 'nope'"):
        mason.restore_asdict(store, "nope")
    with pytest.raises(mason.CheckpointNotFoundError, match="start of 2"):
        mason.restore_asdict(store, first[:4])
    with pytest.raises(mason.CheckpointNotFoundError, match="number 5"):
        mason.restore_asdict(store, 5)
    with pytest.raises(LookupError):  # the builtin it subclasses
        mason.restore_asdict(store, "nope")
    with pytest.raises(KeyError, match="not in this session"):
        mason.restore_asdict(store, first, names=["added"])


def test_an_in_place_change_writes_about_the_chunks_it_touches(tmp_path, store):
    module = types.ModuleType("inplace_case")
    module.big = np.arange(1 << 20, dtype=np.float64)  # 8 MiB: 128 different chunks of 64 KiB
    module.other = np.random.default_rng(0).random(1 << 18)  # 2 MiB, unchanged
    first = mason.checkpoint(store, module=module)
    module.big[200_000:210_000] += 1  # 80 KB, inside two chunks
    second = mason.checkpoint(store, module=module)
    third = mason.checkpoint(store, module=module)  # nothing changed
    listed = {c.id: c for c in mason.checkpoints(store)}
    assert listed[first].bytes_written > 10 << 20
    assert listed[first].bytes_total == listed[second].bytes_total > 10 << 20
    # Two 64 KiB chunks, plus segments, manifest and entry: a few KB.
    assert 128 << 10 <= listed[second].bytes_written < 180 << 10, listed[second].bytes_written
    assert listed[third].bytes_written < 40 << 10, listed[third].bytes_written
    restored = mason.restore_asdict(store, second)
    assert (restored["big"] == module.big).all() and (restored["other"] == module.other).all()
    if sys.platform == "linux":  # the chunks are mapped in place, not copied
        with open("/proc/self/maps") as maps:
            assert sum(str(store) in line for line in maps) >= 128 + 32
    restored["big"][:] = -1  # copy-on-write: the store does not change
    assert (mason.restore_asdict(store, second)["big"] == module.big).all()
    assert (mason.restore_asdict(store, first)["big"] == np.arange(1 << 20)).all()


def test_identical_buffers_are_stored_once(store):
    module = types.ModuleType("dedup_case")
    module.a = np.arange(1 << 18, dtype=np.float64)  # 2 MiB
    module.b = module.a.copy()  # another object, the same bytes
    module.blob = os.urandom(1 << 20)  # 1 MiB of bytes: a buffer too
    first = mason.checkpoint(store, module=module)
    written = mason.checkpoints(store)[0].bytes_written
    assert 3 << 20 < written < (3 << 20) + (200 << 10), written  # a (= b) and blob, once
    restored = mason.restore_asdict(store, first)
    assert (restored["a"] == restored["b"]).all() and restored["a"] is not restored["b"]
    assert restored["blob"] == module.blob


def test_many_small_variables_go_into_few_files(store):
    module = types.ModuleType("small_case")
    for i in range(300):
        setattr(module, f"v{i}", np.full(100, i))
        setattr(module, f"s{i}", f"text {i}")
    mason.checkpoint(store, module=module)
    files = [name for name, _ in mason._store.catalog.Store.open(store).backend.objects()]
    assert len(files) < 10, len(files)  # packs and the manifest, not 600 objects
    restored = mason.restore_asdict(store)
    assert restored["v123"].tolist() == [123] * 100 and restored["s299"] == "text 299"


def test_signed_checkpoints_and_allowlists(tmp_path, store):
    key = b"k" * 32
    run_python(
        f"""
        import mason, numpy as np
        data = np.arange(50_000)
        def helper():
            return 1
        mason.checkpoint({str(store)!r}, key={key!r})
        """,
        cwd=tmp_path,
    )
    run_python(
        f"""
        import warnings, mason, numpy as np
        mason.restore({str(store)!r}, key={key!r})
        assert data[-1] == 49_999 and helper() == 1
        for wrong in (b'x' * 32, None):
            try:
                mason.restore({str(store)!r}, key=wrong) if wrong else None
            except mason.SignatureError:
                pass
            else:
                assert wrong is None
        ns = None
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            ns = mason.restore_asdict({str(store)!r}, allow=mason.DATA)
        assert ns['data'][-1] == 49_999 and 'helper' not in ns
        assert any('helper' in str(w.message) for w in caught), [str(w.message) for w in caught]
        try:
            mason.restore_asdict({str(store)!r}, allow=mason.DATA, on_error='raise')
        except mason.ForbiddenGlobalError:
            pass
        else:
            raise AssertionError('a function got past allow=DATA')
        """,
        cwd=tmp_path,
    )
    with pytest.raises(mason.SignatureError, match="does not match"):
        mason.restore_asdict(store, key=b"x" * 32)
    mason.checkpoint(store, module=types.ModuleType("unsigned_case"), key=False)
    with pytest.raises(mason.SignatureError, match="not signed"):
        mason.restore_asdict(store, key=key)
    assert mason.verify_store(store).checkpoints == 2


def test_compressed_checkpoints(store):
    module = types.ModuleType("zlib_case")
    module.zeros = np.zeros(1 << 20)
    module.text = "abc" * 100_000
    first = mason.checkpoint(store, module=module, compression="zlib")
    assert mason.checkpoints(store)[0].bytes_written < 200 << 10
    restored = mason.restore_asdict(store, first)
    assert (restored["zeros"] == 0).all() and restored["text"] == module.text
    mason.verify_store(store)


def test_skipped_variables_are_reported_and_the_rest_saved(store):
    module = types.ModuleType("skip_case")
    module.ok = [1, 2, 3]
    module.gen = (i for i in range(3))
    with pytest.warns(mason.SkippedVariableWarning, match="gen"):
        first = mason.checkpoint(store, module=module)
    assert "ok" in mason.checkpoints(store)[0].names and "gen" not in mason.checkpoints(store)[0].names
    assert mason.restore_asdict(store, first)["ok"] == [1, 2, 3]
    with pytest.raises(mason.PicklingError):
        mason.checkpoint(store, module=module, on_error="raise")
    assert len(mason.checkpoints(store)) == 1  # the failed one is not listed


def test_stores_that_are_not_stores(tmp_path):
    with pytest.raises(mason.StoreError, match="no checkpoint store here"):
        mason.checkpoints(tmp_path / "missing")
    with pytest.raises(mason.StoreError, match="no checkpoint store here"):
        mason.restore(tmp_path / "missing")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    with pytest.raises(mason.StoreError, match="not a checkpoint store"):
        mason.checkpoint(tmp_path / "full", module=types.ModuleType("m"))
    assert os.listdir(tmp_path / "full") == ["notes.txt"]
    session = tmp_path / "s.mason"
    mason.dump_module(session, module=types.ModuleType("m"))
    with pytest.raises(mason.StoreError, match="is a file"):
        mason.checkpoints(session)
    empty = tmp_path / "empty"
    init_store(empty)
    with pytest.raises(mason.CheckpointNotFoundError, match="holds no checkpoints"):
        mason.restore(empty)
    assert mason.checkpoints(empty) == []
    (empty / layout.CONFIG).write_text('{"format": "mason.store", "version": 99}')
    with pytest.raises(mason.UnsupportedFormatError, match="newer mason"):
        mason.checkpoints(empty)
    with pytest.raises(TypeError, match="keep=N"):
        mason.prune(empty)
    with pytest.raises(ValueError, match="checksum"):
        mason.checkpoint(empty, module=types.ModuleType("m"), checksum="crc32")
    with pytest.raises(TypeError, match="unexpected keyword"):
        mason.checkpoint(empty, module=types.ModuleType("m"), bogus=1)


def test_default_store(tmp_path, monkeypatch):
    monkeypatch.setenv("MASON_HOME", str(tmp_path / "home"))
    assert mason.checkpoints() == []
    module = types.ModuleType("default_case")
    module.x = 41
    ident = mason.checkpoint(module=module, message="m")
    assert mason.default_store_path() == tmp_path / "home" / "store"
    assert [c.id for c in mason.checkpoints()] == [ident]
    assert mason.restore_asdict()["x"] == 41
    assert oct(os.stat(tmp_path / "home" / "store").st_mode & 0o777) == "0o700"
    objects = [p for p in (tmp_path / "home" / "store" / "objects").rglob("*") if p.is_file()]
    assert objects and all(p.stat().st_mode & 0o777 == 0o600 for p in objects)


def test_memory_url_store():
    pytest.importorskip("fsspec")
    url = f"memory://mason-test-{os.getpid()}/store"
    init_store(url, chunk_size=64 << 10)
    module = types.ModuleType("url_case")
    module.arr = np.arange(600_000)
    module.d = {"k": 1}
    first = mason.checkpoint(url, module=module)
    module.arr[:10] = 0
    second = mason.checkpoint(url, module=module)
    listed = mason.checkpoints(url)
    assert [c.id for c in listed] == [first, second]
    assert listed[1].bytes_written < listed[0].bytes_written / 2
    assert mason.restore_asdict(url, first)["arr"][:3].tolist() == [0, 1, 2]
    assert mason.restore_asdict(url, second)["arr"][:3].tolist() == [0, 0, 0]
    assert mason.verify_store(url).checkpoints == 2
    assert mason.prune(url, keep=1).removed == (first,)
    assert mason.restore_asdict(url)["arr"][11] == 11


def test_chunks_that_are_not_whole_pages_are_copied_not_mapped(tmp_path):
    store = tmp_path / "odd"
    init_store(store, chunk_size=12_345, pack_below=1000)
    module = types.ModuleType("odd_case")
    module.arr = np.arange(400_000, dtype=np.float64)  # 3.2 MB: 260 odd-sized chunks
    ident = mason.checkpoint(store, module=module)
    restored = mason.restore_asdict(store, ident)
    assert (restored["arr"] == module.arr).all()
    assert (mason.restore_asdict(store, ident, mmap=False)["arr"] == module.arr).all()


def test_a_prune_that_cannot_read_a_kept_manifest_removes_nothing(store):
    module = types.ModuleType("prune_guard_case")
    ids = []
    for i in range(3):
        module.value = np.full(50_000, i)
        ids.append(mason.checkpoint(store, module=module))
    opened = mason._store.catalog.Store.open(store)
    manifest = opened.backend.path(layout.object_name(opened.entry(ids[-1]).manifest))
    os.unlink(manifest)
    before = sorted(name for name, _ in opened.backend.objects())
    with pytest.raises(mason.CorruptStoreError, match="is missing"):
        mason.prune(store, keep=1)
    assert [c.id for c in mason.checkpoints(store)] == ids
    assert sorted(name for name, _ in opened.backend.objects()) == before


def test_big_buffers_hashed_ahead_survive_skips_and_let_go_after_a_failed_write(tmp_path, store):
    """Big buffers are hashed by threads while pickling goes on: a variable
    that cannot be saved between them changes nothing, and a write that
    fails part way leaves no view of the session's buffers behind."""
    proc = run_python(
        f"""
import os, types
import numpy as np
import mason
from mason._store import backend
store = {str(store)!r}
a = np.arange(400_000, dtype=np.float64)          # 3.2 MB: 49 chunks of 64 KiB
same = a.copy()                                   # the same pieces again
gen = (i for i in range(3))                       # skipped, between big buffers
b = np.linspace(0, 1, 300_000)
ba = bytearray(os.urandom(1 << 20))              # out of band too, and last
first = mason.checkpoint(store)
a[1000:2000] += 1
second = mason.checkpoint(store)

real = backend.LocalBackend._temp_written
calls = []
def failing(self, parts):
    calls.append(1)
    if len(calls) > 3:
        raise OSError(28, "No space left on device")
    return real(self, parts)
backend.LocalBackend._temp_written = failing
ba[:] = os.urandom(1 << 20)                       # all new: written while it is held
try:
    mason.checkpoint(store)
except OSError as exc:
    print("failed:", exc.errno)
    kept = exc                                    # as IPython keeps the last traceback
backend.LocalBackend._temp_written = real
ba.extend(b"x")                                   # yet nothing still exports its buffer
print(first, second)
""",
        cwd=tmp_path,
    )
    assert "failed: 28" in proc.stdout, proc.stdout + proc.stderr
    first, second = proc.stdout.split()[-2:]
    assert [c.id for c in mason.checkpoints(str(store))] == [first, second]
    check = """
import numpy as np
import mason
got = mason.restore_asdict(STORE, id=ID)
a = np.arange(400_000, dtype=np.float64)
if CHANGED:
    a[1000:2000] += 1
assert np.array_equal(got["a"], a) and np.array_equal(got["same"], np.arange(400_000, dtype=np.float64))
assert np.array_equal(got["b"], np.linspace(0, 1, 300_000)) and len(got["ba"]) == 1 << 20 and "gen" not in got
"""
    for ident, changed in ((first, False), (second, True)):
        run_python(check.replace("STORE", repr(str(store))).replace("ID", repr(ident)).replace("CHANGED", str(changed)))
    assert mason.verify_store(str(store)).checkpoints == 2


def test_an_object_whose_fsync_fails_on_its_thread_fails_the_checkpoint(tmp_path, store):
    """Objects are fsynced and renamed on threads: a failure there fails the
    checkpoint (never listed), and leaves no temporary or half object."""
    proc = run_python(
        f"""
import errno, os
import numpy as np
import mason
from mason._store import backend
store = {str(store)!r}
first = mason.checkpoint(store)
big = np.arange(1_000_000, dtype=np.float64)
real, calls = os.fsync, []
def failing(fd):
    calls.append(fd)
    if len(calls) == 5:
        raise OSError(errno.EIO, "Input/output error")
    return real(fd)
os.fsync = failing
try:
    mason.checkpoint(store)
except OSError as exc:
    print("failed:", exc.errno)
os.fsync = real
print(first)
""",
        cwd=tmp_path,
    )
    assert "failed: 5" in proc.stdout, proc.stdout + proc.stderr
    first = proc.stdout.split()[-1]
    assert [c.id for c in mason.checkpoints(str(store))] == [first]
    assert os.listdir(store / "tmp") == []
    assert mason.verify_store(str(store)).checkpoints == 1
