"""Check, then use the very bytes checked: a file rewritten while it is read.

The attacker of docs/security.md may write to a file while mason reads it.
The reader copies what it checks (the index, every segment, and with a key
or ``private=True`` every blob) and uses only that copy, so a rewrite after
the check changes nothing that was checked, and a rewrite before it is
caught by the check.  The first tests rewrite the file at a chosen moment;
the last ones let another process rewrite it as fast as it can while loads
run in a loop.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import textwrap
import time
import types

import pytest
from hostile_files import crc_preserving_patch

import mason
from mason._format import ContainerReader, spec
from mason.errors import CorruptSessionError, ForbiddenGlobalError, SignatureError

numpy = pytest.importorskip("numpy")

KEY = b"race key"


def _module(name: str = "racemod", **values) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(values)
    return module


def _save(path, key=None, checksum=None, **values) -> None:
    mason.dump_module(path, module=_module(**values), key=key if key is not None else False, checksum=checksum)


def _overwrite(path, offset: int, data: bytes) -> None:
    """Write ``data`` at ``offset`` of the file itself (same inode, as a writer in place would)."""
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _record(path, kind: str, number: int, **options) -> tuple[int, int]:
    """(payload offset, stored length) of a record, from a reader's table."""
    with ContainerReader.open(path, **options) as reader:
        info = reader.segment_info(number) if kind == "segment" else reader.blob_info(number)
    return info["offset"], info["length"]


# -- rewritten at a chosen moment ---------------------------------------------------


@pytest.mark.parametrize(
    "options", [{}, {"mmap": False}, {"key": KEY}, {"private": True}], ids=["mmap", "read", "key", "private"]
)
def test_a_segment_keeps_the_bytes_that_were_checked(tmp_path, options):
    path = tmp_path / "s.mason"
    _save(path, key=KEY, x="checked " * 20)
    offset, length = _record(path, "segment", 1)
    with ContainerReader.open(path, **options) as reader:
        first = reader.segment(1)
        original = bytes(first)
        _overwrite(path, offset, b"\x00" * length)
        # The loader asks for a segment several times (scan, memo counting,
        # unpickling): every time it gets the copy that was checked.
        assert reader.segment(1) is first and bytes(reader.segment(1)) == original
        assert bytes(reader.segments([1])[0]) == original
        assert first.readonly  # nobody can write into what was checked, either
    with pytest.raises(CorruptSessionError) as refused:
        ContainerReader.open(path, **options).segment(1)
    assert _names_segment(str(refused.value), 1)


def test_a_keyed_array_does_not_change_when_the_file_is_rewritten(tmp_path):
    path = tmp_path / "s.mason"
    _save(path, key=KEY, arr=numpy.arange(4096, dtype=numpy.float64))
    loaded = mason.load_module_asdict(path, key=KEY)["arr"]
    offset, length = _record(path, "blob", 0)
    _overwrite(path, offset, b"\xff" * length)
    assert (loaded == numpy.arange(4096)).all()
    loaded[0] = -1.0  # the array is writable, and writing to it leaves the file alone
    assert path.read_bytes()[offset : offset + 8] == b"\xff" * 8
    with pytest.raises((CorruptSessionError, SignatureError), match="blob 0"):
        mason.load_module_asdict(path, key=KEY)


@pytest.mark.parametrize("options", [{"key": KEY}, {"private": True}], ids=["key", "private"])
def test_a_private_blob_is_read_once_between_check_and_use(tmp_path, options):
    path = tmp_path / "s.mason"
    _save(path, key=KEY, arr=numpy.arange(4096, dtype=numpy.int64))
    offset, length = _record(path, "blob", 0)
    with ContainerReader.open(path, **options) as reader:
        reader.verify_records([], [0])  # what a load does before unpickling
        _overwrite(path, offset, b"\x01" * length)
        blob = reader.blob(0)
        assert not blob.readonly
        assert (numpy.frombuffer(blob, dtype=numpy.int64) == numpy.arange(4096)).all()
        # Asked for again (it was handed over): read again, and checked again.
        with pytest.raises((CorruptSessionError, SignatureError), match="blob 0"):
            reader.blob(0)


@pytest.mark.parametrize("options", [{}, {"key": KEY}, {"private": True}], ids=["mmap", "key", "private"])
def test_verify_does_not_vouch_for_bytes_read_later(tmp_path, options):
    """``verify()`` reads the file piecewise; what is handed out later as a
    copy is checked again on that copy, so a rewrite in between is caught
    (or not seen at all: a read file's buffer may still hold the old bytes)."""
    path = tmp_path / "s.mason"
    _save(path, key=KEY, x="verified " * 20, arr=numpy.arange(512))
    seg_offset, seg_length = _record(path, "segment", 2)
    blob_offset, blob_length = _record(path, "blob", 0)
    with ContainerReader.open(path) as reader:
        segment, blob = bytes(reader.segment(2)), bytes(reader.blob(0))
    with ContainerReader.open(path, **options) as reader:
        reader.verify()
        _overwrite(path, seg_offset, b"\x00" * seg_length)
        _overwrite(path, blob_offset, b"\x00" * blob_length)
        _checked_or_refused(lambda: reader.segment(2), segment, "segment 2")
        if options:  # private: blobs are copies too (else views of the file, which it trusts)
            _checked_or_refused(lambda: reader.blob(0), blob, "blob 0")


def _checked_or_refused(read, original: bytes, name: str) -> None:
    try:
        found = bytes(read())
    except (CorruptSessionError, SignatureError) as exc:
        kind, number = name.split()
        assert name in str(exc) if kind == "blob" else _names_segment(str(exc), int(number)), exc
    else:
        assert found == original


def _names_segment(message: str, number: int) -> bool:
    """Whether ``message`` names segment ``number``, or a record of segments that holds it."""
    for first, last in re.findall(r"segments? (\d+)(?:-(\d+))?", message):
        if int(first) <= number <= int(last or first):
            return True
    return False


def test_a_crc_forged_segment_swapped_in_after_the_scan_is_not_what_is_loaded(tmp_path):
    """The allowlist scan and the load read one copy: swapping in a segment
    with the same CRC-32 (no key: the checksum is all there is) after the
    scan approved the original changes nothing."""
    from mason._session import check_session_meta, scan_session

    path, evil, offset, marker = _forged_pair(tmp_path)
    with ContainerReader.open(path) as reader:
        variables = check_session_meta(reader)
        approved = bytes(reader.segment(1))
        scan_session(reader, variables)
        _overwrite(path, offset, evil)  # between the scan and the load
        assert bytes(reader.segment(1)) == approved and b"system" not in approved
    # The swapped-in segment passes the checksum: refused by the scan of a new load...
    with pytest.raises(ForbiddenGlobalError, match="system"):
        mason.load_module_asdict(path, allow=[], on_error="raise")
    assert not marker.exists()
    # ...and it is real: a plain load runs it (so the race test below can fail).
    mason.load_module_asdict(path)
    assert marker.exists()


def _forged_pair(tmp_path):
    """(file, evil segment bytes, its offset, marker): a session whose segment 1
    holds a string, and a same-length, same-CRC-32 segment that calls
    ``posix.system`` to create the marker.  Saved with plain CRC-32 sums:
    the xxh3 half of the default ``crc32+xxh3`` is not forged this easily."""
    path = tmp_path / "s.mason"
    marker = tmp_path / "pwned"
    _save(path, checksum="crc32", x="A" * 200)
    offset, length = _record(path, "segment", 1)
    original = open(path, "rb").read()[offset : offset + length]
    call = b"cposix\nsystem\n\x8c" + bytes([len(f"touch {marker}")]) + f"touch {marker}".encode() + b"\x85R."
    filler = length - 2 - 2 - 1 - len(call)  # PROTO 5, SHORT_BINBYTES n ... POP, then the call
    assert 4 <= filler < 256
    evil = b"\x80\x05C" + bytes([filler]) + bytes(filler) + b"0" + call
    assert len(evil) == length
    evil = crc_preserving_patch(original, 0, evil, 4)  # 4: the filler's first bytes absorb the fix
    return path, evil, offset, marker


def test_the_index_signature_covers_the_header_bytes_that_were_parsed():
    """A source that shows one header to the parser and another later must
    not pass: the signature is checked on the bytes that were parsed."""
    data = io.BytesIO()
    mason.dump_module(data, module=_module(x=1), key=KEY)
    genuine = data.getvalue()
    # Another minor version, which readers accept: the signature covers the header as written.
    altered = genuine[: len(spec.MAGIC) + 2] + b"\x07\x00" + genuine[len(spec.MAGIC) + 4 :]
    assert altered != genuine

    class TwoFaced(io.BytesIO):
        """Shows the altered header on the first read of offset 0, the genuine file after."""

        reads_at_zero = 0

        def readinto(self, buffer):
            if self.tell() == 0:
                self.reads_at_zero += 1
                if self.reads_at_zero == 1:
                    view = memoryview(buffer)
                    view[: len(view)] = altered[: len(view)]
                    self.seek(len(view))
                    return len(view)
            return super().readinto(buffer)

    with pytest.raises(SignatureError):
        ContainerReader.open(TwoFaced(genuine), key=KEY)
    ContainerReader.open(io.BytesIO(genuine), key=KEY).close()  # the genuine file is fine


# -- rewritten by another process, as fast as it can --------------------------------

_REWRITER = """
import json, os, sys, time
path, stop, listing = sys.argv[1:]
with open(listing) as f:
    patches = [(offset, bytes.fromhex(a), bytes.fromhex(b)) for offset, a, b in json.load(f)]
fd = os.open(path, os.O_WRONLY)
print("ready", flush=True)
end = time.monotonic() + 60
while not os.path.exists(stop) and time.monotonic() < end:
    for offset, mine, theirs in patches:
        os.pwrite(fd, theirs, offset)
    for offset, mine, theirs in patches:
        os.pwrite(fd, mine, offset)
"""


class _Rewriter:
    """A second process that keeps swapping byte ranges of a file between two versions."""

    def __init__(self, tmp_path, path, patches) -> None:
        self.stop = tmp_path / "stop"
        listing = tmp_path / "patches.json"
        listing.write_text(json.dumps([(offset, mine.hex(), theirs.hex()) for offset, mine, theirs in patches]))
        self.proc = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(_REWRITER), str(path), str(self.stop), str(listing)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout.readline().strip() == "ready"

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.stop.touch()
        try:
            self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


def _same_layout_pair(tmp_path):
    """Two sessions with the same layout and other values: ours, signed with
    KEY, and theirs, signed with another key."""
    ours, theirs = tmp_path / "ours.mason", tmp_path / "theirs.mason"
    _save(ours, key=KEY, arr=numpy.arange(65536, dtype=numpy.int64), n=1234567, s="ours " * 40)
    _save(
        theirs, key=b"another key", arr=numpy.arange(65536, dtype=numpy.int64)[::-1].copy(), n=7654321, s="them " * 40
    )
    a, b = ours.read_bytes(), theirs.read_bytes()
    assert len(a) == len(b)
    patches = []
    with ContainerReader.open(ours) as reader:
        infos = [reader.segment_info(i) for i in range(reader.segment_count)]
        infos += [reader.blob_info(i) for i in range(reader.blob_count)]
    for info in infos:
        start, end = info["offset"], info["offset"] + info["length"]
        if a[start:end] != b[start:end]:
            patches.append((start, a[start:end], b[start:end]))
    assert len(patches) >= 3  # n, s and the array differ
    return ours, patches


def test_keyed_loads_while_another_process_rewrites_the_file(tmp_path):
    path, patches = _same_layout_pair(tmp_path)
    outcomes = {"ours": 0, "refused": 0}
    deadline = time.monotonic() + 4
    with _Rewriter(tmp_path, path, patches):
        while time.monotonic() < deadline or sum(outcomes.values()) < 20:
            try:
                loaded = mason.load_module_asdict(path, key=KEY)
            except (SignatureError, CorruptSessionError):
                outcomes["refused"] += 1
                continue
            # Only bytes signed with KEY: all of ours, nothing of theirs, no mixture.
            assert loaded["n"] == 1234567 and loaded["s"] == "ours " * 40
            assert (loaded["arr"] == numpy.arange(65536)).all()
            outcomes["ours"] += 1
            time.sleep(0.01)
            # Loaded arrays are private memory: the rewrites go on, and they stay ours.
            assert (loaded["arr"] == numpy.arange(65536)).all()
    assert outcomes["refused"] > 0, outcomes  # the rewriter did get in the way
    print(outcomes)


def test_allowlisted_loads_while_another_process_swaps_in_a_crc_forged_segment(tmp_path):
    """Without a key the checksum is all there is, and an attacker can forge
    a CRC-32: the scan must judge the very bytes that are unpickled."""
    path, evil, offset, marker = _forged_pair(tmp_path)
    genuine = path.read_bytes()[offset : offset + len(evil)]
    outcomes = {"ours": 0, "forbidden": 0, "damaged": 0}
    deadline = time.monotonic() + 4
    with _Rewriter(tmp_path, path, [(offset, genuine, evil)]):
        while time.monotonic() < deadline or sum(outcomes.values()) < 20:
            try:
                loaded = mason.load_module_asdict(path, allow=[], on_error="raise")
            except ForbiddenGlobalError:
                outcomes["forbidden"] += 1
            except CorruptSessionError:  # a copy torn between the two versions
                outcomes["damaged"] += 1
            else:
                assert loaded["x"] == "A" * 200
                outcomes["ours"] += 1
            assert not marker.exists(), outcomes
    assert outcomes["forbidden"] > 0 and outcomes["ours"] > 0, outcomes
    print(outcomes)
