"""mason: save a whole Python session, or any object, and bring it back.

``import mason as dill`` works for dill's object and session API.
Loading runs code from the file: only load files you trust.
"""

from ._api import copy, dump, dumps, load, loads, pickles, register
from ._pickler import Pickler
from ._settings import (
    CONTENTS_FMODE,
    DEFAULT_PROTOCOL,
    FILE_FMODE,
    HANDLE_FMODE,
    HIGHEST_PROTOCOL,
    settings,
)
from ._unpickler import Unpickler
from .errors import (
    CorruptSessionError,
    MasonError,
    PicklingError,
    UnpicklingError,
)

__version__ = "0.1.0"

__all__ = [
    "CONTENTS_FMODE",
    "DEFAULT_PROTOCOL",
    "FILE_FMODE",
    "HANDLE_FMODE",
    "HIGHEST_PROTOCOL",
    "CorruptSessionError",
    "MasonError",
    "Pickler",
    "PicklingError",
    "Unpickler",
    "UnpicklingError",
    "copy",
    "dump",
    "dumps",
    "load",
    "loads",
    "pickles",
    "register",
    "settings",
]
