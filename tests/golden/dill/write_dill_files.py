"""A dill user's session: run as ``__main__`` with one version of dill on the path.

    python write_dill_files.py OUTDIR [SUFFIX]

make_dill_golden.py runs this once per dill version, in an environment with
only that dill, and keeps what it writes.  Everything defined at the top
level below is the session ``dill.dump_module`` saves; tests/test_dill_files.py
checks the same values and behaviours, so change both together (and write a
new set of files rather than editing the kept ones).

Files written (SUFFIX, e.g. ``-py311``, names the Python that wrote them):

- ``session{SUFFIX}.pkl``: ``dill.dump_module()`` of this ``__main__``.
- ``session-refimported{SUFFIX}.pkl``: the same with ``refimported=True``
  (imported names saved as ``__dill_imported`` lists).
- ``module{SUFFIX}.pkl``: ``dill.dump_module(module=foo)`` of a module-type
  object that is not importable (dill spells it ``__runtime__.foo``).
- ``object{SUFFIX}.pkl``: ``dill.dump(OBJ)`` of a dict of the values below.
- ``object-recurse{SUFFIX}.pkl``: ``dill.dump(OBJ, recurse=True)``.
- ``data{SUFFIX}.pkl``: ``dill.dump`` of plain data (any Python reads it).
"""

import abc
import collections
import functools
import http
import importlib.metadata
import math
import operator
import os
import os.path
import re
import sys
import threading
import types
from os.path import join as path_join

try:
    import numpy as np
except ImportError:  # the numpy variables are then None
    np = None

#: the dill that writes the session (read from its metadata: dill itself is
#: not imported before the session is complete)
DILL_VERSION = tuple(int(part) for part in importlib.metadata.version("dill").split(".")[:3])

# -- data ---------------------------------------------------------------------

numbers = [1, 2, 3, 4]
text = "h\u00e9llo, w\u00f6rld"
raw = b"\x00\x01\xfe\xff"
mutable_raw = bytearray(b"dill")
big = 2**100
ratio = 2.5
z = complex(1.5, -2.0)
nested = {"t": (1, 2.5, None, True), "s": {3, 1, 2}, "f": frozenset({"a", "b"}), "l": [[], {}]}
ordered = collections.OrderedDict([("b", 2), ("a", 1)])
by_default = collections.defaultdict(list, {"x": [1]})
counts = collections.Counter("abracadabra")
span = range(2, 20, 3)  # dill writes range with _eval_repr
dots = Ellipsis
not_impl = NotImplemented
cut = slice(1, 10, 2)
shared = [0]
holder = {"first": shared, "second": shared}
CONFIG = {"scale": 3}

# -- functions ----------------------------------------------------------------


def square(x):
    return x * x


cube = lambda x: x**3  # noqa: E731


def fact(n):
    return 1 if n <= 1 else n * fact(n - 1)


def scaled(k):
    return CONFIG["scale"] * k


def with_defaults(a, b=2, *, c=3):
    """Adds three numbers."""
    return a + b + c


with_defaults.tag = "attr"


def make_counter(start):
    count = start

    def increment(step=1):
        nonlocal count
        count += step
        return count

    return increment


counter = make_counter(10)
counter()  # now 11


def make_adder(n):
    def add(x):
        return x + n

    return add


add5 = make_adder(5)


def make_walker():
    def walk(n):  # refers to itself through its closure
        return 0 if n == 0 else 1 + walk(n - 1)

    return walk


walk = make_walker()


def make_empty_cell():
    def later_value():
        return later  # noqa: F821 - never assigned: an empty cell

    if False:
        later = 1  # noqa: F841
    return later_value


empty_cell = make_empty_cell()

# -- classes ------------------------------------------------------------------


class Point:
    dims = 2

    def __init__(self, x, y):
        self.x, self.y = x, y

    def norm(self):
        return math.hypot(self.x, self.y)

    @property
    def pair(self):
        return (self.x, self.y)

    @staticmethod
    def origin():
        return Point(0, 0)

    @classmethod
    def from_pair(cls, pair):
        return cls(*pair)

    def __eq__(self, other):
        return type(other) is type(self) and self.pair == other.pair

    __hash__ = None

    def __repr__(self):
        return f"{type(self).__name__}({self.x}, {self.y})"


class Point3(Point):
    def __init__(self, x, y, z):
        super().__init__(x, y)
        self.z = z

    def norm(self):
        return math.sqrt(super().norm() ** 2 + self.z**2)


class Slotted:
    __slots__ = ("a", "b")

    def __init__(self, a, b):
        self.a, self.b = a, b

    def total(self):
        return self.a + self.b


if DILL_VERSION >= (0, 3, 7):  # 0.3.6 cannot save an ABC by value

    class Shape(abc.ABC):
        @abc.abstractmethod
        def area(self): ...

    class Square(Shape):
        def __init__(self, side):
            self.side = side

        def area(self):
            return self.side**2

    square_shape = Square(3)


def make_local_class():
    class Local:
        def hello(self):
            return "hello from Local"

    return Local


Local = make_local_class()
point = Point(3, 4)
point3 = Point3(1, 2, 2)
slotted = Slotted(1, 2)
local_instance = Local()
bound = point.norm

Pair = collections.namedtuple("Pair", ["left", "right"])
pair = Pair(1, "b")
WithDefault = collections.namedtuple("WithDefault", "a b", defaults=[0])


# An Enum class of the session is left out: no dill reads one back (its
# members name the class as a global of __main__).  A library's enum is a
# reference, as is a compiled pattern.
status = http.HTTPStatus.NOT_FOUND
pattern = re.compile(r"a+b")

# -- references and library objects -------------------------------------------

math_module = math
path_module = os.path
joiner = path_join
hypot = math.hypot
partial_call = functools.partial(with_defaults, 1, c=10)
proxy = types.MappingProxyType({"k": "v"})
lock = threading.Lock()
rlock = threading.RLock()
devnull = open(os.devnull)  # noqa: SIM115 - a file handle the session holds

if np is not None:
    array = np.arange(6.0).reshape(2, 3)
    dtype_class = type(np.dtype("float64"))

    class Tagged(np.ndarray):
        pass

    tagged = np.arange(3).view(Tagged)
    tagged.info = "tagged"
else:
    array = dtype_class = Tagged = tagged = None


def _write_files(outdir, suffix):
    import importlib

    # Imported here, and this function removed from the session, so that the
    # session holds neither dill nor the writer.
    dill = importlib.import_module("dill")
    del globals()["_write_files"]
    join = os.path.join
    dill.dump_module(join(outdir, f"session{suffix}.pkl"))
    dill.dump_module(join(outdir, f"session-refimported{suffix}.pkl"), refimported=True)

    foo = types.ModuleType("foo")
    foo.values = [1, 2, 3]
    foo.sin = math.sin
    foo.twice = functools.partial(operator.mul, 2)
    dill.dump_module(join(outdir, f"module{suffix}.pkl"), module=foo)

    obj = {
        "numbers": numbers, "text": text, "nested": nested, "span": span, "dots": dots,
        "square": square, "cube": cube, "counter": counter, "add5": add5, "walk": walk,
        "with_defaults": with_defaults, "Point": Point, "point": point, "point3": point3,
        "slotted": slotted, "pair": pair, "status": status, "math": math, "joiner": joiner,
        "bound": bound, "lock": lock, "array": array, "tagged": tagged, "fact": fact,
    }
    with open(join(outdir, f"object{suffix}.pkl"), "wb") as f:
        dill.dump(obj, f)
    # recurse=True saves the globals a function uses with it (dill 0.3.6
    # recurses forever through a closure that refers to itself: no walk)
    recursed = {"square": square, "scaled": scaled, "fact": fact, "add5": add5, "point": point}
    with open(join(outdir, f"object-recurse{suffix}.pkl"), "wb") as f:
        dill.dump(recursed, f, recurse=True)
    data = {"numbers": numbers, "text": text, "raw": raw, "big": big, "nested": nested,
            "ordered": ordered, "span": span, "cut": cut, "holder": holder}
    with open(join(outdir, f"data{suffix}.pkl"), "wb") as f:
        dill.dump(data, f)
    print(dill.__version__)


if __name__ == "__main__":
    _write_files(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "")
