"""Interpreter-version flags, in one place."""

from __future__ import annotations

import sys

PY_VERSION: tuple[int, int] = sys.version_info[:2]

# Python 3.11 made ``types.CodeType`` carry exception tables and
# ``co_qualname``; marshal handles both, so code objects need no branch here,
# but the version is recorded so a file names the interpreter it came from.
PY311 = PY_VERSION >= (3, 11)

# Python 3.12 moved typing.TypeVar to C; its pickling still goes through
# __reduce__, returning the bare name, so by-value TypeVars need our reducer.
PY312 = PY_VERSION >= (3, 12)

# The flag CPython sets on classes created by a class statement or type();
# only those can be rebuilt by value.
Py_TPFLAGS_HEAPTYPE = 1 << 9
