"""Golden session files: files written once by an old mason must keep loading.

tests/golden/v<major>/ holds files made by tests/golden/make_golden.py when
that format version was current; they are never regenerated.  Each loads in a
fresh interpreter with exactly the values make_golden.py gave them (every
test runs once per version directory).
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import run_python

import mason
from mason._format import spec

GOLDEN = Path(__file__).resolve().parent / "golden"
VERSIONS = ("v1", "v2")  # a directory per format major version, the current one last
DATA_NAME = "data.mason"
CODE_NAME = "code-py311.mason"
REPO = Path(__file__).resolve().parent.parent
ON_PY311 = sys.version_info[:2] == (3, 11)

# Pinned so that regenerating a golden file (which would hide a reader that
# stopped understanding the old one) is a visible, deliberate change.
SHA256 = {
    "v1": {
        "data.mason": "315c96b9641f68e4e2c555353a43c408b44b4057d0568407cc554f9f67422007",
        "code-py311.mason": "b5663db471332b0ac4f83672dfec5612a22a1f1d7b95c2b821bcfa6c056526fa",
    },
    "v2": {
        "data.mason": "637554556a26f7dc7595cbb6e6da6d001f56f62e046f8e8b6ba61e004c5bf5c1",
        "code-py311.mason": "0ea03c7b3fb3318502c645d3d2e983fda738bcebdcbe4a9dea9c91da5d4c0a4c",
    },
}


@pytest.fixture(params=VERSIONS)
def golden(request) -> Path:
    """The directory of one format version's golden files."""
    return GOLDEN / request.param


# name -> (type as inspect reports it, how it was stored)
DATA_VARIABLES = {
    "__annotations__": ("dict", "value"),
    "__doc__": ("NoneType", "value"),
    "arr": ("numpy.ndarray", "value"),
    "f_half": ("float", "value"),
    "f_inf": ("float", "value"),
    "flag": ("bool", "value"),
    "frozen": ("frozenset", "value"),
    "holder": ("dict", "value"),
    "int_set": ("set", "value"),
    "loop": ("list", "value"),
    "math": ("module", "reference"),
    "mutable_raw": ("bytearray", "value"),
    "n_big": ("int", "value"),
    "n_int": ("int", "value"),
    "n_neg": ("int", "value"),
    "nested": ("dict", "value"),
    "node": ("dict", "value"),
    "nothing": ("NoneType", "value"),
    "numbers": ("tuple", "value"),
    "raw": ("bytes", "value"),
    "shared": ("list", "value"),
    "text": ("str", "value"),
    "z": ("complex", "value"),
}

CODE_VARIABLES = {
    "Color": ("enum.EnumType", "value"),
    "FACTOR": ("int", "value"),
    "Item": ("type", "value"),
    "Point": ("type", "value"),
    "__annotations__": ("dict", "value"),
    "__doc__": ("NoneType", "value"),
    "add": ("function", "value"),
    "counter": ("function", "value"),
    "dataclasses": ("module", "reference"),
    "enum": ("module", "reference"),
    "favourite": ("Color", "value"),
    "item": ("Item", "value"),
    "make_counter": ("function", "value"),
    "p1": ("Point", "value"),
    "p2": ("Point", "value"),
    "points": ("list", "value"),
    "scaled": ("function", "value"),
    "square": ("function", "value"),
}

# What load_module_asdict adds to the saved variables.
LOADER_KEYS = {"__builtins__", "__name__", "__session__"}

needs_py311 = pytest.mark.skipif(not ON_PY311, reason="code-py311.mason holds Python 3.11 bytecode")


def _run(code: str, tmp_path, **kwds):
    return run_python(textwrap.dedent(code), cwd=tmp_path, **kwds)


def test_golden_files_are_unchanged(golden):
    found = sorted(os.path.basename(p) for p in glob.glob(str(golden / "*.mason")))
    assert found == sorted(SHA256[golden.name])
    for name, digest in SHA256[golden.name].items():
        assert hashlib.sha256((golden / name).read_bytes()).hexdigest() == digest, name


def test_every_version_directory_is_tested():
    assert sorted(p.name for p in GOLDEN.glob("v*")) == sorted(VERSIONS) == sorted(SHA256)


# ---------------------------------------------------------------- data.mason


DATA_CHECK = """
import math, sys, warnings
import numpy as np
import mason

EXPECTED = {
    '__annotations__': {},
    '__doc__': None,
    'f_half': 3.25,
    'f_inf': float('inf'),
    'flag': True,
    'frozen': frozenset({10, 20}),
    'holder': {'first': [1, 2, 3], 'second': [1, 2, 3]},
    'int_set': {1, 2, 3},
    'mutable_raw': bytearray(b'mason'),
    'n_big': 2 ** 100,
    'n_int': 42,
    'n_neg': -7,
    'nested': {'a': [1, 2, (3, 4)], 'b': {'c': [[], {}], 'd': ()}},
    'nothing': None,
    'numbers': (1, 2.0, 'three'),
    'raw': b'\\x00\\x01\\x02\\x03\\x04\\x05\\x06\\x07',
    'shared': [1, 2, 3],
    'text': 'h\\u00e9llo, w\\u00f6rld \\u2713',
    'z': complex(1.5, -2.0),
}

def check(ns):
    for name, value in EXPECTED.items():
        assert ns[name] == value, (name, ns[name])
        assert type(ns[name]) is type(value), (name, type(ns[name]))
    # one shared list, referenced from two variables and twice inside one
    assert ns['holder']['first'] is ns['holder']['second'] is ns['shared']
    # cycles
    loop, node = ns['loop'], ns['node']
    assert len(loop) == 2 and loop[0] == 0 and loop[1] is loop
    assert set(node) == {'name', 'self'} and node['name'] == 'n' and node['self'] is node
    assert ns['math'] is sys.modules['math'] is math
    arr = ns['arr']
    assert type(arr) is np.ndarray and arr.dtype == np.dtype('<f8') and arr.shape == (3, 4)
    assert arr.tolist() == np.arange(12.0).reshape(3, 4).tolist()

def load(call):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        result = call()
    # A file from another Python or numpy may warn so, and nothing else.
    for w in caught:
        assert issubclass(w.category, mason.EnvironmentMismatchWarning), w
    env = mason.inspect(PATH).environment
    same = env['python'][:2] == list(sys.version_info[:2]) and env['packages'] == {'numpy': np.__version__}
    assert not (same and caught), [str(w.message) for w in caught]
    return result
"""


def test_data_golden_loads_as_dict(tmp_path, golden):
    pytest.importorskip("numpy")
    _run(
        f"PATH = {str(golden / DATA_NAME)!r}\n"
        + DATA_CHECK
        + f"""
ns = load(lambda: mason.load_module_asdict(PATH))
assert set(ns) == {set(DATA_VARIABLES) | LOADER_KEYS!r}, sorted(ns)
assert ns['__name__'] == '__main__' and ns['__session__'] == PATH
check(ns)
assert 'shared' not in globals()

# Arrays come back writable, and writing to one never reaches the file.
ns['arr'][0, 0] = 99.0
again = load(lambda: mason.load_module_asdict(PATH))
assert again['arr'][0, 0] == 0.0
""",
        tmp_path,
    )


def test_data_golden_loads_into_main(tmp_path, golden):
    pytest.importorskip("numpy")
    before = (golden / DATA_NAME).read_bytes()
    _run(
        f"PATH = {str(golden / DATA_NAME)!r}\n"
        + DATA_CHECK
        + """
assert load(lambda: mason.load_module(PATH)) is None
check(globals())
""",
        tmp_path,
    )
    assert (golden / DATA_NAME).read_bytes() == before


# ---------------------------------------------------------------- code-py311.mason


CODE_CHECK = """
import dataclasses, enum, sys, warnings
import mason

def check(ns):
    assert ns['FACTOR'] == 5
    assert ns['add'](1) == 3 and ns['add'](1, b=5) == 6
    assert ns['scaled'](2) == 10
    assert ns['square'](7) == 49 and ns['square'].__name__ == '<lambda>'
    counter = ns['counter']
    assert counter() == 12 and counter() == 13  # the closure kept its count (11)
    fresh = ns['make_counter'](0)
    assert fresh() == 1 and fresh(5) == 6 and counter() == 14

    Point, p1, p2 = ns['Point'], ns['p1'], ns['p2']
    assert type(p1) is Point and type(p2) is Point
    assert (p1.x, p1.y, p2.x, p2.y) == (3, 4, 1, 2)
    assert p1.norm2() == 25 and Point(6, 8).norm2() == 100
    assert ns['points'][0] is p1 and ns['points'][1] is p2

    Item, item = ns['Item'], ns['item']
    assert dataclasses.is_dataclass(Item) and type(item) is Item
    assert list(Item.__dataclass_fields__) == ['name', 'qty']
    assert item == Item('bolt', 3) and repr(item) == "Item(name='bolt', qty=3)"
    assert Item('nut').qty == 1 and item.total(2) == 6

    Color = ns['Color']
    assert isinstance(Color, enum.EnumMeta) and issubclass(Color, enum.Enum)
    assert [(c.name, c.value) for c in Color] == [('RED', 1), ('GREEN', 2)]
    assert ns['favourite'] is Color.GREEN is Color(2) is Color['GREEN']

    assert ns['dataclasses'] is dataclasses and ns['enum'] is enum
    for name in ('add', 'scaled', 'square', 'make_counter', 'counter'):
        assert ns[name].__module__ == '__main__'
"""


@needs_py311
def test_code_golden_loads_as_dict(tmp_path, golden):
    _run(
        f"PATH = {str(golden / CODE_NAME)!r}\n"
        + CODE_CHECK
        + f"""
with warnings.catch_warnings():
    warnings.simplefilter('error')
    ns = mason.load_module_asdict(PATH)
assert set(ns) == {set(CODE_VARIABLES) | LOADER_KEYS!r}, sorted(ns)
check(ns)
# the functions' globals are the returned dict, not this __main__
assert ns['scaled'].__globals__ is ns and 'FACTOR' not in globals()
ns['FACTOR'] = 7
assert ns['scaled'](2) == 14
""",
        tmp_path,
    )


@needs_py311
def test_code_golden_loads_into_main(tmp_path, golden):
    _run(
        f"PATH = {str(golden / CODE_NAME)!r}\n"
        + CODE_CHECK
        + """
with warnings.catch_warnings():
    warnings.simplefilter('error')
    assert mason.load_module(PATH) is None
check(globals())
assert scaled.__globals__ is globals()
FACTOR = 7
assert scaled(2) == 14
assert isinstance(Point(0, 0), Point) and Color.RED.value == 1
""",
        tmp_path,
    )


@needs_py311
def test_code_golden_dataclass_fields(tmp_path, golden):
    _run(
        f"""
import dataclasses, mason
ns = mason.load_module_asdict({str(golden / CODE_NAME)!r})
Item, item = ns['Item'], ns['item']
assert [f.name for f in dataclasses.fields(Item)] == ['name', 'qty']
assert dataclasses.asdict(item) == {{'name': 'bolt', 'qty': 3}}
assert dataclasses.astuple(item) == ('bolt', 3)
assert Item.__dataclass_fields__['name'].default is dataclasses.MISSING
""",
        tmp_path,
    )


# On another Python, the bytecode cannot run.  Loading fails when the first
# code object is rebuilt, before any variable reaches the namespace, with an
# error naming both versions; what holds no code can still be loaded by name.
OTHER_PYTHON_CHECK = """
import sys, warnings
import mason
from mason.errors import VersionMismatchError
here = '%d.%d' % sys.version_info[:2]
assert here != '3.11'

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    try:
        mason.load_module(PATH, on_error='raise')
    except VersionMismatchError as exc:
        message = str(exc)
    else:
        raise AssertionError('loaded Python 3.11 code')
assert 'Python 3.11' in message and 'Python ' + here in message, message
assert 'FACTOR' not in globals()  # nothing was restored
env = [str(w.message) for w in caught if issubclass(w.category, mason.EnvironmentMismatchWarning)]
assert len(env) == 1 and 'Python 3.11' in env[0] and 'this is ' + here in env[0], env

with warnings.catch_warnings():
    warnings.simplefilter('ignore', mason.EnvironmentMismatchWarning)
    ns = mason.load_module_asdict(PATH, names=['FACTOR'])
assert ns['FACTOR'] == 5
print('ok')
"""


# Restoring what can be restored: the variables whose segments share nothing
# with a failed one come back; the rest are named in warnings.
OTHER_PYTHON_LENIENT = """
import sys, warnings
import mason
here = '%d.%d' % sys.version_info[:2]
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    ns = mason.load_module_asdict(PATH, on_error='warn')
skipped = {}
for w in caught:
    if issubclass(w.category, mason.SkippedVariableWarning):
        skipped.update(w.message.failures)
assert 'Python 3.11' in skipped['Item'] and 'Python ' + here in skipped['Item'], skipped
for name in ('Point', 'add', 'counter', 'item', 'p1', 'points', 'square'):
    assert name in skipped and name not in ns, name
assert ns['FACTOR'] == 5
Color = ns['Color']
assert [(c.name, c.value) for c in Color] == [('RED', 1), ('GREEN', 2)]
assert ns['favourite'] is Color.GREEN, skipped.get('favourite')
print('ok')
"""


def _other_pythons() -> dict:
    """Other CPython minor versions (3.10+) found on this machine, by version:
    pyenv installs, or python3.X on PATH.  They import mason from src."""
    found = {}
    here = sys.version_info[:2]
    candidates = [shutil.which(f"python3.{minor}") for minor in range(10, 16)]
    pyenv_root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    candidates += sorted(glob.glob(os.path.join(pyenv_root, "versions", "3.*", "bin", "python3")))
    for exe in filter(None, candidates):
        try:
            out = subprocess.run(
                [exe, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                capture_output=True,
                text=True,
                timeout=30,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            continue
        if re.fullmatch(r"3\.\d+", out):
            version = tuple(map(int, out.split(".")))
            if version >= (3, 10) and version not in (here, (3, 11)):  # 3.11 made the file
                found.setdefault(out, exe)
    return dict(sorted(found.items()))


OTHER_PYTHONS = _other_pythons()


def _params(marks_by_version: dict) -> list:
    return [
        pytest.param(exe, id=f"python{version}", marks=marks_by_version.get(version, ()))
        for version, exe in OTHER_PYTHONS.items()
    ]


def _run_other(python: str, code: str, tmp_path, golden: Path) -> None:
    proc = subprocess.run(
        [python, "-c", f"PATH = {str(golden / CODE_NAME)!r}\n" + code],
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=str(REPO / "src")),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and proc.stdout == "ok\n", proc.stderr


@pytest.mark.skipif(ON_PY311, reason="this Python can run the file's code")
def test_code_golden_on_this_other_python(tmp_path, golden):
    _run(f"PATH = {str(golden / CODE_NAME)!r}\n" + OTHER_PYTHON_CHECK, tmp_path)


@pytest.mark.parametrize("python", _params({}))
def test_code_golden_on_other_installed_pythons(tmp_path, python, golden):
    _run_other(python, OTHER_PYTHON_CHECK, tmp_path, golden)


@pytest.mark.parametrize("python", _params({}))
def test_code_golden_lenient_load_on_other_installed_pythons(tmp_path, python, golden):
    _run_other(python, OTHER_PYTHON_LENIENT, tmp_path, golden)


# ---------------------------------------------------------------- inspect and format version


@pytest.mark.parametrize(
    "name, expected",
    [(DATA_NAME, DATA_VARIABLES), (CODE_NAME, CODE_VARIABLES)],
    ids=["data", "code-py311"],
)
def test_inspect_golden(tmp_path, golden, name, expected):
    # Reads only the index: works on any Python, and runs nothing.
    path = golden / name
    proc = _run(
        f"""
import json, sys, mason
info = mason.inspect({str(path)!r})
print(json.dumps({{
    'module': info.module, 'module_kind': info.module_kind, 'names': info.names(),
    'variables': info.variables, 'skipped': info.skipped,
    'python': info.environment['python'], 'format_version': list(info.format_version),
    'mason': info.environment['mason'],
}}))
assert 'numpy' not in sys.modules  # nothing was unpickled
""",
        tmp_path,
    )
    info = json.loads(proc.stdout)
    assert info["module"] == "__main__" and info["module_kind"] == "main"
    assert info["names"] == sorted(expected)
    assert {v["name"]: (v["type"], v["stored"]) for v in info["variables"]} == expected
    assert all(isinstance(v["size"], int) and v["size"] > 0 for v in info["variables"])
    assert info["skipped"] == []
    assert info["python"][:2] == [3, 11]
    assert info["mason"] == "0.1.0"
    assert info["format_version"] == [int(golden.name[1:]), 0]


def _documented_version() -> tuple[int, int]:
    text = (REPO / "docs" / "format.md").read_text(encoding="utf-8")
    title = re.search(r"^# .*format, version (\d+)\.(\d+)\s*$", text, re.M)
    major = re.search(r"^\|\s*10\s*\|\s*2\s*\|\s*u16\s*\|\s*major\s*\|[^|]*`(\d+)`", text, re.M)
    minor = re.search(r"^\|\s*12\s*\|\s*2\s*\|\s*u16\s*\|\s*minor\s*\|[^|]*`(\d+)`", text, re.M)
    assert title and major and minor, "docs/format.md no longer states the version where this test looks"
    from_title = (int(title.group(1)), int(title.group(2)))
    assert from_title == (int(major.group(1)), int(minor.group(1))), "docs/format.md contradicts itself"
    return from_title


@pytest.mark.parametrize("name", [DATA_NAME, CODE_NAME], ids=["data", "code-py311"])
def test_golden_format_version_is_the_documented_one(golden, name):
    path = golden / name
    raw = path.read_bytes()
    assert raw[:10] == spec.MAGIC
    major, minor = struct.unpack_from("<HH", raw, 10)  # header: magic, major, minor
    assert (major, minor) == (int(golden.name[1:]), 0)  # the version its directory says
    assert mason.inspect(path).format_version == (major, minor)
    # This mason writes the documented version, the newest directory's.
    documented = _documented_version()
    assert (spec.FORMAT_MAJOR, spec.FORMAT_MINOR) == documented
    assert f"v{documented[0]}" == VERSIONS[-1]
