"""What no input may do to the interpreter or to the caller's objects: crash
it at the next garbage collection, stay alive after ``dumps``, or end in a
bare RecursionError; and code that reaches submodules through their parent."""

import gc
import io
import sys
import types
import warnings
import weakref

import pytest
from conftest import run_python

import mason
from mason import _rebuild

# ---------------------------------------------------------------- garbage collection


GC_SURVIVAL = r"""
import array, contextlib, gc, io, os, sys, types, warnings
import numpy as np
import mason

with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    warnings.simplefilter("ignore")
    import dill._objects
catalog = {**dill._objects.a, **dill._objects.x}

data = bytes(range(256)) * 4096  # 1 MiB
extra = {
    "memoryview(bytes)": memoryview(data),
    "memoryview(bytearray)": memoryview(bytearray(data)),
    "memoryview slice": memoryview(data)[10:5000],
    "memoryview cast": memoryview(bytearray(data)).cast("i"),
    "memoryview 2d": memoryview(bytearray(data)).cast("B", (1024, 1024)),
    "memoryview readonly": memoryview(bytearray(data)).toreadonly(),
    "memoryview strided": memoryview(data)[::3],
    "memoryview of memoryview": memoryview(memoryview(data)),
    "memoryview of numpy F order": memoryview(np.arange(12.0).reshape(3, 4).T),
    "memoryview of array": memoryview(array.array("d", range(1000))),
    "array": array.array("q", range(1000)),
    "numpy": np.arange(1000.0),
    "numpy F order": np.asfortranarray(np.ones((30, 40))),
    "numpy view": np.arange(1000.0)[::7],
    "bytes": data,
    "bytearray": bytearray(data),
    "views in a cycle": None,
}
cycle = [memoryview(data), memoryview(bytearray(data))]
cycle.append(cycle)
extra["views in a cycle"] = cycle

objects = {**catalog, **extra}
for name, obj in objects.items():
    print(name, flush=True)  # the last name printed is the one that crashed
    for protocol in range(0, mason.HIGHEST_PROTOCOL + 1):
        for out_of_band in ((False, True) if protocol >= 5 else (False,)):
            buffers = []
            try:
                kwds = {"buffer_callback": buffers.append} if out_of_band else {}
                data_ = mason.dumps(obj, protocol=protocol, **kwds)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    copy = mason.loads(data_, buffers=buffers) if out_of_band else mason.loads(data_)
            except Exception:  # refused or not loadable here: other tests say which
                pass
            copy = data_ = buffers = None
            gc.collect()

# A session of the same objects, saved and loaded, then collected.
session = types.ModuleType("gc_session")
session.__dict__.update({f"v{i}": obj for i, obj in enumerate(extra.values())})
stream = io.BytesIO()
mason.dump_module(stream, module=session, progress=False)
del session
gc.collect()
stream.seek(0)
restored = mason.load_module_asdict(stream, progress=False)
del restored
gc.collect()
print("survived", len(objects), flush=True)
"""


def test_every_supported_type_and_protocol_survives_garbage_collection(tmp_path):
    proc = run_python(GC_SURVIVAL, cwd=tmp_path, check=False, timeout=600)
    assert proc.returncode == 0, (
        f"the interpreter died (exit {proc.returncode}) after {proc.stdout.splitlines()[-1:]}:\n{proc.stderr[-2000:]}"
    )
    assert proc.stdout.splitlines()[-1].startswith("survived"), proc.stdout[-500:]


def test_memoryview_dumps_then_collect_does_not_crash(tmp_path):
    # The reported crash: ``Exception ignored in tp_clear of: <class 'memoryview'>``, then SIGSEGV.
    proc = run_python(
        """
        import gc, mason
        mason.dumps(memoryview(b"..." * 10**6), protocol=5)
        mason.dumps(memoryview(bytearray(b"..." * 10**6)), protocol=5)
        gc.collect()
        print("alive")
        """,
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 0 and "alive" in proc.stdout, proc.stderr
    assert "tp_clear" not in proc.stderr


def test_whole_buffer_memoryview_stays_out_of_band():
    data = bytearray(b"x" * 1000)
    buffers = []
    mason.dumps(memoryview(data), protocol=5, buffer_callback=buffers.append)
    assert len(buffers) == 1 and bytes(buffers[0]) == data


# ---------------------------------------------------------------- nothing kept alive


class _Obj:
    pass


def _generator():
    yield 1


@pytest.fixture
def no_gc():
    """Objects must be freed by reference counting alone, without a collection."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _freed_after(action) -> bool:
    obj = _Obj()
    ref = weakref.ref(obj)
    try:
        action(obj)
    except mason.PicklingError:
        pass
    del obj
    return ref() is None


@pytest.mark.parametrize(
    "action",
    [
        lambda o: mason.dumps(o),
        lambda o: mason.dumps([o, memoryview(b"x" * 100)], protocol=5),
        lambda o: mason.copy(o),
        lambda o: mason.pickles(o),
        lambda o: mason.dumps([o, _generator()]),  # a failed dump
        lambda o: mason.Pickler(io.BytesIO()).dump(o),
    ],
    ids=["dumps", "dumps protocol 5", "copy", "pickles", "failed dumps", "Pickler"],
)
def test_dumped_objects_are_not_kept_alive(no_gc, action):
    assert _freed_after(action)


@pytest.mark.parametrize("failing", [False, True])
def test_session_variables_are_not_kept_alive(no_gc, failing):
    def save(obj):
        module = types.ModuleType("alive_session")
        module.obj, module.f = obj, (lambda: obj)
        if failing:
            module.gen = _generator()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", mason.SkippedVariableWarning)
            mason.dump_module(io.BytesIO(), module=module, progress=False)

    assert _freed_after(save)


_SESSION = """
class K:
    def method(self):
        return helper(self)

def helper(x):
    return x

square = lambda x: x * x
data = [{"n": i} for i in range(100)]
"""


def _session_file(tmp_path):
    module = types.ModuleType("gc_session")  # not importable: its functions and class are saved by value
    exec(_SESSION, module.__dict__)
    path = tmp_path / "session.mason"
    mason.dump_module(path, module=module, progress=False)
    return path


def test_a_session_load_leaves_no_cyclic_garbage(tmp_path):
    """The loader, its unpickler and their memo (every object the load
    built, the segments it read) are freed by reference counting as the
    load returns, not left for the collector."""
    path = _session_file(tmp_path)
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        loaded = mason.load_module_asdict(path)
        found = gc.collect()
        kinds = sorted({type(obj).__name__ for obj in gc.garbage})
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert found == 0, kinds
    assert loaded["K"]().method() is not None and loaded["square"](3) == 9


@pytest.mark.skipif(sys.version_info >= (3, 14), reason="3.14's incremental collector has no generation 2 to look in")
def test_a_complete_load_leaves_what_it_built_to_the_oldest_generation(tmp_path):
    path = _session_file(tmp_path)
    gc.collect()
    loaded = mason.load_module_asdict(path)
    oldest = {id(obj) for obj in gc.get_objects(generation=2)}
    built = [loaded["data"], loaded["K"], loaded["helper"], loaded["square"]]
    assert all(gc.is_tracked(obj) and id(obj) in oldest for obj in built)


def test_objects_the_program_froze_stay_frozen_through_a_load(tmp_path):
    path = _session_file(tmp_path)
    mine = [[]]
    gc.freeze()
    try:
        assert all(obj is not mine for obj in gc.get_objects())  # frozen: no generation holds it
        mason.load_module_asdict(path)
        assert all(obj is not mine for obj in gc.get_objects())
    finally:
        gc.unfreeze()
    assert gc.isenabled()


def test_loading_again_and_again_does_not_pile_up_garbage(tmp_path):
    """What loads hand to the oldest generation is counted: a program that
    does little but load (a class of each load replaced by the next one's:
    cycles) still gets the full collections that free them."""
    run_python(
        f"""
        import gc, types, weakref, mason
        path = {str(tmp_path / "reloaded.mason")!r}
        module = types.ModuleType("reloaded")
        exec("class K:\\n    pass\\nitems = [[i] for i in range(2000)]\\n", module.__dict__)
        mason.dump_module(path, module=module, progress=False)
        first = weakref.ref(mason.load_module_asdict(path)["K"])
        full = gc.get_stats()[-1]["collections"]
        for _ in range(300):
            mason.load_module_asdict(path)
        assert gc.get_stats()[-1]["collections"] > full
        assert first() is None
        """
    )


# ---------------------------------------------------------------- recursion


class _Node:
    def __init__(self, nxt):
        self.nxt = nxt


def _chain(n):
    node = None
    for _ in range(n):
        node = _Node(node)
    return node


def _nested_lists(n):
    value = []
    for _ in range(n):
        value = [value]
    return value


@pytest.mark.parametrize("make", [_chain, _nested_lists], ids=["objects", "lists"])
def test_too_deep_graph_is_a_picklingerror_that_says_what_to_do(make):
    deep = make(sys.getrecursionlimit() * 5)
    for dump in (mason.dumps, lambda obj: mason.Pickler(io.BytesIO()).dump(obj)):
        with pytest.raises(mason.PicklingError) as caught:
            dump(deep)
        message = str(caught.value)
        assert "nested too deeply" in message and "sys.setrecursionlimit" in message and "flatter" in message
        assert not isinstance(caught.value, RecursionError)
    assert mason.pickles(deep) is False


def test_too_deep_session_variable_names_the_variable():
    module = types.ModuleType("deep_session")
    module.deep, module.fine = _nested_lists(sys.getrecursionlimit() * 5), 1
    with pytest.warns(mason.SkippedVariableWarning, match=r"deep: nested too deeply.*setrecursionlimit"):
        mason.dump_module(io.BytesIO(), module=module, progress=False)
    with pytest.raises(mason.PicklingError, match="deep: nested too deeply"):
        mason.dump_module(io.BytesIO(), module=module, progress=False, on_error="raise")


# ---------------------------------------------------------------- abc decorators


def _make(cls):
    return cls


def test_abstract_classmethod_and_staticmethod_pickle():
    import abc

    make = _make  # importable by name: the copy wraps the very function
    for decorator in (abc.abstractclassmethod, abc.abstractstaticmethod):
        copy = mason.copy(decorator(make))
        assert type(copy) is decorator and copy.__func__ is make and copy.__isabstractmethod__
    copy = mason.copy(abc.abstractproperty(make))
    assert type(copy) is abc.abstractproperty and copy.fget is make


def test_abstract_decorators_in_a_class_between_fresh_interpreters(fresh):
    fresh(
        """
        import abc
        class Base(abc.ABC):
            @abc.abstractclassmethod
            def make(cls): ...
            @abc.abstractstaticmethod
            def helper(): ...
        class Done(Base):
            @classmethod
            def make(cls):
                return cls()
            @staticmethod
            def helper():
                return 7
        obj = (Base, Done)
        """,
        """
        import abc
        Base, Done = obj
        assert Base.__abstractmethods__ == frozenset({'make', 'helper'})
        assert isinstance(vars(Base)['make'], abc.abstractclassmethod)
        assert isinstance(vars(Base)['helper'], abc.abstractstaticmethod)
        assert isinstance(Done.make(), Done) and Done.helper() == 7
        try:
            Base()
        except TypeError:
            pass
        else:
            raise AssertionError('abstract class instantiated')
        """,
    )


# ---------------------------------------------------------------- submodules through their parent


def test_function_reaching_a_submodule_through_its_parent_in_a_session(tmp_path):
    path = tmp_path / "s.mason"
    run_python(
        f"""
        import mason
        import xml.etree.ElementTree
        def tag(text):
            return xml.etree.ElementTree.fromstring(text).tag
        mason.dump_module({str(path)!r})
        """,
        cwd=tmp_path,
    )
    run_python(
        f"""
        import sys, mason
        assert 'xml.etree' not in sys.modules  # nothing imported it here
        mason.load_module({str(path)!r})
        assert tag('<root/>') == 'root'
        """,
        cwd=tmp_path,
    )


def test_function_reaching_a_submodule_through_its_parent_with_recurse(fresh):
    fresh(
        """
        import xml.etree.ElementTree
        def obj(text):
            return xml.etree.ElementTree.fromstring(text).tag
        """,
        """
        import sys
        assert obj('<a/>') == 'a'
        """,
        dump_args="recurse=True",
    )


def test_only_submodules_the_code_names_are_imported():
    import xml.dom.minidom  # noqa: F401 - loaded, but not named by the code
    import xml.etree.ElementTree  # noqa: F401

    from mason._reducers.modules import reachable_submodules

    assert reachable_submodules(sys.modules["xml"], {"etree", "ElementTree", "parse"}) == (
        "xml.etree",
        "xml.etree.ElementTree",
    )
    assert reachable_submodules(sys.modules["xml"], {"ElementTree"}) == ()


def test_import_package_refuses_what_it_is_not_for():
    for name, subs in [(1, ()), ("xml", ["xml.etree"]), ("xml", ("os",)), ("xml", ("xml.",)), ("__main__", ())]:
        with pytest.raises(mason.UnpicklingError, match="damaged package reference"):
            _rebuild.import_package(name, subs)


def test_import_package_warns_about_a_submodule_missing_here():
    with pytest.warns(mason.UnpicklingWarning, match="xml.no_such_submodule"):
        module = _rebuild.import_package("xml", ("xml.no_such_submodule",))
    assert module is sys.modules["xml"]
