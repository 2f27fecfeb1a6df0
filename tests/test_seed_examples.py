"""The usage examples of dill's session documentation, run as written with
``import mason as dill``.

Each example saves in one fresh interpreter and, where the example says
"later, in a new Python session", restores in another.  The one recipe that
cannot work in any Python (replacing ``__main__.__dict__``) is shown to fail,
next to the ``exclude=`` rules that give its intended result.
"""

from __future__ import annotations

import textwrap

import pytest
from conftest import run_python


def _run(code: str, tmp_path, **kwds):
    return run_python(textwrap.dedent(code), cwd=tmp_path, **kwds)


# ---------------------------------------------------------------- interactive session


SEED_INTERACTIVE_SAVE = """
import dill

# During interactive session, define some variables and functions
x = 42
data = [1, 2, 3, 4, 5]

def process_data(items):
    return [item * 2 for item in items]

class DataProcessor:
    def __init__(self, multiplier=1):
        self.multiplier = multiplier

    def process(self, data):
        return [x * self.multiplier for x in data]

processor = DataProcessor(3)

# Save entire session
dill.dump_session('my_analysis_session.pkl')
"""

SEED_INTERACTIVE_LOAD = """
# Later, in a new Python session:
import dill
dill.load_session('my_analysis_session.pkl')

# All variables and functions are now available
result = process_data(data)  # [2, 4, 6, 8, 10]
processed = processor.process(data)  # [3, 6, 9, 12, 15]
"""


def _as_mason(seed: str) -> str:
    return seed.replace("import dill", "import mason as dill")


def test_interactive_session_persistence_as_written(tmp_path):
    saved = _run(_as_mason(SEED_INTERACTIVE_SAVE), tmp_path)
    # The deprecated names warn with PendingDeprecationWarning, which Python
    # ignores by default: the example runs silently.
    assert saved.stderr == ""
    assert (tmp_path / "my_analysis_session.pkl").stat().st_size > 0
    loaded = _run(
        _as_mason(SEED_INTERACTIVE_LOAD)
        + """
assert result == [2, 4, 6, 8, 10], result
assert processed == [3, 6, 9, 12, 15], processed
assert x == 42 and data == [1, 2, 3, 4, 5]
assert type(processor) is DataProcessor and processor.multiplier == 3
assert DataProcessor.__module__ == '__main__' and process_data.__module__ == '__main__'
assert process_data.__globals__ is globals()
print('ok')
""",
        tmp_path,
    )
    assert loaded.stdout == "ok\n"
    assert loaded.stderr == ""


def test_interactive_session_deprecated_aliases_warn(tmp_path):
    # Same example, with the warnings recorded instead of ignored.  Recorded
    # inside a function, so the session saves no warning objects.
    record = """
import warnings

def _recorded(call, *args):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        call(*args)
    return [(w.category, str(w.message), w.filename) for w in caught]
"""
    save = _as_mason(SEED_INTERACTIVE_SAVE).replace(
        "dill.dump_session('my_analysis_session.pkl')",
        "_saved_warnings = _recorded(dill.dump_session, 'my_analysis_session.pkl')",
    )
    _run(
        record
        + save
        + """
assert [w[0] for w in _saved_warnings] == [PendingDeprecationWarning], _saved_warnings
assert 'dump_module' in _saved_warnings[0][1]
assert _saved_warnings[0][2] == '<string>', _saved_warnings  # blames the caller
""",
        tmp_path,
    )
    load = _as_mason(SEED_INTERACTIVE_LOAD).replace(
        "dill.load_session('my_analysis_session.pkl')",
        "_load_warnings = _recorded(dill.load_session, 'my_analysis_session.pkl')",
    )
    _run(
        record
        + load
        + """
assert [w[0] for w in _load_warnings] == [PendingDeprecationWarning], _load_warnings
assert 'load_module' in _load_warnings[0][1]
assert _load_warnings[0][2] == '<string>', _load_warnings
assert result == [2, 4, 6, 8, 10] and processed == [3, 6, 9, 12, 15]
""",
        tmp_path,
    )


# ---------------------------------------------------------------- module backup and restore


MYMODULE = '''
"""A module under development."""
factor = 2
calls = 0

def some_function(x):
    global calls
    calls += 1
    return x * factor
'''


def test_module_backup_and_restore(tmp_path):
    (tmp_path / "mymodule.py").write_text(MYMODULE)
    _run(
        """
import mason as dill
import mymodule

mymodule.some_function(1)  # state worth keeping: calls == 1
original_function = mymodule.some_function

# Save specific module
dill.dump_module('mymodule_backup.pkl', module=mymodule)

# Modify module during development
mymodule.some_function = lambda x: x * 10
mymodule.factor = 100
assert mymodule.some_function(3) == 30

# Restore original module state
original_module = dill.load_module('mymodule_backup.pkl')

import sys
assert original_module is mymodule is sys.modules['mymodule']
assert mymodule.factor == 2 and mymodule.calls == 1
assert mymodule.some_function.__name__ == 'some_function'
assert mymodule.some_function.__globals__ is mymodule.__dict__
assert mymodule.some_function(3) == 6 and mymodule.calls == 2
assert mymodule.__file__.endswith('mymodule.py')  # bookkeeping is not restored
""",
        tmp_path,
    )
    # The module's source changes on disk; a fresh interpreter that restores
    # the backup gets the saved module back, in the module it imported.
    (tmp_path / "mymodule.py").write_text(MYMODULE.replace("factor = 2", "factor = 1000").replace("x * factor", "-x"))
    _run(
        """
import sys
import mason as dill
restored = dill.load_module('mymodule_backup.pkl')
import mymodule
assert restored is mymodule is sys.modules['mymodule']
assert mymodule.factor == 2 and mymodule.calls == 1
assert mymodule.some_function(3) == 6 and mymodule.calls == 2
""",
        tmp_path,
    )


# ---------------------------------------------------------------- module inspection


def test_module_inspection_with_load_module_asdict(tmp_path):
    _run(
        """
import mason as dill
scale = 3
label = 'from the file'
_private = 'hidden'
def my_function(values):
    return [v * scale for v in values]
dill.dump_module('saved_module.pkl')
""",
        tmp_path,
    )
    proc = _run(
        """
import sys
import __main__
import mason  # its own imports are not the load's side effects
try:
    import xxhash  # mason's, for the checksums, when installed
except ImportError:
    pass
input_data = [1, 2]
label = 'live'
modules_before = dict(sys.modules)
main_before = dict(vars(__main__))

import mason as dill

# Load module as dictionary for inspection
module_dict = dill.load_module_asdict('saved_module.pkl')

# Inspect contents without side effects
print("Module contents:")
for name, obj in module_dict.items():
    if not name.startswith('_'):
        print(f"  {name}: {type(obj)}")

# Selectively restore specific items
my_function = module_dict.get('my_function')
if my_function:
    # Use the function without restoring entire module
    result = my_function(input_data)

assert result == [3, 6], result
assert my_function.__globals__ is module_dict
assert module_dict['label'] == 'from the file' and label == 'live'
assert 'scale' not in vars(__main__)
assert module_dict['_private'] == 'hidden'
new_names = set(vars(__main__)) - set(main_before)
assert new_names == {'main_before', 'dill', 'module_dict', 'name', 'obj', 'my_function', 'result'}, new_names
assert all(vars(__main__)[k] is v for k, v in main_before.items() if k != 'main_before')
assert sys.modules['__main__'] is __main__
assert set(sys.modules) == set(modules_before), set(sys.modules) ^ set(modules_before)
assert all(sys.modules[k] is v for k, v in modules_before.items())
""",
        tmp_path,
    )
    lines = proc.stdout.splitlines()
    assert lines[0] == "Module contents:"
    assert sorted(lines[1:]) == [
        "  dill: <class 'module'>",
        "  label: <class 'str'>",
        "  my_function: <class 'function'>",
        "  scale: <class 'int'>",
    ]


# ---------------------------------------------------------------- development checkpoints


SEED_CHECKPOINTS = """
import dill
import sys

# Save current development state
def save_checkpoint(name):
    \"\"\"Save current session as a development checkpoint.\"\"\"
    filename = f'checkpoint_{name}.pkl'
    dill.dump_session(filename)
    print(f"Session saved to {filename}")

def load_checkpoint(name):
    \"\"\"Load a development checkpoint.\"\"\"
    filename = f'checkpoint_{name}.pkl'
    dill.load_session(filename)
    print(f"Session loaded from {filename}")
"""


def test_development_checkpoints(tmp_path):
    saved = _run(
        _as_mason(SEED_CHECKPOINTS)
        + """
learning_rate = 0.1
weights = [1.0, 2.0]
def model(v):
    return v * learning_rate

# Usage in development
save_checkpoint('before_experiment')

# Run experiments, make changes...
learning_rate = 5.0
weights.append(3.0)
def model(v):
    return -v
del save_checkpoint

# Restore if needed
load_checkpoint('before_experiment')

assert learning_rate == 0.1 and weights == [1.0, 2.0], (learning_rate, weights)
assert model(10) == 1.0
assert callable(save_checkpoint)  # restored too
""",
        tmp_path,
    )
    assert saved.stdout.splitlines() == [
        "Session saved to checkpoint_before_experiment.pkl",
        "Session loaded from checkpoint_before_experiment.pkl",
    ]
    # A new interpreter gets the helpers back from the checkpoint itself.
    later = _run(
        """
import mason
mason.load_module('checkpoint_before_experiment.pkl')
learning_rate = 7.0
load_checkpoint('before_experiment')
assert learning_rate == 0.1 and model(10) == 1.0 and weights == [1.0, 2.0]
assert dill is mason and sys.modules['sys'] is sys
""",
        tmp_path,
    )
    assert later.stdout == "Session loaded from checkpoint_before_experiment.pkl\n"


# ---------------------------------------------------------------- portable sessions


SEED_PORTABLE = """
import dill
import sys
import os

# Save session with environment info
def save_portable_session(filename):
    \"\"\"Save session with environment metadata.\"\"\"
    # Save session
    dill.dump_session(filename)

    # Save environment info
    env_info = {
        'python_version': sys.version,
        'platform': sys.platform,
        'path': sys.path.copy(),
        'modules': list(sys.modules.keys()),
        'cwd': os.getcwd()
    }

    env_filename = filename.replace('.pkl', '_env.pkl')
    with open(env_filename, 'wb') as f:
        dill.dump(env_info, f)

def load_portable_session(filename):
    \"\"\"Load session with environment validation.\"\"\"
    # Load environment info
    env_filename = filename.replace('.pkl', '_env.pkl')

    try:
        with open(env_filename, 'rb') as f:
            env_info = dill.load(f)

        # Validate compatibility
        if env_info['python_version'] != sys.version:
            print(f"Warning: Python version mismatch")
            print(f"  Saved: {env_info['python_version']}")
            print(f"  Current: {sys.version}")

        # Load session
        dill.load_session(filename)

    except FileNotFoundError:
        print("Environment info not found, loading session anyway...")
        dill.load_session(filename)
"""


@pytest.mark.parametrize("env_file", ["as saved", "other python", "missing"])
def test_portable_session(tmp_path, env_file):
    _run(
        _as_mason(SEED_PORTABLE)
        + """
totals = {'a': 1, 'b': 2}
def grand_total():
    return sum(totals.values())
save_portable_session('portable_session.pkl')

with open('portable_session_env.pkl', 'rb') as f:
    env_info = dill.load(f)
assert env_info['python_version'] == sys.version and env_info['cwd'] == os.getcwd()
assert 'dill' not in env_info['modules'] and 'mason' in env_info['modules']
""",
        tmp_path,
    )
    env_path = tmp_path / "portable_session_env.pkl"
    if env_file == "other python":
        _run(
            """
import mason
with open('portable_session_env.pkl', 'rb') as f:
    env_info = mason.load(f)
env_info['python_version'] = '2.7.18 (elsewhere)'
with open('portable_session_env.pkl', 'wb') as f:
    mason.dump(env_info, f)
""",
            tmp_path,
        )
    elif env_file == "missing":
        env_path.unlink()
    loaded = _run(
        _as_mason(SEED_PORTABLE)
        + """
load_portable_session('portable_session.pkl')
assert totals == {'a': 1, 'b': 2} and grand_total() == 3
""",
        tmp_path,
    )
    lines = loaded.stdout.splitlines()
    if env_file == "as saved":
        assert lines == []
    elif env_file == "other python":
        assert lines[:2] == ["Warning: Python version mismatch", "  Saved: 2.7.18 (elsewhere)"]
        assert lines[2].startswith("  Current: ")
    else:
        assert lines == ["Environment info not found, loading session anyway..."]


# ---------------------------------------------------------------- filtered sessions


SEED_FILTERED = """
import dill

# Custom session dumping with filtering
def dump_filtered_session(filename, exclude_patterns=None):
    \"\"\"Dump session excluding certain patterns.\"\"\"
    import __main__

    # Get current main module
    main_dict = __main__.__dict__.copy()

    # Filter out unwanted items
    if exclude_patterns:
        filtered_dict = {}
        for name, obj in main_dict.items():
            if not any(pattern in name for pattern in exclude_patterns):
                filtered_dict[name] = obj

        # Temporarily replace main dict
        original_dict = __main__.__dict__
        __main__.__dict__ = filtered_dict

        try:
            dill.dump_session(filename)
        finally:
            __main__.__dict__ = original_dict
    else:
        dill.dump_session(filename)
"""

FILTER_VARIABLES = """
data_temp = [1, 2]
_temp_cache = {'big': 'thing'}
debug_flag = True
my_debug_level = 3
keep_me = 'kept'
temperature = 21.5
debugger = 'not a debug_ variable'
def helper():
    return keep_me.upper()
"""
EXCLUDED = ["data_temp", "_temp_cache", "debug_flag", "my_debug_level"]
KEPT = ["keep_me", "temperature", "debugger", "helper"]


def test_filtered_session_recipe_cannot_replace_main_dict(tmp_path):
    proc = _run(
        _as_mason(SEED_FILTERED)
        + FILTER_VARIABLES
        + """
# Usage
dump_filtered_session('clean_session.pkl', exclude_patterns=['_temp', 'debug_'])
""",
        tmp_path,
        check=False,
    )
    assert proc.returncode == 1
    assert "AttributeError: readonly attribute" in proc.stderr, proc.stderr
    assert "in dump_filtered_session" in proc.stderr  # the assignment itself, not mason
    assert not (tmp_path / "clean_session.pkl").exists()


@pytest.mark.parametrize(
    "rule",
    [
        "lambda name, obj: any(p in name for p in ['_temp', 'debug_'])",
        "['*_temp*', '*debug_*']",
    ],
    ids=["predicate", "globs"],
)
def test_filtered_session_with_exclude(tmp_path, rule):
    _run(
        "import mason as dill\n"
        + FILTER_VARIABLES
        + f"""
patterns = ['_temp', 'debug_']
dill.dump_module('clean_session.pkl', exclude={rule})
saved = dill.inspect('clean_session.pkl').names()
bookkeeping = ('__builtins__', '__name__', '__loader__', '__spec__', '__package__', '__file__', '__cached__')
# What the seed's rule (a substring of the name) keeps, of what existed at the save.
expected = sorted(n for n in globals()
                  if not any(p in n for p in patterns) and n not in bookkeeping and n not in ('saved', 'bookkeeping'))
assert saved == expected, (saved, expected)
""",
        tmp_path,
    )
    _run(
        f"""
import mason as dill
dill.load_module('clean_session.pkl')
names = set(globals())
assert names.isdisjoint({EXCLUDED!r}), names
assert names.issuperset({KEPT!r}), names
assert helper() == 'KEPT' and temperature == 21.5 and debugger.startswith('not')
assert sorted(patterns) == ['_temp', 'debug_']  # the saving session's other names came too
""",
        tmp_path,
    )
