"""dill behaviours that code written against dill relies on (``import mason as dill``)."""

import os
import pickle
import textwrap
import warnings

import pytest
from conftest import run_python

import mason


def _env(tmp_path):
    return {"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}


# ---------------------------------------------------------------- namedtuple


NAMEDTUPLES = """
from collections import namedtuple
import mason as dill

Z = namedtuple("Z", ["a", "b"])
Bad = namedtuple("FakeName", ["a", "b"])
Badi = Bad(0, 1)

def check():
    copy = dill.loads(dill.dumps(Bad))
    assert copy is not Bad and copy._fields == Bad._fields == ("a", "b")
    assert copy(3, 4).b == 4
    assert tuple(dill.loads(dill.dumps(Badi))) == (0, 1)
"""


def test_namedtuple_bound_to_another_name_is_saved_by_value(tmp_path):
    (tmp_path / "nt_module.py").write_text(NAMEDTUPLES)
    run_python(
        "import nt_module\nnt_module.check()\nimport mason\nassert mason.copy(nt_module.Z) is nt_module.Z",
        cwd=tmp_path,
        env=_env(tmp_path),
    )
    run_python(NAMEDTUPLES + "\ncheck()\n", cwd=tmp_path)  # in __main__


# ---------------------------------------------------------------- bound methods


class Foo:
    def __init__(self):
        self._data = 1

        def f2(self):
            return self

        self.f2 = f2.__get__(self)

    def method(self):
        return self._data


def test_method_stored_on_its_instance_rebinds_to_the_copy():
    f = Foo()
    copy = mason.copy(f)
    assert copy is not f and copy.f2() is copy
    assert mason.copy(f.method)() == 1
    holder = {"obj": f, "bound": f.method}
    again = mason.copy(holder)
    assert again["bound"].__self__ is again["obj"]


def test_method_rebinding_between_fresh_interpreters(fresh):
    fresh(
        """
        class Foo:
            def __init__(self):
                def f2(self):
                    return self
                self.f2 = f2.__get__(self)
                self.callback = self.get
            def get(self):
                return 42
        obj = Foo()
        """,
        """
        assert obj.f2() is obj and obj.callback.__self__ is obj and obj.callback() == 42
        """,
    )


# ---------------------------------------------------------------- names dill users import


def test_warning_classes_exist_and_are_what_dill_users_catch():
    assert issubclass(mason.PicklingWarning, Warning) and issubclass(mason.PicklingWarning, pickle.PickleError)
    assert issubclass(mason.UnpicklingWarning, Warning) and issubclass(mason.UnpicklingWarning, pickle.UnpicklingError)
    assert issubclass(mason.UnpicklingWarning, mason.MasonWarning)
    assert {"PicklingWarning", "UnpicklingWarning"} <= set(mason.__all__)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mason.PicklingWarning)  # as dill's own tests do


def test_session_module_as_in_dill():
    import mason.session

    for name in ("dump_module", "load_module", "load_module_asdict", "dump_session", "load_session"):
        assert getattr(mason.session, name) is getattr(mason, name)


# ---------------------------------------------------------------- load() on a session file


def test_load_of_a_session_file_restores_and_returns_the_module(tmp_path):
    path = tmp_path / "s.pkl"
    run_python(
        f"""
        import mason
        x = 41
        def f():
            return x + 1
        mason.session.dump_module({str(path)!r})
        """,
        cwd=tmp_path,
    )
    run_python(
        f"""
        import sys, mason
        with open({str(path)!r}, 'rb') as fh:
            main = mason.load(fh)
        assert main is sys.modules['__main__'] and f() == 42
        with open({str(path)!r}, 'rb') as fh:
            assert mason.loads(fh.read()) is main
        """,
        cwd=tmp_path,
    )


def test_load_of_an_importable_module_session_returns_that_module(tmp_path):
    (tmp_path / "modstate.py").write_text("value = 1\n")
    path = tmp_path / "m.mason"
    env = _env(tmp_path)
    run_python(
        f"import mason, modstate\nmodstate.value = 2\nmason.dump_module({str(path)!r}, module='modstate')",
        cwd=tmp_path,
        env=env,
    )
    run_python(
        f"import mason, modstate\nm = mason.load(open({str(path)!r}, 'rb'))\nassert m is modstate and m.value == 2",
        cwd=tmp_path,
        env=env,
    )


def test_pickles_in_a_pipe_are_read_one_at_a_time():
    # Checking for a session file must not read into the next pickle.
    read_end, write_end = os.pipe()
    os.write(write_end, mason.dumps([1, 2]) + pickle.dumps(False, protocol=0) + b"\x89." + mason.dumps("end"))
    os.close(write_end)
    with os.fdopen(read_end, "rb", buffering=0) as raw:
        assert [mason.load(raw) for _ in range(4)] == [[1, 2], False, False, "end"]


def test_session_then_pickle_in_a_pipe(tmp_path):
    import io

    buffer = io.BytesIO()
    mason.dump_module(buffer, module=_scratch_module())
    read_end, write_end = os.pipe()
    os.write(write_end, buffer.getvalue() + mason.dumps("after"))
    os.close(write_end)
    with os.fdopen(read_end, "rb", buffering=0) as raw:
        module = mason.load(raw)
        assert module.__name__ == "dill_compat_scratch" and module.answer == 42
        assert mason.load(raw) == "after"


def _scratch_module():
    import types

    module = types.ModuleType("dill_compat_scratch")
    module.answer = 42
    return module


# ---------------------------------------------------------------- refimported and __mp_main__


def test_refimported_ignores_aliases_of_the_saved_module(tmp_path):
    # multiprocessing registers __main__ again as __mp_main__: objects found
    # there are the session's own, not imported ones.
    path = tmp_path / "s.mason"
    run_python(
        textwrap.dedent(
            f"""
            import sys, mason
            sys.modules['__mp_main__'] = sys.modules['__main__']
            from calendar import Calendar, day_name
            names = ['a', 'b']
            mason.dump_module({str(path)!r}, refimported=True)
            """
        ),
        cwd=tmp_path,
    )
    run_python(
        f"""
        import mason, calendar
        mason.load_module({str(path)!r})
        assert Calendar is calendar.Calendar and day_name is calendar.day_name and names == ['a', 'b']
        """,
        cwd=tmp_path,
    )


@pytest.mark.parametrize("fmode", [mason.HANDLE_FMODE, mason.CONTENTS_FMODE, mason.FILE_FMODE])
def test_dill_non_strict_file_handles(tmp_path, fmode):
    """dill's tests/test_file.py, non-strict, where mason and dill agree
    (mason never truncates a file when reopening a 'w' handle)."""
    path = tmp_path / "f.txt"
    path.write_text("x" * 200)
    with open(path) as f:
        text = f.read()
        dumped = mason.dumps(f, fmode=fmode)
    path.write_text("y" * 150)  # shorter
    with mason.loads(dumped) as g:
        if fmode == mason.CONTENTS_FMODE:
            assert (g.tell(), g.read()) == (150, "")
        elif fmode == mason.HANDLE_FMODE:
            assert (g.tell(), g.read()) == (0, "y" * 150)
        else:
            assert (g.tell(), g.read()) == (200, "")
            g.seek(0)
            assert g.read() == text
    path.unlink()  # gone
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mason.UnpicklingWarning)
        with mason.loads(dumped) as g:
            assert g.mode == "r"
            if fmode == mason.FILE_FMODE:
                assert (g.tell(), g.read()) == (200, "")
            else:
                assert (g.tell(), g.read()) == (0, "")
    with open(path, "w+") as f:  # a writing handle whose file is deleted
        f.write("hello")
        dumped = mason.dumps(f, fmode=fmode)
    path.unlink()
    with mason.loads(dumped) as g:
        tell = g.tell()
        g.write(" world!")
    assert (tell, path.read_text()) == ((5, "hello world!") if fmode == mason.FILE_FMODE else (0, " world!"))
