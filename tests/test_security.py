"""Trust: signed files (HMAC-SHA256) and loads restricted by an allowlist.

Files are made by fresh interpreters, the way users make them; loading
happens here, into dicts (load_module_asdict), or in fresh interpreters.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import zlib

import pytest
from conftest import run_python
from hostile_files import V2, assemble, crc_preserving_patch, to_v1

import mason
from mason import ForbiddenGlobalError, SignatureError
from mason._format import ContainerReader, spec
from mason.cli import main as cli

numpy = pytest.importorskip("numpy")

SESSION = """
import collections, numpy as np, mason
arr = np.arange(1024, dtype=np.float32)
counts = collections.Counter('abracadabra')
def double(x):
    return 2 * x
class Point:
    def __init__(self, x):
        self.x = x
    def norm(self):
        return abs(self.x)
p = Point(-3)
"""


def save(tmp_path, name="s.mason", code=SESSION, args="", env=None):
    path = tmp_path / name
    run_python(code + f"\nmason.dump_module({str(path)!r}{', ' + args if args else ''})\n", env=env)
    return path


def check_session(ns):
    assert ns["arr"].sum() == sum(range(1024))
    assert ns["counts"]["a"] == 5
    assert ns["double"](21) == 42
    assert ns["p"].norm() == 3


# ====================================================================== signing


def test_signed_file_loads_with_its_key_in_a_fresh_interpreter(tmp_path):
    path = save(tmp_path, args="key=b'k1'")
    assert mason.inspect(path).signed
    run_python(
        f"""
        import mason
        mason.load_module({str(path)!r}, key=b'k1')
        assert double(21) == 42 and p.norm() == 3 and arr.sum() == {sum(range(1024))}
        """
    )


def test_wrong_key_unsigned_file_and_opt_out(tmp_path):
    signed = save(tmp_path, "signed.mason", args="key='k1'")
    unsigned = save(tmp_path, "unsigned.mason")
    assert not mason.inspect(unsigned).signed
    with pytest.raises(SignatureError, match="another key"):
        mason.load_module_asdict(signed, key="k2")
    with pytest.raises(SignatureError, match="not signed"):
        mason.load_module_asdict(unsigned, key="k1")
    # Without a key a signed file loads (nothing is checked but the checksums) ...
    check_session(mason.load_module_asdict(signed))
    # ... and key=False is the explicit way to load an unsigned file with a key configured.
    check_session(mason.load_module_asdict(unsigned, key=False))


def test_key_from_the_environment_signs_and_is_required(tmp_path, monkeypatch):
    path = save(tmp_path, env={"MASON_SIGNING_KEY": "from-env"})
    assert mason.inspect(path).signed
    unsigned = save(tmp_path, "unsigned.mason", env={"MASON_SIGNING_KEY": ""})
    monkeypatch.setenv("MASON_SIGNING_KEY", "from-env")
    check_session(mason.load_module_asdict(path))
    with pytest.raises(SignatureError, match="not signed"):
        mason.load_module_asdict(unsigned)
    check_session(mason.load_module_asdict(unsigned, key=False))
    monkeypatch.setenv("MASON_SIGNING_KEY", "other")
    with pytest.raises(SignatureError):
        mason.load_module_asdict(path)


def test_refused_signature_leaves_the_module_unchanged(tmp_path):
    path = save(tmp_path, args="key='k1'")
    proc = run_python(
        f"""
        import mason
        double = 'mine'
        try:
            mason.load_module({str(path)!r}, key='wrong')
        except mason.SignatureError as exc:
            print('refused:', exc)
        assert double == 'mine' and 'p' not in globals()
        """
    )
    assert "refused:" in proc.stdout


def test_edited_metadata_with_fixed_checksums_is_refused(tmp_path):
    """Renaming variables in the index (swap what 'double' and 'p' hold) and
    fixing every checksum passes verification without a key, not with one."""
    path = save(tmp_path, args="key='k1', checksum='crc32'")
    index = V2(path.read_bytes())  # the signature's bytes stay as they were
    names = index.meta["variables"]["name"]
    names[:] = [{"double": "p", "p": "double"}.get(name, name) for name in names]
    forged = tmp_path / "forged.mason"
    forged.write_bytes(bytes(index))
    with ContainerReader.open(forged) as reader:
        reader.verify()  # every checksum is right
    assert callable(mason.load_module_asdict(forged)["p"])  # and the swap took effect
    with pytest.raises(SignatureError, match="altered"):
        mason.load_module_asdict(forged, key="k1")
    assert cli(["verify", str(forged), "--key", "k1"]) == 1


def _crc_preserving_patch(block: bytes, change_at: int, new: bytes, fix_at: int) -> bytes:
    """``block`` with ``new`` written at ``change_at`` and 4 bytes at ``fix_at``
    adjusted so that its CRC-32 is unchanged (CRC is affine over GF(2))."""
    target = zlib.crc32(block)
    out = bytearray(block)
    out[change_at : change_at + len(new)] = new
    zero = zlib.crc32(bytes(len(block)))
    columns = []
    for bit in range(32):
        probe = bytearray(len(block))
        probe[fix_at + bit // 8] = 1 << (bit % 8)
        columns.append(zlib.crc32(probe) ^ zero)
    want = zlib.crc32(out) ^ target
    # Gaussian elimination over GF(2): which bits of the window to flip.
    rows = [(columns[b], 1 << b) for b in range(32)]
    basis: dict[int, tuple[int, int]] = {}
    for value, mask in rows:
        for top in sorted(basis, reverse=True):
            if value >> top & 1:
                value ^= basis[top][0]
                mask ^= basis[top][1]
        if value:
            basis[value.bit_length() - 1] = (value, mask)
    flips = 0
    for top in sorted(basis, reverse=True):
        if want >> top & 1:
            want ^= basis[top][0]
            flips ^= basis[top][1]
    assert want == 0, "the window cannot fix this CRC"
    for bit in range(32):
        if flips >> bit & 1:
            out[fix_at + bit // 8] ^= 1 << (bit % 8)
    assert zlib.crc32(out) == target
    return bytes(out)


def test_blob_altered_with_the_same_checksum_is_refused(tmp_path):
    """CRC-32 is no defence against a forger; the per-record MAC is."""
    path = save(tmp_path, args="key='k1', checksum='crc32'")
    data = bytearray(path.read_bytes())
    with ContainerReader.open(bytes(data)) as reader:
        info = reader.blob_info(0)
    start, length = info["offset"], info["length"]
    assert length == 4096
    blob = bytes(data[start : start + length])
    data[start : start + length] = _crc_preserving_patch(blob, 0, numpy.float32(1e6).tobytes(), length - 8)
    forged = tmp_path / "forged.mason"
    forged.write_bytes(bytes(data))
    with ContainerReader.open(forged) as reader:
        reader.verify()  # the checksum still matches
    assert mason.load_module_asdict(forged)["arr"][0] == 1e6
    with pytest.raises(SignatureError, match="blob 0 does not match"):
        mason.load_module_asdict(forged, key="k1")
    with pytest.raises(SignatureError, match="blob 0"):
        ContainerReader.open(forged, key=b"k1").verify()


def test_sign_an_existing_file_then_verify_it_from_the_command_line(tmp_path, capsys):
    path = save(tmp_path, args="compression='zlib'")
    before = mason.inspect(path)
    key_file = tmp_path / "key"
    key_file.write_text("file-key\n")
    assert cli(["sign", str(path), "--key-file", str(key_file)]) == 0
    after = mason.inspect(path)
    assert after.signed and after.format_version == before.format_version and after.variables == before.variables
    assert cli(["verify", str(path), "--key-file", str(key_file)]) == 0
    assert "signature verified" in capsys.readouterr().out
    assert cli(["verify", str(path), "--key", "nope"]) == 1
    assert "another key" in capsys.readouterr().err
    check_session(mason.load_module_asdict(path, key="file-key"))
    assert os.stat(path).st_mode & 0o777 == 0o600


def test_sign_refuses_a_damaged_file_and_leaves_it(tmp_path, capsys):
    path = save(tmp_path)
    data = bytearray(path.read_bytes())
    with ContainerReader.open(bytes(data)) as reader:
        offset = reader.segment_info(0)["offset"]
    data[offset + 3] ^= 0xFF
    path.write_bytes(bytes(data))
    assert cli(["sign", str(path), "--key", "k"]) == 1
    assert "checksum mismatch" in capsys.readouterr().err
    assert path.read_bytes() == bytes(data)
    assert cli(["sign", str(path)]) == 2  # no key anywhere
    assert "no signing key" in capsys.readouterr().err


def test_bad_keys_are_clear_errors(tmp_path):
    path = save(tmp_path)
    with pytest.raises(TypeError, match="key must be bytes or str"):
        mason.load_module_asdict(path, key=123)
    with pytest.raises(ValueError, match="empty"):
        mason.dump_module(tmp_path / "x.mason", module="json", key=b"")


# ====================================================================== allowlist

EVIL = """
import os, mason
class Evil:
    def __reduce__(self):
        return os.system, ('touch ' + {marker!r},)
harmless = [1, 2, 3]
payload = Evil()
mason.dump_module({path!r}, exclude=['Evil', 'os', 'mason'])
"""


@pytest.fixture
def evil_file(tmp_path):
    path = tmp_path / "evil.mason"
    marker = tmp_path / "pwned"
    run_python(EVIL.format(marker=str(marker), path=str(path)))
    return path, marker


def test_a_file_that_calls_os_system_is_refused_and_nothing_runs(evil_file, capsys):
    path, marker = evil_file
    with pytest.raises(ForbiddenGlobalError, match=r"posix:system|os:system") as exc:
        mason.load_module_asdict(path, allow=["numpy"], on_error="raise")
    assert "refused before running anything" in str(exc.value)
    assert not marker.exists()
    # The same via the command line, and inspect shows what it would import.
    assert cli(["load", str(path), "--allow", "numpy"]) == 1
    assert "system" in capsys.readouterr().err and not marker.exists()
    assert mason.inspect(path).imports in (["posix"], ["os"], ["nt"])
    assert not marker.exists()
    # Without an allowlist the file does what it says (so the refusal above is real).
    mason.load_module_asdict(path)
    assert marker.exists()


def test_only_the_requested_names_are_scanned_and_loaded(evil_file):
    path, marker = evil_file
    assert mason.load_module_asdict(path, names=["harmless"], allow=[])["harmless"] == [1, 2, 3]
    assert not marker.exists()


def test_a_real_session_loads_with_the_allowlist_it_needs(tmp_path):
    path = save(tmp_path)
    info = mason.inspect(path)
    assert {"numpy", "collections"} <= set(info.imports)
    assert {"double", "__init__", "norm"} <= set(info.functions)
    with pytest.raises(ForbiddenGlobalError) as exc:
        mason.load_module_asdict(path, allow=["numpy"], on_error="raise")
    message = str(exc.value)
    assert "collections" in message and mason.CODE in message and "double" in message
    check_session(mason.load_module_asdict(path, allow=["numpy", "collections", mason.CODE]))


def test_allowlist_in_a_fresh_interpreter_with_load_module(tmp_path):
    path = save(tmp_path)
    run_python(
        f"""
        import mason
        try:
            mason.load_module({str(path)!r}, allow=['numpy', 'collections'], on_error='raise')
        except mason.ForbiddenGlobalError:
            pass
        else:
            raise AssertionError('functions by value were not refused')
        assert 'double' not in globals()
        mason.load_module({str(path)!r}, allow=['numpy', 'collections', mason.CODE])
        assert double(2) == 4
        """
    )


class _Evil:
    def __reduce__(self):
        return (os.system, ("true",))


def test_loads_scans_plain_pickles_too():
    assert mason.loads(pickle.dumps({"a": {1, 2}, "b": (1.5, b"x")}), allow=[]) == {"a": {1, 2}, "b": (1.5, b"x")}
    with pytest.raises(ForbiddenGlobalError, match="system"):
        mason.loads(pickle.dumps(_Evil()), allow=["collections"])
    with pytest.raises(ForbiddenGlobalError, match="builtins:eval"):
        mason.loads(b"\x80\x04cbuiltins\neval\n\x8c\x011\x85R.", allow=[])


def test_a_method_bound_to_an_object_the_load_built():
    """Holding a bound method is holding its function: allowed when the
    object it is bound to was built by the load (and the function may be
    held); a method bound to anything else is still refused."""
    import json
    import types

    namespace = {"__name__": "__main__"}  # a class saved by value, with its own globals
    exec("class Greeter:\n    def hello(self):\n        return f'hello {self.name}'\n", namespace)
    greeter = namespace["Greeter"]()
    greeter.name = "you"
    copied = mason.loads(mason.dumps({"g": greeter, "m": greeter.hello}), allow=[mason.CODE])
    assert copied["m"].__self__ is copied["g"] and copied["m"]() == "hello you"
    bound_to_a_module = types.MethodType(json.dumps, json)  # json existed before the load
    with pytest.raises(ForbiddenGlobalError, match="method"):
        mason.loads(mason.dumps(bound_to_a_module), allow=["json"])


def test_names_reached_through_an_allowed_module_are_checked_where_they_lead():
    from mason._namespace import ImportedRef

    # The scan cannot know that json.codecs is a module: the load checks it.
    with pytest.raises(ForbiddenGlobalError, match="module codecs"):
        mason.loads(b"\x80\x04cjson\ncodecs\n.", allow=["json"])
    with pytest.raises(ForbiddenGlobalError, match="module codecs"):
        mason.loads(mason.dumps(ImportedRef("json", "codecs.open", None)), allow=["json"])
    with pytest.raises(ForbiddenGlobalError, match="__globals__"):
        mason.loads(b"\x80\x04cjson\ndumps.__globals__\n.", allow=["json"])
    import json

    assert mason.loads(mason.dumps(ImportedRef("json", "dumps", None)), allow=["json"]) is json.dumps


def test_bad_allow_patterns_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="not an allow pattern"):
        mason.loads(pickle.dumps(1), allow=["numpy:"])
    with pytest.raises(TypeError, match="allow patterns are strings"):
        mason.load_module_asdict(tmp_path / "missing.mason", allow=[1])


def test_file_handles_need_their_own_permission(tmp_path):
    target = tmp_path / "data.txt"
    target.write_text("hello")
    with open(target) as handle:
        data = mason.dumps(handle)
    with pytest.raises(ForbiddenGlobalError, match=mason.FILES):
        mason.loads(data, allow=[])
    assert mason.loads(data, allow=[mason.FILES]).read() == "hello"


def test_inspect_of_a_hostile_file_runs_nothing(evil_file):
    path, marker = evil_file
    proc = subprocess.run(
        [sys.executable, "-m", "mason", "inspect", "--json", str(path)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["imports"] and info["signed"] is False
    assert not marker.exists()


PINNED_SIGNED_SHA256 = "9d66203b5627ee33546481fb2463f7aefe3547e445fc463570a3365f0924becb"


def test_the_signature_format_is_pinned():
    """A signed container's bytes (format 2.0) are fixed for fixed inputs, so
    files signed today keep verifying; and the layout is the documented one."""
    import hashlib
    import hmac
    import io

    from mason._format import ContainerWriter

    buffer = io.BytesIO()
    writer = ContainerWriter(buffer, checksum="crc32", key=b"golden-key")
    writer.add_segment(b"seg0")
    writer.add_blob(b"blob-bytes")
    writer.add_segment(b"seg1")
    writer.finish({"mason": "0.1.0"})
    data = buffer.getvalue()
    assert hashlib.sha256(data).hexdigest() == PINNED_SIGNED_SHA256
    index = V2(data)
    assert index.signature == spec.SIGNATURE_IDS["hmac-sha256"] == 1
    # A MAC per record in file order (the blob, then the record of both
    # segments), then the index MAC, over the header and the index with its
    # own 32 bytes as zeros.
    records = [hmac.new(b"golden-key", payload, "sha256").digest() for payload in (b"blob-bytes", b"seg0seg1")]
    assert index.macs[:64] == b"".join(records)
    payload = index.index_payload()
    at = len(payload) - len(b'{"mason":"0.1.0"}') - 32
    assert payload[at : at + 32] == index.macs[64:]
    zeroed = payload[:at] + bytes(32) + payload[at + 32 :]
    assert index.macs[64:] == hmac.new(b"golden-key", b"mason signature v2\0" + data[:16] + zeroed, "sha256").digest()
    with ContainerReader.open(data, key=b"golden-key") as reader:
        reader.verify()
        assert reader.version == (2, 0)


def test_signed_format_1_files_still_verify():
    """Format 1.1 kept hex MACs in the JSON index; mason checks them as it did."""
    segment = b"segment one, with room for a forger"
    records = [(spec.SEGMENT, b"seg0", None, 4), (spec.BLOB, b"blob-bytes", None, 10)]
    records.append((spec.SEGMENT, segment, None, len(segment)))
    data = assemble(records, {"mason": "0.1.0"}, key=b"golden-key")
    assert data[10:14] == b"\x01\x00\x01\x00"  # version 1.1
    with ContainerReader.open(data, key=b"golden-key") as reader:
        reader.verify()
        assert [bytes(reader.segment(i)) for i in range(2)] == [b"seg0", segment]
        assert reader.version == (1, 1)
    with pytest.raises(SignatureError, match="another key"):
        ContainerReader.open(data, key=b"other-key")
    at = data.index(segment)
    forged = data[:at] + crc_preserving_patch(segment, 0, b"S", len(segment) - 4) + data[at + len(segment) :]
    with ContainerReader.open(forged) as reader:
        reader.verify()  # the checksum still matches
    with pytest.raises(SignatureError, match="segment 1 does not match its signature"):
        ContainerReader.open(forged, key=b"golden-key").segment(1)


def test_sign_a_format_1_file(tmp_path):
    """Signing copies the records as they are and writes a format 2 index."""
    path = save(tmp_path)
    path.write_bytes(to_v1(path.read_bytes()))
    before = mason.inspect(path)
    assert before.format_version == (1, 0) and not before.signed
    mason.sign(path, key="k1")
    after = mason.inspect(path)
    assert after.format_version == (2, 0) and after.signed and after.variables == before.variables
    check_session(mason.load_module_asdict(path, key="k1"))
    with pytest.raises(SignatureError):
        mason.load_module_asdict(path, key="k2")
