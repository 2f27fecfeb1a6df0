"""The Pickler: the C ``pickle.Pickler`` extended with mason's reducers.  No I/O
beyond the file object it is given.

Options are passed in when it is made (or taken from :data:`mason.settings`
then) and never read again from global state.
"""

from __future__ import annotations

import copyreg
import functools
import pickle
import sys
import types

from . import _rebuild, _settings
from ._compat import Py_TPFLAGS_HEAPTYPE
from ._diagnose import too_deep
from ._reducers import TABLE, USER_TABLE
from ._reducers import stdlib as _stdlib
from ._reducers.classes import reduce_class
from ._reducers.code import reduce_cell, reduce_code, reduce_empty_cell
from ._reducers.functions import ModuleDictRef, code_global_names, reduce_function, reduce_lru_cache
from ._reducers.modules import reduce_session_module
from ._reducers.naming import lookup_by_name
from ._reducers.source import SourceFinder
from ._reducers.stdlib import FILE_TYPES, PROTOCOL5_TABLE, make_file_reducer
from ._reducers.thirdparty import loaded_tables
from .errors import PicklingError

__all__ = ["Pickler"]

_FunctionType = types.FunctionType


class Pickler(pickle.Pickler):
    """Pickles what the standard pickler cannot: functions, lambdas, closures
    and classes by value when they cannot be imported by name, code objects,
    modules, file handles, locks and more.

    ``byref``: classes of ``__main__`` by reference instead of by value.
    ``recurse``: a function by value carries the globals it uses (and the
    functions it calls carry theirs) instead of referring to the live
    globals of its module at load time (dill's default).
    ``fmode``: how open file handles are saved (``HANDLE_FMODE``,
    ``CONTENTS_FMODE``, ``FILE_FMODE``).
    ``by_value_modules``: names of modules whose functions and classes are
    saved by value although importable (the module saved as a session).
    ``session_module``: the module saved as a session; references to it are
    saved by name, whatever its kind, and point at the restored namespace.
    ``imported``: ``{id(obj): (module, name)}`` for objects that are public
    attributes of other modules (a session's imported variables): saved as
    that reference wherever they occur, so ``[CC]`` holds ``sympy.CC`` too.
    ``partitions``: a session's partition sink (``mason._dask.sink``): where
    the values of Dask futures go.  Without one, data that lives only on a
    Dask cluster raises PicklingError instead of being saved as bare keys.
    """

    def __init__(
        self,
        file,
        protocol=None,
        byref=None,
        fmode=None,
        recurse=None,
        *,
        fix_imports=True,
        buffer_callback=None,
        by_value_modules=(),
        session_module=None,
        imported=None,
        partitions=None,
        **kwds,
    ):
        protocol = _settings.option(protocol, "protocol")
        super().__init__(file, protocol, fix_imports=fix_imports, buffer_callback=buffer_callback)
        self._byref = bool(_settings.option(byref, "byref"))
        self._recurse = bool(_settings.option(recurse, "recurse"))
        self._fmode = int(_settings.option(fmode, "fmode"))
        self._by_value_modules = frozenset(by_value_modules)
        self._session_globals = None if session_module is None else vars(session_module)
        self._imported = imported or None
        # id(globals dict) -> (globals dict, what rebuilt functions get)
        self._globals_bases: dict[int, tuple[dict, object]] = {}
        self._deferred_cells: set[int] = set()
        # A snapshot of copyreg's table taken now, with ours in front.
        table = dict(copyreg.dispatch_table)
        table.update(TABLE)
        table.update(dict.fromkeys(FILE_TYPES, make_file_reducer(self._fmode)))
        if protocol >= 5:
            table.update(PROTOCOL5_TABLE)
        # Nothing in the table may refer back to the pickler (a bound method
        # would): the pickler must die with its last reference, not at the
        # next garbage collection, or everything in its memo, the objects
        # dumped included, stays alive until then; and a collected cycle
        # that holds a memoryview with a PickleBuffer exported from it
        # crashes CPython (memoryview's tp_clear frees the buffer anyway).
        table[types.CellType] = functools.partial(_reduce_cell, self._deferred_cells)
        # Each file (or notebook cell) is read and parsed once per pickler.
        self._sources = SourceFinder()
        self._codes = [0]  # code objects pickled: a list the reducer counts in
        table[types.CodeType] = functools.partial(_reduce_code, self._sources, self._codes)
        table[functools._lru_cache_wrapper] = functools.partial(reduce_lru_cache, self._by_value_modules)
        if session_module is not None:
            table[types.ModuleType] = functools.partial(reduce_session_module, session_module)
        table.update(_stdlib.loaded_tables())
        table.update(loaded_tables(protocol))
        if "dask" in sys.modules or "distributed" in sys.modules:
            from ._reducers.dask import loaded_table as dask_table

            table.update(dask_table(partitions))
        table.update(USER_TABLE)
        self.dispatch_table = table

    @property
    def codes_pickled(self) -> int:
        """How many code objects this pickler has written (each once: the memo
        writes a reference to one met again)."""
        return self._codes[0]

    def dump(self, obj):
        try:
            super().dump(obj)
        except RecursionError as exc:
            # The C pickler's own error says neither why nor what to do.
            raise PicklingError(too_deep(exc)) from exc

    # ------------------------------------------------------------ overrides

    def reducer_override(self, obj):
        # Called for every object the C pickler has no fast path for; keep the
        # common case (not a function, not a class) to two cheap checks.
        cls = type(obj)
        if cls is _FunctionType:
            return self._reduce_function(obj)
        if issubclass(cls, type):
            return self._reduce_class(obj)
        if self._imported is not None:
            home = self._imported.get(id(obj))
            if home is not None:
                return _rebuild.module_attribute, home
        return NotImplemented

    # ------------------------------------------------------------ functions

    def _reduce_function(self, func):
        if lookup_by_name(func, self._by_value_modules):
            return NotImplemented
        base, names = self._function_globals(func)
        return reduce_function(func, base, names, self._deferred_cells)

    def _function_globals(self, func):
        """What a rebuilt ``func`` gets as globals, and which names to carry."""
        source = func.__globals__
        module_name = func.__module__
        entry = self._globals_bases.get(id(source))
        if entry is None:
            if self._refers_to_module_globals(source, module_name):
                base = ModuleDictRef(module_name)
            else:
                base = {"__name__": source.get("__name__", module_name)}
            entry = self._globals_bases[id(source)] = (source, base)
        base = entry[1]
        if isinstance(base, ModuleDictRef):
            return base, None
        return base, code_global_names(func.__code__)

    def _refers_to_module_globals(self, source, module_name) -> bool:
        if self._session_globals is source:
            return True  # the session's own module: restored into its target
        module = sys.modules.get(module_name) if isinstance(module_name, str) else None
        if module is None or module.__dict__ is not source:
            return False
        return not self._recurse

    # ------------------------------------------------------------ classes

    def _reduce_class(self, cls):
        if not cls.__flags__ & Py_TPFLAGS_HEAPTYPE:
            return NotImplemented  # builtin and extension types: by name only
        if lookup_by_name(cls, self._by_value_modules):
            return NotImplemented
        if self._byref and cls.__module__ == "__main__":
            return NotImplemented
        return reduce_class(cls, self._sources)


def _reduce_cell(deferred_cells, cell):
    if id(cell) in deferred_cells:
        return reduce_empty_cell(cell)
    return reduce_cell(cell)


def _reduce_code(finder, counter, code):
    counter[0] += 1
    return reduce_code(finder, code)
