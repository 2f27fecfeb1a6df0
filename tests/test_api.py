"""The dill-compatible object API: options, errors, compatibility with pickle."""

import io
import pickle

import pytest
from conftest import run_python

import mason


def test_import_changes_nothing_outside_mason():
    run_python(
        """
        import copyreg, pickle, sys
        table = dict(copyreg.dispatch_table)
        pickle_attrs = {k: v for k, v in vars(pickle).items()}
        pickler_attrs = dict(vars(pickle.Pickler))
        path = list(sys.path)
        import mason
        # stdlib modules mason imports may register their own reducers
        # (re does, on first import); none may come from mason
        changed = {t: f for t, f in copyreg.dispatch_table.items() if table.get(t) is not f}
        assert not any(getattr(f, '__module__', '').startswith('mason') for f in changed.values()), changed
        assert all(table[t] is copyreg.dispatch_table[t] for t in table)
        assert {k: v for k, v in vars(pickle).items()} == pickle_attrs
        assert dict(vars(pickle.Pickler)) == pickler_attrs
        assert sys.path == path
        assert not any(name.split('.')[0] in ('dill', 'cloudpickle', 'numpy', 'torch', 'dask', 'distributed') for name in sys.modules)
        """
    )


def test_dumps_is_a_standard_pickle_stream(fresh):
    # pickle.loads reads it whenever mason is importable (its reconstructors
    # are found by name).
    fresh(
        "obj = lambda x: x * 3",
        """
        import pickle
        with open('obj.pkl', 'rb') as f:
            g = pickle.load(f)
        assert g(2) == 6
        """,
    )


def test_truncated_and_foreign_streams_raise_unpickling_error():
    data = mason.dumps({"a": [1, 2, 3]})
    with pytest.raises(mason.UnpicklingError, match="truncated"):
        mason.loads(data[:-3])
    with pytest.raises(mason.UnpicklingError):
        mason.loads(b"this is not a pickle")
    assert issubclass(mason.UnpicklingError, pickle.UnpicklingError)
    assert issubclass(mason.PicklingError, pickle.PicklingError)


def test_error_names_the_path_to_the_culprit():
    def gen():
        yield 1

    class Holder:
        pass

    holder = Holder()
    holder.gen = gen()
    with pytest.raises(mason.PicklingError) as err:
        mason.dumps({"results": [0, 1, 2, holder]})
    assert str(err.value) == "obj['results'][3].gen: cannot pickle 'generator' object"


def test_pickles_answers_without_raising():
    assert mason.pickles([1, 2])
    assert mason.pickles(lambda: 1)
    assert not mason.pickles((i for i in range(2)))
    assert mason.pickles({1: 2}, exact=True)
    assert not mason.pickles(object(), exact=True)


def test_copy_preserves_shared_references_and_cycles():
    shared = [1]
    obj = {"a": shared, "b": shared}
    obj["me"] = obj
    copied = mason.copy(obj)
    assert copied["a"] is copied["b"] and copied["me"] is copied


def test_register_user_reducer():
    class Celsius:
        def __init__(self, degrees):
            self.degrees = degrees

        def __reduce__(self):
            raise TypeError("not picklable on its own")

    @mason.register(Celsius)
    def reduce_celsius(obj):
        return Celsius, (obj.degrees * 1,)

    try:
        assert mason.copy(Celsius(21)).degrees == 21
    finally:
        from mason._reducers import USER_TABLE

        USER_TABLE.pop(Celsius)


def test_dump_and_load_file_objects():
    buffer = io.BytesIO()
    mason.dump({"x": 1}, buffer)
    buffer.seek(0)
    assert mason.load(buffer) == {"x": 1}


def test_settings_keys_and_defaults():
    assert mason.settings == {
        "protocol": pickle.DEFAULT_PROTOCOL,
        "byref": False,
        "fmode": mason.HANDLE_FMODE,
        "recurse": False,
        "ignore": False,
    }
    assert (mason.HANDLE_FMODE, mason.CONTENTS_FMODE, mason.FILE_FMODE) == (0, 1, 2)


def test_dill_call_sites_work_unchanged():
    import mason as dill

    f = dill.loads(dill.dumps(lambda x: x + 1, protocol=dill.HIGHEST_PROTOCOL, byref=False, recurse=True))
    assert f(1) == 2
    assert dill.copy([1, 2], protocol=2) == [1, 2]
