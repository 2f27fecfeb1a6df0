"""Functions by value, each dumped in one interpreter and loaded in another."""

import pytest

CASES = {
    "lambda": ("obj = lambda x, y=2: x * y", "assert obj(3) == 6 and obj.__name__ == '<lambda>'"),
    "closure": (
        """
        def make(n):
            def add(x):
                return x + n
            return add
        obj = make(10)
        """,
        "assert obj(5) == 15 and obj.__qualname__ == 'make.<locals>.add'",
    ),
    "self_referencing_closure": (
        """
        def make():
            def fact(n):
                return 1 if n <= 1 else n * fact(n - 1)
            return fact
        obj = make()
        """,
        "assert obj(5) == 120",
    ),
    "empty_cell": (
        """
        def make():
            if False:
                later = 1
            def f():
                try:
                    return later
                except NameError:
                    return 'empty'
            return f
        obj = make()
        """,
        "assert obj() == 'empty'",
    ),
    "shared_cell": (
        """
        def make():
            count = 0
            def inc():
                nonlocal count
                count += 1
                return count
            def get():
                return count
            return inc, get
        obj = make()
        """,
        "inc, get = obj\ninc(); inc()\nassert get() == 2",
    ),
    "defaults_kwdefaults_annotations_dict_doc": (
        """
        def f(a, b: int = 2, *, c: str = 'x') -> str:
            'doc of f'
            return f'{a}{b}{c}'
        f.tag = 'tagged'
        obj = f
        """,
        """
        assert obj(1) == '12x' and obj(1, c='y') == '12y'
        assert obj.__doc__ == 'doc of f' and obj.tag == 'tagged'
        assert obj.__annotations__ == {'b': int, 'c': str, 'return': str}
        assert obj.__kwdefaults__ == {'c': 'x'} and obj.__defaults__ == (2,)
        """,
    ),
    "async_function": (
        """
        async def f(x):
            return x * 2
        obj = f
        """,
        "import asyncio\nassert asyncio.run(obj(4)) == 8",
    ),
    "generator_function": (
        """
        def f(n):
            yield from range(n)
        obj = f
        """,
        "assert list(obj(3)) == [0, 1, 2]",
    ),
    "super_and___class__": (
        """
        class Base:
            def who(self):
                return 'base'
        class Child(Base):
            def who(self):
                return 'child>' + super().who() + '>' + __class__.__name__
        obj = Child()
        """,
        "assert obj.who() == 'child>base>Child'",
    ),
    "mutually_recursive_functions": (
        """
        def is_even(n):
            return True if n == 0 else is_odd(n - 1)
        def is_odd(n):
            return False if n == 0 else is_even(n - 1)
        obj = is_even
        """,
        "assert obj(10) is True and obj(7) is False",
    ),
    "builtins_and_imported_by_reference": (
        """
        import os.path, math
        from collections import OrderedDict
        obj = [len, math.sqrt, os.path.join, OrderedDict, str.upper, [].append.__self__]
        """,
        """
        import math, os.path
        from collections import OrderedDict
        assert obj[:5] == [len, math.sqrt, os.path.join, OrderedDict, str.upper]
        """,
    ),
    "module_by_reference": ("import json\nobj = json", "import json\nassert obj is json"),
    "partial_of_lambda": (
        "import functools\nobj = functools.partial(lambda a, b: a - b, 10)",
        "assert obj(3) == 7",
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_function_round_trip(fresh, name):
    setup, check = CASES[name]
    fresh(setup, check, dump_args="recurse=True")


def test_recurse_true_carries_globals_and_survives_del(fresh):
    setup = """
    factor = 7
    def helper(x):
        return x * factor
    def f(x):
        return helper(x) + 1
    obj = f
    import mason
    data = mason.dumps(f, recurse=True)
    del f, helper
    obj = mason.loads(data)
    assert obj(2) == 15
    """
    fresh(setup, "assert obj(2) == 15", dump_args="recurse=True")


def test_recurse_true_carries_only_referenced_globals():
    import mason

    namespace = {"__name__": "fake_session", "used": 3, "unused": list(range(100_000))}
    exec("def f():\n    return used\n", namespace)
    data = mason.dumps(namespace["f"], recurse=True)
    assert len(data) < 2_000
    assert mason.loads(data)() == 3


def test_recurse_false_uses_live_globals_of_main(fresh):
    # dill's default: a __main__ function refers to the globals of the
    # __main__ it is loaded into.
    setup = """
    factor = 7
    def f(x):
        return x * factor
    obj = f
    """
    check = """
    import __main__
    assert obj.__globals__ is __main__.__dict__
    factor = 3
    assert obj(2) == 6
    """
    fresh(setup, check, dump_args="recurse=False")


def test_settings_recurse_applies_to_later_picklers():
    import mason

    namespace = {"__name__": "__main__"}
    saved = dict(mason.settings)
    try:
        mason.settings["recurse"] = True
        pickler = mason.Pickler(__import__("io").BytesIO())
        assert pickler._recurse is True
    finally:
        mason.settings.clear()
        mason.settings.update(saved)
    assert mason.Pickler(__import__("io").BytesIO())._recurse is False
    del namespace


def test_code_object_round_trip_and_version_check():
    import marshal
    import sys

    import mason
    from mason import _rebuild
    from mason.errors import VersionMismatchError

    code = compile("x + 1", "<test>", "eval")
    assert eval(mason.copy(code), {"x": 1}) == 2
    other = (sys.version_info[0], sys.version_info[1] - 1)
    with pytest.raises(VersionMismatchError) as err:
        _rebuild.code_from_marshal(other, marshal.dumps(code))
    assert f"{other[0]}.{other[1]}" in str(err.value)
    assert f"{sys.version_info[0]}.{sys.version_info[1]}" in str(err.value)
