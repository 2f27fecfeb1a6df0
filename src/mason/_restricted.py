"""The restricted load: the pickle machine of ``_vm.py`` loading for real
under an allowlist, enforcing it on every opcode (see ``_vm.py``'s
docstring for the rules)."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time
    from typing import Any, ClassVar

import enum
import importlib
import pickle
import sys
import types
import weakref

from . import _dillcompat, _rebuild
from ._allowlist import ACCESSORS, ALWAYS, CODE, GUARDED, REBUILD, REBUILDERS, Allowlist
from ._restricted_checks import check_builtin_call, check_creator, safe_rcparams
from ._vm import _CREATORS, _ITEMS_PER_BYTE, _MAX_ITEMS, _SPECIAL, _Machine
from .errors import MasonError, UnpicklingError


class RestrictedUnpickler(_Machine):
    allowlist: Allowlist  # never None here
    memo: dict[int, Any]
    """Loads under an allowlist, enforcing it on every step (see the module docstring).

    ``session``: for a session, ``(saved module name, target namespace,
    target module)``: the file's own module name means the caller's target.
    ``load_state``: the :class:`_rebuild._LoadState` shared by all pickles of
    one load.  ``dill_session``: for a session file written by dill, the
    name dill gave its module (``__main__``, ``__runtime__.name``): dill's
    ``_import_module`` of it makes ``dill_standin``, a new module that the
    saved state fills (the caller applies it to the target).
    """

    def __init__(
        self,
        file,
        allowlist: Allowlist,
        *,
        buffers=None,
        session=None,
        load_state=None,
        map_location=None,
        dill_session=None,
    ):
        super().__init__(file, allowlist, buffers=buffers)
        self._saved_module: str | None
        self._namespace: dict | None
        self._module: types.ModuleType | None
        self._saved_module, self._namespace, self._module = session or (None, None, None)
        self._dill_session = dill_session
        self.dill_standin = None
        self._state = load_state if load_state is not None else _rebuild._LoadState(self._namespace)
        self._map_location = map_location
        self._granted: dict[int, object] = {}  # what find_class handed out (callable)
        self._guarded: dict[int, object] = {}  # id(guarded function) -> its wrapper, this load's
        self._fresh: dict[int, object] = {}  # objects and containers this load created
        self._undo: list | None = None
        self._allocated = 0  # items the builtin constructors were asked for
        self._rebuilders = {name: self._wrap_rebuilder(name) for name in REBUILDERS}
        self._getattr = self._checked_accessor("builtins:getattr", _plain_getattr)
        # reconstructors that hand out objects that existed before the load
        self._accessors = {
            self._getattr,
            *(
                self._rebuilders[name]
                for name in (
                    "import_module",
                    "module_dict",
                    "module_attribute",
                    "import_package",
                    "getattr_chain",
                    "class_attribute",
                    "empty_cell_marker",
                    "matplotlib_rcparams",
                    "dill_import_module",
                    "dill_load_type",
                    "dill_class_attribute",
                )
            ),
        }

    # -- the memo, with an undo log for sessions ------------------------

    def start_undo(self) -> None:
        """Log memo writes from now on, so that ``undo`` can take them back."""
        self._undo = []

    def undo(self) -> None:
        """Put the memo back as it was at ``start_undo`` (a variable failed halfway)."""
        memo = self.memo
        for index, old in reversed(self._undo or ()):
            if old is _ABSENT:
                memo.pop(index, None)
            else:
                memo[index] = old
        self._undo = []

    def _memo_put(self, index: int) -> None:
        if not self.stack:
            raise UnpicklingError("memoizing from an empty stack")
        if self._undo is not None:
            self._undo.append((index, self.memo.get(index, _ABSENT)))
        self.memo[index] = self.stack[-1]

    def _op_memoize(self):
        self._memo_put(len(self.memo))

    def _op_put(self):
        index = int(self.readline()[:-1])
        if index < 0:
            raise UnpicklingError("negative PUT argument")
        self._memo_put(index)

    def _op_binput(self):
        self._memo_put(self.read(1)[0])

    def _op_long_binput(self):
        self._memo_put(int.from_bytes(self.read(4), "little"))

    dispatch: ClassVar[dict[int, Any]] = dict(_Machine.dispatch)
    dispatch[pickle.MEMOIZE[0]] = _op_memoize
    dispatch[pickle.PUT[0]] = _op_put
    dispatch[pickle.BINPUT[0]] = _op_binput
    dispatch[pickle.LONG_BINPUT[0]] = _op_long_binput

    def load(self):
        tokens = (_rebuild._LOAD.set(self._state), _rebuild._MAP_LOCATION.set(self._map_location))
        try:
            return super().load()
        finally:
            _rebuild._MAP_LOCATION.reset(tokens[1])
            _rebuild._LOAD.reset(tokens[0])

    # -- globals -------------------------------------------------------

    def find_class(self, module, name):
        module, name = self._names(module, name)
        allow = self.allowlist
        if module is _SPECIAL:
            return self._dill_special(name)
        problem = allow.global_problem(module, name)
        if problem is not None:
            allow.refuse(problem)
        if module == REBUILD:
            obj = self._rebuilders[name]
        elif (module, name) in ACCESSORS:
            obj = self._getattr
        else:
            obj = self._guard(self._resolve(module, name))
        self._granted[id(obj)] = obj
        return obj

    def _guard(self, obj):
        """``obj``, or its checking wrapper when it is one of GUARDED."""
        for (module, name), wrap in GUARDED.items():
            loaded = sys.modules.get(module)
            if loaded is not None and getattr(loaded, name, None) is obj:
                wrapped = self._guarded.get(id(obj))
                if wrapped is None:
                    wrapped = self._guarded[id(obj)] = wrap(obj)
                return wrapped
        return obj

    def _dill_special(self, key):
        """dill's hand-written globals (see _dillcompat.HAND_WRITTEN)."""
        if key == "namespace":  # as module_dict of the session's module: only the namespace loaded into
            return self._module_dict(self._saved_module or "__main__")
        if key == "NoneType":
            self._granted[id(type(None))] = type(None)
            return type(None)
        return {"dill": _dillcompat.DILL_MODULE, "open": _dillcompat.OPENER, "empty_cell": _rebuild._EMPTY_CELL}[key]

    def _resolve(self, module, name):
        allow = self.allowlist
        exact = (module, name) in allow.globals or (module, name) in ALWAYS
        try:
            obj = importlib.import_module(module)
        except ImportError as exc:
            raise UnpicklingError(f"cannot import {module!r} for the global {module}:{name}: {exc}") from None
        parts = name.split(".") if self.proto >= 4 else [name]
        for i, part in enumerate(parts):
            owner = obj
            if i and not exact:
                # Walk only through modules and classes this allowlist allows.
                if isinstance(owner, types.ModuleType):
                    if not allow.origin_allowed(owner.__name__):
                        allow.refuse(f"{module}:{name} (through the module {owner.__name__})")
                else:
                    problem = allow.reach_problem(owner, f"{module}:{'.'.join(parts[:i])}")
                    if problem is not None or not isinstance(owner, type):
                        allow.refuse(problem or f"{module}:{name} (through a {type(owner).__name__} object)")
            try:
                obj = getattr(owner, part)
            except AttributeError:
                renamed = _RENAMES.get((module, name))
                if renamed is None:
                    raise UnpicklingError(f"{module}:{name} does not exist here") from None
                return self._resolve(*renamed)
        problem = allow.reach_problem(obj, f"{module}:{name}", exact=exact)
        if problem is not None:
            allow.refuse(problem)
        return obj

    def persistent_load(self, pid):
        raise UnpicklingError("this stream uses persistent ids, which a restricted load does not resolve")

    # -- calls -----------------------------------------------------------

    def _callable(self, func) -> bool:
        if self._granted.get(id(func)) is func:
            return True
        if self._state.made.get(id(func)) is func:
            return isinstance(func, type) or self.allowlist.gate(CODE)
        return False

    def _call(self, func, args, kwargs):
        allow = self.allowlist
        if not self._callable(func):
            allow.refuse(f"a call of a {type(func).__name__} object that is not an allowed global")
        if isinstance(func, type) and issubclass(func, type):
            allow.refuse(f"a call of the metaclass {func.__qualname__} (it would create a class)")
        self._hashing(args)
        self._allocated += check_builtin_call(func, args, allow)
        if self._allocated > _MAX_ITEMS + _ITEMS_PER_BYTE * self._stream_size():
            allow.refuse(
                f"builtin constructors asked for {self._allocated} items in all (more than the file could hold)"
            )
        if func in _CREATORS:
            check_creator(func, args, allow)
        try:
            result = func(*args, **(kwargs or {}))
        except MasonError:
            raise
        except Exception as exc:  # the allowed code's own error: name it, not the stream
            raise UnpicklingError(
                f"cannot rebuild an object with {_name_of(func)}: {type(exc).__name__}: {exc}"
            ) from exc
        # type(), not isinstance(): a dead weak proxy raises on __class__
        if issubclass(type(result), _REACHABLE) and self._state.made.get(id(result)) is not result:
            # An allowed function that returns a function, class or module
            # (a resolver the list does not know) hands out only what the
            # list would have allowed as a global.
            # A method bound to an object this load built is as harmless as its function.
            problem = allow.reach_problem(result, f"the result of calling {_name_of(func)}")
            bound_to = result.__self__ if isinstance(result, types.MethodType) else None
            if problem is not None and func not in self._accessors and not self._bound_to_own(result, bound_to):
                allow.refuse(problem)
        if func not in self._accessors:
            # What a constructor or an allowed function returns is new, unless
            # it is a kind of object that is always shared (see _mark_fresh).
            self._mark_fresh(result)
        return result

    def _new(self, cls, args, kwargs):
        allow = self.allowlist
        if not isinstance(cls, type):
            raise UnpicklingError(f"NEWOBJ: the class argument is a {type(cls).__name__}, not a class")
        if not self._callable(cls):
            allow.refuse(f"NEWOBJ of {cls.__module__}.{cls.__qualname__}, which did not come from an allowed global")
        if issubclass(cls, type):
            allow.refuse(f"NEWOBJ of the metaclass {cls.__qualname__} (it would create a class)")
        self._hashing(args)
        obj = cls.__new__(cls, *args, **(kwargs or {}))
        self._mark_fresh(obj)
        return obj

    def _mark_fresh(self, obj):
        if (
            issubclass(type(obj), _SHARED_KINDS)
            or self._granted.get(id(obj)) is obj
            or any(obj is stream for stream in _STD_STREAMS())
        ):
            # Shared objects are never "created by this load", nor are proxies,
            # whose attributes and items are another object's.
            return
        self._fresh[id(obj)] = obj

    def _owned(self, obj) -> bool:
        return self._fresh.get(id(obj)) is obj or self._state.made.get(id(obj)) is obj

    # -- state and items -----------------------------------------------

    def _build(self, inst, state):
        if not self._owned(inst):
            self.allowlist.refuse(f"BUILD on a {type(inst).__qualname__} object it did not create (setting attributes)")
        setstate = getattr(inst, "__setstate__", None)
        if setstate is not None:
            setstate(state)
            return
        slotstate = None
        if isinstance(state, tuple) and len(state) == 2:
            state, slotstate = state
        if state:
            if not isinstance(state, dict):
                raise UnpicklingError("BUILD: the state is not a dict")
            inst_dict = inst.__dict__
            for key, value in state.items():
                inst_dict[sys.intern(key) if type(key) is str else key] = value
        if slotstate:
            if not isinstance(slotstate, dict):
                raise UnpicklingError("BUILD: the slot state is not a dict")
            for key, value in slotstate.items():
                setattr(inst, key, value)

    def _check_target(self, target, what):
        if not self._owned(target):
            self.allowlist.refuse(f"{what} on a {type(target).__qualname__} object it did not create")

    def _setitems(self, target, items):
        self._check_target(target, "item assignment")
        self._hashing(items[0::2])
        for i in range(0, len(items), 2):
            target[items[i]] = items[i + 1]

    def _extend(self, target, items):
        self._check_target(target, "appending")
        if type(target) is list:
            target.extend(items)
            return
        extend = getattr(target, "extend", None)
        if extend is not None:
            extend(items)
        else:
            for item in items:
                target.append(item)

    def _add(self, target, items):
        self._check_target(target, "adding to a set")
        self._hashing(items)
        if isinstance(target, set):
            target.update(items)
        else:
            for item in items:
                target.add(item)

    def _new_container(self, value):
        self._fresh[id(value)] = value
        return value

    def _frozenset(self, items):
        return frozenset(items)

    # -- mason's reconstructors, each with the rule that judges its arguments

    def _wrap_rebuilder(self, name):
        function = getattr(_rebuild, name, None)
        if function is None:
            return _missing_rebuilder(name)
        if name == "import_module":
            return self._import_module
        if name == "module_dict":
            return self._module_dict
        if name == "module_attribute":
            return self._module_attribute
        if name == "import_package":
            return self._import_package
        if name == "getattr_chain":
            return self._checked_accessor(f"{REBUILD}:getattr_chain", function)
        if name == "class_attribute":
            return self._class_attribute
        if name == "matplotlib_rcparams":
            return safe_rcparams
        if name in ("make_weakref_with_callback", "make_keyed_ref"):
            return self._weakref_maker(function)
        dill = {
            "dill_import_module": self._dill_import_module,
            "dill_load_type": self._dill_load_type,
            "dill_class_attribute": self._dill_class_attribute,
            "dill_namedtuple": self._dill_namedtuple,
            "dill_setitems": self._dill_setitems,
        }
        return dill.get(name, function)

    def _import_module(self, name):
        if name == self._saved_module and self._module is not None:
            return self._module
        if not isinstance(name, str) or not self.allowlist.import_allowed(name):
            self.allowlist.refuse(f"{name!r} (imported by name)")
        return _rebuild.import_module(name)

    def _import_package(self, name, submodules):
        if not isinstance(submodules, tuple):
            raise UnpicklingError("import_package: the submodules are not a tuple")
        for module in (name, *submodules):
            if not isinstance(module, str) or not self.allowlist.import_allowed(module):
                self.allowlist.refuse(f"{module!r} (imported by name)")
        return _rebuild.import_package(name, submodules)

    def _module_dict(self, name):
        if name == self._saved_module and self._namespace is not None:
            return self._namespace
        if name == "__main__" and self._saved_module is None and self.allowlist.target == "__main__":
            return sys.modules["__main__"].__dict__  # a single object's functions: dill's semantics
        self.allowlist.refuse(f"the namespace of module {name!r} (only the one loaded into may be written)")

    def _module_attribute(self, module, name):
        allow = self.allowlist
        if not (isinstance(module, str) and isinstance(name, str)):
            raise UnpicklingError("module_attribute: the names are not strings")
        problem = allow.global_problem(module, name)
        if problem is not None:
            allow.refuse(problem)
        obj = _rebuild.module_attribute(module, name)
        problem = allow.reach_problem(obj, f"{module}:{name}", exact=(module, name) in allow.globals)
        if problem is not None:
            allow.refuse(problem)
        return obj

    def _class_attribute(self, cls, name):
        allow = self.allowlist
        if not isinstance(cls, type):
            raise UnpicklingError("class_attribute: not a class")
        if cls in (type, object) or (allow.reach_problem(cls, "class") is not None and not self._owned(cls)):
            allow.refuse(f"an attribute of the class {getattr(cls, '__qualname__', '?')}")
        found = _rebuild.class_attribute(cls, name)
        inner = getattr(found, "__func__", None) if isinstance(found, (staticmethod, classmethod)) else None
        if inner is not None and self._state.made.get(id(inner)) is not inner:
            problem = allow.reach_problem(inner, f"{cls.__qualname__}.{name}")
            if problem is not None:
                allow.refuse(problem)
        return found

    def _checked_accessor(self, label, function):
        def accessor(obj, path, *default):
            if obj is _dillcompat.DILL_MODULE:  # dill's shims: getattr(dill._dill, name, default)
                return self._dill_shim(path, default)
            if not isinstance(path, str) or not path or default:
                raise UnpicklingError(f"{label}: the attribute is not a plain name")
            for part in path.split("."):
                if not part.isidentifier() or (part.startswith("__") and part.endswith("__")):
                    self.allowlist.refuse(f"the attribute {path!r} through {label} (never reachable)")
                owner, obj = obj, function(obj, part)
                self._judge_attribute(owner, obj, f"{label}(..., {path!r})")
            return obj

        return accessor

    # -- dill's reconstructors (see _dillcompat.py) ------------------------

    def _dill_shim(self, name, default):
        found = _dillcompat.shim(name, self._rebuilders)
        if found is _dillcompat.NO_SHIM:
            if len(default) != 1:
                raise UnpicklingError(f"dill._dill.{name} is not one of dill's shims")
            return default[0]
        self._granted[id(found)] = found
        return found

    def _dill_import_module(self, name):
        if not isinstance(name, str):
            raise UnpicklingError("dill_import_module: the module name is not a string")
        if name == self._dill_session and self._dill_session is not None:
            if self.dill_standin is None:
                self.dill_standin = _rebuild.make_module(name.rpartition("__runtime__.")[2])
            return self.dill_standin
        if name.startswith("__runtime__."):
            return _rebuild.dill_import_module(name)  # a new module of the file's own
        return self._import_module(name)

    def _dill_load_type(self, name):
        if name in _dillcompat.DATA_TYPES:
            found = _rebuild.dill_load_type(name)
            self._granted[id(found)] = found
            return found
        where = _dillcompat.type_global(name)
        if where is None:
            self.allowlist.refuse(f"dill's type {name} (no module holds it, so no allow pattern names it)")
        return self.find_class(*where)  # judged, and callable, exactly as that global

    def _dill_class_attribute(self, cls, name, repr_text):
        if not isinstance(repr_text, str):
            raise UnpicklingError("dill_class_attribute: the repr is not text")
        return self._class_attribute(cls, name)

    def _dill_namedtuple(self, name, fields, module, defaults=None):
        # Found by name only where the global module:name is allowed; else a new class.
        _rebuild._check_namedtuple(name, fields, module, defaults)
        if self.allowlist.global_problem(module, name) is None:
            found = _rebuild._existing_namedtuple(module, name, tuple(fields))
            if found is not None and self.allowlist.reach_problem(found, f"{module}:{name}") is None:
                return found
        return _rebuild._new_namedtuple(name, fields, module, defaults)

    def _dill_setitems(self, dest, source):
        self._check_target(dest, "dill's _setitems")
        return _rebuild.dill_setitems(dest, source)

    def _judge_attribute(self, owner, obj, how):
        """May the load hold ``obj``, read as an attribute of ``owner``?"""
        allow = self.allowlist
        if allow.reach_problem(obj, how) is None:
            return
        if isinstance(owner, type) and type(obj) is owner and self._class_ok(owner):
            return  # an enum member, a class-level singleton of an allowed class
        if self._bound_to_own(obj, owner):
            return
        allow.refuse(allow.reach_problem(obj, how))

    def _bound_to_own(self, obj, owner) -> bool:
        """Is ``obj`` a method bound to ``owner``, an object this load built,
        whose function this load built or the list allows?  (Holding it is
        holding its function.)"""
        if not isinstance(obj, (types.MethodType, types.BuiltinMethodType)) or owner is None:
            return False
        if getattr(obj, "__self__", None) is not owner or not self._owned(owner):
            return False
        func = getattr(obj, "__func__", None)
        return (
            func is None
            or self.allowlist.reach_problem(func, "a method") is None
            or self._state.made.get(id(func)) is func
        )

    def _class_ok(self, cls) -> bool:
        return self._owned(cls) or self.allowlist.reach_problem(cls, "class") is None

    def _weakref_maker(self, function):
        def maker(obj, callback, *rest):
            func = getattr(callback, "__func__", callback)
            if callback is not None and self._state.made.get(id(func)) is not func:
                self.allowlist.refuse("a weak reference whose callback the file did not create")
            return function(obj, callback, *rest)

        return maker


_ABSENT = object()
#: never "created by this load": shared kinds, and proxies (their attributes
#: and items are another object's)
_SHARED_KINDS = (
    type,
    types.ModuleType,
    types.FunctionType,
    types.BuiltinFunctionType,
    enum.Enum,
    weakref.ProxyType,
    weakref.CallableProxyType,
    types.MappingProxyType,
)


def _STD_STREAMS():
    return (sys.__stdin__, sys.__stdout__, sys.__stderr__, sys.stdin, sys.stdout, sys.stderr)


_REACHABLE = (type, types.FunctionType, types.BuiltinFunctionType, types.ModuleType, types.MethodType)


def _name_of(func) -> str:
    return f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', type(func).__name__)}"


_RENAMES = {
    ("enum", "EnumType"): ("enum", "EnumMeta"),  # EnumType is 3.11+'s name
    ("enum", "EnumMeta"): ("enum", "EnumType"),
}


def _plain_getattr(obj, name):
    return getattr(obj, name)


def _missing_rebuilder(name):
    def missing(*args):
        raise UnpicklingError(f"this file needs mason._rebuild.{name}, which this mason lacks")

    return missing
