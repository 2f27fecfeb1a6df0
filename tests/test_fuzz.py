"""Damaged and hostile session files: every input loads correctly or is refused
with mason's own error; nothing hangs, nothing allocates what the file only
claims, and nothing is rebuilt before the integrity checks have passed.

Two kinds of input:
- *damaged*: bytes changed after writing (truncation, bit flips, splices from
  another file, absurd lengths in record headers, duplicated records).  Every
  byte is checksummed, so these must load exactly as saved or raise
  CorruptSessionError.
- *hostile*: a changed index whose checksums were recomputed, as someone
  writing a file on purpose would (absurd lengths, counts and indices in the
  tables and the JSON, duplicated records that are listed).  These may load
  (loading runs the file's code anyway) but must otherwise raise a
  MasonError subclass.

The files are of the current format (2) and of format 1, which mason still
reads.

The normal run tries a few hundred cases; ``--runslow`` (or
MASON_FUZZ_EXAMPLES=N for the normal test) runs at least 10,000.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import textwrap
import types
import warnings

import pytest
from conftest import run_python
from hostile_files import V2, to_v1
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import mason
import mason.cli
from mason._format import ContainerReader, spec
from mason._format import checksum as checksum_mod
from mason.errors import CorruptSessionError, MasonError

np = pytest.importorskip("numpy")

_EXAMPLES = int(os.environ.get("MASON_FUZZ_EXAMPLES", "0"))
CI_EXAMPLES = _EXAMPLES or 300
SLOW_EXAMPLES = max(_EXAMPLES, 10_000)
DEADLINE_S = 20  # per input, for all the readers together: a hang, not slowness

# -------------------------------------------------------------- the sessions

SOURCE = """
numbers = [1, 2.5, "three", None, (4, 5), {"six": 6}]
shared = [numbers, numbers]
blob = bytes(range(256)) * 4
text = "mason " * 200

def area(r):
    return 3 * r * r + len(numbers)

class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y
    def norm1(self):
        return abs(self.x) + abs(self.y)

origin = Point(1, -2)
"""

DONOR_SOURCE = """
other = {"k%d" % i: list(range(i)) for i in range(40)}
def twice(x):
    return 2 * x
"""


def _scratch(name: str, source: str, **arrays) -> types.ModuleType:
    module = types.ModuleType(name)
    exec(compile(source, f"<{name}>", "exec"), module.__dict__)
    module.__dict__.update(arrays)
    return module


def _dump(module: types.ModuleType, compression=None) -> bytes:
    out = io.BytesIO()
    # crc32 always: the hostile mutations recompute checksums with it.
    mason.dump_module(out, module=module, compression=compression, checksum="crc32")
    return out.getvalue()


def _arrays():
    return {
        "grid": np.arange(600, dtype=np.float64).reshape(20, 30),
        "mask": np.zeros(1000, dtype=bool),
        "noise": np.random.default_rng(1).integers(0, 255, 300, dtype=np.uint8),
    }


FILES = {
    str(compression): _dump(_scratch("fuzzmod", SOURCE, **_arrays()), compression)
    for compression in (None, "zlib", "lzma")
}
if checksum_mod._have_xxhash():
    # crc32+xxh3 with an xxh3 half on every record from 64 bytes (the rule is
    # 1 MiB, which would make every fuzzed file large): damage must be
    # caught by that half, and the index, under 1 MiB, keeps its CRC.
    _xxh3_from, checksum_mod.XXH3_FROM = checksum_mod.XXH3_FROM, 64
    try:
        _out = io.BytesIO()
        mason.dump_module(_out, module=_scratch("fuzzmod", SOURCE, **_arrays()), checksum="crc32+xxh3")
        FILES["crc32+xxh3"] = _out.getvalue()
    finally:
        checksum_mod.XXH3_FROM = _xxh3_from
FILES["v1"] = to_v1(FILES["None"])
FILES["v1-zlib"] = to_v1(FILES["None"], "zlib")
DONORS = [*FILES.values(), _dump(_scratch("donor", DONOR_SOURCE, big=np.ones(50)), "zlib")]


def summary(namespace: dict) -> dict:
    """What a loaded fuzzmod namespace holds, as plain comparable values."""
    out = {}
    for name, value in namespace.items():
        if name.startswith("__"):
            continue
        if isinstance(value, np.ndarray):
            out[name] = ("array", value.dtype.str, value.shape, value.tobytes())
        elif isinstance(value, types.FunctionType):
            out[name] = ("function", value(4))
        elif isinstance(value, type):
            out[name] = ("class", value(3, -4).norm1())
        elif type(value).__name__ == "Point":
            out[name] = ("Point", value.norm1())
        else:
            out[name] = value
    return out


EXPECTED = summary(vars(_scratch("fuzzmod", SOURCE, **_arrays())))
NAMES = sorted(EXPECTED)


# -------------------------------------------------------- container surgery


def _is_v1(data: bytes) -> bool:
    return data[10:12] == b"\x01\x00"


def _layout(data: bytes):
    """(trailer, index, [(kind, table, number, entry dict)]) of an intact container:
    index is the JSON object of a format 1 file, or a V2 of a format 2 file;
    the entries are the records (a format 2 SEGM record is "segments" of its
    number in the SEGM records) with offset, length and pad."""
    trailer = spec.TRAILER.unpack(data, len(data) - spec.TRAILER.size)
    if _is_v1(data):
        start = trailer.index_offset + spec.RECORD.size
        index = json.loads(data[start : start + trailer.index_length])
        records = [(spec.SEGMENT, "segments", i, e) for i, e in enumerate(index["segments"])]
        records += [(spec.BLOB, "blobs", i, e) for i, e in enumerate(index["blobs"])]
        return trailer, index, records
    records = []
    with ContainerReader.open(data) as reader:
        for table, entries in (("segments", reader._groups), ("blobs", reader._blobs)):
            for entry in entries:
                fields = {"offset": entry.offset, "length": entry.length, "pad": entry.pad}
                records.append((entry.kind, table, entry.number, fields))
    return trailer, V2(data), records


def _record_start(entry: dict) -> int:
    return entry["offset"] - entry["pad"] - spec.RECORD.size


def reseal(body: bytes, index: dict) -> bytes:
    """``body`` (header and records) followed by ``index`` and a trailer whose
    lengths and checksums agree with it: what a deliberate writer produces."""
    payload = json.dumps(index, sort_keys=True, separators=(",", ":")).encode()
    crc = checksum_mod.by_name("crc32").compute(payload)
    head = spec.RECORD.pack(
        kind=spec.INDEX, compression=0, pad=0, reserved=0, length=len(payload), raw_length=len(payload), checksum=crc
    )
    total = len(body) + len(head) + len(payload) + spec.TRAILER.size
    trailer = spec.TRAILER.pack(
        index_offset=len(body),
        index_length=len(payload),
        index_checksum=crc,
        container_length=total,
        checksum_id=spec.CHECKSUM_IDS["crc32"],
        reserved=bytes(7),
        end_magic=spec.END_MAGIC,
    )
    return body + head + payload + trailer


ABSURD_U64 = [0, 1, 63, 64, 2**31, 2**32 + 5, 2**33, 2**47, 2**48, 2**48 + 1, 2**63, 2**64 - 1]
WEIRD_JSON = [
    -1,
    0,
    1,
    2**31,
    2**33,
    2**47,
    2**48,
    2**48 + 1,
    2**53 + 1,
    2**63,
    2**64,
    10**30,
    1.5,
    float("inf"),
    float("nan"),
    "",
    "0",
    "x" * 100,
    None,
    True,
    [],
    [0],
    [-1],
    {},
    {"offset": 0},
]


class Mutation:
    """A mutated file; its repr (what hypothesis prints) is the description."""

    def __init__(self, how: str, what: str, data: bytes, hostile: bool):
        self.how, self.what, self.data, self.hostile = how, what, data, hostile

    def __repr__(self):
        return f"<{'hostile' if self.hostile else 'damaged'}: {self.what}>"


@st.composite
def mutations(draw):
    """One mutated session file (a Mutation)."""
    data = draw(st.sampled_from(sorted(FILES.items())))[1]
    trailer, index, records = _layout(data)
    how = draw(
        st.sampled_from(
            [
                "truncate",
                "flip",
                "overwrite",
                "append",
                "splice",
                "record-header",
                "duplicate",
                "index-edit",
                "index-duplicate",
            ]
        )
    )
    out = bytearray(data)
    hostile = how.startswith("index")
    if how == "truncate":
        at = draw(st.integers(0, len(data) - 1))
        del out[at:]
        what = f"truncated at {at}"
    elif how == "flip":
        bits = draw(st.lists(st.integers(0, 8 * len(data) - 1), min_size=1, max_size=3))
        for bit in bits:
            out[bit // 8] ^= 1 << (bit % 8)
        what = f"bits {bits} flipped"
    elif how == "overwrite":
        at = draw(st.integers(0, len(data) - 1))
        chunk = draw(st.binary(min_size=1, max_size=16))
        out[at : at + len(chunk)] = chunk
        what = f"{chunk!r} written at {at}"
    elif how == "append":
        chunk = draw(st.binary(min_size=1, max_size=64))
        out += chunk
        what = f"{chunk!r} appended"
    elif how == "splice":
        donor = draw(st.sampled_from(DONORS))
        size = draw(st.integers(1, 512))
        src = draw(st.integers(0, len(donor) - 1))
        dst = draw(st.integers(0, len(data)))
        chunk = donor[src : src + size]
        if draw(st.booleans()):
            out[dst : dst + len(chunk)] = chunk
            what = f"donor[{src}:+{size}] written over {dst}"
        else:
            out[dst:dst] = chunk
            what = f"donor[{src}:+{size}] inserted at {dst}"
    elif how == "record-header":
        kind, table, number, entry = draw(st.sampled_from(records))
        fields = {
            "length": ("<Q", 8),
            "raw_length": ("<Q", 16),
            "pad": ("<B", 5),
            "compression": ("<B", 4),
            "checksum": ("<Q", 24),
        }
        name = draw(st.sampled_from(sorted(fields)))
        code, at = fields[name]
        value = draw(st.sampled_from(ABSURD_U64)) % (256 if code == "<B" else 2**64)
        start = _record_start(entry) + at
        out[start : start + (1 if code == "<B" else 8)] = value.to_bytes(1 if code == "<B" else 8, "little")
        what = f"{table}[{number}] record header {name} = {value}"
    elif how == "duplicate":
        kind, table, number, entry = draw(st.sampled_from(records))
        start, end = _record_start(entry), entry["offset"] + entry["length"]
        out[end:end] = data[start:end]
        what = f"{table}[{number}] record duplicated"
    elif how == "index-edit" and not _is_v1(data):
        what = _edit_v2_index(draw, index)
        out = bytearray(bytes(index))
    elif how == "index-duplicate" and not _is_v1(data):
        # A copy of a record right after it, listed in the record table (offsets follow).
        number = draw(st.integers(0, len(index.rows) - 1))
        row = index.rows[number]
        kind, table, kind_number, entry = next(
            r for r in records if _record_start(r[3]) == _start_of_row(index, number)
        )
        start, end = _record_start(entry), entry["offset"] + entry["length"]
        index.body = index.body[: end - spec.HEADER.size] + data[start:end] + index.body[end - spec.HEADER.size :]
        index.rows.insert(number + 1, list(row))
        if kind == spec.SEGMENT:
            before = sum(1 for r in index.rows[: number + 1] if r[0] == spec.SEGMENT) - 1
            first = sum(index.groups[:before])
            index.groups.insert(before + 1, index.groups[before])
            held = index.lengths[first : first + index.groups[before]]
            index.lengths[first + len(held) : first + len(held)] = held
        out = bytearray(bytes(index))
        what = f"{table}[{kind_number}] record duplicated, listed in a resealed index"
    elif how == "index-edit":
        what = _edit_index(draw, index, records)
        out = bytearray(reseal(data[: trailer.index_offset], index))
    else:  # index-duplicate: a copy of a record, listed (or not) in a consistent index
        kind, table, number, entry = draw(st.sampled_from(records))
        start, end = _record_start(entry), entry["offset"] + entry["length"]
        copy = data[start:end]
        body = data[:end] + copy + data[end : trailer.index_offset]
        for _, _, _, other in records:
            if other["offset"] > entry["offset"]:
                other["offset"] += len(copy)
        listed = draw(st.sampled_from(["unlisted", "listed", "used"]))
        if listed != "unlisted":
            index[table].append(dict(entry, offset=entry["offset"] + len(copy)))
        if listed == "used":
            variables = [
                v
                for v in index["meta"]["variables"]
                if (number in v["blobs"] if table == "blobs" else v["segment"] == number)
            ]
            for var in variables:
                if table == "blobs":
                    var["blobs"] = [len(index["blobs"]) - 1 if b == number else b for b in var["blobs"]]
                else:
                    var["segment"] = len(index["segments"]) - 1
        out = bytearray(reseal(body, index))
        what = f"{table}[{number}] record duplicated, {listed} in a resealed index"
    return Mutation(how, what, bytes(out), hostile)


def _start_of_row(index: V2, number: int) -> int:
    """Where the record of row ``number`` starts (offsets follow from the rows)."""
    position = spec.HEADER.size
    for row in index.rows[:number]:
        position += spec.RECORD.size + row[2] + row[4]
    return position


def _edit_v2_index(draw, index: V2) -> str:
    """Change one number of a format 2 index (or one value of its metadata); describe it."""
    target = draw(st.sampled_from(["row", "group", "length", "head", "column", "meta"]))
    if target == "row":
        number = draw(st.integers(0, len(index.rows) - 1))
        field = draw(st.integers(1, 6))  # compression, pad, reserved, length, raw_length, checksum
        value = draw(st.sampled_from(ABSURD_U64))
        if draw(st.booleans()):
            value = max(0, index.rows[number][field] + draw(st.sampled_from([-64, -1, 1, 64, 2**40])))
        index.rows[number][field] = value % (256 if field in (1, 2) else 65536 if field == 3 else 2**64)
        return f"rows[{number}][{field}] = {index.rows[number][field]}, resealed"
    if target in ("group", "length"):
        table = index.groups if target == "group" else index.lengths
        number = draw(st.integers(0, len(table) - 1))
        table[number] = max(0, table[number] + draw(st.sampled_from([-64, -1, 1, 64, 2**40, 2**63])))
        return f"{target}s[{number}] = {table[number]}, resealed"
    if target == "head":
        field = draw(st.sampled_from(["records", "segments", "meta_length", "signature"]))
        index.head[field] = draw(st.sampled_from(ABSURD_U64)) % (256 if field == "signature" else 2**64)
        return f"head {field} = {index.head[field]}, resealed"
    holder = index.meta["variables"] if target == "column" else index.meta
    key = draw(st.sampled_from(sorted(holder)))
    value = draw(st.sampled_from(WEIRD_JSON))
    if target == "column" and draw(st.booleans()):
        column = holder[key]
        if column:
            number = draw(st.integers(0, len(column) - 1))
            column[number] = value
            return f"variables {key}[{number}] = {value!r}, resealed"
    if key == "module_kind":
        value = "dynamic"  # without one a module is importable, which the loader imports
    holder[key] = value
    return f"{'variables ' if target == 'column' else 'meta '}{key} = {value!r}, resealed"


def _edit_index(draw, index: dict, records) -> str:
    """Change one value (or drop one key) in a format 1 index's JSON; describe it."""
    variables = index["meta"]["variables"]
    target = draw(st.sampled_from(["entry", "variable", "meta", "top"]))
    if target == "entry":
        _, table, number, entry = draw(st.sampled_from(records))
        holder, key, where = entry, draw(st.sampled_from(spec.ENTRY_KEYS)), f"{table}[{number}]"
    elif target == "variable":
        number = draw(st.integers(0, len(variables) - 1))
        holder = variables[number]
        key = draw(st.sampled_from(sorted(holder) + ["memo_reset"]))
        where = f"variables[{number}]"
    elif target == "meta":
        holder, key, where = index["meta"], draw(st.sampled_from(sorted(index["meta"]))), "meta"
    else:
        holder, key, where = index, draw(st.sampled_from(sorted(index))), "index"
    # Without module_kind a file means an importable module, which the
    # loader imports: a missing fuzzmod would be ModuleNotFoundError.
    if draw(st.integers(0, 9)) == 0 and key != "module_kind":
        holder.pop(key, None)
        return f"{where}.{key} removed, resealed"
    value = draw(st.sampled_from(WEIRD_JSON))
    if isinstance(holder.get(key), int) and not isinstance(holder.get(key), bool) and draw(st.booleans()):
        value = holder[key] + draw(st.sampled_from([-64, -1, 1, 64, 2**40]))
    holder[key] = value
    return f"{where}.{key} = {value!r}, resealed"


# ------------------------------------------------------------------ checking


class Hang(Exception):
    pass


@contextlib.contextmanager
def deadline(seconds: int):
    """Fail (instead of hanging the suite) if the block runs for ``seconds``."""
    if not hasattr(signal, "SIGALRM"):
        yield
        return

    def expired(signum, frame):
        raise Hang(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


class _Stream:
    """Non-seekable reading, as from a pipe."""

    def __init__(self, data: bytes):
        self._file = io.BytesIO(data)

    def read(self, n=-1):
        return self._file.read(n)


def _source(mode: str, data: bytes, path):
    if mode == "path-mmap":
        return path, {}
    if mode == "path-read":
        return path, {"mmap": False}
    if mode == "bytesio":
        return io.BytesIO(data), {}
    return _Stream(data), {}


def _attempt(call):
    """('ok', result) or ('error', exception); anything but a MasonError propagates."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return "ok", call()
    except MasonError as exc:
        return "error", exc


def _cli(argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = mason.cli.main(argv)
    return status, out.getvalue(), err.getvalue()


def check_input(mutation: Mutation, mode: str, directory) -> str:
    """Check every reader on one input; returns how loading it went ("ok" or "error")."""
    data, hostile = mutation.data, mutation.hostile
    path = directory / "fuzzed.mason"
    path.write_bytes(data)
    original = directory / "original.mason"
    if not original.exists():
        original.write_bytes(FILES["None"])
    context = f"input {mutation!r} ({len(data)} bytes, read as {mode})"
    results = {}
    with deadline(DEADLINE_S):
        for name, call in (
            ("inspect", lambda s, kw: mason.inspect(s)),
            ("load_module_asdict", lambda s, kw: mason.load_module_asdict(s, **kw)),
            ("load_module", lambda s, kw: vars(mason.load_module(s, **kw))),
        ):
            source, options = _source(mode, data, path)
            results[name] = outcome, value = _attempt(lambda: call(source, options))
            if outcome == "error" and not hostile:
                assert isinstance(value, CorruptSessionError), f"{context}: {name} raised {value!r}"
            # (What a hostile file loads is its own business: its code ran.)
            if outcome == "ok" and not hostile:
                expected = NAMES if name == "inspect" else EXPECTED
                found = [n for n in value.names() if not n.startswith("__")] if name == "inspect" else summary(value)
                assert found == expected, f"{context}: {name} read something else"
        # The command line reads the file by path, and inspect reads only the
        # index there (a stream is checked whole as it is read).
        ok_inspect = _attempt(lambda: mason.inspect(path))[0] == "ok"
        ok_verify = _attempt(lambda: ContainerReader.open(path).verify())[0] == "ok"
        for argv in (
            ["inspect", str(path)],
            ["inspect", "--json", str(path)],
            ["verify", str(path)],
            ["diff", str(original), str(path)],
        ):
            status, out, err = _cli(argv)
            assert isinstance(status, int), f"{context}: mason {argv[0]} returned {status!r}"
            assert "Traceback" not in err, f"{context}: mason {argv[0]} printed a traceback:\n{err}"
            if status != 0 and argv[0] != "diff" or status == 2:
                assert err.startswith("mason: error: "), f"{context}: mason {argv[0]} said {err!r}"
            if not hostile and argv[0] == "inspect":
                assert (status == 0) == ok_inspect, f"{context}: {argv} {status} {err}"
            if not hostile and argv[0] == "verify":
                assert (status == 0) == ok_verify, f"{context}: {argv} {status} {err}"
    # (A stream ends at its trailer: bytes after it belong to whatever comes next.)
    if not hostile and results["load_module_asdict"][0] == "ok" and mode != "stream":
        assert ok_verify, f"{context}: loaded a file that does not verify"
    return results["load_module_asdict"][0]


_settings = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
_modes = st.sampled_from(["path-mmap", "path-read", "bytesio", "stream"])


@pytest.fixture(scope="module")
def directory(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


def test_the_sessions_load_as_saved(directory):
    for data in FILES.values():
        for mode in ("path-mmap", "path-read", "bytesio", "stream"):
            check_input(Mutation("unchanged", "unchanged", data, False), mode, directory)
            source, options = _source(mode, data, directory / "fuzzed.mason")
            assert summary(mason.load_module_asdict(source, **options)) == EXPECTED


@settings(max_examples=CI_EXAMPLES, **_settings)
@given(mutation=mutations(), mode=_modes)
def test_mutated_sessions_load_or_raise_mason_errors(mutation, mode, directory):
    event(f"{mutation.how}: load {check_input(mutation, mode, directory)}")


@pytest.mark.slow
@settings(max_examples=SLOW_EXAMPLES, **_settings)
@given(mutation=mutations(), mode=_modes)
def test_mutated_sessions_many(mutation, mode, directory):
    event(f"{mutation.how}: load {check_input(mutation, mode, directory)}")


# ------------------------------------------------- absurd lengths, bounded memory


def _absurd_files() -> dict[str, tuple[bytes, str]]:
    """name -> (file, how to read it) for files whose numbers claim far more than they hold."""
    plain = _dump(_scratch("plainmod", "payload = list(range(2000)) * 3\nname = 'x' * 5000\n"), "zlib")
    files = {}
    for claim in (2**33, 2**40, 2**48):
        # The record table claims a huge record (its end is not the index's start).
        index = V2(plain)
        index.rows[-1][4:6] = [claim, claim + 1]
        files[f"table-length-{claim}"] = (bytes(index), "path")
        # The table and the record header agree on a huge raw length for a
        # compressed record: decompression must stay bounded by what the data gives.
        index = V2(plain)
        number, row = next((n, r) for n, r in enumerate(index.rows) if r[1])
        row[5] = claim
        at = _start_of_row(index, number) - spec.HEADER.size + 16
        index.body = index.body[:at] + claim.to_bytes(8, "little") + index.body[at + 8 :]
        files[f"table-raw-length-{claim}"] = (bytes(index), "path")
        # Counts far beyond the index's length.
        for field in ("records", "segments", "meta_length"):
            index = V2(plain)
            index.head[field] = claim
            files[f"count-{field}-{claim}"] = (bytes(index), "path")
        # A stream whose first record header claims a huge payload.
        files[f"stream-length-v2-{claim}"] = (
            plain[:24] + claim.to_bytes(8, "little") + claim.to_bytes(8, "little") + plain[40:],
            "stream",
        )
    index = V2(plain)
    index.meta_bytes = b"[" * 100_000 + b"]" * 100_000
    files["deep-json-v2"] = (bytes(index), "path")
    # Format 1.
    plain = to_v1(plain, "zlib")
    trailer, index, records = _layout(plain)
    body = plain[: trailer.index_offset]
    for claim in (2**33, 2**40, 2**48):
        # The index alone claims a huge record (tiling catches it).
        edited = json.loads(json.dumps(index))
        edited["segments"][-1]["length"] = claim
        edited["segments"][-1]["raw_length"] = claim + 1
        files[f"index-length-{claim}"] = (reseal(body, edited), "path")
        # Index and record header agree on a huge raw length for a compressed
        # record: decompression must stay bounded by what the data gives.
        edited = json.loads(json.dumps(index))
        entry = next(e for e in edited["segments"] if e["compression"] == "zlib")
        entry["raw_length"] = claim
        start = _record_start(entry)
        patched = body[: start + 16] + claim.to_bytes(8, "little") + body[start + 24 :]
        files[f"raw-length-{claim}"] = (reseal(patched, edited), "path")
        # A stream whose first record header claims a huge payload.
        start = _record_start(index["segments"][0])
        files[f"stream-length-{claim}"] = (
            plain[: start + 8] + claim.to_bytes(8, "little") + claim.to_bytes(8, "little") + plain[start + 24 :],
            "stream",
        )
        # A trailer and an index record header claiming a huge index.
        t = trailer._replace(index_length=claim)
        at = trailer.index_offset + 8
        patched = plain[:at] + claim.to_bytes(8, "little") * 2 + plain[at + 16 : -spec.TRAILER.size]
        files[f"trailer-index-{claim}"] = (patched + spec.TRAILER.pack(**t._asdict()), "path")
    deep = reseal(body, {"x": 0}).replace(b'{"x":0}', b"[" * 100_000 + b"]" * 100_000)
    files["deep-json"] = (deep, "path")
    return files


def test_absurd_lengths_are_refused_before_allocation(tmp_path):
    """Each read runs in a fresh interpreter with its address space capped at
    512 MiB above what it uses: a file claiming gigabytes must be refused
    from its numbers, never by a failed (or, with overcommit, a lazy) allocation."""
    pytest.importorskip("resource")
    names = []
    for name, (data, how) in _absurd_files().items():
        (tmp_path / f"{name}.mason").write_bytes(data)
        names.append((name, how))
    proc = run_python(
        f"""
        import io, resource, sys, warnings
        import mason
        from mason._format import ContainerReader
        from mason.errors import CorruptSessionError

        def address_space():
            with open('/proc/self/status') as f:
                for line in f:
                    if line.startswith('VmSize:'):
                        return int(line.split()[1]) * 1024
        limit = address_space() + (512 << 20)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

        class Stream:
            def __init__(self, data):
                self._f = io.BytesIO(data)
            def read(self, n=-1):
                return self._f.read(n)

        def memory_error_in(exc):
            while exc is not None:
                if isinstance(exc, MemoryError):
                    return True
                exc = exc.__cause__ or exc.__context__
            return False

        problems = []
        for name, how in {names!r}:
            path = {str(tmp_path)!r} + '/' + name + '.mason'
            data = open(path, 'rb').read()
            for reader in ('inspect', 'load', 'verify'):
                source = Stream(data) if how == 'stream' else path
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter('ignore')
                        if reader == 'inspect':
                            mason.inspect(source)
                        elif reader == 'load':
                            mason.load_module_asdict(source)
                        else:
                            ContainerReader.open(source).verify()
                except CorruptSessionError as exc:
                    if memory_error_in(exc):
                        problems.append(f'{{name}} {{reader}}: refused only after a MemoryError: {{exc}}')
                except BaseException as exc:
                    problems.append(f'{{name}} {{reader}}: {{type(exc).__name__}}: {{exc}}')
                else:
                    # A compressed record's raw length is only tested by decompressing.
                    if not (name.startswith('raw-length') and reader != 'load'):
                        problems.append(f'{{name}} {{reader}}: accepted')
        print(len({names!r}) * 3, 'reads')
        assert not problems, '\\n'.join(problems)
        """,
        cwd=tmp_path,
    )
    assert "reads" in proc.stdout


# ------------------------------------------- nothing rebuilt before the checks


TRAP_SOURCE = """
import os

class Trap:
    def __init__(self, marker):
        self.marker = marker
    def __reduce__(self):
        # Rebuilding calls os.mkdir(marker): a visible side effect.
        return (os.mkdir, (self.marker,))
"""


def _trap_session(marker, late) -> bytes:
    """A session whose first variable makes ``marker`` when rebuilt and whose
    last variable (``zz_late``, last in file order) is ``late``."""
    module = _scratch("trapmod", TRAP_SOURCE)
    module.a_trap = module.Trap(str(marker))
    module.zz_late = late
    return _dump(module)


@pytest.mark.parametrize("damage", ["last-segment", "last-blob"])
@pytest.mark.parametrize("mode", ["path-mmap", "path-read", "bytesio"])
def test_late_damage_means_nothing_is_rebuilt(damage, mode, tmp_path):
    marker = tmp_path / "rebuilt"
    data = bytearray(_trap_session(marker, [b"late data " * 50, np.arange(1000.0)]))
    names = mason.inspect(io.BytesIO(bytes(data))).names()
    assert names.index("a_trap") < names.index("zz_late") == len(names) - 1
    with ContainerReader.open(bytes(data)) as reader:
        if damage == "last-segment":
            entry = reader.segment_info(reader.segment_count - 1)
        else:
            entry = reader.blob_info(reader.blob_count - 1)
    data[entry["offset"] + entry["length"] // 2] ^= 0x10
    path = tmp_path / "damaged.mason"
    path.write_bytes(data)
    for load in (mason.load_module_asdict, mason.load_module):
        source, options = _source(mode, bytes(data), path)
        with pytest.raises(CorruptSessionError, match="checksum"):
            load(source, **options)
        assert not marker.exists(), f"{load.__name__} rebuilt an object of a damaged file"
    # The trap is real: the undamaged file does make the marker.
    mason.load_module_asdict(io.BytesIO(_trap_session(marker, [1])))
    assert marker.exists()


def test_reading_the_index_never_unpickles(tmp_path):
    """inspect, verify and diff on files whose every segment would run code."""
    marker = tmp_path / "ran"
    honest = _trap_session(marker, "plain")
    index = V2(honest)
    columns = index.meta["variables"]
    columns["types"] = ["<script>"]
    columns["type"] = [0] * len(columns["type"])
    index.meta["skipped"] = [{"name": "zz", "type": "x", "reason": "\x1b[2J"}]
    index.meta["environment"] = {"python": [9, 9], "packages": {"os": "0"}}
    hostile = bytes(index)
    paths = []
    for name, data in (("honest", honest), ("hostile", hostile)):
        path = tmp_path / f"{name}.mason"
        path.write_bytes(data)
        paths.append(str(path))
        info = mason.inspect(path)
        assert {"a_trap", "zz_late"} <= set(info.names())
        with ContainerReader.open(path) as reader:
            reader.verify()
        for argv in (["inspect", str(path)], ["inspect", "--json", str(path)], ["verify", str(path)]):
            status, out, err = _cli(argv)
            assert status == 0, (argv, err)
    status, out, err = _cli(["diff", *paths])
    assert status in (0, 1) and "Traceback" not in err, err
    assert not marker.exists()
    mason.load_module_asdict(paths[0])
    assert marker.exists()  # the trap works: only loading runs it


def test_memory_test_can_fail(tmp_path):
    """The capped interpreter of the memory test really fails on a big allocation."""
    proc = run_python(
        """
        import resource
        limit = 1 << 30
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        try:
            bytearray(2 << 30)
        except MemoryError:
            print('refused')
        """,
        check=False,
    )
    assert "refused" in proc.stdout, proc.stderr


def test_fuzz_script_runs_one_input(tmp_path):
    """fuzz/fuzz_load.py's entry point, without atheris, on a few inputs."""
    script = os.path.join(os.path.dirname(__file__), os.pardir, "fuzz", "fuzz_load.py")
    if not os.path.exists(script):
        pytest.skip("no fuzz/fuzz_load.py")
    inputs = [FILES["None"], FILES["zlib"][:-3], b"", b"\x89MASON\r\n\x1a\n"]
    for i, data in enumerate(inputs):
        (tmp_path / f"in{i}").write_bytes(data)
    run_python(
        textwrap.dedent(f"""
        import runpy, sys
        sys.argv = ['fuzz_load.py']
        module = runpy.run_path({script!r}, run_name='fuzz_load')
        for i in range({len(inputs)}):
            module['TestOneInput'](open({str(tmp_path)!r} + f'/in{{i}}', 'rb').read())
        print('done')
        """),
        cwd=tmp_path,
    )
