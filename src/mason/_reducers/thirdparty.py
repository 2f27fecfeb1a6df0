"""Reducers for third-party types whose default pickling loses user state.

Nothing here imports a third-party package: a reducer is added only when
its package is already loaded (if it is not, no object of it can exist).
"""

from __future__ import annotations

import sys

from .. import _rebuild

# rcParams keys that describe the machine, not the user's style choices.
_RC_MACHINE_KEYS = frozenset({"backend", "backend_fallback", "interactive", "webagg.port", "webagg.address"})


def reduce_rcparams(params):
    """matplotlib's live ``rcParams``: by reference, with the user's changes
    replayed on load (only values that differ from the defaults)."""
    import matplotlib  # loaded: the object exists

    if params is not matplotlib.rcParams:
        return type(params), (), None, None, iter(dict.items(params))
    defaults = matplotlib.rcParamsDefault
    changed = {
        key: value
        for key, value in dict.items(params)
        if key not in _RC_MACHINE_KEYS and dict.get(defaults, key, _MISSING) != value
    }
    return _rebuild.matplotlib_rcparams, (changed,)


_MISSING = object()


def loaded_tables() -> dict:
    """Reducers for the third-party packages imported so far."""
    table = {}
    matplotlib = sys.modules.get("matplotlib")
    if matplotlib is not None and hasattr(matplotlib, "RcParams"):
        table[matplotlib.RcParams] = reduce_rcparams
    return table
