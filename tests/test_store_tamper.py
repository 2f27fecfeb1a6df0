"""Damaged and altered stores: every restore refuses what it cannot check, before
anything is rebuilt, and leaves the module as it was.

Damage (a flipped bit, a truncated or missing object, a broken manifest or
entry) is found by the hashes that name objects.  Tampering by someone who
can write into the store (and so can compute those hashes) is found only
with a key: a signed checkpoint's manifest carries an HMAC of itself and of
every piece; it names its own checkpoint, so an older manifest cannot be put
in a newer one's place.
"""

from __future__ import annotations

import json
import os
import shutil
import types

import pytest

import mason
from mason._store import catalog, hashing, layout, objects
from mason._store.catalog import Store, init_store

np = pytest.importorskip("numpy")
KEY = b"secret key for the store tests"


def make_module(name: str = "tamper_case") -> types.ModuleType:
    module = types.ModuleType(name)
    module.aaa = "first"  # saved before big: a restore of only this one never reads big
    module.big = np.arange(1 << 18, dtype=np.float64)  # 2 MiB: 32 chunks
    module.small = [1, 2, 3]
    exec("def twice(x):\n    return 2 * x\n", module.__dict__)
    del module.__dict__["__builtins__"]
    return module


@pytest.fixture
def store(tmp_path):
    path = tmp_path / "store"
    init_store(path, chunk_size=64 << 10)
    return path


def chunk_objects(store, checkpoint_id=None) -> list[str]:
    """Paths of the standalone objects (chunks of ``big``) of a checkpoint."""
    opened = Store.open(store)
    manifest = opened.manifest(opened.resolve(checkpoint_id))
    return [opened.backend.path(layout.object_name(name)) for name, length in manifest.objects if length == 64 << 10]


def manifest_path(store, checkpoint_id=None) -> str:
    opened = Store.open(store)
    return opened.backend.path(layout.object_name(opened.resolve(checkpoint_id).manifest))


def flip(path, at: int) -> None:
    with open(path, "r+b") as f:
        f.seek(at)
        byte = f.read(1)
        f.seek(at)
        f.write(bytes([byte[0] ^ 0x10]))


def assert_refused(store, error, match, **kwds):
    """The restore raises ``error`` and the module it would update is unchanged."""
    module = make_module()
    module.big = "before"
    before = dict(module.__dict__)
    with pytest.raises(error, match=match):
        mason.restore(store, module=module, **kwds)
    assert module.__dict__ == before


@pytest.mark.parametrize("mmap", [True, False])
def test_a_flipped_bit_in_a_chunk_is_refused(store, mmap):
    mason.checkpoint(store, module=make_module())
    flip(chunk_objects(store)[5], 1000)
    assert_refused(store, mason.CorruptStoreError, "not match its name", mmap=mmap)
    with pytest.raises(mason.CorruptStoreError) as caught:
        mason.verify_store(store)
    assert len(caught.value.problems) == 1 and "not match its name" in caught.value.problems[0]
    # A restore that does not need the damaged object goes ahead.
    assert mason.restore_asdict(store, names=["aaa"])["aaa"] == "first"


def test_missing_and_truncated_objects_are_refused(store):
    mason.checkpoint(store, module=make_module())
    chunks = chunk_objects(store)
    os.unlink(chunks[0])
    assert_refused(store, mason.CorruptStoreError, "is missing")
    with open(chunks[1], "r+b") as f:
        f.truncate(1000)
    with pytest.raises(mason.CorruptStoreError) as caught:
        mason.verify_store(store)
    assert len(caught.value.problems) == 2
    os.unlink(chunks[2])
    assert_refused(store, mason.CorruptStoreError, "missing|truncated|trailer")


def test_a_damaged_manifest_or_entry_is_refused(store):
    first = mason.checkpoint(store, module=make_module())
    second = mason.checkpoint(store, module=make_module())
    flip(manifest_path(store, first), 40)  # compressed: the flip breaks the zlib stream, or the name
    assert_refused(store, mason.CorruptStoreError, "not match its name|does not decompress", id=first)
    entry = os.path.join(store, layout.entry_name(second))
    with open(entry, "w") as f:
        f.write('{"format": "mason.entry", "version": 1, "id": 5}')
    assert_refused(store, mason.CorruptStoreError, "is not a checkpoint id", id=second)
    with pytest.warns(mason.MasonWarning, match="damaged checkpoint entries"):
        assert mason.checkpoints(store) == [c for c in mason.checkpoints(store) if c.id == first]
    with pytest.raises(mason.CorruptStoreError) as caught:
        mason.verify_store(store)
    assert len(caught.value.problems) == 2


def _replay(store, old: str, new_id: str) -> None:
    """Put checkpoint ``old``'s entry (and so its manifest) in a new id's place."""
    doc = json.loads((store / layout.entry_name(old)).read_text())
    doc["id"] = new_id
    (store / layout.entry_name(new_id)).write_text(json.dumps(doc))


@pytest.mark.parametrize("signed", [False, True])
def test_an_older_manifest_in_a_newer_ones_place_is_refused(store, signed):
    key = KEY if signed else False
    module = make_module()
    first = mason.checkpoint(store, module=module, key=key)
    module.big[:] = 0
    second = mason.checkpoint(store, module=module, key=key)
    # Replace the latest checkpoint by the first one under the latest's id.
    (store / layout.entry_name(second)).unlink()
    _replay(store, first, second)
    error = mason.SignatureError if signed else mason.CorruptStoreError
    assert_refused(store, error, "older checkpoint was put in this one's place", key=key)


def _forge_manifest(store, checkpoint_id, change) -> None:
    """Rewrite a checkpoint's manifest as someone who can write into the store can:
    a valid object with the right name, and an entry pointing at it."""
    opened = Store.open(store)
    entry_path = store / layout.entry_name(checkpoint_id)
    doc = json.loads(entry_path.read_text())
    payload = bytes(objects.read(opened.backend, doc["manifest"], doc["manifest_length"], opened.hash))
    manifest = json.loads(payload)
    change(manifest)
    forged = layout.dumps(manifest)
    name = opened.hash.digest(forged)
    parts, _ = objects.encode([forged], None, 0)
    opened.backend.write(layout.object_name(name), parts)
    doc["manifest"], doc["manifest_length"] = name, len(forged)
    entry_path.write_text(json.dumps(doc))
    catalog._ENTRIES.clear()  # this process read the entry before: entries never change, except here


def _records(manifest) -> list:
    """The manifest's variables as records (a session stores them as columns)."""
    from mason._sessionmeta import unpack_variables

    variables = manifest["meta"]["variables"]
    if type(variables) is not dict:
        return variables
    pieces = manifest["pieces"]

    def lengths(items):
        return [sum(pieces[p][3] for p in numbers) for numbers in items]

    return unpack_variables(variables, lengths(manifest["segments"]), dict(enumerate(lengths(manifest["blobs"]))))


def _drop_variable(manifest):
    manifest["meta"]["variables"] = [v for v in _records(manifest) if v["name"] != "small"]


def test_a_forged_manifest_passes_without_a_key_and_is_refused_with_one(store):
    first = mason.checkpoint(store, module=make_module(), key=KEY)
    _forge_manifest(store, first, _drop_variable)
    # The hashes are the forger's own: nothing but a signature can tell.
    with pytest.warns(mason.SkippedVariableWarning):  # later segments refer to what the forger left out
        assert "small" not in mason.restore_asdict(store, key=False)
    assert_refused(store, mason.SignatureError, "signature does not match", key=KEY)
    with pytest.raises(mason.CorruptStoreError, match="signature does not match"):
        mason.verify_store(store, key=KEY)

    def strip(manifest):
        del manifest["signature"]

    _forge_manifest(store, first, strip)
    assert_refused(store, mason.SignatureError, "not signed", key=KEY)


def test_pieces_are_checked_against_their_macs(store, monkeypatch):
    # A hash weak enough to forge (it reads 16 bytes of each piece) stands for a
    # non-cryptographic name that a forger can match: only the MACs catch it.
    monkeypatch.setitem(hashing._ALGORITHMS, "weak16", (32, lambda: lambda data: hashing._xxh3_128()(bytes(data[:16]))))
    weak = store.parent / "weak"
    init_store(weak, chunk_size=64 << 10, hash="weak16")
    mason.checkpoint(weak, module=make_module(), key=KEY)
    flip(chunk_objects(weak)[3], 5000)  # past the 16 bytes the name depends on
    assert mason.restore_asdict(weak, key=False)["big"][3 * 8192 + 625] != 3 * 8192 + 625  # undetected
    assert_refused(weak, mason.SignatureError, "does not match its signature", key=KEY)
    assert_refused(weak, mason.SignatureError, "does not match its signature", key=KEY, mmap=False)
    with pytest.raises(mason.CorruptStoreError, match="does not match its signature"):
        mason.verify_store(weak, key=KEY)


def test_swapped_objects_are_refused(store):
    mason.checkpoint(store, module=make_module(), key=KEY)
    chunks = chunk_objects(store)
    shutil.copyfile(chunks[1], chunks[2])  # one chunk's file under another's name
    assert_refused(store, mason.CorruptStoreError, "not match its name", key=KEY)


def test_hostile_manifests_are_refused_before_use(store):
    mason.checkpoint(store, module=make_module())
    checkpoint_id = mason.checkpoints(store)[0].id

    def past_the_object(manifest):
        manifest["pieces"][0][3] = 10**9

    cases = {
        "inside one of the objects": past_the_object,
        "not a list of piece numbers": lambda m: m["blobs"].__setitem__(0, [10**6]),
        "nested deeper": lambda m: m["meta"].__setitem__("deep", json.loads("[" * 80 + "]" * 80)),
        "is not \\[name, length\\]": lambda m: m["objects"].__setitem__(0, ["zz", 1]),
        "malformed": lambda m: (
            m["meta"].__setitem__("variables", _records(m)) or m["meta"]["variables"][0].__setitem__("segment", 10**6)
        ),
    }
    for match, change in cases.items():
        _forge_manifest(store, checkpoint_id, change)
        assert_refused(store, mason.CorruptStoreError, match)
        # Undo: the next case starts from a good manifest again.
        (store / layout.entry_name(checkpoint_id)).unlink()
        mason.checkpoint(store, module=make_module())
        checkpoint_id = mason.checkpoints(store)[-1].id


def test_verify_store_reads_each_object_once_and_counts_leftovers(store):
    module = make_module()
    for i in range(3):
        module.small = [i]
        mason.checkpoint(store, module=module)
    opened = Store.open(store)
    parts, _ = objects.encode([b"left by a killed checkpoint"], None, 0)
    opened.backend.write(layout.object_name("0" * 32), parts)
    report = mason.verify_store(store)
    assert report.checkpoints == 3 and report.unreferenced == 1
    assert report.bytes >= 2 << 20
