"""Reducers: ``obj -> reduce tuple``, one module per family.

``TABLE`` maps a type to its reducer.  The Pickler copies it in front of
``copyreg.dispatch_table`` when it is made; neither copyreg nor pickle is ever
modified.  Functions and classes cannot be dispatched by type (the C pickler
handles them before consulting any table), so the Pickler's
``reducer_override`` sends them to :mod:`.functions` and :mod:`.classes`.
"""

from __future__ import annotations

from . import classes, code, modules, stdlib

TABLE: dict = {}
TABLE.update(code.TABLE)
TABLE.update(classes.TABLE)
TABLE.update(modules.TABLE)
TABLE.update(stdlib.TABLE)

#: reducers registered by users with :func:`mason.register`
USER_TABLE: dict[type, object] = {}
