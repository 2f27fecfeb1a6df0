"""CRC-32 summed on several threads gives exactly zlib.crc32; crc32+xxh3
holds both, and each reader checks the half it can compute."""

import io
import os
import random
import sys
import zlib

import pytest
from conftest import run_python
from hostile_files import crc_preserving_patch

from mason._format import ContainerReader, ContainerWriter, checksum, spec
from mason.errors import CorruptSessionError


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
    hasher = checksum.Algorithm("crc32").new(0)
    at = 0
    for n in sizes:
        hasher.update(memoryview(data)[at : at + n])
        at += n
    assert hasher.digest() == zlib.crc32(data[:at])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_sums_with_its_own_threads(data):
    hasher = checksum.Algorithm("crc32").new(0)
    hasher.update(data)  # the parent's pool exists now
    expected = hasher.digest()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        import signal

        signal.alarm(60)  # a pool without its threads would wait forever
        child = checksum.Algorithm("crc32").new(0)
        child.update(data)
        os._exit(0 if child.digest() == expected else 1)
    assert os.waitpid(pid, 0)[1] == 0


@pytest.mark.parametrize("algorithm", ["crc32", "xxh3_64", "crc32+xxh3"])
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


# -- crc32+xxh3 ------------------------------------------------------------------


def _both_halves(payload) -> int:
    """What crc32+xxh3 stores: the xxh3 half only from XXH3_FROM bytes."""
    xxhash = pytest.importorskip("xxhash")
    high = xxhash.xxh3_64_intdigest(bytes(payload)) >> 32 if len(payload) >= checksum.XXH3_FROM else 0
    return high << 32 | zlib.crc32(payload)


@pytest.mark.parametrize("to_file", [False, True])
def test_crc32_xxh3_stores_the_crc_below_the_high_half_of_xxh3(data, tmp_path, to_file):
    """Low 32 bits: zlib.crc32; high 32 bits: xxh3_64's high half.  A 40 MB
    blob into a file takes the path that sums on threads while writing."""
    pytest.importorskip("xxhash")
    blobs = [b"tiny blob", data, data[: checksum.XXH3_FROM], data[: checksum.XXH3_FROM - 1]]
    segments = [b"seg" * 100]
    out = open(tmp_path / "c.mason", "w+b") if to_file else io.BytesIO()
    with out:
        writer = ContainerWriter(out, checksum="crc32+xxh3")
        for s in segments:
            writer.add_segment(s)
        for b in blobs:
            writer.add_blob(b)
        writer.finish({})
        out.seek(0)
        raw = out.read()
    assert raw[14] == spec.CHECKSUM_IDS["crc32+xxh3"] == 3
    assert raw[12:14] == b"\x01\x00"  # format 2.1: it uses the new id
    with ContainerReader.open(raw) as reader:
        stored = [int(reader.blob_info(i)["checksum"], 16) for i in range(len(blobs))]
        assert stored == [_both_halves(payload) for payload in blobs]
        assert [value >> 32 != 0 for value in stored] == [False, True, True, False]
        assert int(reader.segment_info(0)["checksum"], 16) == _both_halves(segments[0])
        reader.verify()
        assert reader.checksum_name == "crc32+xxh3"


def _patched(tmp_path):
    """(file with one blob, the file with that blob changed but its CRC-32
    kept, the file with one byte of the blob flipped)."""
    blob = os.urandom(checksum.XXH3_FROM)  # large enough to carry an xxh3 half
    out = io.BytesIO()
    writer = ContainerWriter(out, checksum="crc32+xxh3")
    writer.add_blob(blob)
    writer.finish({})
    good = out.getvalue()
    at = good.index(blob)
    forged = crc_preserving_patch(blob, 0, b"EVIL", 100)
    assert forged != blob and zlib.crc32(forged) == zlib.crc32(blob)
    flipped = bytearray(blob)
    flipped[200_000] ^= 1
    return good, good[:at] + forged + good[at + len(blob) :], good[:at] + bytes(flipped) + good[at + len(blob) :]


def test_with_xxhash_the_xxh3_half_is_checked(tmp_path):
    pytest.importorskip("xxhash")
    good, forged, flipped = _patched(tmp_path)
    ContainerReader.open(good).verify()
    for bad in (forged, flipped):  # a same-CRC change does not get past the xxh3 half
        with pytest.raises(CorruptSessionError, match=r"blob 0 .*checksum mismatch"):
            ContainerReader.open(bad).blob(0)


def test_without_xxhash_the_crc_half_is_checked_and_the_file_opens(tmp_path, monkeypatch):
    pytest.importorskip("xxhash")  # to write the file
    good, forged, flipped = _patched(tmp_path)
    monkeypatch.setitem(sys.modules, "xxhash", None)  # this reader has no xxhash
    ContainerReader.open(good).verify()
    with pytest.raises(CorruptSessionError, match=r"blob 0 .*checksum mismatch"):
        ContainerReader.open(flipped).blob(0)
    # What CRC-32 cannot see, it cannot see: the forged blob passes here.
    assert b"EVIL" in bytes(ContainerReader.open(forged).blob(0))
    with pytest.raises(ValueError, match=r"'crc32\+xxh3' needs the xxhash package"):
        ContainerWriter(io.BytesIO(), checksum="crc32+xxh3")


def test_a_default_session_loads_in_a_fresh_interpreter_without_xxhash(tmp_path):
    """Saved where mason[fast] is installed (crc32+xxh3 by default), the
    session opens, verified, where it is not; a damaged array is refused there."""
    pytest.importorskip("xxhash")
    np = pytest.importorskip("numpy")
    path = tmp_path / "s.mason"
    run_python(
        f"""
        import numpy as np, mason
        big = np.arange(3_000_000, dtype=np.int64)  # 24 MB: summed while written
        label = "kept"
        mason.dump_module({str(path)!r})
        assert mason.inspect({str(path)!r}).format_version == (2, 1)
        """
    )
    check = f"""
        import sys
        sys.modules["xxhash"] = None  # as if mason[fast] were not installed
        import numpy as np, mason
        ns = mason.load_module_asdict({str(path)!r})
        assert (ns["big"] == np.arange(3_000_000, dtype=np.int64)).all() and ns["label"] == "kept"
        """
    run_python(check)
    data = bytearray(path.read_bytes())
    at = data.index(np.arange(3_000_000, dtype=np.int64)[1_000_000:1_000_004].tobytes())
    data[at] ^= 0x40
    path.write_bytes(bytes(data))
    proc = run_python(check, check=False)
    assert proc.returncode != 0 and "checksum mismatch" in proc.stderr, proc.stderr


def test_a_small_session_never_imports_xxhash(tmp_path):
    """A container of small records gets plain CRC-32 sums by default:
    saving and loading a small session costs no import of xxhash (about
    1.2 ms), and the file is a format 2.0 file."""
    pytest.importorskip("xxhash")
    path = tmp_path / "small.mason"
    run_python(
        f"""
        import sys, mason
        numbers = list(range(1000))
        def f(x):
            return x + 1
        mason.dump_module({str(path)!r})
        assert "xxhash" not in sys.modules
        assert mason.inspect({str(path)!r}).format_version == (2, 0)  # plain crc32: nothing to gain
        ns = mason.load_module_asdict({str(path)!r})
        assert ns["numbers"] == list(range(1000)) and ns["f"](1) == 2
        assert "xxhash" not in sys.modules
        """
    )


def test_crc32_xxh3_known_answers():
    """The definition, pinned: a file written today must check tomorrow."""
    pytest.importorskip("xxhash")
    algo = checksum.Algorithm("crc32+xxh3")
    one_mib = bytes(range(256)) * 4096
    assert algo.compute(one_mib) == 0xD36C0E13_04D0E435  # xxh3_64 0xd36c0e13a3df139e, crc32 0x04d0e435
    assert algo.compute(one_mib[:-1]) == 0x00000000_04A8505F  # under 1 MiB: the CRC only
    assert algo.check(one_mib, 0xD36C0E13_04D0E435) == (0xD36C0E13, 0xD36C0E13)
    assert algo.check(one_mib, 0x00000000_04D0E435) == (0x04D0E435, 0x04D0E435)  # no xxh3 half: the CRC


class _Pipe(io.RawIOBase):
    """A non-seekable stream: the reader takes its one-pass path."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, out) -> int:
        return self._data.readinto(out)


@pytest.mark.parametrize("with_xxhash", [True, False], ids=["xxhash", "no-xxhash"])
def test_crc32_xxh3_checked_on_a_pipe_and_in_a_file(with_xxhash, monkeypatch):
    pytest.importorskip("xxhash")
    np = pytest.importorskip("numpy")
    import types

    import mason

    module = types.ModuleType("m")
    module.big = np.arange(400_000)  # 3.2 MB: a record with an xxh3 half
    module.x = [1, 2]
    out = io.BytesIO()
    mason.dump_module(out, module=module)
    data = out.getvalue()
    assert ContainerReader.open(data).checksum_name == "crc32+xxh3"
    if not with_xxhash:
        monkeypatch.setitem(sys.modules, "xxhash", None)
    ns = mason.load_module_asdict(io.BufferedReader(_Pipe(data)))
    assert (ns["big"] == module.big).all() and ns["x"] == [1, 2]
    bad = bytearray(data)
    bad[bad.index(module.big[200_000:200_002].tobytes())] ^= 1
    for source in (io.BufferedReader(_Pipe(bytes(bad))), io.BytesIO(bytes(bad))):
        with pytest.raises(CorruptSessionError, match=r"blob 0 .*checksum mismatch"):
            mason.load_module_asdict(source)


def test_a_crc32_xxh3_file_is_signed_where_xxhash_is_missing(tmp_path):
    """Signing copies the records and sums them again: without xxhash, with
    CRC-32 (a plain crc32 file), and the signed file loads and verifies."""
    pytest.importorskip("xxhash")
    pytest.importorskip("numpy")
    path = tmp_path / "s.mason"
    run_python(
        f"""
        import numpy as np, mason
        big = np.arange(300_000)
        mason.dump_module({str(path)!r})
        assert mason.inspect({str(path)!r}).format_version == (2, 1)
        """
    )
    run_python(
        f"""
        import sys
        sys.modules["xxhash"] = None
        import numpy as np, mason
        mason.sign({str(path)!r}, key="k")
        info = mason.inspect({str(path)!r})
        assert info.signed and info.format_version == (2, 0), info.format_version
        ns = mason.load_module_asdict({str(path)!r}, key="k")
        assert (ns["big"] == np.arange(300_000)).all()
        """
    )
    assert ContainerReader.open(path.read_bytes()).checksum_name == "crc32"
