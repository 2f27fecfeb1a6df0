"""dill-compatible module-level defaults.

Existing dill code changes these at module level (``mason.settings['recurse']
= True``).  They are read once, when a Pickler or Unpickler is made, and never
inside reducers.
"""

from __future__ import annotations

import pickle

HIGHEST_PROTOCOL = pickle.HIGHEST_PROTOCOL
DEFAULT_PROTOCOL = pickle.DEFAULT_PROTOCOL

#: reopen a file handle by name (the default)
HANDLE_FMODE = 0
#: reopen by name and seek to the saved position, capped at the file's end
CONTENTS_FMODE = 1
#: store the file's contents and position, and restore both
FILE_FMODE = 2

settings: dict[str, object] = {
    "protocol": DEFAULT_PROTOCOL,
    "byref": False,
    "fmode": HANDLE_FMODE,
    "recurse": False,
    "ignore": False,
}


def option(value, key: str):
    """The caller's value, or the current module-level default."""
    return settings[key] if value is None else value
