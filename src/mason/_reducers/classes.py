"""Reducers for classes defined where they cannot be imported by name."""

from __future__ import annotations

import abc
import enum
import sys

from .. import _rebuild
from .naming import lookup_by_name

# Enum bookkeeping the metaclass rebuilds from the members by itself;
# setting it again would break the new class.
_ENUM_INTERNALS = frozenset(
    {"_member_names_", "_member_map_", "_value2member_map_", "_unhashable_values_"}
)


def reduce_class(cls: type):
    """``cls`` by value: a skeleton made like a class statement, then its attributes."""
    clsdict = dict(cls.__dict__)
    clsdict.pop("__dict__", None)
    clsdict.pop("__weakref__", None)
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
        registry = abc._get_dump(cls)[0]
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
    state = (clsdict, abc_registry)
    if isinstance(cls, enum.EnumMeta):
        members = {name: member._value_ for name, member in cls.__members__.items()}
        for name in list(members) + list(_ENUM_INTERNALS):
            clsdict.pop(name, None)
        args = (metaclass, cls.__name__, cls.__bases__, members, type_kwargs)
        return _rebuild.make_enum, args, state, None, None, _rebuild.class_setstate
    args = (metaclass, cls.__name__, tuple(bases), type_kwargs)
    return _rebuild.make_class, args, state, None, None, _rebuild.class_setstate


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
