"""Portable sessions (issue 13): code saved by value moves to another minor
version of Python, compiled again from the source saved next to its bytecode.

The main test saves one session that holds every kind of code (functions,
two lambdas on one line, closures whose state goes on, nested functions,
decorators and ``functools.wraps`` chains, zero-argument ``super()``,
``__slots__``, dataclasses, enums, named tuples, generators, async
functions, a notebook cell, code with no source) with each CPython 3.10-3.13
found on this machine, and loads it with each of them: every pair, both
directions, the same version too.  Interpreters that are not installed are
skipped.  The same session saved with a pretend version number is then
loaded by this interpreter, which must compile everything from source: that
part runs everywhere.
"""

from __future__ import annotations

import glob
import marshal
import os
import re
import shutil
import subprocess
import sys
import textwrap
import types
import warnings
from pathlib import Path

import pytest

import mason
from mason import _portable, _rebuild
from mason._reducers.source import SourceFinder
from mason.errors import UnpicklingError, VersionMismatchError

SRC = Path(__file__).resolve().parent.parent / "src"
VERSIONS = ("3.10", "3.11", "3.12", "3.13")


def _interpreters() -> dict[str, str]:
    """CPython 3.10-3.13 on this machine, by minor version: this one, pyenv's, python3.X on PATH."""
    found = {"%d.%d" % sys.version_info[:2]: sys.executable}
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    candidates = sorted(glob.glob(os.path.join(root, "versions", "3.*", "bin", "python3")))
    candidates += [shutil.which(f"python{version}") for version in VERSIONS]
    for exe in filter(None, candidates):
        match = re.search(r"(?:versions/|python)(3\.\d+)", exe)
        if match and match.group(1) in VERSIONS and match.group(1) not in found:
            try:
                out = subprocess.run(
                    [exe, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                    capture_output=True,
                    text=True,
                    timeout=30,
                ).stdout.strip()
            except (OSError, subprocess.SubprocessError):
                continue
            if out == match.group(1):
                found[out] = exe
    return found


PYTHONS = _interpreters()
PAIRS = [(a, b) for a in VERSIONS for b in VERSIONS]


def _python(exe: str, code: str, *args, cwd=None) -> str:
    proc = subprocess.run(
        [exe, "-c", code, *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
        env=dict(os.environ, PYTHONPATH=str(SRC), PYTHONHASHSEED="0"),
    )
    assert proc.returncode == 0, f"{exe} failed:\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    return proc.stdout


# A session with every kind of code.  It is run from a file, so that its
# functions have source, as in a script or a module saved as a session.
SESSION = '''
import asyncio, dataclasses, enum, functools, linecache, sys, typing
import mason

FACTOR = 3


def add(a, b=2, *, scale=1, **extra) -> int:
    """Add, then scale."""
    return (a + b) * scale * FACTOR


add.tag = "an attribute"

double, triple = (lambda x: x * 2), (lambda x: x * 3)


def make_counter(start):
    count = start

    def step(k=1):
        nonlocal count
        count += k
        return count

    return step


counter = make_counter(10)
counter()


def outer(n):
    def middle(m):
        def inner(k):
            return n + m + k
        return inner
    return middle


adder = outer(1)(2)


def shout(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs).upper()
    return wrapper


def exclaim(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs) + "!"
    return wrapper


@exclaim
@shout
def greet(name: str = "world") -> str:
    """Say hello."""
    return "hello " + name


class Base:
    __slots__ = ()

    def describe(self):
        return "base"


class Shape(Base):
    __slots__ = ("w", "h")
    sides = 4

    def __init__(self, w, h):
        self.w, self.h = w, h

    def describe(self):
        return "shape<" + super().describe() + ">"

    def cls_name(self):
        return __class__.__name__

    def __secret(self):
        return self.w * self.h

    def area(self):
        return self.__secret()

    @staticmethod
    def unit():
        return Shape(1, 1)

    @classmethod
    def square(cls, n):
        return cls(n, n)

    @property
    def perimeter(self):
        return 2 * (self.w + self.h)

    key = staticmethod(lambda s: -s.w)


box = Shape(2, 3)


@dataclasses.dataclass
class Item:
    name: str
    qty: int = 1
    tags: list = dataclasses.field(default_factory=list, repr=False)

    def total(self, price):
        return self.qty * price


@dataclasses.dataclass
class Special(Item):
    bonus: int = 5

    def total(self, price):
        return super().total(price) + self.bonus


@dataclasses.dataclass(frozen=True, order=True)
class Version:
    major: int
    minor: int = 0


item = Item("bolt", 3)
special = Special("nut", 2, bonus=7)
version = Version(1, 2)


class Color(enum.Enum):
    RED = 1
    GREEN = 2

    def describe(self):
        return f"{self.name.lower()}={self.value}"


class Perm(enum.IntFlag):
    R = 4
    W = 2


favourite = Color.GREEN


class Point(typing.NamedTuple):
    x: int
    y: int = 0

    def norm1(self):
        return abs(self.x) + abs(self.y)


pt = Point(3, -4)


def countdown(n):
    while n > 0:
        yield n
        n -= 1


async def fetch(x, delay=0):
    await asyncio.sleep(delay)
    return x * FACTOR


async def ticks(n):
    for i in range(n):
        yield i


late = [lambda: i for i in range(3)]
early = [lambda i=i: i * 10 for i in range(3)]


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


# A notebook cell: IPython compiles each cell under a name of its own and
# puts its text in linecache.
_CELL = """
from __future__ import annotations
import math


def hyp(a: float, b: float) -> float:
    return math.hypot(a, b)


reverse = lambda s: s[::-1]
"""
_NAME = "<ipython-input-7-0123456789ab>"
linecache.cache[_NAME] = (len(_CELL), None, _CELL.splitlines(True), _NAME)
exec(compile(_CELL, _NAME, "exec"), globals())

def make_total():
    total = [0]

    def add_up(x):
        total[0] += x
        return total[0]

    return add_up


# No source: made by exec of a string.  What uses it cannot move either.  A
# variable saved after it that only shares code with it (the code of
# add_up, first saved in uses_nosrc) moves: that code is made again alone.
exec("def nosrc(x):\\n    return x - 1", globals())
uses_nosrc = {"f": nosrc, "total": make_total()}
z_shares_code = make_total()

mason.dump_module(sys.argv[1])
'''

# Pretend to be another Python: the file names version 3.0 for its code.
PRETEND = """
import mason._reducers.classes, mason._reducers.code
mason._reducers.code.PY_VERSION = mason._reducers.classes.PY_VERSION = (3, 0)
"""

CHECK = """
import asyncio, dataclasses, sys, warnings
import mason

path, moved = sys.argv[1], sys.argv[2] == "moved"
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    mason.load_module(path)
skipped = {}
for w in caught:
    if issubclass(w.category, mason.SkippedVariableWarning):
        skipped.update(w.message.failures)

if moved:
    # Exactly what has no source, and what uses it; nothing else.
    assert set(skipped) == {"nosrc", "uses_nosrc"}, skipped
    assert "no source" in skipped["nosrc"] and "'<string>'" in skipped["nosrc"], skipped
    assert "exec" in skipped["nosrc"] and "Python 3." in skipped["nosrc"], skipped
    assert "'nosrc'" in skipped["uses_nosrc"], skipped
else:
    assert not skipped, skipped
    assert nosrc(3) == 2 and uses_nosrc["f"] is nosrc

assert add(1) == 9 and add(1, 1, scale=2) == 12 and add.tag == "an attribute"
assert add.__doc__ == "Add, then scale." and add.__defaults__ == (2,) and add.__kwdefaults__ == {"scale": 1}
assert add.__annotations__ == {"return": int} and add.__qualname__ == "add" and add.__module__ == "__main__"
assert add.__code__.co_filename.endswith("session.py")
assert double(4) == 8 and triple(4) == 12
assert double.__code__.co_firstlineno == triple.__code__.co_firstlineno
assert counter() == 12 and counter(5) == 17 and counter.__qualname__ == "make_counter.<locals>.step"
assert make_counter(1)() == 2
assert z_shares_code(5) == 5 and z_shares_code(1) == 6
assert adder(3) == 6 and adder.__qualname__ == "outer.<locals>.middle.<locals>.inner"
assert greet() == "HELLO WORLD!" and greet("bob") == "HELLO BOB!", greet()
assert greet.__name__ == "greet" and greet.__doc__ == "Say hello." and greet.__qualname__ == "greet"
assert greet.__annotations__ == {"name": str, "return": str}
assert greet.__wrapped__.__wrapped__("x") == "hello x" and greet.__wrapped__.__defaults__ is None
assert greet.__wrapped__.__wrapped__.__defaults__ == ("world",)

assert box.describe() == "shape<base>" and box.cls_name() == "Shape" and box.area() == 6
assert Shape.unit().w == 1 and Shape.square(2).perimeter == 8 and Shape.key(box) == -2
assert not hasattr(box, "__dict__") and Shape.__slots__ == ("w", "h") and Shape.sides == 4
assert Shape.describe.__qualname__ == "Shape.describe" and isinstance(box, Base)

assert item.total(2) == 6 and Item("x").tags == [] and repr(item) == "Item(name='bolt', qty=3)", repr(item)
assert [f.name for f in dataclasses.fields(Item)] == ["name", "qty", "tags"]
assert dataclasses.asdict(item) == {"name": "bolt", "qty": 3, "tags": []}
assert special.total(1) == 9 and Special("a").bonus == 5 and isinstance(special, Item)
assert [f.name for f in dataclasses.fields(Special)] == ["name", "qty", "tags", "bonus"]
assert version == Version(1, 2) and version < Version(2) and hash(version) == hash(Version(1, 2))
assert dataclasses.replace(version, minor=5) == Version(1, 5)
try:
    version.major = 3
except dataclasses.FrozenInstanceError:
    pass
else:
    raise AssertionError("a frozen dataclass is not frozen")

assert Color.RED.describe() == "red=1" and favourite is Color.GREEN and Color(2) is Color.GREEN
assert (Perm.R | Perm.W) == 6 and Perm(6) == Perm.R | Perm.W
assert pt.norm1() == 7 and Point(5) == (5, 0) and pt._replace(x=1) == (1, -4) and Point._fields == ("x", "y")
assert Point(1, 2).x == 1 and repr(pt) == "Point(x=3, y=-4)"

assert list(countdown(3)) == [3, 2, 1]
assert asyncio.run(fetch(2)) == 6


async def collect():
    return [i async for i in ticks(3)]


assert asyncio.run(collect()) == [0, 1, 2]
assert [f() for f in late] == [2, 2, 2] and [f() for f in early] == [0, 10, 20]
assert fib(10) == 55
assert hyp(3, 4) == 5.0 and hyp.__annotations__ == {"a": "float", "b": "float", "return": "float"}
assert reverse("abc") == "cba" and hyp.__code__.co_filename == "<ipython-input-7-0123456789ab>"
print("ok")
"""


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """``saved(version, pretend=False)``: the session file saved by that Python (made once)."""
    made: dict = {}
    folder = tmp_path_factory.mktemp("portable")
    script = folder / "session.py"
    script.write_text(SESSION)

    def get(version: str, pretend: bool = False) -> Path:
        key = (version, pretend)
        if key not in made:
            path = folder / f"session-{version}{'-pretend' if pretend else ''}.mason"
            code = (PRETEND if pretend else "") + "import runpy, sys; runpy.run_path(sys.argv[2], run_name='__main__')"
            _python(PYTHONS[version], code, path, script, cwd=folder)
            made[key] = path
        return made[key]

    return get


@pytest.mark.parametrize("saver, loader", [pytest.param(a, b, id=f"{a}-to-{b}") for a, b in PAIRS])
def test_session_moves_between_python_versions(saved, saver, loader):
    missing = [v for v in (saver, loader) if v not in PYTHONS]
    if missing:
        pytest.skip(f"Python {', '.join(missing)} is not installed")
    path = saved(saver)
    assert _python(PYTHONS[loader], CHECK, path, "same" if saver == loader else "moved") == "ok\n"


def test_this_python_compiles_everything_from_source(saved):
    # The file claims Python 3.0: every code object is compiled again here
    # from its source, dataclasses make their methods again, and what has
    # no source is held back with why.  No other interpreter needed.
    here = "%d.%d" % sys.version_info[:2]
    path = saved(here, pretend=True)
    assert _python(sys.executable, CHECK, path, "moved") == "ok\n"


def test_segments_that_hold_code_are_compressed_and_the_rest_are_not(saved):
    # zlib, which every mason reads: the files the tests above move between
    # versions are these.
    from mason._format import ContainerReader, writer
    from mason._sessionmeta import variable_names

    with ContainerReader.open(saved("%d.%d" % sys.version_info[:2])) as reader:
        names = variable_names(reader.meta)
        infos = {name: reader.segment_info(i) for i, name in enumerate(names)}
    for name in ("add", "Shape", "late"):  # the record that holds them: zlib once it is worth it
        info = infos[name]
        whole = info["length"] if info["compression"] else None
        assert info["compression"] == "zlib" or (
            info["compression"] is None and info["raw_length"] < writer.COMPRESS_FROM
        )
        assert whole is None or whole < writer.COMPRESS_FROM * 4
    assert infos["FACTOR"]["compression"] is None


def test_many_functions_are_compressed_and_a_tiny_session_is_not(tmp_path):
    from conftest import run_python

    from mason._format import ContainerReader
    from mason._sessionmeta import variable_names

    many, tiny = tmp_path / "many.mason", tmp_path / "tiny.mason"
    run_python(
        f"""
import mason, types
src = "".join(f"def f{{i}}(x):\\n    return x * {{i}} + len('padding text {{i}}')\\n" for i in range(200))
exec(compile(src, "<cell>", "exec"))
mason.dump_module({str(many)!r})
for i in range(200):
    del globals()[f"f{{i}}"]
def g(x):
    return x + 1
mason.dump_module({str(tiny)!r})
"""
    )
    for path, expected in ((many, "zlib"), (tiny, None)):
        with ContainerReader.open(path) as reader:
            names = variable_names(reader.meta)
            codecs = {reader.segment_info(i)["compression"] for i, n in enumerate(names) if n[0] in "fg"}
        assert codecs == {expected}, (path.name, codecs)
    out = run_python(f"import mason\nmason.load_module({str(many)!r})\nprint(f199(2), f7(1))").stdout
    assert out.split() == [str(2 * 199 + len("padding text 199")), str(7 + len("padding text 7"))]


def test_inspect_tells_portable_from_tied(saved):
    info = mason.inspect(saved("%d.%d" % sys.version_info[:2], pretend=True))
    assert {
        "add",
        "double",
        "counter",
        "greet",
        "Shape",
        "Item",
        "Version",
        "Color",
        "Point",
        "hyp",
        "reverse",
        "z_shares_code",
    } <= set(info.portable), info.portable
    assert set(info.tied) == {"nosrc", "uses_nosrc"}, info.tied
    assert info.tied["nosrc"].startswith("Python 3.0 only: nosrc: no source") and "exec" in info.tied["nosrc"]
    assert info.tied["uses_nosrc"] == "Python 3.0 only: it uses objects of 'nosrc'"
    assert "FACTOR" not in info.portable and "FACTOR" not in info.tied  # no code


def test_cli_inspect_shows_a_code_column(saved, capsys):
    from mason.cli import main

    assert main(["inspect", str(saved("%d.%d" % sys.version_info[:2], pretend=True))]) == 0
    out = capsys.readouterr().out
    rows = {}
    for line in out.splitlines():
        parts = line.split()
        if parts:
            rows.setdefault(parts[1] if parts[0] == "!" and len(parts) > 1 else parts[0], line)
    assert rows["add"].rstrip().endswith("portable") and rows["nosrc"].rstrip().endswith("py3.0")
    assert rows["uses_nosrc"].rstrip().endswith("py3.0") and rows["FACTOR"].rstrip().endswith("value")
    assert "tied to the Python version that saved them" in out


RESTRICTED = """
import sys, warnings
import mason
warnings.simplefilter("ignore", mason.EnvironmentMismatchWarning)
data = ["dataclasses", "dataclasses:MISSING", "dataclasses:_FIELD"]
ns = mason.load_module_asdict(sys.argv[1], allow=[mason.CODE, *data], on_error="raise")
assert ns["Item"](2).qty == 2 and repr(ns["Item"]()) == "Item(qty=1)" and ns["twice"](4) == 8
try:
    mason.load_module_asdict(sys.argv[1], allow=data, on_error="raise")
except mason.ForbiddenGlobalError as exc:
    assert "mason:code" in str(exc), exc
else:
    raise AssertionError("code compiled from source without mason.CODE")
print("ok")
"""

SMALL = """
import dataclasses, sys
import mason

twice = lambda x: 2 * x


@dataclasses.dataclass
class Item:
    qty: int = 1


mason.dump_module(sys.argv[1])
"""


def test_restricted_load_compiles_source_only_with_code_allowed(tmp_path):
    script = tmp_path / "small.py"
    script.write_text(SMALL)
    path = tmp_path / "small.mason"
    _python(
        sys.executable,
        PRETEND + "import runpy, sys; runpy.run_path(sys.argv[2], run_name='__main__')",
        path,
        script,
        cwd=tmp_path,
    )
    assert _python(sys.executable, RESTRICTED, path) == "ok\n"


# ---------------------------------------------------------------- source records, in this process


@pytest.fixture
def module(tmp_path, monkeypatch):
    """``module(text)``: a module imported from a file, so its code has source."""
    monkeypatch.syspath_prepend(str(tmp_path))
    counter = iter(range(1000))

    def make(text: str):
        name = f"portable_case_{next(counter)}"
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(text))
        __import__(name)
        return sys.modules.pop(name)

    return make


def _from_source(code: types.CodeType) -> types.CodeType:
    """``code`` saved, then rebuilt as another Python would: from its source."""
    record = SourceFinder().record(code)
    assert isinstance(record, tuple), record
    return _rebuild.code_portable((3, 0), marshal.dumps(code), record)


def test_two_lambdas_on_one_line_each_get_their_own_text(module):
    m = module("pair = (lambda x: x + 1, lambda x: x * 100)\n")
    first, second = (_portable.read_record(SourceFinder().record(f.__code__)) for f in m.pair)
    assert first[:2] == ("lambda", "lambda x: x + 1") and second[:2] == ("lambda", "lambda x: x * 100")
    assert first[3:5] == (1, 8) and second[3:5] == (1, 25)  # line, column
    for f in m.pair:
        assert _from_source(f.__code__) == f.__code__


def test_rebuilt_code_equals_the_original(module):
    m = module('''
        import functools

        class A:
            def m(self):
                return super().__repr__()

            class B:
                def __hidden(self):
                    return 1

                def n(self):
                    return self.__hidden() + len([lambda: k for k in range(2)])

        def deco(fn):
            @functools.wraps(fn)
            def wrapper(*a):
                return fn(*a)
            return wrapper

        @deco
        def f(x, *, y=1):
            """doc"""
            return [g for g in (lambda: x, lambda: y)]

        def gen():
            yield from range(3)

        async def coro():
            return 1
    ''')
    for code in (
        m.A.m.__code__,
        m.A.B.n.__code__,
        m.deco.__code__,
        m.f.__code__,
        m.f.__wrapped__.__code__,
        m.gen.__code__,
        m.coro.__code__,
    ):
        rebuilt = _from_source(code)
        assert rebuilt == code and rebuilt.co_freevars == code.co_freevars
        assert getattr(rebuilt, "co_qualname", None) == getattr(code, "co_qualname", None)


def test_an_edited_file_is_not_taken_for_the_source(module, tmp_path):
    import linecache

    m = module("def f():\n    return 1\n")
    assert _portable.read_record(SourceFinder().record(m.f.__code__))[1] == "def f():\n    return 1\n"
    path = Path(m.__file__)
    path.write_text("def f():\n    return 22\n")  # another size: linecache sees the change
    linecache.checkcache(str(path))
    why = SourceFinder().record(m.f.__code__)  # compiled again, not taken from the earlier dump's cache
    assert why[0] == "f" and "does not compile to its code" in why[1]


def test_code_without_source_says_why():
    namespace: dict = {}
    exec("def f():\n    return 1\n", namespace)
    why = SourceFinder().record(namespace["f"].__code__)
    assert why[0] == "f" and why[1].startswith("no source: '<string>'")
    with pytest.raises(VersionMismatchError, match="no source.*compiled by Python 3.0 and cannot run"):
        _rebuild.code_portable((3, 0), marshal.dumps(namespace["f"].__code__), why)


def test_same_python_uses_the_bytecode_not_the_source(module):
    m = module("def f():\n    return 1\n")
    kind, text, *rest = _portable.read_record(SourceFinder().record(m.f.__code__))
    record = _portable.make_record(kind, "def f():\n    return 2\n", *rest)  # never compiled on this Python
    code = _rebuild.code_portable(sys.version_info[:2], marshal.dumps(m.f.__code__), record)
    assert code == m.f.__code__


def test_source_records_are_compiled_never_run(tmp_path):
    marker = tmp_path / "ran"
    text = f"@__import__('pathlib').Path({str(marker)!r}).touch\ndef f(x=__import__('os').getpid()):\n    return x\n"
    record = _portable.make_record(_portable.DEF, text, "<hostile>", 1, 0, "f", (), 0, ())
    code = _rebuild.code_portable((3, 0), b"", record)
    assert isinstance(code, types.CodeType) and code.co_name == "f" and not marker.exists()


def _record(head="def 1 0 0", qualname="f", freevars="", imports="", text="def f(): pass\n", layout=1):
    return (layout, "f.py", f"{head}\n{qualname}\n{freevars}\n{imports}\n{text}")


@pytest.mark.parametrize(
    "record, message",
    [
        (("f", "no source"), "f: no source; its bytecode .* cannot run on Python"),
        (_record(text="x = 1\n"), "not one def statement"),
        (_record(text="def f(): pass\nimport os\n"), "not one def statement"),
        (_record(text="def g(): pass\n"), "does not define 'f'"),
        (_record(head="lambda 1 0 0", text="lambda: 1"), "does not define 'f'"),
        (_record(head="lambda 1 0 0", qualname="<lambda>", freevars="x", text="lambda: 1"), "free variables \\(\\)"),
        (_record(text="def f(:\n"), "SyntaxError"),
        (_record(layout=2), "unknown layout"),
        ((1, "f.py"), "unknown layout"),
        ([1, "f.py", "def 1 0 0\nf\n\n\ndef f(): pass\n"], "unknown layout"),
        (_record(head="exec 1 0 0"), "malformed"),
        (_record(head="def 0 0 0"), "malformed"),
        (_record(head="def 1 -1 0"), "malformed"),
        (_record(head="def 1 0"), "malformed"),
        (_record(qualname=""), "malformed"),
        (_record(freevars="a-b"), "malformed"),
        (_record(imports="os.path"), "malformed"),
        (_record(head="def 1 \u00b2 0"), "malformed"),
        (_record(qualname="f.<junk>.f"), "malformed"),
        ((1, "f.py", "def 1 0 0\nf\n"), "malformed"),
        ((1, None, "def 1 0 0\nf\n\n\ndef f(): pass\n"), "malformed"),
    ],
)
def test_damaged_source_records_are_refused_clearly(record, message):
    with pytest.raises(UnpicklingError, match=message):
        _rebuild.code_portable((3, 0), b"", record)


def test_the_allowlist_classifies_the_new_reconstructors():
    from mason._allowlist import REBUILDERS

    assert REBUILDERS["code_portable"] == mason.CODE and REBUILDERS["dataclass_setstate"] == mason.CODE


def test_environment_warning_names_what_moves():
    from mason._load import _check_environment

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _check_environment({"python": [3, 0, 0]})
    assert "compiled again from their saved source" in str(caught[0].message)


def test_dataclass_fields_must_be_identifiers_before_code_is_generated():
    # dataclasses writes field names into the code it generates.
    for name in ("x=__import__('os').system('true')", "class", "a b"):
        cls = _rebuild.make_class(
            type, "D", (), {"__module__": "m", "__qualname__": "D", "__annotations__": {name: int}}
        )
        field = __import__("dataclasses").field()
        with pytest.raises(UnpicklingError, match="fields are malformed"):
            _rebuild.dataclass_setstate(cls, ({"__dataclass_fields__": {name: field}}, [], ((3, 0), {}, (), False)))


def test_inspect_calls_files_of_older_masons_tied():
    golden = Path(__file__).resolve().parent / "golden" / "v1" / "code-py311.mason"
    info = mason.inspect(golden)
    assert {"add", "square", "Point"} <= set(info.tied) and not info.portable
    assert info.tied["add"].startswith("Python 3.11 only: its code was saved without source")
