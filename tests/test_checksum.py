"""CRC-32 summed on several threads gives exactly zlib.crc32."""

import os
import random
import zlib

import pytest

from mason._format import checksum


@pytest.fixture(scope="module")
def data():
    return os.urandom(40 << 20)


def test_combine_equals_the_crc_of_the_concatenation(data):
    rng = random.Random(7)
    for _ in range(50):
        a, b = rng.randrange(0, 1 << 16), rng.randrange(0, 1 << 16)
        assert checksum.crc32_combine(zlib.crc32(data[:a]), zlib.crc32(data[a : a + b]), b) == zlib.crc32(data[: a + b])
    assert checksum.crc32_combine(zlib.crc32(b"abc"), 0, 0) == zlib.crc32(b"abc")
    assert checksum.crc32_combine(0, zlib.crc32(b"abc"), 3) == zlib.crc32(b"abc")


@pytest.mark.parametrize(
    "sizes",
    [
        [40 << 20],  # one large update: pieces on threads
        [1, 17 << 20, 3, 0, (20 << 20) - 4],  # small and large updates interleaved, in order
        [4 << 20] * 10,  # below the threshold each: summed inline
        [(16 << 20) + 1, (16 << 20) - 1, 8 << 20],
    ],
)
def test_hasher_equals_zlib_whatever_the_pieces(data, sizes, monkeypatch):
    monkeypatch.setattr(checksum, "_MAX_PENDING", 2)  # also drains while updating
    hasher = checksum.Algorithm("crc32").new()
    at = 0
    for n in sizes:
        hasher.update(memoryview(data)[at : at + n])
        at += n
    assert hasher.digest() == zlib.crc32(data[:at])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_sums_with_its_own_threads(data):
    hasher = checksum.Algorithm("crc32").new()
    hasher.update(data)  # the parent's pool exists now
    expected = hasher.digest()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        import signal

        signal.alarm(60)  # a pool without its threads would wait forever
        child = checksum.Algorithm("crc32").new()
        child.update(data)
        os._exit(0 if child.digest() == expected else 1)
    assert os.waitpid(pid, 0)[1] == 0


@pytest.mark.parametrize("algorithm", ["crc32", "xxh3_64"])
def test_large_records_summed_while_written_give_the_same_file(tmp_path, monkeypatch, algorithm):
    # Summing while writing (then writing the header again) must give the
    # very bytes that summing first gives, and a file that loads.
    np = pytest.importorskip("numpy")
    import types

    import mason
    from mason import _namespace
    from mason._format import ContainerReader, writer

    environment = _namespace.environment([])
    monkeypatch.setattr(_namespace, "environment", lambda values: environment)  # same bytes twice
    module = types.ModuleType("overlap_case")
    module.big = np.random.default_rng(5).random(1_500_000)  # 12 MB
    module.small = [1, 2, 3]
    first, second = tmp_path / "first.mason", tmp_path / "second.mason"
    mason.dump_module(first, module=module, checksum=algorithm)
    monkeypatch.setattr(writer, "OVERLAP_FROM", 1 << 20)
    monkeypatch.setattr(writer, "_OVERLAP_PIECE", 3 << 20)  # pieces that do not divide the blob
    calls = []
    original = writer.ContainerWriter._emit_summing_while_writing
    monkeypatch.setattr(
        writer.ContainerWriter,
        "_emit_summing_while_writing",
        lambda self, *args: calls.append(args[0]) or original(self, *args),
    )
    mason.dump_module(second, module=module, checksum=algorithm)
    assert calls  # the big blob took the overlapped path
    assert first.read_bytes() == second.read_bytes()
    with ContainerReader.open(second) as reader:
        reader.verify()
    got = mason.load_module_asdict(second)
    assert (got["big"] == module.big).all() and got["small"] == [1, 2, 3]
