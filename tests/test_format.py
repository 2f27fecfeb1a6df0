"""The container format: round trips through every kind of source, and damage detection."""

from __future__ import annotations

import base64
import io
import json
import os
import pickle
import struct
import sys
import zlib

import pytest
from hostile_files import V2, assemble
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mason._format import ContainerReader, ContainerWriter, spec
from mason._format import checksum as checksum_mod
from mason._format import compression as compression_mod
from mason._format import writer as writer_mod
from mason.errors import CorruptSessionError, UnsupportedFormatError

np = pytest.importorskip("numpy")

CHECKSUMS = [
    "crc32",
    pytest.param("xxh3_64", marks=pytest.mark.skipif(not checksum_mod._have_xxhash(), reason="xxhash not installed")),
]


def _codec_param(name: str):
    codec = compression_mod.CODECS[name]
    return pytest.param(name, marks=pytest.mark.skipif(not codec.available(), reason=f"{codec.package} not installed"))


CODECS = [_codec_param(name) for name in compression_mod.CODECS]


class PipeOut:
    """A write-only, non-seekable sink that accepts at most ``chunk`` bytes per call."""

    def __init__(self, chunk: int | None = None) -> None:
        self.data = bytearray()
        self.chunk = chunk

    def write(self, b) -> int:
        b = memoryview(b)[: self.chunk] if self.chunk else memoryview(b)
        self.data += b
        return b.nbytes


class PipeIn:
    """A read-only, non-seekable source that returns at most ``chunk`` bytes per call."""

    def __init__(self, data: bytes, chunk: int = 1 << 30) -> None:
        self._data = bytes(data)
        self._pos = 0
        self._chunk = chunk

    def read(self, n: int = -1) -> bytes:
        n = len(self._data) if n < 0 else min(n, self._chunk)
        out = self._data[self._pos : self._pos + n]
        self._pos += len(out)
        return out


def build(segments=(), blobs=(), meta=None, **options) -> bytes:
    out = io.BytesIO()
    writer = ContainerWriter(out, **options)
    for s in segments:
        writer.add_segment(s)
    for b in blobs:
        writer.add_blob(b)
    writer.finish({} if meta is None else meta)
    assert writer.bytes_written == len(out.getvalue())
    return out.getvalue()


def contents(reader: ContainerReader):
    return (
        reader.meta,
        [bytes(reader.segment(i)) for i in range(reader.segment_count)],
        [bytes(reader.blob(i)) for i in range(reader.blob_count)],
    )


MODES = ["path-mmap", "path-read", "bytesio", "stream", "stream-dribble", "bytes"]


def open_as(mode: str, data: bytes, tmp_path, **options) -> ContainerReader:
    if mode.startswith("path"):
        path = tmp_path / "c.mason"
        path.write_bytes(data)
        return ContainerReader.open(path, mmap=mode == "path-mmap", **options)
    if mode == "bytesio":
        return ContainerReader.open(io.BytesIO(data), **options)
    if mode == "stream":
        return ContainerReader.open(PipeIn(data), **options)
    if mode == "stream-dribble":
        return ContainerReader.open(PipeIn(data, chunk=7), **options)
    return ContainerReader.open(data, **options)


SEGMENTS = [b"first", b"", b"x" * 10_000]
BLOBS = [b"", bytes(range(256)) * 5, b"\x00", os.urandom(3000)]
META = {"names": ["a", "b"], "nested": {"k": None, "f": 1.5, "t": True}, "ü": "ünïcode"}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("algo", CHECKSUMS)
def test_round_trip(mode, algo, tmp_path):
    data = build(SEGMENTS, BLOBS, META, checksum=algo)
    with open_as(mode, data, tmp_path) as reader:
        assert contents(reader) == (META, SEGMENTS, BLOBS)
        assert reader.version == (spec.FORMAT_MAJOR, spec.FORMAT_MINOR)
        reader.verify()


@pytest.mark.parametrize("mode", MODES)
def test_numpy_buffers_round_trip_out_of_band(mode, tmp_path):
    arrays = {
        "f8": np.linspace(0, 1, 1001),
        "fortran": np.asfortranarray(np.arange(60, dtype=np.int16).reshape(3, 4, 5)),
        "empty": np.zeros((0, 3)),
        "scalar": np.array(7, dtype=np.uint64),
        "record": np.array([(1, 2.0)], dtype=[("a", "<i4"), ("b", "<f8")]),
    }
    out = io.BytesIO()
    writer = ContainerWriter(out)
    buffers: list = []
    for value in arrays.values():
        writer.add_segment(pickle.dumps(value, protocol=5, buffer_callback=buffers.append))
    for buffer in buffers:
        writer.add_blob(buffer.raw())
    writer.finish({"names": list(arrays)})
    with open_as(mode, out.getvalue(), tmp_path) as reader:
        blobs = [reader.blob(i) for i in range(reader.blob_count)]
        feed = iter(blobs)  # one shared stream of buffers, consumed in segment order
        loaded = [pickle.loads(reader.segment(i), buffers=feed) for i in range(reader.segment_count)]
        for (name, want), got in zip(arrays.items(), loaded):
            assert got.dtype == want.dtype and got.shape == want.shape, name
            assert np.array_equal(got, want), name
            assert got.flags.writeable, name
        del blobs, loaded  # views into the map; close() must not need them gone


@pytest.mark.parametrize("mode", ["path-mmap", "path-read", "stream"])
def test_many_blobs_are_aligned(mode, tmp_path):
    blobs = [os.urandom(n) for n in range(0, 300, 3)] * 3
    data = build([b"s"] * 10, blobs)
    with open_as(mode, data, tmp_path) as reader:
        assert reader.blob_count == len(blobs)
        for i, blob in enumerate(blobs):
            info = reader.blob_info(i)
            assert info["offset"] % spec.ALIGNMENT == 0
            assert data[info["offset"] : info["offset"] + info["length"]] == blob
            assert bytes(reader.blob(i)) == blob


def test_mmap_blob_is_writable_and_copy_on_write(tmp_path):
    blob = np.arange(1000, dtype=np.float64)
    data = build([b"s"], [memoryview(blob)])
    path = tmp_path / "c.mason"
    path.write_bytes(data)
    with ContainerReader.open(path, mmap=True) as reader:
        view = reader.blob(0)
        assert not view.readonly
        array = np.frombuffer(view, dtype=np.float64)
        array[:] = -1.0
        assert bytes(reader.blob(0)) == bytes(view)  # same mapping
    assert path.read_bytes() == data  # the file never changes
    assert array[0] == -1.0  # the view outlives close()
    with ContainerReader.open(path) as reader:
        assert bytes(reader.blob(0)) == blob.tobytes()


@pytest.mark.parametrize("kind", [bytes, bytearray])
def test_caller_buffer_is_never_written(kind, tmp_path):
    data = kind(build([b"s"], [b"abcdef"]))
    before = bytes(data)
    with ContainerReader.open(data) as reader:
        view = reader.blob(0)
        assert not view.readonly
        view[0] = ord("Z")
    assert bytes(data) == before


def test_stream_reader_stops_after_its_container():
    first, second = build([b"one"], meta={"n": 1}), build([b"two"], [b"b"], meta={"n": 2})
    pipe = PipeIn(first + second, chunk=5)
    with ContainerReader.open(pipe) as reader:
        assert contents(reader) == ({"n": 1}, [b"one"], [])
    with ContainerReader.open(pipe) as reader:
        assert contents(reader) == ({"n": 2}, [b"two"], [b"b"])
    assert pipe.read(1) == b""


def test_seekable_source_starts_at_current_position():
    data = build([b"seg"], [b"blob"])
    stream = io.BytesIO(b"prefix" + data)
    stream.seek(6)
    with ContainerReader.open(stream) as reader:
        assert contents(reader) == ({}, [b"seg"], [b"blob"])


@pytest.mark.parametrize("chunk", [None, 1, 7, 1000])
def test_writer_needs_only_write_and_copes_with_partial_writes(chunk):
    sink = PipeOut(chunk)
    writer = ContainerWriter(sink)
    writer.add_segment(b"segment")
    writer.add_blob(bytearray(b"blob" * 100))
    writer.finish({"k": "v"})
    assert writer.bytes_written == len(sink.data)
    assert bytes(sink.data) == build([b"segment"], [b"blob" * 100], {"k": "v"})


def test_output_is_deterministic():
    options = dict(checksum="crc32", compression="zlib")
    meta = {"b": 1, "a": [2, {"y": 0, "x": 1}]}
    assert build(SEGMENTS, BLOBS, meta, **options) == build(SEGMENTS, BLOBS, dict(reversed(meta.items())), **options)


def test_non_contiguous_buffer_is_refused():
    writer = ContainerWriter(io.BytesIO())
    with pytest.raises(BufferError):
        writer.add_blob(np.arange(10)[::2])


def test_writer_refuses_use_after_finish():
    writer = ContainerWriter(io.BytesIO())
    writer.finish({})
    for call in (lambda: writer.add_blob(b"x"), lambda: writer.add_segment(b"x"), lambda: writer.finish({})):
        with pytest.raises(ValueError, match="finished"):
            call()


@pytest.mark.parametrize(
    "meta, where",
    [
        ({"a": {1, 2}}, "meta['a']"),
        ({"a": [1, {"b": object()}]}, "meta['a'][1]['b']"),
        ({"a": {3: "x"}}, "key 3"),
        ({"x": float("nan")}, "meta['x']"),
        ({"s": "\ud800"}, "meta['s']"),
        ({"n": np.int64(3)}, "meta['n']"),
        ({"deep": [[{"k": ["\udfff"]}]]}, "meta['deep'][0][0]['k'][0]"),
        ({"\ud800": 1}, "meta"),
        ({"x": float("-inf")}, "meta['x']"),
    ],
)
def test_meta_must_be_json(meta, where):
    with pytest.raises(TypeError) as info:
        ContainerWriter(io.BytesIO()).finish(meta)
    assert where in str(info.value)


def test_meta_nested_past_the_limit_is_refused_and_at_the_limit_reads_back():
    def nest(levels):
        value: list = []
        for _ in range(levels):
            value = [value]
        return {"v": value}

    with pytest.raises(TypeError, match="nested deeper"):
        ContainerWriter(io.BytesIO()).finish(nest(80))
    fine = nest(60)
    out = io.BytesIO()
    ContainerWriter(out).finish(fine)
    assert ContainerReader(out.getvalue()).meta == fine


def test_meta_of_json_subclasses_reads_back_as_plain_json():
    import collections
    import enum

    class Level(enum.IntEnum):
        HIGH = 3

    out = io.BytesIO()
    ContainerWriter(out).finish({"o": collections.OrderedDict(b=Level.HIGH), "t": (1, "x")})
    assert ContainerReader(out.getvalue()).meta == {"o": {"b": 3}, "t": [1, "x"]}


def test_meta_cycle_and_non_dict():
    cyclic: dict = {}
    cyclic["self"] = cyclic
    with pytest.raises(TypeError, match="circular"):
        ContainerWriter(io.BytesIO()).finish(cyclic)
    with pytest.raises(TypeError, match="dict"):
        ContainerWriter(io.BytesIO()).finish([1])  # type: ignore[arg-type]


# -- options -------------------------------------------------------------------------


@pytest.mark.parametrize("name", CODECS)
@pytest.mark.parametrize("mode", ["path-mmap", "bytesio", "stream"])
def test_compression_round_trip(name, mode, tmp_path):
    compressible = b"mason " * 5000
    incompressible = os.urandom(5000)
    alone = os.urandom(writer_mod.ALONE_BYTES)  # a record of its own
    array = np.zeros(10_000)
    segments = [compressible, b"tiny", alone]
    data = build(segments, [compressible, incompressible, memoryview(array), b""], compression=name)
    with open_as(mode, data, tmp_path) as reader:
        assert contents(reader)[1:] == (segments, [compressible, incompressible, array.tobytes(), b""])
        assert reader.blob_info(0)["compression"] == name
        assert reader.blob_info(0)["length"] < reader.blob_info(0)["raw_length"] == len(compressible)
        # The two small segments share a record: compressed together, with one checksum.
        first, second = reader.segment_info(0), reader.segment_info(1)
        assert first["compression"] == second["compression"] == name and first["checksum"] == second["checksum"]
        assert first["offset"] == second["offset"] and first["length"] == second["length"] < len(compressible)
        assert (first["raw_length"], second["raw_length"]) == (len(compressible), 4)
        # Storing bigger is pointless: such data stays raw (and mmap-able).
        assert reader.blob_info(1)["compression"] is None
        assert reader.segment_info(2)["compression"] is None
        assert not reader.blob(0).readonly
        reader.verify()


def test_small_segments_share_records_and_large_ones_have_their_own():
    small = [b"%06d" % i * 80 for i in range(3000)]  # 480 bytes each, 1.4 MB in all
    large = os.urandom(writer_mod.ALONE_BYTES)
    segments = [*small[:2500], large, *small[2500:]]
    data = build(segments, [b"blob"])
    v2 = V2(data)
    # A record fills up to GROUP_BYTES; a large segment ends the record before
    # it and has its own; blobs go out at once, segments wait for their record.
    full = writer_mod.GROUP_BYTES // 480
    assert [row[0] for row in v2.rows] == [spec.SEGMENT, spec.SEGMENT, spec.SEGMENT, spec.BLOB, spec.SEGMENT]
    assert v2.groups == [full, 2500 - full, 1, 500] and len(v2.lengths) == 3001
    assert all(row[4] <= writer_mod.GROUP_BYTES for row in v2.rows if row[5] != len(large))
    with ContainerReader.open(data) as reader:
        assert reader.segments(range(3001)) == segments
        for number in (0, full - 1, full, 2500, 2501, 3000):
            info = reader.segment_info(number)
            assert data[info["offset"] : info["offset"] + info["length"]] == segments[number]


def test_segments_that_ask_are_compressed_with_zlib_apart_from_the_others():
    code = b"bytecode " * 300
    data_part = b"plain data " * 300
    alone = b"x" * writer_mod.ALONE_BYTES  # a record of its own
    out = io.BytesIO()
    writer = ContainerWriter(out)
    for segment, compress in [(data_part, False), (code, True), (code, True), (data_part, False), (alone, True)]:
        writer.add_segment(segment, compress=compress)
    writer.add_blob(data_part)
    writer.finish({})
    v2 = V2(out.getvalue())
    # A record gathers segments that ask alike: the plain ones stay raw.
    assert v2.groups == [1, 2, 1, 1]
    with ContainerReader.open(out.getvalue()) as reader:
        assert [reader.segment_info(i)["compression"] for i in range(5)] == [None, "zlib", "zlib", None, "zlib"]
        assert reader.blob_info(0)["compression"] is None
        assert reader.segments(range(5)) == [data_part, code, code, data_part, alone]
    # A writer with a codec of its own compresses everything with it, in shared records.
    out = io.BytesIO()
    writer = ContainerWriter(out, compression="lzma")
    writer.add_segment(data_part)
    writer.add_segment(code, compress=True)
    writer.finish({})
    assert V2(out.getvalue()).groups == [2]
    with ContainerReader.open(out.getvalue()) as reader:
        assert reader.segment_info(1)["compression"] == "lzma"


def test_leading_segments_come_joined_from_the_records_that_hold_them():
    small = [b"%06d" % i * 80 for i in range(3000)]  # three records of small segments
    segments = [*small[:2500], os.urandom(writer_mod.ALONE_BYTES), *small[2500:]]
    data = build(segments, compression=None)
    with ContainerReader.open(data) as reader:
        for count in (0, 1, 2183, 2184, 2500, 2501, 2502, 3001):
            assert reader.joined_segments(count) == b"".join(segments[:count])
        assert reader.segment(2600) == segments[2600]
        with pytest.raises(IndexError):
            reader.joined_segments(3002)
    damaged = bytearray(data)
    first = V2(data).rows[0]  # kind, compression, pad, reserved, length, ...
    second_payload = spec.HEADER.size + spec.RECORD.size + first[2] + first[4] + spec.RECORD.size
    damaged[second_payload + 5] ^= 1
    with ContainerReader.open(bytes(damaged)) as reader:
        assert reader.joined_segments(10) == b"".join(segments[:10])
        with pytest.raises(CorruptSessionError, match="checksum"):
            reader.joined_segments(3001)


def test_records_copy_into_a_new_container_as_they_were():
    data = build([b"a" * 100, b"b", b"c" * 50_000], [os.urandom(3000), b"z" * 4000], compression="zlib")
    out = io.BytesIO()
    writer = ContainerWriter(out)
    with ContainerReader.open(data) as reader:
        for record in reader.records():
            writer.copy_record(*record)
        writer.finish(reader.meta)
    assert out.getvalue() == data
    with pytest.raises(ValueError, match="do not make a record"):
        writer = ContainerWriter(io.BytesIO())
        writer.copy_record(spec.SEGMENT, b"abc", None, 3, (1, 1))


@pytest.mark.parametrize("name", CODECS)
def test_compression_levels(name):
    codec = compression_mod.CODECS[name]
    for level in (codec.levels.start, codec.levels.stop - 1):
        data = build([b"a" * 1000], compression=name, level=level)
        assert bytes(ContainerReader.open(data).segment(0)) == b"a" * 1000
    with pytest.raises(ValueError, match="level"):
        ContainerWriter(io.BytesIO(), compression=name, level=codec.levels.stop)


def test_bad_options():
    with pytest.raises(ValueError, match="unknown compression"):
        ContainerWriter(io.BytesIO(), compression="brotli")
    with pytest.raises(ValueError, match="unknown checksum"):
        ContainerWriter(io.BytesIO(), checksum="md5")
    with pytest.raises(ValueError, match="without compression"):
        ContainerWriter(io.BytesIO(), level=3)


@pytest.mark.parametrize("name, module", [("zstd", "zstandard"), ("lz4", "lz4")])
def test_missing_compression_package_names_the_extra(name, module, monkeypatch):
    monkeypatch.setitem(sys.modules, module, None)  # makes the import fail
    with pytest.raises(ValueError, match=rf"{module}.*mason\[fast\]"):
        ContainerWriter(io.BytesIO(), compression=name)


def test_missing_package_on_read_is_unsupported(monkeypatch):
    if not compression_mod.CODECS["zstd"].available():
        pytest.skip("zstandard not installed")
    data = build([b"z" * 1000], compression="zstd")
    monkeypatch.setitem(sys.modules, "zstandard", None)
    with pytest.raises(UnsupportedFormatError, match="zstandard"):
        ContainerReader.open(data)


def test_checksum_default_and_missing_xxhash(monkeypatch):
    # By default: crc32+xxh3 (format 2.1) for a container with a large
    # record, or many small ones, where xxhash is installed (every mason
    # reads its CRC half); crc32 (format 2.0) for a small one, or without
    # xxhash.  Both kinds open anywhere.
    crc32 = b"\x00\x00" + bytes([spec.CHECKSUM_IDS["crc32"]])
    both = b"\x01\x00" + bytes([spec.CHECKSUM_IDS["crc32+xxh3"]])
    large = [bytes(checksum_mod.XXH3_FROM)]
    many = [os.urandom(300_000) for _ in range(15)]  # none large, 4.5 MB in all
    assert build([b"s"], [b"b"])[12:15] == crc32
    with monkeypatch.context() as without:
        without.setitem(sys.modules, "xxhash", None)
        assert checksum_mod.default_name() == "crc32"
        for blobs in (large, many):
            data = build([b"s"], blobs)
            assert data[12:15] == crc32
            assert ContainerReader.open(data).blob(0) == blobs[0]
    if checksum_mod._have_xxhash():
        for blobs in ([b"small first", *large], many):
            data = build([b"s"], blobs)
            assert data[12:15] == both and data[-16] == spec.CHECKSUM_IDS["crc32+xxh3"]  # trailer too
            with ContainerReader.open(data) as reader:
                reader.verify()
                assert [bytes(reader.blob(i)) for i in range(len(blobs))] == blobs
        data = build([b"s"], checksum="xxh3_64")
        monkeypatch.setitem(sys.modules, "xxhash", None)
        assert checksum_mod.default_name() == "crc32"
        with pytest.raises(UnsupportedFormatError, match="xxhash"):
            ContainerReader.open(data)
    with pytest.raises(ValueError, match=r"xxhash.*mason\[fast\]"):
        monkeypatch.setitem(sys.modules, "xxhash", None)
        ContainerWriter(io.BytesIO(), checksum="xxh3_64")


# -- the pinned format ------------------------------------------------------------

# Written by format 1.0 with checksum="crc32": segments b"seg0", b"seg1" and blob
# b"blob-bytes", meta {"mason": "0.1.0", "names": ["a", "b"]}.  Must keep loading.
GOLDEN_V1_0 = base64.b64decode("""
iU1BU09ODQoaCgEAAAABAFNFR00AAAAABAAAAAAAAAAEAAAAAAAAAGkUtxoAAAAAc2VnMEJMT0IALAAA
CgAAAAAAAAAKAAAAAAAAAGuDpFUAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
AAAAAAAAAABibG9iLWJ5dGVzU0VHTQAAAAAEAAAAAAAAAAQAAAAAAAAA/ySwbQAAAABzZWcxSU5EWAAA
AAB+AQAAAAAAAH4BAAAAAAAAeR4mQgAAAAB7ImJsb2JzIjpbeyJjaGVja3N1bSI6IjAwMDAwMDAwNTVh
NDgzNmIiLCJjb21wcmVzc2lvbiI6bnVsbCwibGVuZ3RoIjoxMCwib2Zmc2V0IjoxMjgsInBhZCI6NDQs
InJhd19sZW5ndGgiOjEwfV0sImNoZWNrc3VtIjoiY3JjMzIiLCJtZXRhIjp7Im1hc29uIjoiMC4xLjAi
LCJuYW1lcyI6WyJhIiwiYiJdfSwic2VnbWVudHMiOlt7ImNoZWNrc3VtIjoiMDAwMDAwMDAxYWI3MTQ2
OSIsImNvbXByZXNzaW9uIjpudWxsLCJsZW5ndGgiOjQsIm9mZnNldCI6NDgsInBhZCI6MCwicmF3X2xl
bmd0aCI6NH0seyJjaGVja3N1bSI6IjAwMDAwMDAwNmRiMDI0ZmYiLCJjb21wcmVzc2lvbiI6bnVsbCwi
bGVuZ3RoIjo0LCJvZmZzZXQiOjE3MCwicGFkIjowLCJyYXdfbGVuZ3RoIjo0fV19rgAAAAAAAAB+AQAA
AAAAAHkeJkIAAAAAfAIAAAAAAAABAAAAAAAAAE1BU09ORU5E
""")
# The same written by format 2.0 (docs/format.md takes these bytes apart).  Must
# keep loading, and the writer must keep producing exactly these bytes.
GOLDEN_V2_0 = base64.b64decode("""
iU1BU09ODQoaCgIAAAABAEJMT0IAEAAACgAAAAAAAAAKAAAAAAAAAGuDpFUAAAAAAAAAAAAAAAAAAAAA
AAAAAGJsb2ItYnl0ZXNTRUdNAAAAAAgAAAAAAAAACAAAAAAAAADfVldmAAAAAHNlZzBzZWcxSU5EWAAA
AACbAAAAAAAAAJsAAAAAAAAA1yB/PQAAAAACAAAAAAAAAAIAAAAAAAAAIwAAAAAAAAAAAAAAAAAAAEJM
T0IAEAAACgAAAAAAAAAKAAAAAAAAAGuDpFUAAAAAU0VHTQAAAAAIAAAAAAAAAAgAAAAAAAAA31ZXZgAA
AAACAAAAAAAAAAQAAAAAAAAABAAAAAAAAAB7Im1hc29uIjoiMC4xLjAiLCJuYW1lcyI6WyJhIiwiYiJd
fXIAAAAAAAAAmwAAAAAAAADXIH89AAAAAF0BAAAAAAAAAQAAAAAAAABNQVNPTkVORA==
""")
GOLDEN_META = {"mason": "0.1.0", "names": ["a", "b"]}


def _golden_writer() -> bytes:
    out = io.BytesIO()
    writer = ContainerWriter(out, checksum="crc32")
    writer.add_segment(b"seg0")
    writer.add_blob(b"blob-bytes")
    writer.add_segment(b"seg1")
    writer.finish(GOLDEN_META)
    return out.getvalue()


@pytest.mark.parametrize("golden, version", [(GOLDEN_V1_0, (1, 0)), (GOLDEN_V2_0, (2, 0))], ids=["v1.0", "v2.0"])
def test_golden_containers_still_load(golden, version, tmp_path):
    for mode in MODES:
        with open_as(mode, golden, tmp_path) as reader:
            assert contents(reader) == (GOLDEN_META, [b"seg0", b"seg1"], [b"blob-bytes"])
            assert reader.version == version
            reader.verify()


def test_golden_v2_0_is_still_written():
    assert (spec.FORMAT_MAJOR, spec.FORMAT_MINOR) == (2, 0)
    assert _golden_writer() == GOLDEN_V2_0


def test_layout_sizes_are_what_the_docs_say():
    assert (spec.HEADER.size, spec.RECORD.size, spec.TRAILER.size, spec.INDEX_HEAD.size) == (16, 32, 48, 32)
    for golden in (GOLDEN_V1_0, GOLDEN_V2_0):
        assert golden.startswith(spec.MAGIC) and golden.endswith(spec.END_MAGIC)


# -- damage ------------------------------------------------------------------------


def _index_of(data: bytes) -> tuple[bytes, object]:
    trailer = spec.TRAILER.unpack(data, len(data) - spec.TRAILER.size)
    start = trailer.index_offset + spec.RECORD.size
    return data[start : start + trailer.index_length], trailer


def with_index(data: bytes, edit) -> bytes:
    """``data`` with its index rewritten by ``edit`` and every checksum made consistent (crc32)."""
    raw, trailer = _index_of(data)
    index = json.loads(raw)
    edit(index)
    payload = json.dumps(index).encode()
    crc = zlib.crc32(payload)
    head = data[: trailer.index_offset]
    record = spec.RECORD.pack(
        kind=spec.INDEX, compression=0, pad=0, reserved=0, length=len(payload), raw_length=len(payload), checksum=crc
    )
    total = len(head) + len(record) + len(payload) + spec.TRAILER.size
    return (
        head
        + record
        + payload
        + spec.TRAILER.pack(
            index_offset=trailer.index_offset,
            index_length=len(payload),
            index_checksum=crc,
            container_length=total,
            checksum_id=1,
            reserved=bytes(7),
            end_magic=spec.END_MAGIC,
        )
    )


def read_everything(reader: ContainerReader) -> tuple:
    with reader:
        found = contents(reader)
        reader.verify()
    return found


def assert_corrupt_or_same(mode, data, expected, tmp_path, **options):
    """Opening and reading ``data`` fully either fails with CorruptSessionError or gives ``expected``."""
    try:
        found = read_everything(open_as(mode, data, tmp_path, **options))
    except CorruptSessionError:
        return False
    assert found == expected
    return True


SMALL_SEGMENTS, SMALL_BLOBS, SMALL_META = [b"seg-a", b"seg-b"], [b"blob" * 5, b"b"], {"m": [1]}


@pytest.mark.parametrize("mode", ["bytesio", "stream", "bytes", "path-mmap"])
def test_every_truncation_is_detected(mode, tmp_path):
    data = build(SMALL_SEGMENTS, SMALL_BLOBS, SMALL_META, checksum="crc32")
    for end in range(len(data)):
        with pytest.raises(CorruptSessionError):
            read_everything(open_as(mode, data[:end], tmp_path))


@pytest.mark.parametrize("algo", CHECKSUMS)
@pytest.mark.parametrize("mode", ["bytesio", "stream", "path-mmap"])
def test_every_bit_flip_is_detected(mode, algo, tmp_path):
    data = build(SMALL_SEGMENTS, SMALL_BLOBS, SMALL_META, checksum=algo)
    expected = (SMALL_META, SMALL_SEGMENTS, SMALL_BLOBS)
    survivors = set()
    for pos in range(len(data)):
        for bit in range(8):
            damaged = bytearray(data)
            damaged[pos] ^= 1 << bit
            if assert_corrupt_or_same(mode, bytes(damaged), expected, tmp_path):
                survivors.add(pos)
    # Only the minor version may change: later minors stay readable by design.
    assert survivors <= {12, 13}


def test_garbage_after_the_trailer_is_detected():
    data = build([b"s"])
    with pytest.raises(CorruptSessionError, match="appended"):
        ContainerReader.open(data + b"\x00")


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "empty"),
        (b"\x89MAS", "truncated"),
        (b"hello, this is not a session file at all" * 3, "not a mason file"),
        (pickle.dumps({"a": 1}, protocol=4), "plain pickle"),
    ],
)
@pytest.mark.parametrize("mode", ["bytesio", "stream", "bytes"])
def test_not_a_mason_file(data, message, mode, tmp_path):
    with pytest.raises(CorruptSessionError, match=message):
        open_as(mode, data, tmp_path)


def test_text_mode_damage_is_named():
    data = build([b"s"])
    for damaged in (data.replace(b"\r\n", b"\n"), data.replace(b"\n", b"\r\n")):
        with pytest.raises(CorruptSessionError, match="line endings"):
            ContainerReader.open(damaged)


@pytest.mark.parametrize("mode", ["bytesio", "stream"])
def test_newer_major_version_is_unsupported(mode, tmp_path):
    data = bytearray(build([b"s"]))
    struct.pack_into("<H", data, 10, spec.FORMAT_MAJOR + 1)
    with pytest.raises(UnsupportedFormatError, match="upgrade mason"):
        open_as(mode, bytes(data), tmp_path)


def test_path_names_the_file_in_errors(tmp_path):
    path = tmp_path / "broken.mason"
    path.write_bytes(build([b"s"])[:-1])
    with pytest.raises(CorruptSessionError, match="broken.mason"):
        ContainerReader.open(path)


def test_segment_checksum_is_checked_on_access():
    big = b"segment-two" * (writer_mod.ALONE_BYTES // 10)  # a record of its own
    data = bytearray(build([b"segment-zero", b"segment-one", big], checksum="crc32"))
    data[data.index(b"segment-one")] ^= 0xFF
    with ContainerReader.open(bytes(data)) as reader:  # the index is fine
        assert bytes(reader.segment(2)) == big
        # The first two share a record, and its checksum: damage to either refuses both.
        for number in (1, 0):
            with pytest.raises(CorruptSessionError, match=r"segments 0-1 \(offset 48\): checksum"):
                reader.segment(number)


def test_segment_checksum_is_checked_on_access_in_format_1():
    # Format 1 has a record, and a checksum, per segment.
    data = bytearray(assemble([(spec.SEGMENT, b"segment-zero", None, 12), (spec.SEGMENT, b"segment-one", None, 11)]))
    data[data.index(b"segment-one")] ^= 0xFF
    with ContainerReader.open(bytes(data)) as reader:  # the index is fine
        assert bytes(reader.segment(0)) == b"segment-zero"
        with pytest.raises(CorruptSessionError, match=r"segment 1 .*checksum"):
            reader.segment(1)


@pytest.mark.parametrize("mode", ["path-mmap", "bytesio", "stream"])
def test_verify_blobs_false_defers_to_verify(mode, tmp_path):
    data = bytearray(build([b"s"], [b"first-blob", b"second-blob"], checksum="crc32"))
    data[data.index(b"second-blob")] ^= 1
    with open_as(mode, bytes(data), tmp_path, verify_blobs=False) as reader:
        assert bytes(reader.blob(0)) == b"first-blob"
        reader.blob(1)  # not checked yet
        with pytest.raises(CorruptSessionError, match=r"blob 1 .*checksum"):
            reader.verify()
    with pytest.raises(CorruptSessionError, match=r"blob 1 .*checksum"):
        with open_as(mode, bytes(data), tmp_path) as reader:
            reader.blob(1)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda ix: ix["blobs"][0].update(length=2**60), "absurd length"),
        (lambda ix: ix["blobs"][0].update(length=2**40, raw_length=2**40), "index starts"),
        (lambda ix: ix["blobs"][0].update(offset=2**70), "aligned|previous record"),
        (lambda ix: ix["blobs"][0].update(raw_length=8, compression="zlib"), "record header says"),
        (lambda ix: ix["blobs"][0].update(raw_length=2**47, compression="zlib"), "more than the format allows"),
        (lambda ix: ix["segments"][0].update(length=-1), "ints >= 0"),
        (lambda ix: ix["segments"][0].update(offset="48"), "ints >= 0"),
        (lambda ix: ix["segments"][0].update(pad=3), "pad"),
        (lambda ix: ix["segments"][0].update(checksum="xyz"), "hex"),
        (lambda ix: ix["segments"][0].pop("length"), "keys"),
        (lambda ix: ix["segments"].append(ix["segments"][0]), "previous record"),
        (lambda ix: ix["segments"].pop(), "previous record"),
        (lambda ix: ix["blobs"].pop(), "index starts"),
        (lambda ix: ix.update(segments={}), "not a list"),
        (lambda ix: ix.update(meta=[]), "meta"),
        (lambda ix: ix.pop("blobs"), "lacks"),
        (lambda ix: ix.update(checksum="xxh3_64"), "checksum"),
        (lambda ix: ix["blobs"][0].update(compression="brotli"), "unknown compression"),
    ],
)
def test_consistent_but_wrong_index_is_refused(edit, message):
    # Format 1's JSON index (format 2's: tests/test_hostile_reader.py).
    v1 = assemble([(spec.SEGMENT, b"seg", None, 3), (spec.BLOB, b"blob", None, 4)], {})
    data = with_index(v1, edit)
    with pytest.raises(CorruptSessionError, match=message):
        read_everything(ContainerReader.open(data))


def test_index_record_header_must_match_table():
    v1 = assemble([(spec.SEGMENT, b"seg", None, 3), (spec.BLOB, b"blob", None, 4)], {})

    def lie(index):
        index["segments"][0]["checksum"] = "%016x" % (zlib.crc32(b"seg") ^ 1)

    with pytest.raises(CorruptSessionError, match="record header says checksum"):
        ContainerReader.open(with_index(v1, lie)).segment(0)
    v2 = V2(build([b"seg"], [b"blob"], checksum="crc32"))
    v2.rows[1][6] ^= 1  # the segment record's checksum, in the table only
    with pytest.raises(CorruptSessionError, match=r"segment 0 \(offset \d+\): record header says checksum"):
        ContainerReader.open(bytes(v2)).segment(0)


@pytest.mark.parametrize(
    "field, value",
    [
        ("index_length", 2**62),
        ("index_offset", 2**63),
        ("container_length", 2**64 - 1),
        ("index_offset", 3),
        ("checksum_id", 2),
    ],
)
def test_absurd_trailer_is_refused(field, value):
    data = build([b"seg"], checksum="crc32")
    trailer = spec.TRAILER.unpack(data, len(data) - spec.TRAILER.size)._replace(**{field: value})
    damaged = data[: -spec.TRAILER.size] + spec.TRAILER.pack(**trailer._asdict())
    with pytest.raises(CorruptSessionError):
        ContainerReader.open(damaged)


def test_stream_with_huge_record_length_does_not_allocate_it():
    head = build()[: spec.HEADER.size]
    record = spec.RECORD.pack(
        kind=spec.SEGMENT, compression=0, pad=0, reserved=0, length=2**40, raw_length=2**40, checksum=0
    )
    with pytest.raises(CorruptSessionError, match="truncated"):
        ContainerReader.open(PipeIn(head + record + b"only a little data"))
    record = record[:8] + struct.pack("<QQ", 2**60, 2**60) + record[24:]
    with pytest.raises(CorruptSessionError, match="absurd"):
        ContainerReader.open(PipeIn(head + record))


def test_caller_errors_are_not_corruption():
    with ContainerReader.open(build([b"s"], [b"b"])) as reader:
        with pytest.raises(IndexError):
            reader.segment(1)
        with pytest.raises(IndexError):
            reader.blob(-1)
        assert set(reader.blob_info(0)) == {"offset", "length", "raw_length", "compression", "checksum"}
    with pytest.raises(ValueError, match="closed"):
        reader.segment(0)
    with pytest.raises(TypeError, match="binary"):
        ContainerReader.open(io.StringIO("text"))


_BASE = build(
    [b"alpha", b"beta" * 40], [os.urandom(100), b"z" * 500, b""], {"k": [1, 2]}, checksum="crc32", compression="zlib"
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    mutations=st.lists(
        st.tuples(
            st.sampled_from(["set", "insert", "delete", "truncate"]),
            st.integers(0, len(_BASE) - 1),
            st.binary(min_size=1, max_size=8),
        ),
        min_size=1,
        max_size=4,
    ),
    mode=st.sampled_from(["bytes", "bytesio", "stream"]),
    verify_blobs=st.booleans(),
)
def test_mutated_container_only_raises_corrupt(mutations, mode, verify_blobs, tmp_path):
    data = bytearray(_BASE)
    for op, pos, chunk in mutations:
        pos = min(pos, len(data))
        if op == "set":
            data[pos : pos + len(chunk)] = chunk
        elif op == "insert":
            data[pos:pos] = chunk
        elif op == "delete":
            del data[pos : pos + len(chunk)]
        else:
            del data[pos:]
    original = read_everything(ContainerReader.open(_BASE))
    try:
        found = read_everything(open_as(mode, bytes(data), tmp_path, verify_blobs=verify_blobs))
    except CorruptSessionError:
        return
    assert found == original
