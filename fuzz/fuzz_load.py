"""Coverage-guided fuzzing of mason's readers with atheris (opt-in; not run in CI).

    .venv/bin/pip install atheris
    .venv/bin/python fuzz/fuzz_load.py fuzz/corpus -max_total_time=600

An empty (or new) corpus directory is seeded with a few small session files
(data, a function, a class, numpy arrays as blobs; compressed and not).
Every input goes to ``mason.inspect``, ``ContainerReader.verify``,
``load_module_asdict`` (seekable and as a stream) and ``mason verify`` /
``mason inspect`` on the command line.  The contract: a MasonError or a
clean result; any other exception, and any traceback from the command line,
is a finding (atheris stops and writes the input to crash-*).

tests/test_fuzz.py calls ``TestOneInput`` on a few inputs without atheris, so
this file keeps working.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import os
import shutil
import sys
import tempfile
import types
import warnings

SOURCE = """
numbers = [1, 2.5, "three", None, (4, 5)]
shared = [numbers, numbers]
def area(r):
    return 3 * r * r
class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y
origin = Point(1, -2)
"""


def seeds() -> list[bytes]:
    import mason

    module = types.ModuleType("fuzzmod")
    exec(SOURCE, module.__dict__)
    try:
        import numpy as np
    except ImportError:
        pass
    else:
        module.grid = np.arange(60.0).reshape(6, 10)
        module.mask = np.zeros(100, dtype=bool)
    out = []
    for compression in (None, "zlib"):
        buffer = io.BytesIO()
        mason.dump_module(buffer, module=module, compression=compression)
        out.append(buffer.getvalue())
    return out


class _Stream:
    """Non-seekable reading, as from a pipe."""

    def __init__(self, data: bytes):
        self._file = io.BytesIO(data)

    def read(self, n=-1):
        return self._file.read(n)


_PATH: list[str] = []  # the file the command line reads, made on first use


def TestOneInput(data: bytes) -> None:  # noqa: N802 (atheris's name)
    import mason
    import mason.cli
    from mason._format import ContainerReader
    from mason.errors import MasonError

    readers = (
        lambda: mason.inspect(io.BytesIO(data)),
        lambda: ContainerReader.open(data).verify(),
        lambda: mason.load_module_asdict(io.BytesIO(data)),
        lambda: mason.load_module_asdict(_Stream(data)),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for read in readers:
            try:
                read()
            except MasonError:
                pass
    if not _PATH:
        directory = tempfile.mkdtemp(prefix="mason-fuzz-")
        atexit.register(shutil.rmtree, directory, True)
        _PATH.append(os.path.join(directory, "input.mason"))
    with open(_PATH[0], "wb") as f:
        f.write(data)
    for command in ("inspect", "verify"):
        err = io.StringIO()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            status = mason.cli.main([command, _PATH[0]])
        if "Traceback" in err.getvalue() or (status and not err.getvalue().startswith("mason: error: ")):
            raise RuntimeError(f"mason {command} exited {status} with {err.getvalue()!r}")


def main() -> None:
    import atheris

    with atheris.instrument_imports(include=["mason"]):
        import mason  # noqa: F401
        import mason.cli  # noqa: F401
    corpus = next((arg for arg in sys.argv[1:] if not arg.startswith("-")), None)
    if corpus is not None:
        os.makedirs(corpus, exist_ok=True)
        if not os.listdir(corpus):
            for number, data in enumerate(seeds()):
                with open(os.path.join(corpus, f"seed-{number}.mason"), "wb") as f:
                    f.write(data)
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
