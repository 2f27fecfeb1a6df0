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
