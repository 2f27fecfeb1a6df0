"""Session semantics: each saved in one fresh interpreter, restored in another."""

import os
import stat
import sys
import textwrap

import pytest
from conftest import run_python


@pytest.fixture
def session(tmp_path):
    """``session(save, load)``: run ``save`` as __main__ of one interpreter,
    then ``load`` in another; both with cwd=tmp_path and ``PATH`` bound to
    the session file name.  Returns the second process (for stdout)."""

    def run(save: str, load: str, env=None):
        path = tmp_path / "s.mason"
        prelude = f"import mason\nPATH = {str(path)!r}\n"
        run_python(prelude + textwrap.dedent(save), cwd=tmp_path, env=env)
        return run_python(prelude + textwrap.dedent(load), cwd=tmp_path, env=env)

    return run


def test_main_session_values_functions_classes(session):
    session(
        """
        import numpy as np
        x = 42
        data = [1, 2, 3]
        alias = data
        arr = np.arange(6.0).reshape(2, 3)
        square = lambda v: v * v
        def scaled(items):
            return [i * x for i in items]
        def make_counter():
            count = 0
            def bump():
                nonlocal count
                count += 1
                return count
            return bump
        counter = make_counter()
        counter()
        class Model:
            def __init__(self, w):
                self.w = w
            def predict(self, v):
                return v * self.w
        model = Model(3)
        mason.dump_module(PATH)
        """,
        """
        assert mason.load_module(PATH) is None
        assert x == 42 and alias is data and data == [1, 2, 3]
        assert arr.shape == (2, 3) and arr[1, 2] == 5.0
        assert square(4) == 16 and scaled([1]) == [42] and counter() == 2
        assert isinstance(model, Model) and model.predict(2) == 6
        import numpy
        assert np is numpy
        """,
    )


def test_imported_names_by_reference(session):
    session(
        """
        import os.path
        import xml.dom.minidom as dom
        from calendar import isleap, day_name
        from cmath import log as complex_log
        mason.dump_module(PATH)
        info = mason.inspect(PATH)
        stored = {v['name']: v['stored'] for v in info.variables}
        # day_name is an instance, found as the public calendar.day_name
        assert stored['dom'] == stored['isleap'] == stored['complex_log'] == stored['day_name'] == 'reference', stored
        mason.dump_module(PATH, refimported=True)
        stored = {v['name']: v['stored'] for v in mason.inspect(PATH).variables}
        assert stored['day_name'] == 'reference', stored
        """,
        """
        mason.load_module(PATH)
        import calendar, cmath, sys, xml.dom.minidom
        assert dom is xml.dom.minidom and isleap is calendar.isleap
        assert complex_log is cmath.log and day_name is calendar.day_name
        assert os.path is sys.modules['os.path']
        """,
    )


def test_functions_see_live_globals_and_selfref(session):
    session(
        """
        import __main__
        factor = 2
        def times(v):
            return v * factor
        selfref = __main__
        mason.dump_module(PATH)
        """,
        """
        import __main__
        mason.load_module(PATH)
        assert times.__globals__ is __main__.__dict__
        assert times(5) == 10
        factor = 10
        assert times(5) == 50
        assert selfref is __main__
        """,
    )


def _write_module(tmp_path, name="mymod"):
    (tmp_path / f"{name}.py").write_text("value = 1\ndef get():\n    return value\n")


def test_importable_module_updated_in_place(tmp_path, session):
    _write_module(tmp_path)
    session(
        """
        import mymod
        mymod.value = 99
        mymod.extra = lambda: mymod.get() + 1
        mason.dump_module(PATH, module='mymod')
        """,
        """
        import mymod
        assert mymod.value == 1
        result = mason.load_module(PATH)
        assert result is mymod and mymod.value == 99 and mymod.get() == 99 and mymod.extra() == 100
        assert mymod.get.__globals__ is mymod.__dict__
        """,
    )


def test_dynamic_module_comes_back_as_new_unregistered_module(session):
    session(
        """
        import types
        mod = types.ModuleType('scratchpad')
        exec('a = 5\\ndef twice():\\n    return a * 2', mod.__dict__)
        mason.dump_module(PATH, module=mod)
        """,
        """
        import sys, types
        mod = mason.load_module(PATH)
        assert isinstance(mod, types.ModuleType) and mod.__name__ == 'scratchpad'
        assert 'scratchpad' not in sys.modules
        assert mod.twice() == 10 and mod.twice.__globals__ is mod.__dict__
        """,
    )


def test_loading_into_other_module_raises_value_error(tmp_path, session):
    _write_module(tmp_path)
    session(
        "x = 1\nmason.dump_module(PATH)",
        """
        import mymod
        try:
            mason.load_module(PATH, module=mymod)
        except ValueError as exc:
            assert '__main__' in str(exc) and 'mymod' in str(exc), exc
        else:
            raise AssertionError('no ValueError')
        """,
    )


def test_load_module_asdict(session):
    session(
        """
        base = 3
        def plus(v):
            return v + base
        mason.dump_module(PATH)
        """,
        """
        import sys
        try:
            import xxhash  # mason's own, for the checksums, when installed
        except ImportError:
            pass
        before = set(sys.modules)
        ns = mason.load_module_asdict(PATH)
        assert 'plus' not in globals() and set(sys.modules) == before
        assert ns['__session__'] == PATH and ns['base'] == 3
        assert ns['plus'].__globals__ is ns and ns['plus'](1) == 4
        ns['base'] = 10
        assert ns['plus'](1) == 11
        mine = 'kept'
        updated = mason.load_module_asdict(PATH, update=True)
        assert updated['mine'] == 'kept' and updated['base'] == 3
        """,
    )


def test_skip_and_report_unpicklable_variables(session):
    session(
        """
        import socket, sqlite3, warnings
        gen = (i for i in range(3))
        sock = socket.socket()
        conn = sqlite3.connect(':memory:')
        results = {'runs': [1, 2, 3, {'gen': gen}]}
        shared = [1, 2]
        a, b = shared, shared
        after = 'fine'
        class Point:
            pass
        p = Point()          # after the skipped 'gen': still an instance of Point
        zz_shared = shared   # sorted after every skipped variable
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            mason.dump_module(PATH, exclude=['caught', 'warnings'])
        messages = [str(w.message) for w in caught if issubclass(w.category, mason.SkippedVariableWarning)]
        assert any("gen: cannot pickle 'generator' object" in m for m in messages), messages
        assert any("results['runs'][3]['gen']: cannot pickle 'generator'" in m for m in messages), messages
        assert any(m.startswith('not saved: sock') for m in messages), messages
        assert any(m.startswith('not saved: conn') for m in messages), messages
        skipped = {s['name']: s for s in mason.inspect(PATH).skipped}
        assert set(skipped) == {'gen', 'sock', 'conn', 'results'}, skipped
        assert skipped['gen']['type'] == 'generator'
        try:
            mason.dump_module(PATH + '.strict', on_error='raise')
        except mason.PicklingError as exc:
            assert 'conn' in str(exc) or 'gen' in str(exc), exc
        else:
            raise AssertionError('strict save did not raise')
        import os
        assert not os.path.exists(PATH + '.strict')
        sock.close()
        """,
        """
        mason.load_module(PATH)
        assert a is b is zz_shared and a == [1, 2] and after == 'fine'
        assert type(p) is Point
        for name in ('gen', 'sock', 'conn', 'results'):
            assert name not in globals(), name
        """,
    )


def test_filters(session):
    session(
        """
        import re
        keep_me = 1
        _temp_a = 2
        debug_b = 3
        scratch_c = 4
        big = list(range(10))
        odd = 5
        mason.dump_module(PATH, exclude=['_temp*', re.compile('^scratch'), list, lambda n, o: o == 5, 'debug_b', 'PATH'])
        assert [v['name'] for v in mason.inspect(PATH).variables if not v['name'].startswith('__')] == ['keep_me', 'mason', 're']
        mason.dump_module(PATH, include=['keep_me', 'odd'])
        assert [v['name'] for v in mason.inspect(PATH).variables] == ['keep_me', 'odd']
        """,
        """
        mason.load_module(PATH)
        assert keep_me == 1 and odd == 5 and 'big' not in globals()
        """,
    )


def test_bad_filter_rule_is_a_clear_error():
    import mason

    with pytest.raises(TypeError, match="filter rule"):
        mason.dump_module(__import__("io").BytesIO(), exclude=[3.5])


def _trap_session(marker) -> str:
    """A session whose variable ``trap`` creates ``marker`` when unpickled."""
    return f"""
        class Trap:
            def __reduce__(self):
                return (open, ({str(marker)!r}, 'w'))
        trap = Trap()
        mason.dump_module(PATH)
        """


def test_inspect_runs_nothing(tmp_path, session):
    marker = tmp_path / "marker"
    session(
        _trap_session(marker),
        f"""
        import os
        info = mason.inspect(PATH)
        assert 'trap' in info.names() and not os.path.exists({str(marker)!r})
        ns = mason.load_module_asdict(PATH, names=['Trap'])
        assert not os.path.exists({str(marker)!r}), 'names= loaded a variable that comes after'
        """,
    )


def test_names_and_lenient_loading_of_missing_package(tmp_path, session):
    pkg = tmp_path / "vanishing"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("class Thing:\n    def __init__(self, v):\n        self.v = v\n")
    session(
        """
        from vanishing import Thing
        alpha = [1, 2]
        thing = Thing(alpha)
        zeta = alpha
        mason.dump_module(PATH)
        """,
        """
        import os, shutil, sys, warnings
        shutil.rmtree('vanishing')
        sys.path_importer_cache.clear()
        ns = mason.load_module_asdict(PATH, names=['alpha'])
        assert ns['alpha'] == [1, 2] and 'zeta' not in ns
        try:
            mason.load_module(PATH, on_error='raise')
        except mason.UnpicklingError as exc:
            assert 'vanishing' in str(exc)
        else:
            raise AssertionError('missing package did not fail')
        assert 'alpha' not in globals()  # nothing half-applied
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            mason.load_module(PATH, on_error='warn')
        assert alpha == [1, 2] and zeta is alpha and 'thing' not in globals()
        text = ' '.join(str(w.message) for w in caught)
        assert 'thing' in text and 'vanishing' in text, text
        """,
    )


def test_failed_load_leaves_module_untouched(session):
    session(
        """
        import os
        def boom():
            if os.environ.get('MASON_BOOM'):
                raise RuntimeError('cannot rebuild')
            return 'ok'
        class Fragile:
            def __reduce__(self):
                return (boom, ())
        g = globals()
        for i in range(1000):
            g[f'v{i:04d}'] = i
        g['v0500'] = Fragile()
        mason.dump_module(PATH)
        """,
        """
        import os
        os.environ['MASON_BOOM'] = '1'
        before = dict(globals())
        try:
            mason.load_module(PATH, on_error='raise')
        except mason.UnpicklingError as exc:
            assert 'v0500' in str(exc) and 'cannot rebuild' in str(exc), exc
        else:
            raise AssertionError('load did not fail')
        after = dict(globals())
        del after['before']
        assert after == before and 'v0000' not in after
        """,
    )


def test_environment_mismatch_warns_before_loading(tmp_path, session):
    fake = tmp_path / "fakepkg"
    fake.mkdir()
    (fake / "__init__.py").write_text("__version__ = '1.0'\nclass Widget:\n    pass\n")
    session(
        """
        import fakepkg
        w = fakepkg.Widget()
        mason.dump_module(PATH)
        assert mason.inspect(PATH).environment['packages'] == {'fakepkg': '1.0'}
        """,
        """
        import os, warnings
        # Versions are read from installed metadata, never by importing a package the file names.
        os.mkdir('fakepkg-2.0.dist-info')
        with open('fakepkg-2.0.dist-info/METADATA', 'w') as f:
            f.write("Metadata-Version: 2.1\\nName: fakepkg\\nVersion: 2.0\\n")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            mason.load_module(PATH)
        text = ' '.join(str(w.message) for w in caught if issubclass(w.category, mason.EnvironmentMismatchWarning))
        assert 'fakepkg 1.0' in text and '2.0' in text, text
        """,
    )


def test_python_version_mismatch_is_named():
    import warnings

    from mason import _load

    other = [sys.version_info[0], sys.version_info[1] + 1, 0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _load._check_environment({"python": other, "packages": {}})
    assert f"Python {other[0]}.{other[1]}" in str(caught[0].message)


def test_atomic_private_writes_and_symlinks(tmp_path):
    import io

    import mason

    path = tmp_path / "s.mason"
    mason.dump_module(path, module=_scratch_module(a=1))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    good = path.read_bytes()
    bad = _scratch_module(gen=(i for i in range(2)))
    with pytest.raises(mason.PicklingError):
        mason.dump_module(path, module=bad, on_error="raise")
    assert path.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["s.mason"]
    link = tmp_path / "link.mason"
    link.symlink_to(path)
    with pytest.raises(OSError):
        mason.dump_module(link, module=_scratch_module(a=2))
    with pytest.raises(OSError):
        mason.load_module_asdict(link)
    assert path.read_bytes() == good
    del io


def _scratch_module(**values):
    import types

    mod = types.ModuleType("scratch")
    mod.__dict__.update(values)
    return mod


def test_corrupt_file_is_refused_before_anything_runs(tmp_path, session):
    marker = tmp_path / "marker"
    session(
        _trap_session(marker),
        f"""
        import os
        data = open(PATH, 'rb').read()
        for cut in (len(data) // 2, len(data) - 1, 10):
            open(PATH + '.cut', 'wb').write(data[:cut])
            try:
                mason.load_module(PATH + '.cut')
            except mason.CorruptSessionError:
                pass
            else:
                raise AssertionError(f'truncated at {{cut}} loaded')
        flipped = bytearray(data)
        flipped[len(data) // 3] ^= 0x40
        open(PATH + '.flip', 'wb').write(flipped)
        try:
            mason.load_module(PATH + '.flip')
        except mason.CorruptSessionError as exc:
            assert str(exc)
        else:
            raise AssertionError('bit flip loaded')
        assert not os.path.exists({str(marker)!r})
        """,
    )


def test_foreign_file_is_refused(tmp_path):
    import mason

    path = tmp_path / "foreign.pkl"
    import pickle

    path.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(mason.CorruptSessionError, match="not a mason file"):
        mason.load_module(path)


def test_a_package_whose_import_name_is_not_its_distributions_is_checked_after_it_loads(tmp_path, session):
    # scikit-learn is imported as sklearn and ships no top_level.txt: its
    # version is known only once imported.  The load imports it, then checks.
    pkg = tmp_path / "fakeimport"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("__version__ = '1.0'\nclass Widget:\n    pass\n")
    (tmp_path / "fake_distribution-1.0.dist-info").mkdir()
    save = """
        import fakeimport
        w = fakeimport.Widget()
        mason.dump_module(PATH)
        assert mason.inspect(PATH).environment['packages'] == {'fakeimport': '1.0'}
        """
    session(
        save,
        """
        import sys, warnings
        with warnings.catch_warnings():
            warnings.simplefilter('error')  # the same version: no warning at all
            mason.load_module(PATH)
        assert type(w).__module__ == 'fakeimport' and 'fakeimport' in sys.modules
        """,
    )
    (pkg / "__init__.py").write_text("__version__ = '2.0'\nclass Widget:\n    pass\n")
    prelude = f"import mason\nPATH = {str(tmp_path / 's.mason')!r}\n"
    check = """
        import warnings
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            mason.load_module(PATH)
        text = ' '.join(str(w.message) for w in caught if issubclass(w.category, mason.EnvironmentMismatchWarning))
        assert 'fakeimport 1.0 (installed here: 2.0)' in text, text
        """
    run_python(prelude + textwrap.dedent(check), cwd=tmp_path)
