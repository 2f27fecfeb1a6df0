"""Files written by dill 0.3.6 to 0.4.x load without dill (docs/types.md, "Reading dill files").

The golden files in tests/golden/dill/<version>/ were written by each dill
(make_dill_golden.py, from write_dill_files.py).  Every load of them here runs
in a fresh interpreter in which dill cannot be imported (a meta-path finder
refuses it), so nothing can quietly lean on it.  Hand-made dill-style pickles
check that reading dill's names keeps every guarantee of a restricted load.
"""

from __future__ import annotations

import importlib.util
import io
import struct
import sys
import textwrap
import types
from pathlib import Path

import pytest
from conftest import run_python

import mason
import mason._allowlist as allowlist_module
import mason._dillcompat as dillcompat
import mason._rebuild as rebuild
from mason import cli
from mason.errors import (
    CorruptSessionError,
    ForbiddenGlobalError,
    SignatureError,
    UnpicklingError,
    VersionMismatchError,
)

GOLDEN = Path(__file__).resolve().parent / "golden" / "dill"
VERSIONS = sorted(p.name for p in GOLDEN.iterdir() if p.is_dir())
HERE = "py%d%d" % sys.version_info[:2]
#: every golden file written by this Python: its code can run here
NATIVE = [v for v in VERSIONS if (GOLDEN / v / f"session-{HERE}.pkl").exists()]
#: golden sessions written by another Python: their code cannot run here
FOREIGN = sorted(p for p in GOLDEN.glob("*/session-py*.pkl") if not p.name.endswith(f"-{HERE}.pkl"))

#: the golden sessions and object files hold numpy arrays
needs_numpy = pytest.mark.skipif(importlib.util.find_spec("numpy") is None, reason="numpy is not installed")

BLOCK_DILL = """
import sys

class _NoDill:
    # dill must not be imported, installed or not: reading its files is mason's job
    def find_spec(self, name, path=None, target=None):
        if name == "dill" or name.startswith("dill."):
            raise ImportError(f"dill is blocked in this test (something imported {name!r})")
        return None

sys.meta_path.insert(0, _NoDill())
"""

#: what a restricted load of the golden session needs allowed
ALLOW = [
    mason.CODE,
    mason.DATA,
    mason.FILES,
    "builtins:property",
    "abc",
    "collections",
    "functools:partial",
    "http",
    "math",
    "numpy",
    "posixpath",
    "re",
    "threading",
    "_operator",
]

#: the session of write_dill_files.py, checked as values and as behaviour; ``m``
#: is the restored namespace (a module, or a dict behind a SimpleNamespace)
CHECK_SESSION = """
import collections, http, math, os, threading, types
import numpy as np
assert m.numbers == [1, 2, 3, 4] and m.text == "h\\u00e9llo, w\\u00f6rld"
assert m.raw == b"\\x00\\x01\\xfe\\xff" and type(m.mutable_raw) is bytearray and m.mutable_raw == b"dill"
assert m.big == 2**100 and m.ratio == 2.5 and m.z == complex(1.5, -2.0)
assert m.nested == {"t": (1, 2.5, None, True), "s": {1, 2, 3}, "f": frozenset({"a", "b"}), "l": [[], {}]}
assert list(m.ordered.items()) == [("b", 2), ("a", 1)] and type(m.ordered) is collections.OrderedDict
assert m.by_default["x"] == [1] and m.by_default.default_factory is list and m.counts["a"] == 5
assert m.span == range(2, 20, 3) and m.dots is Ellipsis and m.not_impl is NotImplemented
assert m.cut == slice(1, 10, 2) and m.holder["first"] is m.holder["second"] is m.shared
# functions, lambdas, closures: called
assert m.square(7) == 49 and m.cube(2) == 8 and m.fact(5) == 120 and m.scaled(2) == 6
m.CONFIG["scale"] = 10
assert m.scaled(2) == 20  # the restored globals, live
assert m.with_defaults(1) == 6 and m.with_defaults(1, c=0) == 3 and m.with_defaults.tag == "attr"
assert m.with_defaults.__doc__ == "Adds three numbers." and m.with_defaults.__kwdefaults__ == {"c": 3}
assert m.counter() == 12 and m.counter(3) == 15  # its cell kept the count (11 when saved)
assert m.add5(1) == 6 and m.walk(4) == 4 and m.walk.__closure__[0].cell_contents is m.walk
try:
    m.empty_cell()
except NameError:
    pass
else:
    raise AssertionError("the empty cell is not empty")
# classes and instances: methods called
assert type(m.point) is m.Point and m.Point.__module__ == "__main__" and m.Point.__qualname__ == "Point"
assert m.point == m.Point(3, 4) and m.point.norm() == 5.0 and m.point.pair == (3, 4) and m.Point.dims == 2
assert m.Point.origin() == m.Point(0, 0) and m.Point.from_pair((1, 2)) == m.Point(1, 2)
assert isinstance(m.point3, m.Point) and m.point3.norm() == 3.0 and repr(m.point3) == "Point3(1, 2)"
assert m.slotted.total() == 3 and not hasattr(m.slotted, "__dict__")
assert m.local_instance.hello() == "hello from Local" and type(m.local_instance) is m.Local
assert m.bound() == 5.0 and m.bound.__self__ is m.point
if m.DILL_VERSION >= (0, 3, 7):
    assert isinstance(m.square_shape, m.Shape) and m.square_shape.area() == 9
    try:
        m.Shape()
    except TypeError:
        pass
    else:
        raise AssertionError("the ABC lost its abstract method")
assert m.pair == m.Pair(1, "b") and m.pair.right == "b" and m.Pair._fields == ("left", "right")
assert m.WithDefault(1) == (1, 0)
# references and library objects
assert m.status is http.HTTPStatus.NOT_FOUND and m.pattern.fullmatch("aab")
assert m.math_module is math and m.path_module is os.path and m.joiner is os.path.join and m.hypot is math.hypot
assert m.partial_call(2) == 13 and dict(m.proxy) == {"k": "v"} and type(m.proxy) is types.MappingProxyType
assert not m.lock.locked() and m.lock.acquire(False) and m.rlock.acquire() and m.rlock.acquire()
assert m.devnull.name == os.devnull and m.devnull.read() == ""
assert m.array.tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]] and m.dtype_class is type(np.dtype("float64"))
assert type(m.tagged) is m.Tagged and m.tagged.tolist() == [0, 1, 2]
assert "dill" not in sys.modules
"""


def run_blocked(code: str, **kwds):
    """Run ``code`` (dedented; ``CHECK`` on a line of its own becomes
    CHECK_SESSION, indented as it is) where dill cannot be imported."""
    lines = []
    for line in textwrap.dedent(code).splitlines():
        if line.strip() == "CHECK":
            lines.append(textwrap.indent(CHECK_SESSION, line[: len(line) - len(line.lstrip())]))
        else:
            lines.append(line)
    return run_python(BLOCK_DILL + "\n".join(lines), **kwds)


def golden(version: str, kind: str, python: str = HERE) -> str:
    return str(GOLDEN / version / f"{kind}-{python}.pkl")


def newest(kind: str) -> str:
    """A golden file of the newest dill, written by this Python if one was
    (else by another: for what does not run its code)."""
    native = GOLDEN / VERSIONS[-1] / f"{kind}-{HERE}.pkl"
    return str(native if native.exists() else sorted((GOLDEN / VERSIONS[-1]).glob(f"{kind}-py*.pkl"))[-1])


# ====================================================================== sessions


@needs_numpy
@pytest.mark.parametrize("version", NATIVE)
def test_load_module_restores_a_dill_session_into_main(version):
    run_blocked(f"""
        import mason
        assert mason.load_module({golden(version, "session")!r}) is None
        import __main__ as m
        assert m.scaled.__globals__ is vars(m) and m.__name__ == "__main__"
        CHECK
    """)


@needs_numpy
@pytest.mark.parametrize("version", NATIVE)
def test_load_module_asdict_restricted_and_refimported(version):
    """asdict leaves __main__ alone; allow= (with mason.CODE) loads the same
    session; refimported=True's names come back as the very objects."""
    run_blocked(f"""
        import mason, types, sys, os, math
        for path in ({golden(version, "session")!r}, {golden(version, "session-refimported")!r}):
            d = mason.load_module_asdict(path, allow={ALLOW!r})
            assert "square" not in vars(sys.modules["__main__"])
            assert d["scaled"].__globals__ is d and d["__name__"] == "__main__" and d["__session__"] == path
            assert not any(name.startswith("__dill") for name in d)
            m = types.SimpleNamespace(**d)
            CHECK
        d = mason.load_module_asdict({golden(version, "session-refimported")!r})
        assert d["joiner"] is os.path.join and d["math_module"] is math and d["hypot"] is math.hypot
    """)


def test_restricted_load_names_what_it_refuses():
    path = newest("session")
    with pytest.raises(ForbiddenGlobalError) as info:
        mason.load_module_asdict(path, allow=[mason.DATA])
    message = str(info.value)
    assert "refused before running anything" in message
    assert "mason:code" in message and "fact" in message  # the functions saved by value, named
    assert "builtins:property" in message and "mason:files" in message


@pytest.mark.parametrize("version", NATIVE)
def test_session_of_a_module_type_object(version):
    run_blocked(f"""
        import mason, math, sys
        foo = mason.load_module({golden(version, "module")!r})
        assert foo.__name__ == "foo" and "foo" not in sys.modules
        assert foo.values == [1, 2, 3] and foo.sin is math.sin and foo.twice(21) == 42
        d = mason.load_module_asdict({golden(version, "module")!r}, allow=["math", "_operator", "functools:partial"])
        assert d["twice"](4) == 8
    """)


@needs_numpy
@pytest.mark.parametrize("version", NATIVE)
def test_mason_load_of_a_dill_session_returns_the_module(version):
    """As dill.load does: the module it names, restored (with allow=, as load_module does)."""
    run_blocked(f"""
        import mason, __main__
        with open({golden(version, "session")!r}, "rb") as f:
            assert mason.load(f) is __main__
        assert __main__.fact(4) == 24 and __main__.point.norm() == 5.0
        del __main__.fact
        with open({golden(version, "session")!r}, "rb") as f:
            assert mason.load(f, allow={ALLOW!r}) is __main__
        assert __main__.fact(4) == 24
    """)


# ====================================================================== object files


@needs_numpy
@pytest.mark.parametrize("version", NATIVE)
def test_object_files(version):
    """dill.dump's files: functions get the live __main__'s globals (dill's
    semantics), or carry theirs with recurse=True."""
    run_blocked(f"""
        import math, sys, mason, pickle
        with open({golden(version, "object")!r}, "rb") as f:
            data = f.read()
        for load in (lambda: mason.loads(data), lambda: mason.loads(data, allow={ALLOW!r})):
            o = load()
            assert o["square"](3) == 9 and o["cube"](2) == 8 and o["counter"]() == 12 and o["add5"](1) == 6
            assert o["walk"](3) == 3 and o["with_defaults"](1) == 6 and o["span"] == range(2, 20, 3)
            assert o["point"].norm() == 5.0 and o["point3"].norm() == 3.0  # math: this __main__'s
            assert o["bound"]() == 5.0 and o["pair"] == (1, "b") and o["math"] is math
            assert o["fact"].__globals__ is vars(sys.modules["__main__"])
            assert o["array"].sum() == 15 and o["tagged"].info == "tagged" and not o["lock"].locked()
        with open({golden(version, "object-recurse")!r}, "rb") as f:
            r = mason.load(f)
        assert r["fact"](5) == 120 and r["scaled"](2) == 6 and r["square"](4) == 16 and r["point"].pair == (3, 4)
        with open({golden(version, "data")!r}, "rb") as f:
            d = mason.load(f, allow=mason.DATA)
        assert d["raw"] == b"\\x00\\x01\\xfe\\xff" and d["ordered"]["b"] == 2
        assert d["holder"]["first"] is d["holder"]["second"]
        assert "dill" not in sys.modules
    """)


@pytest.mark.parametrize("path", sorted(GOLDEN.glob("*/data-py*.pkl")), ids=lambda p: f"{p.parent.name}-{p.stem}")
def test_data_files_load_on_any_python(path):
    with open(path, "rb") as f:
        data = mason.load(f, allow=mason.DATA)
    assert data["numbers"] == [1, 2, 3, 4] and data["span"] == range(2, 20, 3) and data["cut"] == slice(1, 10, 2)
    assert data["nested"]["s"] == {1, 2, 3} and data["big"] == 2**100


@needs_numpy
@pytest.mark.parametrize("path", FOREIGN, ids=lambda p: f"{p.parent.name}-{p.stem}")
def test_code_of_another_python_is_a_clear_error(path):
    """dill records no Python version: the code layout and the bytecode itself
    tell, and a mismatch is an error naming it, never a crash."""
    with pytest.raises(VersionMismatchError, match="load it with the Python that saved it"):
        mason.load_module_asdict(path)
    with pytest.raises(VersionMismatchError):
        mason.load_module_asdict(path, allow=ALLOW)


def test_load_module_of_an_object_file_says_what_it_is():
    with pytest.raises(CorruptSessionError, match=r"one object .*mason\.load.*mason convert"):
        mason.load_module(newest("object"))


def test_a_dill_file_is_not_signed():
    with pytest.raises(SignatureError, match="key=False"):
        mason.load_module_asdict(newest("module"), key=b"secret")
    assert mason.load_module_asdict(newest("module"), key=False)["values"] == [1, 2, 3]


@needs_numpy
@pytest.mark.skipif(not NATIVE, reason="no golden session written by this Python")
def test_names_restores_only_those():
    d = mason.load_module_asdict(newest("session"), names=["numbers", "square"])
    assert d["square"](3) == 9 and "point" not in d
    with pytest.raises(KeyError, match="nope"):
        mason.load_module_asdict(newest("session"), names=["nope"])


# ====================================================================== mason convert


@needs_numpy
@pytest.mark.parametrize("version", NATIVE)
def test_convert(version, tmp_path):
    old = golden(version, "session")
    before = Path(old).read_bytes()
    run_blocked(f"""
        from mason import cli
        base = {str(tmp_path)!r}
        assert cli.main(["convert", {old!r}, base + "/session.mason"]) == 0
        assert cli.main(["convert", {golden(version, "object")!r}, base + "/object.mason", "--name", "things"]) == 0
        assert cli.main(["convert", {golden(version, "module")!r}, base + "/module.mason"]) == 0
    """)
    assert Path(old).read_bytes() == before
    info = mason.inspect(tmp_path / "session.mason")
    assert info.module == "__main__" and info.module_kind == "main" and not info.skipped
    run_blocked(f"""
        import mason, sys
        base = {str(tmp_path)!r}
        assert mason.load_module(base + "/session.mason") is None
        import __main__ as m
        CHECK
        things = mason.load_module_asdict(base + "/object.mason")["things"]
        assert things["square"](5) == 25 and things["point"].pair == (3, 4)
        foo = mason.load_module(base + "/module.mason")
        assert foo.__name__ == "foo" and foo.twice(2) == 4
    """)


def test_convert_refuses_to_overwrite(tmp_path, capsys):
    old = tmp_path / "old.pkl"
    old.write_bytes(Path(newest("module")).read_bytes())
    assert cli.main(["convert", str(old), str(old)]) == 2
    assert "is the file being converted" in capsys.readouterr().err
    new = tmp_path / "new.mason"
    new.write_bytes(b"keep me")
    assert cli.main(["convert", str(old), str(new)]) == 2
    assert "exists already (use --force" in capsys.readouterr().err and new.read_bytes() == b"keep me"
    assert cli.main(["convert", str(old), str(new), "--force"]) == 0
    assert "a dill session of foo" in capsys.readouterr().out
    assert cli.main(["convert", str(new), str(tmp_path / "again.mason")]) == 1
    assert "already a mason file" in capsys.readouterr().err
    text = tmp_path / "text.pkl"
    text.write_text("hello")
    assert cli.main(["convert", str(text), str(tmp_path / "x.mason")]) == 1
    assert "not a file written by dill" in capsys.readouterr().err
    assert not (tmp_path / "x.mason").exists() and not (tmp_path / "again.mason").exists()


def test_convert_names_what_it_cannot_save(tmp_path, capsys, monkeypatch):
    """Loaded, but refused by mason's pickler: named, left out, exit status 1."""
    (tmp_path / "proto4.py").write_text(
        textwrap.dedent("""
        class Protocol4Only:
            def __reduce_ex__(self, protocol):
                if protocol > 4:
                    raise TypeError("this object pickles with protocol 4 only")
                return (Protocol4Only, ())
    """)
    )
    old = tmp_path / "session.pkl"
    old.write_bytes(dill_session(items(u("keep"), b"K\x07", u("odd"), call(g("proto4", "Protocol4Only")))))
    monkeypatch.chdir(tmp_path)
    try:
        assert cli.main(["convert", str(old), "new.mason"]) == 1
    finally:
        sys.modules.pop("proto4", None)
    captured = capsys.readouterr()
    assert "1 could not be converted (odd)" in captured.out and "protocol 4 only" in captured.err
    assert mason.load_module_asdict("new.mason")["keep"] == 7


def test_convert_with_allow_refuses_the_whole_file(tmp_path, capsys):
    assert cli.main(["convert", newest("session"), str(tmp_path / "x.mason"), "--allow", "DATA"]) == 1
    assert "refused before running anything" in capsys.readouterr().err
    assert not (tmp_path / "x.mason").exists()


# ====================================================================== the tables


#: every reconstructor dill 0.3.6 to 0.4.1 defines in dill/_dill.py (their
#: save_* functions write these names), each read or refused by name
DILL_RECONSTRUCTORS = [
    "_create_function",
    "_create_code",
    "_create_cell",
    "_create_type",
    "_load_type",
    "_import_module",
    "_getattr",
    "_get_attr",
    "_create_namedtuple",
    "_create_array",
    "_create_dtypemeta",
    "_create_filehandle",
    "_create_lock",
    "_create_rlock",
    "_create_weakref",
    "_create_weakproxy",
    "_create_typing_tuple",
    "_eval_repr",
    "_setitems",
    "_setattr",
    "_delattr",
    "_create_capsule",
    "_create_thread_handle",
    "_unmarshal",
    "_create_ftype",
    "_create_stringi",
    "_create_stringo",
]


def test_every_dill_name_is_mapped_or_refused():
    for name in DILL_RECONSTRUCTORS:
        assert (name in dillcompat.RECONSTRUCTORS) != (name in dillcompat.REFUSED), name
    for mason_name in dillcompat.RECONSTRUCTORS.values():
        assert callable(getattr(rebuild, mason_name)) and mason_name in allowlist_module.REBUILDERS, mason_name
    assert set(dillcompat.RECONSTRUCTORS) | set(dillcompat.REFUSED) == set(DILL_RECONSTRUCTORS)


@pytest.mark.parametrize("name", sorted(dillcompat.REFUSED))
def test_what_cannot_be_read_is_named(name):
    data = P(call(g("dill._dill", name), u("x")))
    for load in (lambda: mason.loads(data), lambda: mason.loads(data, allow=ALLOW)):
        with pytest.raises(UnpicklingError, match=rf"dill\._dill\.{name}"):
            load()


def test_an_unknown_dill_name_is_named():
    for module in ("dill._dill", "dill.dill"):
        with pytest.raises(UnpicklingError, match=r"dill\._dill\._create_something"):
            mason.loads(P(call(g(module, "_create_something"))))


# ====================================================================== hostile dill pickles

# A small pickle assembler (protocol 4), as tests/test_hostile.py has.


def u(text: str) -> bytes:
    data = text.encode()
    return b"\x8c" + bytes([len(data)]) + data if len(data) < 256 else b"X" + struct.pack("<I", len(data)) + data


def g(module: str, name: str) -> bytes:
    return u(module) + u(name) + b"\x93"


def call(func: bytes, *args: bytes) -> bytes:
    return func + b"(" + b"".join(args) + b"tR"


def P(body: bytes) -> bytes:
    return b"\x80\x04" + body + b"."


def items(*parts: bytes) -> bytes:
    """A dict of key, value, key, value..."""
    return b"}(" + b"".join(parts) + b"u"


def dill_session(state: bytes, module: str = "__main__") -> bytes:
    """As dill.dump_module writes a session: _import_module(name), BUILD state."""
    return P(call(g("dill._dill", "_import_module"), u(module)) + state + b"b")


EVIL = "__import__('os').system('echo pwned > RAN')"


def test_eval_repr_never_evaluates(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert mason.loads(P(call(g("dill._dill", "_eval_repr"), u("range(1, 9, 2)")))) == range(1, 9, 2)
    assert mason.loads(P(call(g("dill._dill", "_eval_repr"), u("Ellipsis"))), allow=[]) is Ellipsis
    for allow in (None, ALLOW):
        with pytest.raises(UnpicklingError, match=r"evaluate the text .*__import__.*never evaluates"):
            mason.loads(P(call(g("dill._dill", "_eval_repr"), u(EVIL))), allow=allow)
    with pytest.raises(UnpicklingError, match="never evaluates"):
        dillcompat.eval_repr("range(1, 2, 3) or 1")
    assert not (tmp_path / "RAN").exists()


def test_a_session_state_never_reaches_a_live_module():
    """A 'dill session' of the module os: its state fills a stand-in module,
    not os; a restricted load will not load it into a module of its choosing."""
    import os as real_os

    system = real_os.system
    data = dill_session(items(u("system"), u("replaced")), module="os")
    d = mason.load_module_asdict(io.BytesIO(data), allow=[])
    assert d["system"] == "replaced" and real_os.system is system
    with pytest.raises(ValueError, match="pass module= to name one"):
        mason.load_module(io.BytesIO(data), allow=[])
    assert real_os.system is system


def test_state_for_another_module_is_refused():
    """dill writes a module variable that is not installed with its state
    (a BUILD on it): a restricted load never writes into a live module."""
    data = P(
        call(g("dill._dill", "_import_module"), u("__main__"))
        + items(u("mod"), call(g("dill._dill", "_import_module"), u("json")) + items(u("dumps"), u("x")) + b"b")
        + b"b"
    )
    import json

    dumps = json.dumps
    with pytest.raises(ForbiddenGlobalError, match="BUILD on json"):
        mason.load_module_asdict(io.BytesIO(data), allow=["json"], on_error="raise")
    assert json.dumps is dumps


@pytest.mark.parametrize(
    "attack",
    [
        # setattr (dill's postprocessing) on a function the file did not make
        call(g("builtins", "setattr"), g("json", "dumps"), u("__doc__"), u("changed")),
        # dill's _setattr shim, the same
        call(
            call(g("builtins", "getattr"), g("dill", "_dill"), u("_setattr"), g("builtins", "setattr")),
            g("json", "dumps"),
            u("__doc__"),
            u("changed"),
        ),
        # _setitems into a module's namespace
        call(g("dill._dill", "_setitems"), call(g("mason._rebuild", "import_module"), u("json")) + b"", items()),
    ],
)
def test_dill_setters_only_touch_what_the_load_made(attack):
    import json

    doc = json.dumps.__doc__
    data = P(call(g("dill._dill", "_create_cell"), b"N") + b"0" + attack)
    with pytest.raises((ForbiddenGlobalError, UnpicklingError)):
        mason.loads(data, allow=["json"])
    assert json.dumps.__doc__ == doc


def test_setitems_never_writes_a_module_namespace():
    import json

    namespace = vars(json)
    with pytest.raises(ForbiddenGlobalError, match="namespace"):
        rebuild.dill_setitems(namespace, {"dumps": None})
    assert json.dumps is not None


def test_dill_shims_hand_out_nothing_else():
    """getattr(dill._dill, name): only dill's shims; anything else is the
    default given, or an error in a restricted load."""
    data = P(call(g("builtins", "getattr"), g("dill", "_dill"), u("__class__")))
    with pytest.raises(UnpicklingError, match="not one of dill's shims"):
        mason.loads(data, allow=[])
    assert (
        mason.loads(P(call(g("builtins", "getattr"), g("dill", "_dill"), u("_CELL_EMPTY"), b"N")), allow=[])
        is rebuild.empty_cell_marker()
    )


def test_create_type_calls_only_a_metaclass():
    data = P(call(g("dill._dill", "_create_type"), g("os", "system"), u("echo hi"), b")", b"}"))
    with pytest.raises(UnpicklingError, match="metaclass"):
        mason.loads(data)


def test_load_type_is_judged_as_the_global_it_names():
    data = P(call(g("dill._dill", "_load_type"), u("ItemGetterType")))
    with pytest.raises(ForbiddenGlobalError, match="operator:itemgetter"):
        mason.loads(data, allow=["operator"])
    assert mason.loads(data) is __import__("operator").itemgetter
    assert mason.loads(P(call(g("dill._dill", "_load_type"), u("MethodType"))), allow=[]) is types.MethodType


def test_code_layout_of_another_python_is_refused():
    args = (b"", 0, 0, 0, 0, 0, 0, b"d\x00S\x00", (None,), (), (), "f.py", "f", 1, b"", (), ())  # 3.10's 16 fields
    if (len(args) - 1, True) == dillcompat._HERE:
        pytest.skip("this is Python 3.10")
    with pytest.raises(VersionMismatchError, match="Python 3.10"):
        rebuild.dill_create_code(*args)


def test_a_dill_import_that_is_not_a_session_is_judged_before_running():
    """The first _import_module of a pickle is taken for a dill session's
    module only if it is the pickle's top object: otherwise the scan judges
    it (and a BUILD on it) like any import, before anything runs."""
    built = P(b"(" + call(g("dill._dill", "_import_module"), u("json")) + items(u("dumps"), u("x")) + b"bl")
    with pytest.raises(ForbiddenGlobalError, match=r"refused before running anything.*BUILD on json"):
        mason.loads(built, allow=["json"])
    hidden = P(b"(" + call(g("dill._dill", "_import_module"), u("not_imported_anywhere")) + b"l")
    refused = r"before running anything.*not_imported_anywhere \(imported by name\)"
    with pytest.raises(ForbiddenGlobalError, match=refused):
        mason.loads(hidden, allow=[])
    assert "not_imported_anywhere" not in sys.modules
