"""Classes by value and their instances, across fresh interpreters."""

import pytest

CASES = {
    "plain_class_and_instance": (
        """
        class Point:
            '''A point.'''
            dims = 2
            def __init__(self, x, y):
                self.x, self.y = x, y
            def norm2(self):
                return self.x ** 2 + self.y ** 2
        obj = (Point, Point(3, 4))
        """,
        """
        Point, p = obj
        assert isinstance(p, Point) and p.norm2() == 25 and Point.dims == 2
        assert Point.__doc__ == 'A point.' and Point.__module__ == '__main__'
        """,
    ),
    "metaclass": (
        """
        class Registry(type):
            seen = []
            def __new__(mcls, name, bases, ns):
                cls = super().__new__(mcls, name, bases, ns)
                mcls.seen.append(name)
                return cls
        class Plugin(metaclass=Registry):
            kind = 'plugin'
        obj = Plugin()
        """,
        "assert type(type(obj)).__name__ == 'Registry' and obj.kind == 'plugin'",
    ),
    "slots": (
        """
        class S:
            __slots__ = ('a', '__b')
            def __init__(self):
                self.a = 1
                self.__b = 2
            def b(self):
                return self.__b
        obj = S()
        """,
        "assert obj.a == 1 and obj.b() == 2 and not hasattr(obj, '__dict__')",
    ),
    "property_static_class_methods": (
        """
        class C:
            _v = 5
            @property
            def v(self):
                return self._v
            @v.setter
            def v(self, value):
                self._v = value
            @staticmethod
            def s(x):
                return x + 1
            @classmethod
            def k(cls):
                return cls.__name__
        obj = C()
        """,
        "obj.v = 9\nassert obj.v == 9 and obj.s(1) == 2 and obj.k() == 'C'",
    ),
    "enum_intenum_flag": (
        """
        import enum
        class Color(enum.Enum):
            RED = 1
            GREEN = 2
            CRIMSON = 1
            def describe(self):
                return self.name.lower()
        class Level(enum.IntEnum):
            LOW = 1
            HIGH = 2
        class Perm(enum.Flag):
            R = 4
            W = 2
            X = 1
        obj = (Color, Color.GREEN, Level.HIGH, Perm.R | Perm.W)
        """,
        """
        Color, green, high, rw = obj
        assert green is Color.GREEN and green.describe() == 'green'
        assert Color.CRIMSON is Color.RED and Color(2) is green
        assert high == 2 and high > 1 and type(high).__name__ == 'Level'
        assert type(rw).R in rw and type(rw).X not in rw
        """,
    ),
    "dataclasses_frozen_too": (
        """
        import dataclasses
        @dataclasses.dataclass(order=True)
        class D:
            a: int
            b: list = dataclasses.field(default_factory=list)
        @dataclasses.dataclass(frozen=True)
        class F:
            x: int = 1
        obj = (D(1, [2]), F(3), D)
        """,
        """
        import dataclasses
        d, f, D = obj
        assert d == D(1, [2]) and d < D(2) and D(5).b == []
        assert f.x == 3 and hash(f) == hash(type(f)(3))
        try:
            f.x = 4
        except dataclasses.FrozenInstanceError:
            pass
        else:
            raise AssertionError('frozen dataclass became mutable')
        """,
    ),
    "namedtuple_and_typing_namedtuple": (
        """
        import collections, typing
        P = collections.namedtuple('P', 'x y')
        class Q(typing.NamedTuple):
            a: int
            b: str = 'b'
        obj = (P(1, 2), Q(3))
        """,
        """
        p, q = obj
        assert p.x == 1 and p._replace(y=5) == (1, 5) and type(p).__name__ == 'P'
        assert q.a == 3 and q.b == 'b' and type(q)._fields == ('a', 'b') and type(q)(4).b == 'b'
        """,
    ),
    "typeddict": (
        """
        import typing
        class Movie(typing.TypedDict, total=False):
            title: str
            year: int
        obj = (Movie, Movie(title='x'))
        """,
        """
        Movie, m = obj
        assert m == {'title': 'x'} and Movie.__total__ is False
        assert set(Movie.__annotations__) == {'title', 'year'}
        """,
    ),
    "abc_with_virtual_subclass": (
        """
        import abc
        class Shape(abc.ABC):
            @abc.abstractmethod
            def area(self): ...
        class Square(Shape):
            def area(self):
                return 4
        class Blob:
            pass
        Shape.register(Blob)
        obj = (Shape, Square(), Blob)
        """,
        """
        Shape, sq, Blob = obj
        assert isinstance(sq, Shape) and sq.area() == 4 and issubclass(Blob, Shape)
        try:
            Shape()
        except TypeError:
            pass
        else:
            raise AssertionError('abstract class became instantiable')
        """,
    ),
    "generic_class": (
        """
        import typing
        T = typing.TypeVar('T')
        class Box(typing.Generic[T]):
            def __init__(self, item: T):
                self.item = item
        obj = Box[int](5)
        """,
        """
        Box = type(obj)
        assert obj.item == 5 and len(Box.__parameters__) == 1
        assert Box[int].__origin__ is Box
        """,
    ),
    "class_referring_to_itself": (
        """
        class Node:
            pass
        Node.default = Node
        Node.registry = {'self': Node}
        obj = Node
        """,
        "assert obj.default is obj and obj.registry['self'] is obj",
    ),
    "mutually_recursive_classes": (
        """
        class A:
            def other(self):
                return B()
        class B:
            def other(self):
                return A()
        A.partner = B
        B.partner = A
        obj = A()
        """,
        "assert type(obj.other().other()) is type(obj) and type(obj).partner.partner is type(obj)",
    ),
    "shared_references_and_cycles": (
        """
        shared = [1, 2]
        d = {'a': shared, 'b': shared}
        d['self'] = d
        obj = d
        """,
        "assert obj['a'] is obj['b'] and obj['self'] is obj",
    ),
    "init_subclass_runs_once": (
        """
        class Base:
            def __init_subclass__(cls, **kw):
                super().__init_subclass__(**kw)
                original = cls.__dict__.get('run')
                if original is not None:
                    def wrapped(self):
                        return 'w(' + original(self) + ')'
                    cls.run = wrapped
        class Impl(Base):
            def run(self):
                return 'run'
        obj = Impl()
        """,
        "assert obj.run() == 'w(run)', obj.run()",
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_class_round_trip(fresh, name):
    setup, check = CASES[name]
    fresh(setup, check, dump_args="recurse=True")


def test_byref_pickles_main_classes_by_reference(fresh):
    # In-process: copy(C) is C when by reference.
    import __main__
    import mason

    class Local:
        pass

    Local.__module__ = "__main__"
    Local.__qualname__ = "MasonTestLocal"
    __main__.MasonTestLocal = Local
    try:
        assert mason.copy(Local, byref=True) is Local
        assert mason.copy(Local, byref=False) is not Local
    finally:
        del __main__.MasonTestLocal


def test_ignore_false_rebinds_to_live_main_class(fresh):
    setup = """
    class Thing:
        def who(self):
            return 'saved'
    obj = Thing()
    """
    check = """
    import mason
    class Thing:
        def who(self):
            return 'live'
    with open('obj.pkl', 'rb') as f:
        rebound = mason.load(f)
    with open('obj.pkl', 'rb') as f:
        kept = mason.load(f, ignore=True)
    assert type(rebound) is Thing and rebound.who() == 'live'
    assert type(kept) is not Thing and kept.who() == 'saved'
    """
    fresh(setup, check)
