"""Hostile files against the container reader, the session metadata checks
and the environment check: every one gets a mason error that names the
problem, nothing is imported or run, and inspect, verify and diff finish
quickly.

The files are made by hand (tests/hostile_files.py assembles them from the
format's struct layouts, with every checksum right) or by patching real ones,
of the current format (2) and of format 1, which mason still reads.
Decompression bombs, absurd lengths and counts, deep JSON, malformed
metadata, a package name that would import a file from the current directory.
"""

from __future__ import annotations

import io
import os
import pickle
import re
import sys
import time
import tracemalloc
import types

import pytest
from hostile_files import V2, assemble, session_meta, to_v1, with_index, with_meta

import mason
from mason._format import ContainerReader, ContainerWriter, spec
from mason._format import compression as compression_mod
from mason.cli import main
from mason.errors import CorruptSessionError

QUICK = 10.0  # seconds: generous for a loaded two-core machine; the real times are well under one
SEGMENT = pickle.dumps(42, protocol=5)


def _codec(name: str):
    codec = compression_mod.CODECS[name]
    return pytest.param(name, marks=pytest.mark.skipif(not codec.available(), reason=f"{codec.package} not installed"))


CODECS = [_codec(name) for name in compression_mod.CODECS]


@pytest.fixture(autouse=True)
def _no_signing_key(monkeypatch):
    monkeypatch.delenv("MASON_SIGNING_KEY", raising=False)


def _write(tmp_path, data: bytes, name: str = "hostile.mason"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _session_file(tmp_path, records, meta=None, **options):
    """A hand-made session: variable ``v<i>`` is segment ``i``."""
    segments = sum(1 for kind, *_ in records if kind == spec.SEGMENT)
    meta = meta if meta is not None else session_meta([(f"v{i}", i, []) for i in range(segments)])
    return _write(tmp_path, assemble(records, meta, **options))


def _cli(capsys, *argv) -> tuple[int, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out + captured.err


def _refused_everywhere(path, match: str, capsys) -> None:
    """Every reader of ``path`` fails with a mason error matching ``match``, quickly.

    Opening may fail (a bad index), or only reading a record (a bad
    record): then inspect reports it as its scan error, and verify, which
    checks checksums and MACs and does not decompress, may pass.
    """
    start = time.monotonic()
    try:
        info = mason.inspect(path)
    except CorruptSessionError as exc:
        assert re.search(match, str(exc)), exc
        opens = False
    else:
        assert info.scan_error and re.search(match, info.scan_error), info.scan_error
        opens = True
    status, text = _cli(capsys, "inspect", str(path))
    assert status == (0 if opens else 1) and (opens or re.search(match, text)), text
    status, text = _cli(capsys, "verify", str(path))
    assert status in ((0, 1) if opens else (1,)), text
    status, text = _cli(capsys, "diff", str(path), str(path))
    assert status == 2 and re.search(match, text), text
    for allow in (None, []):
        with pytest.raises(CorruptSessionError, match=match):
            mason.load_module_asdict(path, allow=allow)
    assert time.monotonic() - start < QUICK


# -- decompression bombs ---------------------------------------------------------------


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("kind", [spec.SEGMENT, spec.BLOB])
def test_a_small_record_declaring_a_huge_raw_length_is_refused_on_opening(codec, kind, tmp_path, capsys):
    """The issue's example: 25 KB asking for 1.5 GiB.  Refused by the ratio
    rule before anything is decompressed or allocated."""
    stored = compression_mod.CODECS[codec].compress(os.urandom(25_000), 1)
    records = [(spec.SEGMENT, SEGMENT, None, len(SEGMENT))]
    records.insert(0 if kind == spec.SEGMENT else 1, (kind, stored, codec, 3 << 29))
    meta = session_meta(
        [("v0", 0, [0] if kind == spec.BLOB else [])] + ([("v1", 1, [])] if kind == spec.SEGMENT else [])
    )
    path = _write(tmp_path, assemble(records, meta))
    name = "segment 0" if kind == spec.SEGMENT else "blob 0"
    _refused_everywhere(path, f"{name}: .*more than the format allows", capsys)


@pytest.mark.parametrize("codec", CODECS)
def test_data_that_decompresses_past_its_declared_length_stops_there(codec, tmp_path, capsys):
    """16 MiB of zeros declared as 1 MiB: decompression stops just past 1 MiB."""
    stored = compression_mod.CODECS[codec].compress(bytes(16 << 20), 1)
    path = _session_file(tmp_path, [(spec.SEGMENT, stored, codec, 1 << 20)])
    tracemalloc.start()
    try:
        with ContainerReader.open(path) as reader, pytest.raises(CorruptSessionError) as exc:
            reader.segment(0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert re.search(r"segment 0 .*(more than the 1048576 bytes declared|frame says 16777216)", str(exc.value))
    assert peak < 8 << 20
    _refused_everywhere(path, f"segment 0 .*{codec}", capsys)


@pytest.mark.parametrize("codec", CODECS)
def test_nothing_is_allocated_from_a_declared_length(codec, tmp_path):
    """1 MiB of incompressible data declared (within the ratio rule) as 1 GiB:
    memory follows the real output, not the claim."""
    stored = compression_mod.CODECS[codec].compress(os.urandom(1 << 20), 1)
    declared = spec.max_raw_length(len(stored))
    assert declared > 1 << 30
    path = _session_file(tmp_path, [(spec.SEGMENT, stored, codec, declared)])
    tracemalloc.start()
    try:
        with ContainerReader.open(path) as reader, pytest.raises(CorruptSessionError, match=f"segment 0 .*{codec}"):
            reader.segment(0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20  # the output, the stored copy and a 16 MiB step at most


@pytest.mark.parametrize("codec", CODECS)
def test_bytes_after_the_compressed_data_are_refused(codec, tmp_path):
    stored = compression_mod.CODECS[codec].compress(bytes(4096), 1) + b"tail"
    path = _session_file(tmp_path, [(spec.SEGMENT, stored, codec, 4096)])
    with ContainerReader.open(path) as reader, pytest.raises(CorruptSessionError, match=f"segment 0 .*{codec}"):
        reader.segment(0)


@pytest.mark.parametrize("codec", CODECS)
def test_masons_own_files_keep_the_ratio_rule(codec, tmp_path):
    """All-zero data compresses past the rule with zstd and lzma: the writer
    then uses zlib (or stores the record raw), and the file reads back."""
    out = io.BytesIO()
    writer = ContainerWriter(out, compression=codec)
    writer.add_blob(bytes(32 << 20))
    writer.add_segment(b"x" * 100)
    writer.finish({})
    with ContainerReader.open(out.getvalue()) as reader:
        info = reader.blob_info(0)
        assert info["raw_length"] <= spec.max_raw_length(info["length"])
        assert info["compression"] in (codec, "zlib")
        assert bytes(reader.blob(0)) == bytes(32 << 20)
        reader.verify()


@pytest.mark.parametrize("codec", CODECS)
def test_round_trips_through_many_small_decompression_steps(codec, monkeypatch):
    monkeypatch.setattr(compression_mod, "_OUT_STEP", 1000)
    monkeypatch.setattr(compression_mod, "_IN_STEP", 333)
    data = b"".join(b"%d," % (i * i % 9973) for i in range(40_000))
    out = io.BytesIO()
    writer = ContainerWriter(out, compression=codec)
    writer.add_segment(data)
    writer.finish({})
    with ContainerReader.open(out.getvalue()) as reader:
        assert reader.segment_info(0)["compression"] == codec
        assert bytes(reader.segment(0)) == data


# -- absurd lengths --------------------------------------------------------------------


def _real_file(tmp_path, **values) -> bytes:
    module = types.ModuleType("hostmod")
    module.__dict__.update(values or {"x": 1, "arr": bytearray(100_000)})
    path = tmp_path / "real.mason"
    mason.dump_module(path, module=module, checksum="crc32", key=False)
    return path.read_bytes()


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda ix: ix["segments"][0].update(length=2**60, raw_length=2**60), "absurd length"),
        (lambda ix: ix["segments"][0].update(raw_length=2**63), "absurd length"),
        (lambda ix: ix["segments"][0].update(offset=2**62), "previous record ends"),
        (lambda ix: ix["blobs"][0].update(length=2**40, raw_length=2**40), "previous record ends|index starts"),
        (lambda ix: ix["segments"][0].update(compression="zlib", raw_length=2**40), "more than the format allows"),
        (lambda ix: ix["meta"]["variables"][0].update(size=2**200), "size .* is not a byte count"),
        (lambda ix: ix["meta"]["variables"][0].update(segment=2**64), "segment .* is not one of the file's"),
        (lambda ix: ix["meta"]["variables"][-1].update(blobs=[10**30]), "blob .* is not one of the file's"),
    ],
)
def test_absurd_lengths_and_numbers_are_refused_in_format_1(edit, match, tmp_path, capsys):
    path = _write(tmp_path, with_index(to_v1(_real_file(tmp_path)), edit))
    _refused_everywhere(path, match, capsys)


_FIELDS = [field for field, _, _ in spec.RECORD.fields]


def _rows(of: bytes, number: int = 0, **fields):
    """An edit setting ``fields`` of a record table row: the ``number``-th of kind ``of``."""

    def edit(v2: V2) -> None:
        row = [row for row in v2.rows if row[0] == of][number]
        for field, value in fields.items():
            row[_FIELDS.index(field)] = value

    return edit


def _set(attribute: str, value):
    return lambda v2: setattr(v2, attribute, value)


# Format 2: the record table's rows, the head's counts, the group and segment
# tables, the variable columns.
V2_ABSURD = [
    (_rows(spec.SEGMENT, length=2**60, raw_length=2**60), "absurd length"),
    (_rows(spec.SEGMENT, raw_length=2**63), "absurd length"),
    (_rows(spec.BLOB, length=2**40, raw_length=2**40), "records end at .* but the index starts"),
    (_rows(spec.SEGMENT, compression=1), "compressed length .* is not below raw length"),
    (_rows(spec.SEGMENT, compression=1, raw_length=2**40), "more than the format allows"),
    (lambda v2: v2.head.update(records=2**60), "a table of 1152921504606846976 records does not fit"),
    (lambda v2: v2.head.update(records=len(v2.rows) + 1), "does not fit|is of kind|records end at"),
    (lambda v2: v2.head.update(segments=2**60), "do not make the .* bytes it has"),
    (lambda v2: v2.head.update(meta_length=2**62), "do not make the .* bytes it has"),
    (lambda v2: v2.groups.__setitem__(0, 2**60), "the records hold .* segments, the head says"),
    (lambda v2: v2.lengths.__setitem__(0, v2.lengths[0] + 2**50), "do not add up to its raw length"),
    (lambda v2: v2.meta["variables"]["blobs"].__setitem__(0, [1, 10**30, 1]), r"blobs: .* is not \[variable"),
    (lambda v2: v2.meta["variables"]["type"].__setitem__(0, 2**64), "type is not .* numbers below"),
]


@pytest.mark.parametrize("edit, match", V2_ABSURD)
def test_absurd_lengths_and_numbers_are_refused(edit, match, tmp_path, capsys):
    v2 = V2(_real_file(tmp_path))
    edit(v2)
    _refused_everywhere(_write(tmp_path, bytes(v2)), match, capsys)


def _segments_file(tmp_path, count: int = 5, **options) -> bytes:
    """A format 2 container of ``count`` small segments in one record, and a blob."""
    out = io.BytesIO()
    writer = ContainerWriter(out, checksum="crc32", **options)
    for i in range(count):
        writer.add_segment(b"segment %d" % i)
    writer.add_blob(b"blob")
    writer.finish({"k": 1})
    return out.getvalue()


# Damage to the binary index of a bare container (a blob, then a SEGM record
# of five segments, 45 bytes), every checksum made right: the tables and the
# records must agree in every count, length and offset.
SEGM, BLOB = spec.SEGMENT, spec.BLOB
V2_TABLES = [
    (lambda v2: v2.rows.pop(), "records end at"),  # a record the table leaves out
    (lambda v2: v2.rows.append(list(v2.rows[1])), "records end at"),  # one it invents
    (lambda v2: v2.rows.reverse(), "not aligned"),  # the order
    (_rows(BLOB, kind=b"INDX"), "is of kind b'INDX', not SEGM or BLOB"),
    (_rows(SEGM, kind=bytes(4)), "not SEGM or BLOB"),
    (_rows(SEGM, compression=9), "unknown compression id 9"),
    (_rows(SEGM, pad=1), "pad 1 where none belongs"),
    (_rows(BLOB, pad=0), "not aligned"),  # the blob would start in its own padding
    (_rows(SEGM, reserved=1), "reserved bits set"),
    (_rows(SEGM, length=46), "raw length .* differs"),
    (_rows(SEGM, length=52, raw_length=52), "records end at"),  # runs into the index
    (_rows(BLOB, length=5, raw_length=5), "records end at"),  # overlaps the next record
    (_rows(SEGM, length=44, raw_length=44), "records end at"),  # leaves a gap
    (_set("groups", [0]), "holds no segment|the records hold"),
    (_set("groups", [4]), "the records hold 4 segments, the head says 5"),
    (lambda v2: v2.groups.append(1), "do not make the .* bytes it has"),  # a table longer than its count
    (lambda v2: (v2.lengths.pop(), v2.head.update(segments=5)), "do not make the .* bytes"),  # a table cut short
    (lambda v2: (v2.lengths.pop(), v2.head.update(segments=4)), "the records hold 5 segments, the head says 4"),
    (lambda v2: v2.lengths.__setitem__(0, v2.lengths[0] + 1), "do not add up"),
    (_set("signature", 1), "do not make the .* bytes it has"),  # no MACs there
    (lambda v2: (_set("signature", 2)(v2), _set("macs", bytes(32 * 3))(v2)), "unknown signature algorithm"),
    (lambda v2: v2.head.update(reserved=b"\1" + bytes(6)), "reserved bits set"),
    (_set("meta_bytes", b"[]"), "the metadata is not a JSON object"),
    (_set("meta_bytes", b'{"k":1'), "metadata is not valid JSON"),
    (_set("meta_bytes", b"[" * 64 + b"]" * 64), "metadata is nested deeper"),
    (_set("meta_bytes", b"\xff"), "metadata is not valid JSON"),
]


@pytest.mark.parametrize("edit, match", V2_TABLES)
@pytest.mark.parametrize("mode", ["bytes", "stream"])
def test_a_binary_index_that_disagrees_with_the_file_is_refused(edit, match, mode, tmp_path):
    from test_format import PipeIn

    v2 = V2(_segments_file(tmp_path))
    assert v2.groups == [5] and [row[0] for row in v2.rows] == [BLOB, SEGM] and v2.rows[1][4] == 45
    edit(v2)
    data = bytes(v2)
    source = PipeIn(data) if mode == "stream" else data
    with pytest.raises(CorruptSessionError, match=match):
        with ContainerReader.open(source) as reader:
            reader.segments(range(reader.segment_count))
            reader.verify()


def test_huge_counts_allocate_nothing(tmp_path):
    """A head claiming billions of records or segments is refused from the
    payload's length alone, before any table is read."""
    for field in ("records", "segments", "meta_length"):
        v2 = V2(_segments_file(tmp_path))
        v2.head[field] = 2**61
        data = bytes(v2)
        tracemalloc.start()
        try:
            with pytest.raises(CorruptSessionError, match="does not fit|do not make"):
                ContainerReader.open(data)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 1 << 20, field


def test_a_trailer_claiming_a_huge_index_is_refused(tmp_path, capsys):
    data = _real_file(tmp_path)
    trailer = spec.TRAILER.unpack(data, len(data) - spec.TRAILER.size)._replace(index_length=2**62)
    path = _write(tmp_path, data[: -spec.TRAILER.size] + spec.TRAILER.pack(**trailer._asdict()))
    _refused_everywhere(path, "index does not end where the trailer begins", capsys)


# -- the JSON index --------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        b"[" * (1 << 20),  # 1 MB of `[[[[`: not even JSON
        b"[" * 100_000 + b"]" * 100_000,  # valid, and far deeper than the C decoder's guard
        b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    ],
    ids=["unclosed", "brackets", "objects"],
)
def test_a_deep_index_is_refused_quickly(payload, tmp_path, capsys):
    path = _write(tmp_path, assemble([], index_payload=payload))
    start = time.monotonic()
    with pytest.raises(CorruptSessionError, match="nested deeper|not valid JSON"):
        ContainerReader.open(path)
    assert time.monotonic() - start < 2.0
    _refused_everywhere(path, "nested deeper|not valid JSON", capsys)


def _nested(depth: int):
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


def test_the_depth_limit_is_exact(tmp_path, capsys):
    # The index object is level 1, meta 2, environment 3: 61 more levels reach 64.
    limit = spec.MAX_INDEX_DEPTH
    ok = session_meta([("v0", 0, [])])
    ok["environment"]["extra"] = _nested(limit - 3)
    path = _session_file(tmp_path, [(spec.SEGMENT, SEGMENT, None, len(SEGMENT))], ok)
    assert mason.inspect(path).environment["extra"] == _nested(limit - 3)
    deep = session_meta([("v0", 0, [])])
    deep["environment"]["extra"] = _nested(limit - 2)
    path = _session_file(tmp_path, [(spec.SEGMENT, SEGMENT, None, len(SEGMENT))], deep)
    _refused_everywhere(path, f"nested deeper than the format allows \\({limit} levels\\)", capsys)


def test_brackets_inside_strings_are_not_nesting(tmp_path):
    meta = session_meta([("v0", 0, [])])
    meta["variables"][0]["type"] = "[" * 10_000 + '"\\' + "{" * 500
    meta["skipped"] = [{"name": "]]]]}}}}", "reason": '\\"[[[["'}]
    path = _session_file(tmp_path, [(spec.SEGMENT, SEGMENT, None, len(SEGMENT))], meta)
    assert mason.inspect(path).variables[0]["type"] == meta["variables"][0]["type"]


def test_the_writer_refuses_meta_deeper_than_readers_accept():
    writer = ContainerWriter(io.BytesIO())
    with pytest.raises(TypeError, match="nested deeper"):
        writer.finish({"deep": _nested(spec.MAX_INDEX_DEPTH)})


# -- malformed session metadata ---------------------------------------------------------


def _env(**fields):
    return lambda meta: meta["environment"].update(fields)


MALFORMED = [
    (lambda m: m.update(module=""), "module '' is not a module name"),
    (lambda m: m.update(module=".x"), r"module '\.x' is not a dotted module name"),
    (lambda m: m.update(module="x.", module_kind="main"), r"module 'x\.' is of kind main"),
    (lambda m: m.update(module="my-mod", module_kind="importable"), "module 'my-mod' is not a dotted module name"),
    (lambda m: m.update(module="a..b", module_kind="importable"), "module 'a..b' is not a dotted module name"),
    (lambda m: m.update(module="os/../x", module_kind="importable"), "is not a dotted module name"),
    (lambda m: m.update(module=5), "module 5 is not a module name"),
    (lambda m: m.update(module=["os"]), r"module \['os'\] is not a module name"),
    (lambda m: m.update(module_kind="builtin"), "module_kind 'builtin' is not one of main, importable, dynamic"),
    (lambda m: m.update(module_kind=[]), r"module_kind \[\] is not one of"),
    (lambda m: m.update(module="os", module_kind="main"), "of kind main, which only __main__ is"),
    (lambda m: m.update(variables="x"), "variables is not a list"),
    (lambda m: m.update(skipped=[{"name": "x", "reason": 5}]), "skipped 0: reason is not a string"),
    (lambda m: m.update(skipped="none"), "skipped is not a list"),
    (lambda m: m.update(environment=[]), "environment is not an object"),
    (_env(python=[3]), r"environment: python \[3\] is not a version"),
    (_env(python=[]), r"environment: python \[\] is not a version"),
    (_env(python="3.11"), "environment: python '3.11' is not a version"),
    (_env(python=[3, "11"]), "environment: python .* is not a version"),
    (_env(python=[3, 2**70]), "environment: python .* is not a version"),
    (_env(python=[3, -1]), "environment: python .* is not a version"),
    (_env(packages=[]), "environment: packages is not an object"),
    (_env(packages={"numpy": 1}), "environment: packages: the version of numpy is not a string"),
    (_env(packages={"a.b": "1"}), "environment: packages: 'a.b' is not a top-level package name"),
    (_env(packages={"../evil": "1"}), "is not a top-level package name"),
    (_env(packages={"": "1"}), "environment: packages: '' is not a top-level package name"),
    (_env(created=5), "environment: created is not a string"),
    (_env(platform=None), "environment: platform is not a string"),
]


# Format 1 files list the variables as records.
MALFORMED_RECORDS = [
    (lambda m: m.update(variables={}), "variables: no blobs"),  # a dict is read as columns
    (lambda m: m["variables"].append(7), r"variable \d+: not an object"),
    (lambda m: m["variables"][0].update(name=None), "variable 0: name is not a string"),
    (lambda m: m["variables"][0].update(size=-1), "variable 0: size -1 is not a byte count"),
    (lambda m: m["variables"][0].update(size=True), "variable 0: size True is not a byte count"),
    (lambda m: m["variables"][0].update(memo_reset="yes"), "variable 0: memo_reset"),
]


def _columns(**changes):
    return lambda m: m["variables"].update(changes)


# Format 2 files store them as columns; _real_file's are __doc__, arr (blob 0) and x.
MALFORMED_COLUMNS = [
    (lambda m: m["variables"].pop("stored"), "variables: no stored"),
    (_columns(name=None), "variables: name is not a list of strings"),
    (_columns(name=[None, "x", "y"]), "variables: name is not a list of strings"),
    (lambda m: m["variables"]["name"].pop(), r"variables: 2 names for the file's 3 segments"),
    (_columns(types="int"), "variables: types is not a list of strings"),
    (_columns(type=[0, 1]), "variables: type is not 3 numbers below 3"),
    (_columns(type=[0, 1, -1]), "variables: type is not 3 numbers below"),
    (_columns(type=[0, 1, 3]), "variables: type is not 3 numbers below"),
    (_columns(type=[0, 1, True]), "variables: type is not 3 numbers below"),
    (_columns(stored=[0, 0, 0.0]), "variables: stored is not 3 numbers below 1"),
    (_columns(blobs={}), "variables: blobs is not a list"),
    (_columns(blobs=[[0, 0, 1], [0, 0, 1]]), r"blobs: \[0, 0, 1\] is not \[variable, first blob, count\]"),
    (_columns(blobs=[[1, 0, 0]]), r"blobs: \[1, 0, 0\] is not"),
    (_columns(blobs=[[1, 0, 2]]), r"blobs: \[1, 0, 2\] is not .* of the file's 1 blobs"),
    (_columns(blobs=[[3, 0, 1]]), r"blobs: \[3, 0, 1\] is not"),
    (_columns(blobs=[[1, -1, 1]]), r"blobs: \[1, -1, 1\] is not"),
    (_columns(blobs=[[1, 0]]), r"blobs: \[1, 0\] is not"),
    (_columns(blobs=[[1, 0, True]]), r"blobs: \[1, 0, True\] is not"),
    (_columns(memo_reset=[1, 0]), "variables: memo_reset is not a list of variable numbers in order"),
    (_columns(memo_reset=[1, 1]), "variables: memo_reset is not"),
    (_columns(memo_reset=[3]), "variables: memo_reset is not"),
    (_columns(memo_reset=None), "variables: memo_reset is not"),
]


@pytest.mark.parametrize("edit, match", MALFORMED + MALFORMED_COLUMNS)
def test_malformed_metadata_is_a_corrupt_session_naming_the_field(edit, match, tmp_path, capsys):
    path = _write(tmp_path, with_meta(_real_file(tmp_path), edit))
    _refused_everywhere(path, "session metadata is malformed: .*" + match, capsys)


@pytest.mark.parametrize("edit, match", MALFORMED + MALFORMED_RECORDS)
def test_malformed_metadata_is_refused_in_format_1(edit, match, tmp_path, capsys):
    path = _write(tmp_path, with_index(to_v1(_real_file(tmp_path)), lambda index: edit(index["meta"])))
    _refused_everywhere(path, "session metadata is malformed: .*" + match, capsys)


def test_odd_but_well_typed_metadata_prints(tmp_path, capsys):
    """What passes the checks prints, as text and JSON, with nothing from the
    file reaching the terminal as a control character."""

    def edit(meta):
        meta.update(module="my-mod \x1b[2J", module_kind="dynamic")
        meta["environment"] = {
            "python": [3, 11],
            "packages": {"numpy": "\x1b]0;pwned\x07" + "9" * 500},
            "created": "",
            "platform": "\u202eevil",
        }
        columns = meta["variables"]
        columns["name"][0] = "x\x1b[31m"
        columns["types"][columns["type"][0]] = "\n\r"
        meta["skipped"] = [{"name": "\x00", "reason": "line\nbreak"}]

    path = _write(tmp_path, with_meta(_real_file(tmp_path), edit))
    info = mason.inspect(path)
    assert info.module == "my-mod \x1b[2J" and info.environment["python"] == [3, 11]
    for argv in (["inspect", str(path)], ["inspect", "--json", str(path)]):
        status, text = _cli(capsys, *argv)
        assert status == 0, text
        assert not any(c in text for c in "\x1b\x07\x00\r\u202e"), text
    status, text = _cli(capsys, "diff", str(path), str(path))
    assert status == 0 and "\x1b" not in text


# -- nothing named by the file is imported ---------------------------------------------


MARKER_MODULE = """
import pathlib
pathlib.Path({marker!r}).write_text("imported")
__version__ = "6.6.6"
class Thing:
    pass
"""


@pytest.fixture
def trap_in_cwd(tmp_path, monkeypatch):
    """A module ``hostile_trap`` in the current directory (first on sys.path,
    as with ``python -c`` or ``python -m``) that writes a marker when imported."""
    work = tmp_path / "work"
    work.mkdir()
    marker = tmp_path / "imported"
    (work / "hostile_trap.py").write_text(MARKER_MODULE.format(marker=str(marker)))
    monkeypatch.chdir(work)
    monkeypatch.syspath_prepend(str(work))
    monkeypatch.setattr(sys, "path", ["", *sys.path])
    yield work, marker
    sys.modules.pop("hostile_trap", None)


def test_a_package_named_in_the_environment_is_never_imported(trap_in_cwd, tmp_path, capsys):
    work, marker = trap_in_cwd
    data = with_meta(_real_file(tmp_path), lambda meta: meta["environment"]["packages"].update(hostile_trap="1.0"))
    path = _write(tmp_path, data)
    start = time.monotonic()
    assert mason.inspect(path).environment["packages"] == {"hostile_trap": "1.0"}
    assert _cli(capsys, "verify", str(path))[0] == 0
    assert _cli(capsys, "diff", str(path), str(path))[0] == 0
    assert _cli(capsys, "inspect", str(path))[0] == 0
    for allow in ([], None):  # the environment check runs in every load, before anything else
        with pytest.warns(mason.EnvironmentMismatchWarning, match="hostile_trap 1.0 .no installed version found"):
            assert mason.load_module_asdict(path, allow=allow)["x"] == 1
    with pytest.warns(mason.EnvironmentMismatchWarning):
        # restricted: the caller names the module (the file's own word counts for nothing)
        assert mason.load_module(path, allow=[], module=types.ModuleType(mason.inspect(path).module)).x == 1
    assert time.monotonic() - start < QUICK
    assert not marker.exists() and "hostile_trap" not in sys.modules


def test_an_imported_package_reports_its_version_without_metadata(trap_in_cwd, tmp_path):
    from mason._namespace import installed_version

    work, marker = trap_in_cwd
    assert installed_version("hostile_trap") is None and not marker.exists()
    import hostile_trap  # noqa: F401  (the user imported it: now its version is known)

    assert installed_version("hostile_trap") == "6.6.6"


def _file_needing_the_trap(tmp_path):
    # Variable `thing` is a hostile_trap.Thing: loading it imports hostile_trap.
    segment = pickle.dumps(None, protocol=5)[:2] + b"chostile_trap\nThing\n)\x81."
    meta = session_meta([("thing", 0, [])])
    return _session_file(tmp_path, [(spec.SEGMENT, segment, None, len(segment))], meta)


def test_mason_load_with_allow_or_key_keeps_the_current_directory_off_sys_path(
    trap_in_cwd, tmp_path, capsys, monkeypatch
):
    work, marker = trap_in_cwd
    path = _file_needing_the_trap(tmp_path)
    status, text = _cli(capsys, "load", str(path), "--allow", "hostile_trap")
    assert status == 1 and "hostile_trap" in text, text
    assert not marker.exists() and "hostile_trap" not in sys.modules
    monkeypatch.setenv("MASON_SIGNING_KEY", "k")
    mason.sign(path, key="k")
    status, text = _cli(capsys, "load", str(path))  # a key from the environment: a checked load
    assert status == 1 and not marker.exists(), text
    assert sys.path[0] == ""  # the command puts sys.path back
    # A plain load trusts the file and, as Python's prompt, finds modules next to you.
    monkeypatch.delenv("MASON_SIGNING_KEY")
    status, text = _cli(capsys, "load", str(path))
    assert status == 0 and marker.exists(), text


# -- segments ---------------------------------------------------------------------------


def test_a_segment_whose_pickle_runs_on_into_the_next_stops_the_load(tmp_path):
    """A plain load reads all segments from one stream; a segment without its
    STOP (never written by a pickler) refuses the whole file, since what ran
    of the next one is in the shared memo.  A restricted load's scan refuses
    it before anything runs."""
    unended = pickle.dumps([1, 2], protocol=5)[:-1]
    out = io.BytesIO()
    writer = ContainerWriter(out, checksum="crc32")
    for segment in (pickle.dumps("first", protocol=5), unended, pickle.dumps("third", protocol=5)):
        writer.add_segment(segment)
    writer.finish(session_meta([("a", 0, []), ("b", 1, []), ("c", 2, [])]))
    path = _write(tmp_path, out.getvalue())
    for on_error in ("warn", "raise"):
        with pytest.raises(CorruptSessionError, match="segment 1: its pickle does not end within the segment"):
            mason.load_module_asdict(path, on_error=on_error)
    with pytest.raises(mason.UnpicklingError, match="cannot be checked"):
        mason.load_module_asdict(path, allow=[])
