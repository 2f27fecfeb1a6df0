"""Where a session goes and comes from: paths, binary streams (seekable or
not), the default per-user file; and the clear error for a text stream.

Every round trip saves in one fresh interpreter and loads in another.
"""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
import tempfile
import textwrap
import types

import pytest
from conftest import run_python

import mason
from mason._format import spec

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes and pipes")

# The session every test saves, and the checks every load runs (``ns`` is the
# restored namespace: globals() or the dict from load_module_asdict).
SESSION = """
import mason
import numpy as np
numbers = [1, 2, 3]
alias = numbers
arr = np.arange(6, dtype='<i8').reshape(2, 3)
def total():
    return sum(numbers) + int(arr.sum())
"""
SAVED_NAMES = ["__annotations__", "__doc__", "alias", "arr", "mason", "np", "numbers", "total"]
CHECK = """
def check(ns):
    assert ns['numbers'] == [1, 2, 3] and ns['alias'] is ns['numbers']
    assert ns['arr'].tolist() == [[0, 1, 2], [3, 4, 5]]
    assert ns['total']() == 21
    assert ns['total'].__globals__ is ns
"""


def _run(code: str, tmp_path, **kwds):
    return run_python(textwrap.dedent(code), cwd=tmp_path, **kwds)


# ---------------------------------------------------------------- seekable targets


SAVE_TO = {
    # code that saves the session to 'session.mason' through that kind of
    # target, leaving the saved names as they are
    "str": "mason.dump_module('session.mason')",
    "path": "mason.dump_module(__import__('pathlib').Path('session.mason'))",
    "file": "with open('session.mason', 'wb') as _f:\n    mason.dump_module(_f, exclude='_f')",
    "bytesio": (
        "_buf = __import__('io').BytesIO()\nmason.dump_module(_buf, exclude='_buf')\n"
        "open('session.mason', 'wb').write(_buf.getvalue())"
    ),
}

# (expression opening the source, whether it is a stream to rewind between uses)
LOAD_FROM = {
    "str": ("'session.mason'", False),
    "path": ("__import__('pathlib').Path('session.mason')", False),
    "file": ("open('session.mason', 'rb')", True),
    "bytesio": ("__import__('io').BytesIO(open('session.mason', 'rb').read())", True),
    # a container inside a larger stream: read from the current position
    "bytesio-offset": (
        "(lambda b: (b.seek(7), b)[1])(__import__('io').BytesIO(b'prefix!' + open('session.mason', 'rb').read()))",
        True,
    ),
}


@pytest.mark.parametrize("save", sorted(SAVE_TO))
def test_save_to_target(tmp_path, save):
    _run(SESSION + SAVE_TO[save], tmp_path)
    _run(
        CHECK
        + """
import mason
assert mason.load_module('session.mason') is None
check(globals())
assert sorted(mason.inspect('session.mason').names()) == %r
"""
        % SAVED_NAMES,
        tmp_path,
    )


@pytest.mark.parametrize("load", sorted(LOAD_FROM))
def test_load_from_source(tmp_path, load):
    _run(SESSION + "mason.dump_module('session.mason')", tmp_path)
    opener, rewind = LOAD_FROM[load]
    _run(
        CHECK
        + f"""
import sys, mason
source = {opener}
start = source.tell() if {rewind} else None

info = mason.inspect(source)
assert info.names() == {SAVED_NAMES!r}, info.names()
assert info.module == '__main__' and info.format_version[0] == {spec.FORMAT_MAJOR}
if {rewind}:
    source.seek(start)

ns = mason.load_module_asdict(source)
check(ns)
assert 'numbers' not in globals()
if {rewind}:
    source.seek(start)

assert mason.load_module(source) is None
check(globals())
assert sys.modules['__main__'].numbers is numbers
""",
        tmp_path,
    )


# ---------------------------------------------------------------- non-seekable streams


@posix_only
def test_pipe_between_two_interpreters(tmp_path):
    """One interpreter saves to its stdout, the next loads from its stdin."""
    save = SESSION + "import sys\nmason.dump_module(sys.stdout.buffer)\nsys.stdout.flush()\n"
    load = (
        CHECK
        + """
import sys, mason
assert not sys.stdin.buffer.seekable()
assert mason.load_module(sys.stdin.buffer) is None
check(globals())
assert sys.stdin.buffer.read() == b''  # read to the container's end, no further
print('loaded', sorted(n for n in globals() if not n.startswith('_')))
"""
    )
    with tempfile.TemporaryFile() as save_err:
        saver = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(save)],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=save_err,
        )
        loader = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(load)],
            cwd=tmp_path,
            stdin=saver.stdout,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        saver.stdout.close()  # the loader holds the only read end
        out, err = loader.communicate(timeout=120)
        assert saver.wait(timeout=120) == 0, save_err.seek(0) or save_err.read()
    assert loader.returncode == 0, err
    assert out.split("\n", 1)[0] == "loaded ['alias', 'arr', 'check', 'mason', 'np', 'numbers', 'sys', 'total']"


@posix_only
def test_os_pipe_save_inspect_and_load(tmp_path):
    """Through os.pipe: save with a reader thread, then two containers back to
    back on one pipe, read by inspect and load_module_asdict in turn."""
    _run(
        SESSION
        + CHECK
        + """
import os, threading

def through_pipe(write, read):
    r, w = os.pipe()
    result = {}
    def writer():
        with os.fdopen(w, 'wb') as out:
            result['wrote'] = write(out)
    thread = threading.Thread(target=writer)
    thread.start()
    with os.fdopen(r, 'rb') as stream:
        assert not stream.seekable()
        result['read'] = read(stream)
    thread.join()
    return result

# save into a pipe
got = through_pipe(lambda out: mason.dump_module(out, exclude=['got']), lambda s: s.read())
blob = got['read']
assert blob.startswith(b'\\x89MASON\\r\\n\\x1a\\n') and blob.endswith(b'MASONEND')

# two containers back to back: each reader stops at its container's end
def read_both(stream):
    info = mason.inspect(stream)
    ns = mason.load_module_asdict(stream)
    return info, ns, stream.read()

got = through_pipe(lambda out: out.write(blob + blob + b'tail'), read_both)
info, ns, rest = got['read']
assert rest == b'tail', rest
assert 'numbers' in info.names() and 'got' not in info.names()
check(ns)
""",
        tmp_path,
    )


@posix_only
def test_fifo_path(tmp_path):
    """A named pipe given as a path: written and read without seeking."""
    _run(
        SESSION
        + CHECK
        + """
import os, threading
os.mkfifo('session.fifo')
data = {}
def reader():
    with open('session.fifo', 'rb') as f:
        data['bytes'] = f.read()
# A path is written atomically (temporary file, then rename), so a FIFO
# cannot be the target; its own file object can.
thread = threading.Thread(target=reader)
thread.start()
with open('session.fifo', 'wb') as out:
    mason.dump_module(out, exclude=['data', 'thread', 'reader'])
thread.join()

def writer():
    with open('session.fifo', 'wb') as out:
        out.write(data['bytes'])
thread = threading.Thread(target=writer)
thread.start()
ns = mason.load_module_asdict('session.fifo')
thread.join()
check(ns)
""",
        tmp_path,
    )


# ---------------------------------------------------------------- wrong kinds of target


def _scratch():
    module = types.ModuleType("scratch_streams")
    module.value = 1
    return module


def test_text_mode_file_is_a_clear_type_error(tmp_path):
    path = tmp_path / "text.mason"
    with open(path, "w") as text:
        with pytest.raises(TypeError, match=r"binary stream \(open the file with 'wb'\)"):
            mason.dump_module(text, module=_scratch())
    assert path.read_bytes() == b""  # nothing was written
    mason.dump_module(path, module=_scratch())
    for function in (mason.load_module, mason.load_module_asdict, mason.inspect):
        with open(path) as text:
            with pytest.raises(TypeError, match=r"binary mode \('rb'\)"):
                function(text)
            assert text.tell() == 0  # refused before reading
    with pytest.raises(TypeError, match="binary stream"):
        mason.dump_module(io.StringIO(), module=_scratch())
    with pytest.raises(TypeError, match="binary mode"):
        mason.load_module_asdict(io.StringIO("not a session"))


@pytest.mark.parametrize("function", ["dump_module", "load_module", "load_module_asdict", "inspect"])
def test_neither_path_nor_stream_is_a_type_error(function):
    kwds = {"module": _scratch()} if function == "dump_module" else {}
    with pytest.raises(TypeError, match="filename must be a path or a binary stream, not int"):
        getattr(mason, function)(1234, **kwds)


# ---------------------------------------------------------------- the default file


@posix_only
def test_default_file_under_mason_home(tmp_path):
    home = tmp_path / "home" / "mason-sessions"
    env = {"MASON_HOME": str(home)}
    _run(
        SESSION
        + """
mason.dump_module()
import os, stat
target = os.path.join(os.environ['MASON_HOME'], 'session.mason')
assert mason.default_session_path() == __import__('pathlib').Path(target)
assert stat.S_IMODE(os.stat(target).st_mode) == 0o600, oct(os.stat(target).st_mode)
assert stat.S_IMODE(os.stat(os.environ['MASON_HOME']).st_mode) == 0o700
assert os.listdir(os.environ['MASON_HOME']) == ['session.mason']  # no temporaries left
""",
        tmp_path,
        env=env,
    )
    _run(
        CHECK
        + f"""
import mason
info = mason.inspect()
assert info.names() == {SAVED_NAMES!r}, info.names()
check(mason.load_module_asdict())
assert 'numbers' not in globals()
assert mason.load_module() is None
check(globals())
""",
        tmp_path,
        env=env,
    )
    # The deprecated names use the same default.
    _run(
        """
import mason, warnings
marker = 'via dump_session'
warnings.simplefilter('ignore', PendingDeprecationWarning)
mason.dump_session()
""",
        tmp_path,
        env=env,
    )
    _run(
        """
import mason, warnings
warnings.simplefilter('ignore', PendingDeprecationWarning)
mason.load_session()
assert marker == 'via dump_session'
""",
        tmp_path,
        env=env,
    )
    assert stat.S_IMODE(os.stat(home / "session.mason").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(home).st_mode) == 0o700
