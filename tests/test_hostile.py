"""Hand-made hostile files against allow=, and against inspect/verify/diff.

Every payload here tries to run code (it would create a marker file), import
a module that must stay unimported (``evilmod``, whose import creates the
marker too), change process-wide state, or hang the reader.  Each test
asserts that nothing of the kind happened, that the error is a mason error,
and that inspect, verify and diff finish quickly on the same file.
"""

from __future__ import annotations

import copyreg
import io
import pickle
import struct
import sys
import time
import warnings

import pytest

import mason
import mason._allowlist as allowlist_module
from mason import cli
from mason._format import ContainerWriter
from mason.errors import ForbiddenGlobalError, MasonError

# -- a small pickle assembler ------------------------------------------------------


def u(text: str) -> bytes:
    """SHORT_BINUNICODE / BINUNICODE"""
    data = text.encode()
    if len(data) < 256:
        return b"\x8c" + bytes([len(data)]) + data
    return b"X" + struct.pack("<I", len(data)) + data


def g(module: str, name: str) -> bytes:
    """STACK_GLOBAL"""
    return u(module) + u(name) + b"\x93"


def G(module: str, name: str) -> bytes:
    """GLOBAL (protocol 0-3 spelling)"""
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def call(func: bytes, *args: bytes) -> bytes:
    return func + b"(" + b"".join(args) + b"tR"


def rb(name: str, *args: bytes) -> bytes:
    """A call of mason._rebuild.<name>"""
    return call(g("mason._rebuild", name), *args)


def P(body: bytes) -> bytes:
    """A whole protocol-4 pickle: body, STOP."""
    return b"\x80\x04" + body + b"."


MARKER_CODE = "open({marker!r}, 'w').close()"


@pytest.fixture
def trap(tmp_path, monkeypatch):
    """(marker path, shell command creating it, python code creating it); an
    ``evilmod`` on sys.path creates the marker when imported."""
    marker = tmp_path / "RAN"
    (tmp_path / "evilmod.py").write_text(f"open({str(marker)!r}, 'w').close()\nVALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    sys.modules.pop("evilmod", None)
    yield marker
    assert not marker.exists(), "a hostile file ran code"
    assert "evilmod" not in sys.modules, "a hostile file imported a module"


def python_code(marker) -> str:
    return MARKER_CODE.format(marker=str(marker))


def shell(marker) -> str:
    return f"touch {marker}"


def session_file(path, segments, *, module="__main__", kind="main", names=None, environment=None):
    """A mason session whose variables hold the given raw pickle segments."""
    buffer = io.BytesIO()
    writer = ContainerWriter(buffer)
    variables = []
    for i, data in enumerate(segments):
        index = writer.add_segment(data)
        name = names[i] if names else f"v{i}"
        variables.append(
            {"name": name, "type": "object", "stored": "value", "segment": index, "blobs": [], "size": len(data)}
        )
    writer.finish(
        {
            "kind": "mason.session",
            "module": module,
            "module_kind": kind,
            "variables": variables,
            "skipped": [],
            "environment": environment or {"python": list(sys.version_info[:3])},
        }
    )
    path.write_bytes(buffer.getvalue())
    return path


def readers_finish(path, limit=10.0):
    """inspect, verify and diff never run anything and finish quickly."""
    started = time.perf_counter()
    try:
        mason.inspect(path)
    except MasonError:
        pass
    for argv in (["verify", str(path)], ["diff", str(path), str(path)], ["inspect", str(path)]):
        assert cli.main(argv) in (0, 1, 2)
    assert time.perf_counter() - started < limit


def refused(data: bytes, allow, tmp_path, *, match=None):
    """``data`` is refused as one pickle and as a session variable, by a
    mason error; the readers finish on the session file."""
    with pytest.raises(MasonError, match=match):
        mason.loads(data, allow=allow)
    path = session_file(tmp_path / "hostile.mason", [data])
    with pytest.raises(MasonError, match=match):
        mason.load_module_asdict(path, allow=allow, on_error="raise")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ns = mason.load_module_asdict(path, allow=allow, on_error="warn")
        except MasonError:  # malformed beyond one variable
            pass
        else:
            assert "v0" not in ns
            assert any(issubclass(w.category, mason.SkippedVariableWarning) and "v0" in str(w.message) for w in caught)
    readers_finish(path)


# -- 1. reconstructors are not generic accessors --------------------------------------


def test_getattr_chain_from_builtins_to_exec(trap, tmp_path):
    exec_ = rb("getattr_chain", rb("import_module", u("builtins")), u("exec"))
    refused(P(call(exec_, u(python_code(trap)))), [], tmp_path, match="builtins")


def test_module_dict_of_builtins(trap, tmp_path):
    refused(P(rb("module_dict", u("builtins"))), [], tmp_path, match="namespace of module 'builtins'")


def test_module_dict_of_another_module_through_a_function(trap, tmp_path):
    refused(P(rb("module_dict", u("os"))), ["os"], tmp_path, match="namespace of module 'os'")


def test_class_attribute_subclasses(trap, tmp_path):
    refused(P(rb("class_attribute", g("builtins", "object"), u("__subclasses__"))), [], tmp_path)


def test_module_setstate_rewrites_the_policy(trap, tmp_path):
    before = set(allowlist_module.ALWAYS)
    state = b"}" + u("ALWAYS") + b"\x8f(" + b"\x91" + b"s"  # {"ALWAYS": frozenset()}... built below
    state = b"}" + u("RESOLVERS") + b"]" + b"s"
    data = P(rb("module_setstate", rb("import_module", u("mason._allowlist")), state))
    refused(data, [], tmp_path, match="did not create")
    assert set(allowlist_module.ALWAYS) == before and allowlist_module.RESOLVERS


def test_class_setstate_on_an_allowed_class(trap, tmp_path):
    import collections

    state = b"}" + u("__repr__") + g("collections", "namedtuple") + b"s]\x86"
    data = P(rb("class_setstate", g("collections", "OrderedDict"), state))
    refused(data, ["collections"], tmp_path, match="did not create")
    assert (
        "__repr__" not in collections.OrderedDict.__dict__
        or collections.OrderedDict.__repr__ is not collections.namedtuple
    )


def test_function_setstate_on_an_allowed_function(trap, tmp_path):
    import json

    state = b"}}" + u("x") + b"K\x01s" + b"N" + b"\x87"  # (attrs, None, {"x": 1}): write into json's globals
    data = P(rb("function_setstate", g("json", "dumps"), state))
    refused(data, ["json", mason.CODE], tmp_path, match="did not create")
    assert "x" not in json.dumps.__globals__


def test_cell_setstate_on_a_foreign_object(trap, tmp_path):
    data = P(rb("cell_setstate", g("collections", "OrderedDict"), u("x") + b"\x85"))
    refused(data, ["collections"], tmp_path)


def test_builtins_getattr_to_system(trap, tmp_path):
    system = call(G("builtins", "getattr"), rb("import_module", u("os")), u("system"))
    refused(P(call(system, u(shell(trap)))), [], tmp_path, match="os")


def test_getattr_of_a_dunder(trap, tmp_path):
    data = P(call(G("builtins", "getattr"), g("json", "dumps"), u("__globals__")))
    refused(data, ["json"], tmp_path, match="__globals__")


# -- 2. dotted names mean what a module defines -----------------------------------------


def test_numpy_dotted_to_sys_modules(trap, tmp_path):
    pytest.importorskip("numpy")
    refused(P(g("numpy", "core._internal.sys.modules")), ["numpy"], tmp_path, match="sys")


def test_numpy_dotted_to_ctypes_pythonapi(trap, tmp_path):
    pytest.importorskip("numpy")
    data = P(call(g("numpy", "ctypeslib.ctypes.pythonapi.PyRun_SimpleString"), u(python_code(trap))))
    refused(data, ["numpy"], tmp_path, match="ctypes")


def test_numpy_getattr_chain_to_ctypes(trap, tmp_path):
    pytest.importorskip("numpy")
    api = rb("getattr_chain", rb("import_module", u("numpy")), u("ctypeslib.ctypes.pythonapi"))
    refused(P(api), ["numpy"], tmp_path, match="ctypes")


def test_mason_internals_are_not_reachable(trap, tmp_path):
    refused(P(g("mason", "_vm.sys.modules")), [], tmp_path, match="mason")
    refused(P(g("mason._rebuild", "importlib.import_module")), [], tmp_path, match="not one of mason's")
    refused(P(call(g("mason._rebuild", "os.system"), u(shell(trap)))), [], tmp_path)
    with pytest.raises(ValueError, match="mason's own modules"):
        mason.loads(P(b"N"), allow=["mason"])


def test_dunder_builtins_of_an_allowed_module(trap, tmp_path):
    refused(P(g("json", "__builtins__")), ["json"], tmp_path, match="__builtins__")
    refused(P(g("json", "decoder.__builtins__")), ["json"], tmp_path, match="__builtins__")


def test_a_module_reached_as_a_global(trap, tmp_path):
    refused(P(G("json", "codecs")), ["json"], tmp_path, match="module codecs")


def test_bound_method_of_a_module_instance(trap, tmp_path):
    # json._default_encoder.encode: a method bound to an object json made
    refused(P(g("json", "_default_encoder.encode")), ["json"], tmp_path, match="JSONEncoder")


def test_method_descriptor_of_a_builtin(trap, tmp_path):
    refused(P(g("builtins", "str.join")), [], tmp_path)


def test_bound_builtin_method(trap, tmp_path):
    refused(P(g("sys", "modules.get")), ["json"], tmp_path)


# -- 3. the file's metadata grants nothing ----------------------------------------------


def test_a_file_claiming_to_be_builtins_writes_nothing_there(trap, tmp_path):
    path = session_file(
        tmp_path / "claims.mason", [P(rb("module_dict", u("builtins")))], module="builtins", kind="importable"
    )
    ns = mason.load_module_asdict(path, allow=[])
    assert ns["v0"] is ns and not hasattr(__builtins__, "v0")
    with pytest.raises(ValueError, match="pass module="):
        mason.load_module(path, allow=[])
    readers_finish(path)


def test_a_file_claiming_a_module_does_not_import_it(trap, tmp_path):
    path = session_file(tmp_path / "claims.mason", [P(b"K\x01")], module="evilmod", kind="importable")
    with pytest.raises(ValueError, match="pass module="):
        mason.load_module(path, allow=[])
    ns = mason.load_module_asdict(path, allow=[])
    assert ns["v0"] == 1
    readers_finish(path)


def test_the_files_module_name_does_not_allow_its_globals(trap, tmp_path):
    path = session_file(
        tmp_path / "claims.mason", [P(call(g("os", "system"), u(shell(trap))))], module="os", kind="importable"
    )
    with pytest.raises(ForbiddenGlobalError, match="os:system"):
        mason.load_module_asdict(path, allow=[], on_error="raise")
    readers_finish(path)


# -- 4. nothing is imported before the check ----------------------------------------------


def test_a_global_of_an_unlisted_module_is_refused_before_import(trap, tmp_path):
    refused(P(g("evilmod", "VALUE")), [], tmp_path, match="evilmod")


def test_import_module_of_an_unlisted_module(trap, tmp_path):
    refused(P(rb("import_module", u("evilmod"))), [], tmp_path, match="evilmod")


def test_extension_codes_name_their_global(trap, tmp_path):
    copyreg.add_extension("evilmod", "VALUE", 0x7E57)
    try:
        cache = dict(copyreg._extension_cache)
        refused(P(b"\x83" + struct.pack("<H", 0x7E57)), [], tmp_path, match="evilmod")
        assert copyreg._extension_cache == cache  # the scan and the load leave it alone
    finally:
        copyreg.remove_extension("evilmod", "VALUE", 0x7E57)


# -- 5. the scan judges what the load does ------------------------------------------------


def test_memo_confusion_after_a_failed_variable(trap, tmp_path):
    # v0 memoizes OrderedDict at index 0 with BINPUT, then MEMOIZE numbers
    # from the entries that exist, then fails.  v1 calls what sits at index 1.
    v0 = P(
        g("collections", "OrderedDict") + b"q\x00" + u("x") + b"\x94" + call(g("collections", "OrderedDict"), b"K\x01")
    )
    v1 = P(b"h\x01" + b"0" + b"h\x00)R")  # GET 1 (a string), POP, GET 0 (OrderedDict), call
    path = session_file(tmp_path / "memo.mason", [v0, v1])
    with pytest.warns(mason.SkippedVariableWarning, match="v0"):
        ns = mason.load_module_asdict(path, allow=["collections"], on_error="warn")
    import collections

    assert ns["v1"] == collections.OrderedDict()
    readers_finish(path)


def test_put_and_memoize_mixed_are_numbered_alike(trap, tmp_path):
    # BINPUT 5 then MEMOIZE: the memo has 1 entry, so MEMOIZE writes index 1.
    data = P(u("a") + b"q\x05" + u("b") + b"\x94" + b"0" + b"h\x01")
    assert mason.loads(data, allow=[]) == "b"
    assert pickle.loads(data) == "b"


# -- 6. resource bombs ---------------------------------------------------------------------


def dag_tuple(levels: int) -> bytes:
    """t0 = "x"; t(n+1) = (tn, tn): 30 bytes a level, 2**levels items expanded."""
    body = u("x") + b"\x940"
    for level in range(levels):
        body += b"h" + bytes([level]) + b"h" + bytes([level]) + b"\x86\x940"  # (t, t)
    return body + b"h" + bytes([levels])


def test_tuple_dag_as_a_dict_key(trap, tmp_path):
    data = P(b"}" + dag_tuple(40) + b"K\x01s")
    refused(data, [], tmp_path, match="expands")


def test_tuple_dag_in_a_frozenset(trap, tmp_path):
    data = P(b"(" + dag_tuple(40) + b"\x91")
    refused(data, [], tmp_path, match="expands")


def test_tuple_dag_given_to_set(trap, tmp_path):
    data = P(call(g("builtins", "set"), dag_tuple(40)))
    refused(data, [], tmp_path, match="expands")


def test_huge_binput_index(trap, tmp_path):
    data = P(b"N" + b"r" + struct.pack("<I", 2**31 - 1) + b"0N")
    assert mason.loads(data, allow=[]) is None
    path = session_file(tmp_path / "memo.mason", [data])
    readers_finish(path)


def test_huge_bytearray(trap, tmp_path):
    refused(
        P(call(g("builtins", "bytearray"), b"\x8a\x06" + (2**44).to_bytes(6, "little"))),
        [],
        tmp_path,
        match="bigger than the file",
    )


def test_huge_list_from_a_range(trap, tmp_path):
    data = P(call(g("builtins", "list"), call(g("builtins", "range"), b"\x8a\x06" + (2**44).to_bytes(6, "little"))))
    refused(data, [], tmp_path, match="range")


def test_deep_marks_and_lists_stay_linear(trap, tmp_path):
    data = P(b"(" * 200_000 + b"N" + b"l" * 200_000 + b"0" * 0)
    started = time.perf_counter()
    mason.loads(data, allow=[])
    assert time.perf_counter() - started < 10
    readers_finish(session_file(tmp_path / "deep.mason", [data]))


def test_huge_rlock_count(trap, tmp_path):
    refused(P(rb("make_rlock", b"\x8a\x05" + (2**36).to_bytes(5, "little"))), [], tmp_path, match="out of range")


# -- 7. malformed streams get mason errors ------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"\x80\x04\x95" + struct.pack("<Q", 2**63 - 1) + b"N.",  # FRAME near 2**63
        b"\x80\x04\x8d" + struct.pack("<Q", 2**63 - 1) + b"ab.",  # BINUNICODE8
        b"\x80\x04\x8e" + struct.pack("<Q", 2**63 + 5) + b"ab.",  # BINBYTES8
        b"\x80\x04\xff.",  # an opcode that does not exist
        b"\x80\x63N.",  # protocol 99
        b"\x80\x04K\x01K\x02\x93.",  # STACK_GLOBAL of ints
        b"\x80\x04h\x07.",  # a memo entry that was never written
        b"\x80\x04t.",  # TUPLE without a mark
        b"\x80\x04N",  # no STOP
        b"\x80\x04\x8b" + struct.pack("<i", 2**31 - 1) + b"\xff.",  # LONG4 longer than the stream
        b"\x80\x04}K\x01s.",  # SETITEM with a missing value
        b"\x80\x04" + rb("import_module", u("")) + b".",
        b"\x80\x04" + rb("import_module", u(".x")) + b".",
        b"\x80\x04" + rb("make_module", b"K\x01") + b".",
    ],
)
def test_malformed_pickles(data, trap, tmp_path):
    with pytest.raises(MasonError):
        mason.loads(data, allow=[])
    readers_finish(session_file(tmp_path / "bad.mason", [data]))


# -- 8. a load does not change global state or later loads ---------------------------------


def test_build_on_an_allowed_global_object(trap, tmp_path):
    import json

    # BUILD as setattr: json.dumps.a = "os" (how picklescan's numpy.prod bypass works)
    data = P(g("json", "dumps") + b"N}" + u("a") + u("os") + b"s\x86b")
    refused(data, ["json"], tmp_path, match="BUILD")
    assert not hasattr(json.dumps, "a")


def test_build_on_a_module(trap, tmp_path):
    import json

    data = P(rb("import_module", u("json")) + b"}" + u("dumps") + u("gone") + b"sb")
    refused(data, ["json"], tmp_path, match="BUILD")
    assert callable(json.dumps)


def test_setitem_on_a_global_mapping(trap, tmp_path):
    import os

    data = P(g("os", "environ") + u("MASON_EVIL") + u("1") + b"s")
    refused(data, ["os:environ"], tmp_path, match="item assignment")
    assert "MASON_EVIL" not in os.environ


def test_appends_on_a_foreign_list(trap, tmp_path):
    data = P(g("sys", "path") + b"(" + u(str(tmp_path)) + b"e")
    refused(data, ["sys:path"], tmp_path, match="appending")
    assert str(tmp_path) != sys.path[0] or sys.path.count(str(tmp_path)) == 1


def test_policy_of_later_loads_is_unchanged(trap, tmp_path):
    for data in (
        P(rb("module_setstate", rb("import_module", u("mason._allowlist")), b"}")),
        P(G("mason._allowlist", "ALWAYS") + b"(" + u("x") + b"\x90"),
    ):
        with pytest.raises(MasonError):
            mason.loads(data, allow=[])
    with pytest.raises(ForbiddenGlobalError):
        mason.loads(P(call(g("os", "system"), u(shell(trap)))), allow=[])


# -- 9. what broke other scanners ------------------------------------------------------------


@pytest.mark.parametrize(
    "module,name",
    [
        ("pkgutil", "resolve_name"),
        ("importlib", "import_module"),
        ("operator", "attrgetter"),
        ("builtins", "__import__"),
        ("builtins", "eval"),
        ("runpy", "run_path"),
    ],
)
def test_string_to_callable_resolvers(module, name, trap, tmp_path):
    data = P(call(g(module, name), u("evilmod")))
    refused(data, [module], tmp_path, match=name)


def test_functools_partial_of_a_resolved_name(trap, tmp_path):
    data = P(call(g("functools", "partial"), g("os", "system"), u(shell(trap))))
    refused(data, ["functools"], tmp_path)


def test_calling_a_result_that_is_not_a_global(trap, tmp_path):
    # attrgetter allowed by its exact name: what it returns can still not be called
    getter = call(g("operator", "attrgetter"), u("system"))
    data = P(call(getter, rb("import_module", u("os"))))
    refused(data, ["operator:attrgetter"], tmp_path, match="not an allowed global")


def test_metaclass_call_creates_no_class(trap, tmp_path):
    data = P(call(g("builtins", "type"), u("X"), b"(t", b"}"))
    refused(data, [], tmp_path, match="type")


def test_reconstructor_with_a_metaclass(trap, tmp_path):
    data = P(call(g("copyreg", "_reconstructor"), g("builtins", "type"), g("builtins", "type"), u("X")))
    refused(data, [], tmp_path, match="metaclass")


def test_newobj_of_a_class_reached_by_getattr(trap, tmp_path):
    cls = call(G("builtins", "getattr"), rb("import_module", u("subprocess")), u("Popen"))
    data = P(cls + b"(" + u(shell(trap)) + b"t\x81")
    refused(data, [], tmp_path, match="subprocess")


def test_codecs_encode_only_spells_bytes(trap, tmp_path):
    refused(P(call(g("_codecs", "encode"), u("x" * 10), u("zlib_codec"))), [], tmp_path, match="latin1")


def test_plain_data_still_loads_under_an_empty_list(tmp_path):
    value = {"a": [1, 2.5, None, True], "b": (b"x", "y"), "c": {1, 2}, "d": frozenset({3})}
    assert mason.loads(pickle.dumps(value, protocol=2), allow=[]) == value
    assert mason.loads(pickle.dumps(value, protocol=5), allow=[]) == value
    assert mason.loads(mason.dumps(value), allow=[]) == value


# -- found while attacking the machine itself ---------------------------------------------


def test_build_through_a_weak_proxy_to_a_module(trap, tmp_path):
    import mason._allowlist as policy

    before = policy.RESOLVERS
    proxy = rb("make_weakproxy_to", rb("import_module", u("mason._allowlist")), b"\x89")
    data = P(proxy + b"N}" + u("RESOLVERS") + b"\x8f(\x91" + b"s\x86b")  # (None, {"RESOLVERS": frozenset()})
    refused(data, [], tmp_path, match="BUILD")
    assert policy.RESOLVERS is before


def test_build_on_a_standard_stream(trap, tmp_path):
    stdout = rb("make_file", u("<stdout>"), u("w"), b"J\xff\xff\xff\xff", b"\x89", b"K\x00", b"N", b"N")
    data = P(stdout + b"N}" + u("write") + g("builtins", "str") + b"s\x86b")
    refused(data, [mason.FILES], tmp_path, match="BUILD")
    assert "write" not in vars(sys.__stdout__)


def test_many_small_allocations_add_up(trap, tmp_path):
    one = call(g("builtins", "bytearray"), b"J" + struct.pack("<i", 2**25))
    data = P(b"(" + one * 64 + b"l")
    refused(data, [], tmp_path, match="more than the file could hold")


def test_errors_of_allowed_code_are_mason_errors(tmp_path):
    with pytest.raises(MasonError, match="cannot rebuild"):
        mason.loads(P(call(g("collections", "OrderedDict"), b"K\x01")), allow=["collections"])


def test_bytes_from_buffer_takes_a_buffer_not_a_size(trap, tmp_path):
    # found by tests/test_fuzz_pickles.py: 47 bytes asked for 256 MiB
    data = b"\x80\x04cmason._rebuild\nbytes_from_buffer\n\x88\x8a\x05\x00\x00\x00\x10\x00\x86R."
    refused(data, [], tmp_path, match="not a buffer")


def test_a_dead_weak_proxy_loads_restricted():
    import weakref

    class Gone:
        pass

    proxy = weakref.proxy(Gone())
    loaded = mason.loads(mason.dumps(proxy), allow=[])
    assert type(loaded) is weakref.ProxyType
    with pytest.raises(ReferenceError):
        loaded.anything  # noqa: B018


# ====================================================================== Arrow arrays under mason.DATA


ARROW_CASE = """
import sys, types, warnings
import pyarrow as pa, pyarrow.lib as L
import pandas as pd
import mason

class Forged:
    # pyarrow's own reconstructor, given a length its buffer cannot hold
    def __init__(self, type_, length, buffers):
        self.args = (type_, length, 0, 0, buffers, [], None)
    def __reduce__(self):
        return L._restore_array, (self.args,)

m = types.ModuleType("arrow_case")
m.good = pd.Series(["a", None, "ccc"], dtype="string[pyarrow]")
m.ints = Forged(L.type_for_alias("int64"), 100_000_000, [None, L.py_buffer(b"12345678")])
m.strings = Forged(
    L.type_for_alias("string"), 2, [None, L.py_buffer((10**9).to_bytes(4, "little") * 3), L.py_buffer(b"x")]
)
mason.dump_module("arrow.mason", module=m)
assert not mason.inspect("arrow.mason").refused  # every name is in DATA: the check is the arrays'
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    got = mason.load_module_asdict("arrow.mason", allow=mason.DATA)
assert got["good"].equals(m.good), got
assert "ints" not in got and "strings" not in got, sorted(got)
failures = [w.message.failures for w in caught if isinstance(w.message, mason.SkippedVariableWarning)][0]
assert set(failures) == {"ints", "strings"} and all("Invalid" in r for r in failures.values()), failures
print("refused", sorted(failures))
"""


def test_forged_arrow_arrays_are_refused_not_read_past_their_buffers(tmp_path):
    pytest.importorskip("pyarrow")
    from conftest import run_python

    proc = run_python(ARROW_CASE, cwd=tmp_path)  # a crash would be a non-zero exit
    assert "refused ['ints', 'strings']" in proc.stdout
