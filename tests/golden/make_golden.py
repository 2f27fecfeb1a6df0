"""Write the golden session files of one container format version.

Run once per format version and keep the output: the files pin what an old
file looks like, so a reader change that stops loading them fails
tests/test_golden.py.  Never regenerate the files of an existing version to
make a test pass.

    python tests/golden/make_golden.py            # writes tests/golden/v<current major>/
    python tests/golden/make_golden.py OUTDIR     # elsewhere, to compare

Each session is built as ``__main__`` of its own fresh interpreter (so the
file is a real session, holding only the names below) and saved with crc32
checksums and no compression, which every installation can read.  Values are
fixed; the only thing that changes between two runs is the creation time and
platform string in the index.  tests/test_golden.py spells out the same
values: change both together, and only for a new version directory.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

HERE = Path(__file__).resolve().parent

# Plain data only: no function or class saved by value, so this file loads on
# any Python version.
DATA_SESSION = """
import math

n_int = 42
n_neg = -7
n_big = 2 ** 100
f_half = 3.25
f_inf = float("inf")
z = complex(1.5, -2.0)
flag = True
nothing = None
text = "h\\u00e9llo, w\\u00f6rld \\u2713"
raw = bytes(range(8))
mutable_raw = bytearray(b"mason")
numbers = (1, 2.0, "three")
int_set = {3, 1, 2}
frozen = frozenset({10, 20})
nested = {"a": [1, 2, (3, 4)], "b": {"c": [[], {}], "d": ()}}
shared = [1, 2, 3]
holder = {"first": shared, "second": shared}
loop = [0]
loop.append(loop)
node = {"name": "n"}
node["self"] = node
arr = __import__("numpy").arange(12, dtype="<f8").reshape(3, 4)
"""

# Code saved by value: bytecode is specific to the Python minor version, hence
# the version in the file name.
CODE_SESSION = """
import dataclasses
import enum

FACTOR = 5


def add(a, b=2):
    return a + b


def scaled(x):
    return x * FACTOR


square = lambda x: x * x


def make_counter(start):
    count = start

    def step(k=1):
        nonlocal count
        count += k
        return count

    return step


counter = make_counter(10)
counter()


class Point:
    def __init__(self, x, y):
        self.x = x
        self.y = y

    def norm2(self):
        return self.x * self.x + self.y * self.y


p1 = Point(3, 4)
p2 = Point(1, 2)
points = [p1, p2]


@dataclasses.dataclass
class Item:
    name: str
    qty: int = 1

    def total(self, price):
        return self.qty * price


item = Item("bolt", 3)


class Color(enum.Enum):
    RED = 1
    GREEN = 2


favourite = Color.GREEN
"""

# Saving leaves no name behind in the session it saves.
SAVE = """
__import__("mason").dump_module({path!r}, checksum="crc32", compression=None, on_error="raise")
"""


def write_session(source: str, path: Path) -> None:
    code = textwrap.dedent(source) + SAVE.format(path=str(path))
    # A fixed hash seed: nothing here should depend on it, but if something
    # did, two runs would still agree.
    env = dict(os.environ, PYTHONHASHSEED="0")
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=path.parent)
    print(f"wrote {path} ({path.stat().st_size} bytes)")


def main(argv: list[str]) -> int:
    # The mason that runs this is the one the sessions are saved with.
    from mason._format import spec

    out = Path(argv[0]).resolve() if argv else HERE / f"v{spec.FORMAT_MAJOR}"
    out.mkdir(exist_ok=True)
    write_session(DATA_SESSION, out / "data.mason")
    py = f"py{sys.version_info[0]}{sys.version_info[1]}"
    write_session(CODE_SESSION, out / f"code-{py}.mason")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
