"""Reducers for classes defined where they cannot be imported by name."""

from __future__ import annotations

import abc
import enum
import sys
import types

from .. import _rebuild
from .._compat import PY_VERSION
from .naming import lookup_by_name

# Enum bookkeeping the metaclass rebuilds from the members by itself;
# setting it again would break the new class.
_ENUM_INTERNALS = frozenset({"_member_names_", "_member_map_", "_value2member_map_", "_unhashable_values_"})


def reduce_class(cls: type, sources=None):
    """``cls`` by value: a skeleton made like a class statement, then its attributes.

    ``sources``: the pickler's :class:`~.source.SourceFinder`, told which
    methods of a dataclass dataclasses made (see :func:`_reduce_dataclass`).
    """
    clsdict = dict(cls.__dict__)
    clsdict.pop("__dict__", None)
    clsdict.pop("__weakref__", None)
    # copyreg's cache, set when an instance is first pickled: leaving it out
    # keeps the class's bytes the same before and after (checkpoints of an
    # unchanged session must not differ), and copyreg makes it again on demand.
    clsdict.pop("__slotnames__", None)
    type_kwargs = {"__module__": cls.__module__, "__qualname__": cls.__qualname__}
    clsdict.pop("__module__", None)
    clsdict.pop("__qualname__", None)
    slots = clsdict.get("__slots__")
    if slots is not None:
        type_kwargs["__slots__"] = slots
        del clsdict["__slots__"]
        for slot in (slots,) if isinstance(slots, str) else slots:
            clsdict.pop(_mangle(cls.__name__, slot), None)
    if "__annotations__" in clsdict:
        # TypedDict and NamedTuple read their fields while the class is made.
        type_kwargs["__annotations__"] = clsdict.pop("__annotations__")
    abc_registry = []
    if "_abc_impl" in clsdict:
        del clsdict["_abc_impl"]
        registry = abc._get_dump(cls)[0]  # type: ignore[attr-defined]  # CPython's C abc
        abc_registry = [ref() for ref in registry if ref() is not None]
    metaclass = type(cls)
    bases = cls.__bases__
    orig_bases = clsdict.get("__orig_bases__")
    typing = sys.modules.get("typing")  # a class with __orig_bases__ was made by typing
    if orig_bases and (typing is None or typing.NamedTuple not in orig_bases):
        # Generic[T] and TypedDict check their bases: give them the same
        # __mro_entries__ path as the original class statement.  A NamedTuple
        # is a plain tuple subclass once made, and is rebuilt as one.
        bases = orig_bases
    if "__dataclass_params__" in clsdict and "__dataclass_fields__" in clsdict and sources is not None:
        args = (metaclass, cls.__name__, tuple(bases), type_kwargs)
        state = _dataclass_state(cls, clsdict, abc_registry, sources)
        return _rebuild.make_class, args, state, None, None, _rebuild.dataclass_setstate
    state = (clsdict, abc_registry)
    if isinstance(cls, enum.EnumMeta):
        members = {name: member._value_ for name, member in cls.__members__.items()}  # type: ignore[var-annotated]
        for name in list(members) + list(_ENUM_INTERNALS):
            clsdict.pop(name, None)
        if "_boundary_" in clsdict and clsdict["_boundary_"] is _inherited(cls, "_boundary_"):
            # The metaclass sets it again (Python 3.11+ flags; 3.10 has none).
            del clsdict["_boundary_"]
        enum_args = (metaclass, cls.__name__, cls.__bases__, members, type_kwargs)
        return _rebuild.make_enum, enum_args, state, None, None, _rebuild.class_setstate
    args = (metaclass, cls.__name__, tuple(bases), type_kwargs)
    return _rebuild.make_class, args, state, None, None, _rebuild.class_setstate


def _inherited(cls: type, name: str):
    return next((base.__dict__[name] for base in cls.__mro__[1:] if name in base.__dict__), None)


# ---------------------------------------------------------------- dataclasses

#: methods that dataclasses makes with exec (so with no source), from the
#: fields and options: another Python makes them again, its own way
_DATACLASS_METHODS = frozenset(
    {
        "__init__",
        "__repr__",
        "__eq__",
        "__lt__",
        "__le__",
        "__gt__",
        "__ge__",
        "__hash__",
        "__setattr__",
        "__delattr__",
    }
)


def _dataclass_state(cls, clsdict: dict, abc_registry: list, sources) -> tuple:
    """State for :func:`mason._rebuild.dataclass_setstate`: the class's
    attributes, and what dataclasses needs to make its methods again.

    Its options travel as plain flags (``_DataclassParams`` has other slots
    on other versions), ``__replace__`` (3.13+) as a flag, and the methods
    it made are named, their code marked so that another version gets a
    stand-in for each until the class is made again.
    """
    params = clsdict.pop("__dataclass_params__")
    flags = {name: getattr(params, name) for name in type(params).__slots__ if hasattr(params, name)}
    dataclasses = sys.modules["dataclasses"]
    replace = "__replace__" in clsdict and clsdict["__replace__"] is getattr(dataclasses, "_replace", None)
    if replace:
        del clsdict["__replace__"]
    made = []
    for name in sorted(_DATACLASS_METHODS & clsdict.keys()):
        code = _dataclass_made(clsdict[name])
        if code is not None:
            made.append(name)
            sources.mark_generated(code, f"{cls.__qualname__}.{name} was made by dataclasses")
    return clsdict, abc_registry, (PY_VERSION, flags, tuple(made), replace)


def _dataclass_made(func):
    """The code of ``func`` if dataclasses made it (with exec), else None;
    through the wrapper that makes ``__repr__`` safe from recursion."""
    for _ in range(3):
        if not isinstance(func, types.FunctionType):
            return None
        code = func.__code__
        # 3.10 has no co_qualname: the file name alone tells
        if code.co_filename == "<string>" and getattr(code, "co_qualname", _MADE).startswith(_MADE):
            return code
        func = func.__dict__.get("__wrapped__")
    return None


_MADE = "__create_fn__.<locals>."


def _mangle(class_name: str, name: str) -> str:
    if name.startswith("__") and not name.endswith("__"):
        return f"_{class_name.lstrip('_')}{name}"
    return name


def reduce_typevar(tv):
    if lookup_by_name(tv):
        return tv.__name__
    args = (tv.__name__, tv.__constraints__, tv.__bound__, tv.__covariant__, tv.__contravariant__)
    return _rebuild.make_typevar, args


TABLE: dict = {}  # TypeVar: see stdlib.loaded_tables (typing may not be loaded)
