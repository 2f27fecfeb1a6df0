"""Reducers for code objects and cells."""

from __future__ import annotations

import marshal
import types

from .. import _rebuild
from .._compat import PY_VERSION


def reduce_code(finder, code: types.CodeType):
    """Bytecode for this minor version, and for the others the source (a
    checked record from ``finder``, a :class:`~.source.SourceFinder`) or why
    there is none.  (Files made before source records name
    ``code_from_marshal``, with bytecode alone.)"""
    # marshal is CPython's own exact representation of code for this minor
    # version; the version travels with it, so that another version knows
    # to compile the source instead, or says clearly why it cannot.
    return _rebuild.code_portable, (PY_VERSION, marshal.dumps(code), finder.record(code))


def reduce_cell(cell):
    """A cell reached on its own: made empty, filled after it is memoized,
    so a cell that (indirectly) contains itself works."""
    try:
        value = cell.cell_contents
    except ValueError:  # an empty cell
        return _rebuild.make_cell, ()
    return _rebuild.make_cell, (), (value,), None, None, _rebuild.cell_setstate


def reduce_empty_cell(cell):
    """A cell reached through a function's closure: the function's own state
    fills it, after the function is memoized (closures that refer to the
    function itself)."""
    return _rebuild.make_cell, ()


TABLE: dict = {}  # code objects: the Pickler registers reduce_code with its SourceFinder
