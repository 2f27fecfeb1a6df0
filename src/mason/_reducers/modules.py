"""Reducers for module objects: by name when importable, else by value."""

from __future__ import annotations

import sys
import types

from .. import _rebuild

# Attributes a module gets from the import system; never saved by value.
_MODULE_BOOKKEEPING = frozenset({"__builtins__", "__loader__", "__spec__", "__cached__"})


def is_importable_module(module: types.ModuleType) -> bool:
    name = getattr(module, "__name__", None)
    return isinstance(name, str) and sys.modules.get(name) is module


def reduce_module(module: types.ModuleType):
    if is_importable_module(module):
        return _rebuild.import_module, (module.__name__,)
    state = {k: v for k, v in vars(module).items() if k not in _MODULE_BOOKKEEPING}
    return _rebuild.make_module, (module.__name__,), state, None, None, _rebuild.module_setstate


def reduce_session_module(session_module, module: types.ModuleType):
    """References to the module being saved as a session are by name even when
    it is not importable: the loader resolves the name to the restored module."""
    if module is session_module:
        return _rebuild.import_module, (module.__name__,)
    return reduce_module(module)


TABLE = {types.ModuleType: reduce_module}
