"""mason: save a whole Python session, or any object, and bring it back.

``import mason as dill`` works for dill's object and session API.
Loading runs code from the file: only load files you trust.
"""

from . import session  # noqa: F401 - ``mason.session.dump_module``, as ``dill.session``
from ._allowlist import CODE, DATA, FILES
from ._api import copy, dump, dumps, load, loads, pickles, register
from ._pickler import Pickler
from ._session import (
    SessionInfo,
    dump_module,
    dump_session,
    inspect,
    load_module,
    load_module_asdict,
    load_session,
    sign,
)
from ._settings import (
    CONTENTS_FMODE,
    DEFAULT_PROTOCOL,
    FILE_FMODE,
    HANDLE_FMODE,
    HIGHEST_PROTOCOL,
    settings,
)
from ._storage import default_session_path
from ._store import checkpoint, checkpoints, default_store_path, prune, restore, restore_asdict, verify_store
from ._unpickler import Unpickler
from .errors import (
    CheckpointNotFoundError,
    CorruptSessionError,
    CorruptStoreError,
    EnvironmentMismatchWarning,
    ForbiddenGlobalError,
    MasonError,
    MasonWarning,
    PicklingError,
    PicklingWarning,
    SignatureError,
    SkippedVariableWarning,
    StoreError,
    StoreLockedError,
    UnpicklingError,
    UnpicklingWarning,
    UnsupportedFormatError,
    VersionMismatchError,
)

__version__ = "0.1.0"


def load_ipython_extension(ipython):
    """``%load_ext mason``: the session magics (IPython is imported only then)."""
    from .ipython import load_ipython_extension as load

    load(ipython)


__all__ = [
    "CODE",
    "DATA",
    "FILES",
    "CONTENTS_FMODE",
    "DEFAULT_PROTOCOL",
    "FILE_FMODE",
    "HANDLE_FMODE",
    "HIGHEST_PROTOCOL",
    "CheckpointNotFoundError",
    "CorruptSessionError",
    "CorruptStoreError",
    "EnvironmentMismatchWarning",
    "ForbiddenGlobalError",
    "MasonError",
    "MasonWarning",
    "SessionInfo",
    "SignatureError",
    "SkippedVariableWarning",
    "StoreError",
    "StoreLockedError",
    "UnsupportedFormatError",
    "VersionMismatchError",
    "Pickler",
    "PicklingError",
    "PicklingWarning",
    "Unpickler",
    "UnpicklingError",
    "UnpicklingWarning",
    "checkpoint",
    "checkpoints",
    "copy",
    "default_session_path",
    "default_store_path",
    "dump",
    "dump_module",
    "dump_session",
    "dumps",
    "inspect",
    "load",
    "load_module",
    "load_module_asdict",
    "load_session",
    "loads",
    "pickles",
    "prune",
    "register",
    "restore",
    "restore_asdict",
    "settings",
    "sign",
    "verify_store",
]
