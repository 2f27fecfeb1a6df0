"""Reducers for functions defined where they cannot be imported by name."""

from __future__ import annotations

import functools
import types

from .. import _rebuild
from .modules import with_submodules
from .naming import lookup_by_name


class ModuleDictRef:
    """Pickles as "the live ``__dict__`` of module ``name``" at load time."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def __reduce__(self):
        return _rebuild.module_dict, (self.name,)


def code_global_names(code: types.CodeType) -> frozenset[str]:
    """Names a code object (and the code nested in it) may look up as globals."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= code_global_names(const)
    return frozenset(names)


def reduce_function(func: types.FunctionType, base_globals, global_names, deferred_cells):
    """``func`` by value.

    ``base_globals`` is what the rebuilt function gets as ``__globals__``:
    either a :class:`ModuleDictRef` (the module's live globals) or a dict
    shared by all functions of one module in this pickle, which the state
    then fills with the globals this function uses (``global_names``, or
    ``None`` for none).  Closure cells are created empty and filled by the
    state, after the function is memoized, so a closure may refer to the
    function itself; their ids go to ``deferred_cells`` so the cell reducer
    knows.
    """
    closure = func.__closure__
    cell_values = None
    if closure:
        deferred_cells.update(id(cell) for cell in closure)
        cell_values = tuple(_cell_value(cell) for cell in closure)
    # Only what ``types.FunctionType(code, globals, name)`` would not
    # derive by itself: keeps files of many small functions small.
    code = func.__code__
    attrs: dict[str, object] = {}
    if func.__module__ != base_globals_name(base_globals):
        attrs["__module__"] = func.__module__
    if func.__qualname__ != getattr(code, "co_qualname", code.co_name):
        # What FunctionType does not derive: 3.11+ takes co_qualname, 3.10
        # co_name (on 3.10, a function moved from 3.11+ gets its code's
        # qualified name as co_name: see _rebuild.code_portable).
        attrs["__qualname__"] = func.__qualname__
    if func.__doc__ != _derived_doc(code):
        attrs["__doc__"] = func.__doc__
    if func.__defaults__ is not None:
        attrs["__defaults__"] = func.__defaults__
    if func.__kwdefaults__ is not None:
        attrs["__kwdefaults__"] = func.__kwdefaults__
    if func.__annotations__:
        attrs["__annotations__"] = func.__annotations__
    if func.__dict__:
        attrs["__dict__"] = func.__dict__
    globals_update = None
    if global_names:
        source = func.__globals__
        globals_update = {name: source[name] for name in sorted(global_names) if name in source}
        for name, value in globals_update.items():
            if isinstance(value, types.ModuleType):  # ``xml`` used as ``xml.etree.ElementTree``
                globals_update[name] = with_submodules(value, global_names)
    args = (code, base_globals, func.__name__, closure)
    if not attrs and cell_values is None and not globals_update:
        return _rebuild.make_function, args
    state = (attrs, cell_values, globals_update)
    return _rebuild.make_function, args, state, None, None, _rebuild.function_setstate


def reduce_lru_cache(by_value_modules, wrapper):
    """A ``functools.lru_cache``/``cache`` wrapper.  Its own pickling is by
    name, which cannot work for one defined in ``__main__`` (or in a class
    saved by value): the file would refer to itself.  Such a wrapper is
    made again around its function saved by value, with the same
    ``maxsize`` and ``typed`` and an empty cache: by ``functools.cache`` or
    ``functools.lru_cache`` themselves where their defaults say so (the
    common ``@cache``, ``@lru_cache``, ``@lru_cache(maxsize=None)``), else
    by the wrapper type with what ``update_wrapper`` set as state."""
    if lookup_by_name(wrapper, by_value_modules):
        return wrapper.__reduce__()
    func = wrapper.__wrapped__
    params = wrapper.cache_parameters()
    maxsize, typed = params["maxsize"], params["typed"]
    # What the decorator derives from ``func`` again is left out of the state.
    derived = {name: getattr(func, name) for name in functools.WRAPPER_ASSIGNMENTS if hasattr(func, name)}
    derived.update(func.__dict__)
    derived["__wrapped__"] = func
    extra = {k: v for k, v in vars(wrapper).items() if k != "cache_parameters" and derived.get(k, _UNSET) is not v}
    if maxsize is None and not typed:
        return functools.cache, (func,), extra or None
    if maxsize == 128:  # lru_cache's default, also when given the function itself
        return functools.lru_cache, (func, typed), extra or None
    args = (func, maxsize, typed, _FunctoolsAttribute("_CacheInfo"))
    return type(wrapper), args, dict(vars(wrapper))


_UNSET = object()


class _FunctoolsAttribute:
    """Pickles as ``functools.<name>`` for a name its object does not carry
    (``functools._CacheInfo`` is a namedtuple called ``CacheInfo``)."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def __reduce__(self):
        return _rebuild.getattr_chain, (functools, self.name)


def base_globals_name(base_globals):
    """The ``__name__`` a rebuilt function's globals will hold."""
    if isinstance(base_globals, ModuleDictRef):
        return base_globals.name
    return base_globals.get("__name__")


def _derived_doc(code):
    # CPython takes a function's __doc__ from its first constant when that
    # is a string (3.10-3.12); 3.13 marks real docstrings with a flag.
    consts = code.co_consts
    return consts[0] if consts and isinstance(consts[0], str) else None


def _cell_value(cell):
    try:
        return cell.cell_contents
    except ValueError:  # empty cell
        return _rebuild.empty_cell_marker()
