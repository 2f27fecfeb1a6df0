"""Imported objects: a session variable that is the very object a public
attribute of another module holds (``from sympy import *`` gives ``CC``)
is saved as that module and name, and comes back as the same object."""

import os
import sys
import textwrap
import types

import pytest
from conftest import run_python

import mason
from mason import _imported, _namespace, _rebuild


def roundtrip(tmp_path, save: str, load: str):
    path = tmp_path / "s.mason"
    prelude = f"import mason, warnings\nPATH = {str(path)!r}\n"
    # The helper modules of a test first, then mason's own path.
    env = {"MPLBACKEND": "Agg", "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    run_python(prelude + textwrap.dedent(save), cwd=tmp_path, env=env)
    return run_python(prelude + textwrap.dedent(load), cwd=tmp_path, env=env, check=False)


def test_sympy_star_import_keeps_identity(tmp_path):
    proc = roundtrip(
        tmp_path,
        """
        from sympy import *
        x = Symbol('x')
        expr = sin(x) * pi
        domains = [CC, RR]  # inside another variable: references too
        mason.dump_module(PATH)
        by_name = {v['name']: v for v in mason.inspect(PATH).variables}
        assert by_name['CC']['stored'] == 'reference' and by_name['CC']['size'] < 200, by_name['CC']
        assert by_name['CC']['type'] == 'sympy.polys.domains.complexfield.ComplexField'
        assert by_name['expr']['stored'] == 'value'
        """,
        """
        mason.load_module(PATH)
        import sympy
        assert CC is sympy.CC and RR is sympy.RR and S is sympy.S and pi is sympy.pi
        assert domains[0] is sympy.CC and domains[1] is sympy.RR
        assert expr == sympy.sin(sympy.Symbol('x')) * sympy.pi
        """,
    )
    assert proc.returncode == 0, proc.stderr


def test_pylab_star_import_keeps_identity_and_rcparams_changes(tmp_path):
    proc = roundtrip(
        tmp_path,
        """
        from pylab import *
        rcParams['lines.linewidth'] = 3.5
        mason.dump_module(PATH)
        info = mason.inspect(PATH)
        by_value = sorted(v['name'] for v in info.variables if v['stored'] == 'value')
        # What is left by value is plain data (numbers, flags, None).
        assert all(v['type'] in ('int', 'float', 'bool', 'NoneType', 'dict') for v in info.variables
                   if v['stored'] == 'value'), by_value
        """,
        """
        mason.load_module(PATH)
        import matplotlib, numpy, numpy.random
        assert rcParamsOrig is matplotlib.rcParamsOrig and rcParamsDefault is matplotlib.rcParamsDefault
        assert rcParams is matplotlib.rcParams and rcParams['lines.linewidth'] == 3.5
        assert mgrid is numpy.mgrid and r_ is numpy.r_ and typecodes is numpy.typecodes
        assert rand is numpy.random.rand and True_ is numpy.True_
        """,
    )
    assert proc.returncode == 0, proc.stderr


def test_numpy_objects_bound_to_other_names(tmp_path):
    proc = roundtrip(
        tmp_path,
        """
        import numpy as np
        codes = np.typecodes            # a dict, under another name
        grid = np.mgrid
        mine = {'a': [1, 2]}            # the user's own data stays a copy
        mason.dump_module(PATH)
        stored = {v['name']: v['stored'] for v in mason.inspect(PATH).variables}
        assert stored['codes'] == stored['grid'] == 'reference' and stored['mine'] == 'value', stored
        """,
        """
        mason.load_module(PATH)
        import numpy
        assert codes is numpy.typecodes and grid is numpy.mgrid and mine == {'a': [1, 2]}
        """,
    )
    assert proc.returncode == 0, proc.stderr


def test_attribute_gone_at_load_time_names_the_variable(tmp_path):
    (tmp_path / "helper.py").write_text("class Config:\n    pass\nSETTINGS = Config()\n")
    proc = roundtrip(
        tmp_path,
        """
        from helper import SETTINGS
        kept = 1
        mason.dump_module(PATH)
        """,
        """
        open('helper.py', 'w').write('class Config:\\n    pass\\n')  # SETTINGS removed
        try:
            mason.load_module(PATH, on_error='raise')
        except mason.UnpicklingError as exc:
            print(exc)
        else:
            raise AssertionError('loaded a reference to a missing attribute')
        with warnings.catch_warnings(record=True) as caught:  # lenient (the default): the rest loads
            warnings.simplefilter('always')
            mason.load_module(PATH)
        assert kept == 1 and 'SETTINGS' not in globals()
        [failures] = [w.message.failures for w in caught if isinstance(w.message, mason.SkippedVariableWarning)]
        assert "no attribute 'SETTINGS'" in failures['SETTINGS'], failures
        """,
    )
    assert proc.returncode == 0, proc.stderr
    message = proc.stdout
    assert "'SETTINGS'" in message and "module 'helper' has no attribute 'SETTINGS'" in message, message


# ---------------------------------------------------------------- save side, in process


@pytest.fixture
def modules(monkeypatch):
    """``modules(name, **attrs)``: a module registered in sys.modules for the test."""

    def make(name, **attrs):
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
        monkeypatch.setitem(sys.modules, name, module)
        return module

    return make


def _stored(namespace_module):
    return {
        e.name: (e.stored, getattr(e.saved, "module", None), getattr(e.saved, "name", None))
        for e in _namespace.entries(namespace_module, lambda name, value: not name.startswith("__"), False)
    }


class _Thing:
    pass


def test_own_name_in_the_shortest_path_then_any_name_in_a_package(modules):
    thing, other = _Thing(), _Thing()
    _Thing.__module__ = "fakepkg.core.things"
    try:
        modules("fakepkg", THING=thing, ALIAS=thing, other_b=other, other_a=other)
        modules("fakepkg.core", THING=thing)
        modules("fakepkg.core.things", THING=thing, other_a=other)
        session = modules("fakesession", THING=thing, ALIAS=thing, renamed=thing, other=other)
        stored = _stored(session)
    finally:
        _Thing.__module__ = __name__
    assert stored["THING"] == ("reference", "fakepkg", "THING")
    assert stored["ALIAS"] == ("reference", "fakepkg", "ALIAS")
    assert stored["renamed"] == ("reference", "fakepkg", "ALIAS")  # the first name, sorted
    assert stored["other"] == ("reference", "fakepkg", "other_a")


def test_literals_private_names_and_own_objects_stay_by_value(modules):
    own_obj = _Thing()
    modules("fakelib", PI=3.14, NAME="text", EMPTY=(), _hidden=[1], mine=None)
    session = modules("fakesession2", PI=3.14, NAME="text", EMPTY=(), hidden=None)
    lib = sys.modules["fakelib"]
    session.hidden = lib._hidden  # found only under a private name
    session.lib = lib
    _Thing.__module__ = "fakesession2"
    try:
        lib.mine = session.own_obj = own_obj  # the session's own object, pushed into a module
        stored = _stored(session)
    finally:
        _Thing.__module__ = __name__
    for name in ("PI", "NAME", "EMPTY", "hidden", "own_obj"):
        assert stored[name][0] == "value", (name, stored[name])


def test_a_namespace_without_imports_searches_no_module():
    assert not _imported.PublicHomes([1, "a", [1], {}], "__main__").searches()


# ---------------------------------------------------------------- the reconstructor


def test_module_attribute_returns_the_attribute():
    import calendar

    assert _rebuild.module_attribute("calendar", "day_name") is calendar.day_name


@pytest.mark.parametrize(
    "module, name",
    [
        (b"os", "sep"),
        ("os", 1),
        ("os", "__dict__"),
        ("os", "_exit"),
        ("os", "path.sep"),
        ("os", ""),
        ("__main__", "x"),
        ("os._x", "y"),
        ("", "x"),
        ("os..path", "x"),
    ],
)
def test_module_attribute_refuses_what_it_is_not_for(module, name):
    with pytest.raises(mason.UnpicklingError, match="damaged module attribute reference"):
        _rebuild.module_attribute(module, name)


def test_module_attribute_missing_names_module_and_attribute():
    with pytest.raises(mason.UnpicklingError, match="module 'calendar' has no attribute 'no_such_thing'"):
        _rebuild.module_attribute("calendar", "no_such_thing")
