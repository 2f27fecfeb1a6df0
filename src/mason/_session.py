"""Sessions and modules: the public functions, from the modules that do each step.

save:    _save.py      module -> filter -> entries -> pickler -> container writer -> storage
load:    _load.py      storage -> container reader -> checks -> unpickler -> namespace update
inspect: _inspect.py   the index and a scan that runs nothing
"""

from __future__ import annotations

from ._inspect import SessionInfo, inspect
from ._load import load_module, load_module_asdict, load_session, scan_session
from ._save import dump_module, dump_session, sign
from ._sessionmeta import SESSION_KIND, check_session_meta, session_meta_problem

__all__ = [
    "dump_module",
    "load_module",
    "load_module_asdict",
    "dump_session",
    "load_session",
    "inspect",
    "sign",
    "SessionInfo",
    "SESSION_KIND",
    "check_session_meta",
    "session_meta_problem",
    "scan_session",
]
