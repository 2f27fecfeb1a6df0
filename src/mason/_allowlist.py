"""The policy of a restricted load: which globals a file may name, which
objects a load may obtain, and which of mason's reconstructors it may call.

An allowlist entry means the objects a module *defines*, not what is
reachable from it: ``"numpy"`` allows classes and functions whose home is
``numpy`` or one of its submodules, never ``numpy:core._internal.sys`` (the
``sys`` module numpy happens to import) nor a bound method or instance found
there.  Every object a load obtains (a global, or the result of one of the
attribute accessors) is judged by where it really comes from, not by the
name the file used.  ``"os.path:join"`` allows exactly that global.

mason's own reconstructors are allowed by exact name from a frozen table,
each with the rule that judges its arguments.  Two pseudo-globals name what
mason itself can rebuild that is more than data: :data:`CODE` (functions
and methods saved by value: bytecode from the file) and :data:`FILES` (file
handles reopened by name, which may create files).

:data:`DATA` is a preset of exact globals for numpy arrays and dtypes,
pandas frames, series, indexes and categoricals, and the standard library's
value types: a file that needs only these can be loaded from a stranger.

The machine that enforces this (scan first, then load) is in ``_vm.py``.
An allowlist narrows what a file can reach; it is not a sandbox (see
docs/security.md).
"""

from __future__ import annotations

import builtins
import re
import sys
import types

from .errors import ForbiddenGlobalError

__all__ = ["CODE", "FILES", "DATA", "GUARDED", "Allowlist", "REBUILDERS", "RESOLVERS"]

#: allow-pattern for functions and methods saved by value (they carry bytecode)
CODE = "mason:code"
#: allow-pattern for file handles that are reopened by name on load
FILES = "mason:files"

REBUILD = "mason._rebuild"

# Always allowed: value types of builtins and copyreg's object rebuilders.
# They build objects of allowed classes and reach nothing by themselves
# (their arguments are checked on their own; see _vm.py for the limits put on
# calling them).
ALWAYS = frozenset(
    [
        ("builtins", name)
        for name in (
            "object",
            "bool",
            "int",
            "float",
            "complex",
            "str",
            "bytes",
            "bytearray",
            "list",
            "tuple",
            "dict",
            "set",
            "frozenset",
            "slice",
            "range",
            "type",
        )
    ]
    + [("copyreg", name) for name in ("_reconstructor", "__newobj__", "__newobj_ex__")]
    + [("_codecs", "encode")]  # checked: only str -> latin1 bytes (see _vm.py)
)

# mason._rebuild, by the rule that allows each (FROZEN with _rebuild.py: a
# name missing here is refused, so a new reconstructor must be classified):
#   "data"     builds only what its arguments describe, checked in _rebuild.py
#   "module"   import_module / module_dict / module_attribute: the module is checked
#   "access"   an attribute accessor: its result is judged like a global
#   CODE/FILES gated by the pseudo-global
#   a package  imports that package to rebuild its objects
REBUILDERS = {
    "make_module": "data",
    "module_setstate": "data",
    "make_cell": "data",
    "cell_setstate": "data",
    "make_function": CODE,
    "function_setstate": CODE,
    "empty_cell_marker": "data",
    "make_class": "data",
    "make_enum": "data",
    "class_setstate": "data",
    "make_typevar": "data",
    "make_staticmethod": "data",
    "make_classmethod": "data",
    "make_dict_keys": "data",
    "make_dict_values": "data",
    "make_dict_items": "data",
    "make_mappingproxy": "data",
    "make_memoryview": "data",
    "make_weakref": "data",
    "make_lock": "data",
    "make_rlock": "data",
    "make_dead_weakref": "data",
    "make_weakproxy_to": "data",
    "make_dead_weakproxy": "data",
    "make_tempfile": "data",
    "make_stringio": "data",
    "make_keyed_ref": "data",
    "make_weakref_with_callback": "data",
    "make_array": "data",
    "bytes_from_buffer": "data",
    "import_module": "module",
    "module_dict": "module",
    "module_attribute": "module",
    "import_package": "module",
    "make_method": "data",
    "reopen_file": FILES,
    "getattr_chain": "access",
    "class_attribute": "access",
    "code_from_marshal": CODE,
    "make_file": FILES,
    "code_portable": CODE,  # bytecode, or on another Python source compiled from the file
    "dataclass_setstate": CODE,  # on another Python, dataclasses generates methods from the file's fields
    "matplotlib_rcparams": "matplotlib",
    "torch_storage": "torch",
    "torch_tensor": "torch",
    "torch_parameter": "torch",
    "torch_tensor_setstate": "torch",
    "torch_typed_storage": "torch",
    # Dask: partitions are read (with the load's allowlist enforced on each
    # file) into futures or tasks; a client is only a note
    "dask_future": "distributed",
    "dask_graph": "dask",
    "dask_partition_file": "dask",
    "dask_cluster_note": "data",
    # dill's reconstructors, as _dillcompat.py maps them (see _vm.py for the
    # wrappers that judge what dill_import_module, dill_load_type,
    # dill_namedtuple and dill_setitems reach)
    "dill_create_function": CODE,
    "dill_create_code": CODE,
    "dill_create_cell": "data",
    "dill_create_type": "data",
    "dill_load_type": "access",
    "dill_import_module": "module",
    "dill_class_attribute": "access",
    "dill_namedtuple": "module",
    "dill_ndarray": "numpy",
    "dill_dtype_class": "numpy",
    "dill_filehandle": FILES,
    "dill_rlock": "data",
    "dill_weakref": "data",
    "dill_weakproxy": "data",
    "dill_typing_tuple": "data",
    "dill_eval_repr": "data",
    "dill_setitems": "data",
    "dill_setattr": "data",
    "dill_delattr": "data",
}

#: builtins that are attribute accessors when a file names them: allowed only
#: as checked accessors (their result is judged like a global)
ACCESSORS = frozenset({("builtins", "getattr")})

#: functions that turn strings into objects (or run code) whatever package
#: they live in: a module pattern never allows them, only their exact name.
#: They are how published bypasses of other pickle scanners reach ``os``.
RESOLVERS = frozenset(
    {
        ("builtins", "eval"),
        ("builtins", "exec"),
        ("builtins", "compile"),
        ("builtins", "__import__"),
        ("builtins", "open"),
        ("builtins", "breakpoint"),
        ("builtins", "input"),
        ("builtins", "vars"),
        ("builtins", "globals"),
        ("builtins", "locals"),
        ("builtins", "setattr"),
        ("builtins", "delattr"),
        ("importlib", "import_module"),
        ("importlib", "__import__"),
        ("importlib", "reload"),
        ("pkgutil", "resolve_name"),
        ("pkgutil", "get_importer"),
        ("runpy", "run_path"),
        ("runpy", "run_module"),
        ("operator", "attrgetter"),
        ("operator", "methodcaller"),
        ("operator", "itemgetter"),
        ("_operator", "attrgetter"),
        ("_operator", "methodcaller"),
        ("_operator", "itemgetter"),
        ("functools", "partial"),
        ("functools", "reduce"),
        ("_functools", "partial"),
        ("_functools", "reduce"),
        ("code", "InteractiveInterpreter"),
        ("code", "InteractiveConsole"),
        ("pydoc", "locate"),
        ("numpy", "load"),
        ("numpy.lib.npyio", "load"),
        ("numpy.lib._npyio_impl", "load"),
        ("numpy.testing._private.utils", "runstring"),
        ("pandas", "read_pickle"),
        ("torch", "load"),
    }
)

_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_SIMPLE_TYPES = (type(None), bool, int, float, complex, str, bytes)


def _is_dunder(part: str) -> bool:
    return part.startswith("__") and part.endswith("__")


class Allowlist:
    """Module prefixes and ``module:name`` globals that a load may use.

    ``target``: the name of the module the *caller* loads into (``__main__``
    unless they named one).  It is never taken from the file: a file that
    claims to come from ``os`` gains nothing by it.
    """

    def __init__(self, patterns, target: str = "__main__"):
        if isinstance(patterns, (str, _Preset)):
            patterns = [patterns]
        self.modules: set[str] = set()
        self.globals: set[tuple[str, str]] = set()
        self.target = target
        flat: list = []
        for pattern in patterns:
            if isinstance(pattern, _Preset):
                self.globals |= pattern.globals
                self.modules |= pattern.modules
                flat.append(pattern)
                continue
            if not isinstance(pattern, str):
                raise TypeError(f"allow patterns are strings, not {type(pattern).__name__}: {pattern!r}")
            module, sep, name = pattern.partition(":")
            if not _MODULE.fullmatch(module) or (sep and not _MODULE.fullmatch(name)):
                raise ValueError(f"not an allow pattern: {pattern!r} (use 'package' or 'module:name')")
            if module == "mason" or module.startswith("mason."):
                if sep and (module, name) in (("mason", "code"), ("mason", "files")):
                    self.globals.add((module, name))
                    flat.append(pattern)
                    continue
                raise ValueError(f"{pattern!r}: mason's own modules cannot be allowed (use mason.CODE or mason.FILES)")
            if sep:
                self.globals.add((module, name))
            else:
                self.modules.add(module)
            flat.append(pattern)
        self.patterns = tuple(flat)
        # an exact global ``m:name`` lets the load import ``m`` (it must, to find it)
        self._global_modules = frozenset(module for module, _ in self.globals)

    @classmethod
    def from_arg(cls, allow, target: str = "__main__") -> Allowlist | None:
        """None means no restriction (the default of every load function)."""
        if allow is None:
            return None
        if isinstance(allow, Allowlist):
            return cls(allow.patterns, target)
        return cls(allow, target)

    # -- names ------------------------------------------------------------

    def gate(self, name: str) -> bool:
        return tuple(name.split(":")) in self.globals

    def module_allowed(self, module: str) -> bool:
        """May the file import ``module`` (and use what it defines)?"""
        return any(module == m or module.startswith(m + ".") for m in self.modules)

    def import_allowed(self, module: str) -> bool:
        """May a load import ``module`` by name (a module variable of the session)?

        Also a module this process has already imported: handing out a
        reference to it runs nothing, and everything the load could reach
        through it is judged on its own (attributes by origin; no calls,
        no BUILD, no item assignment on it).
        """
        if self.module_allowed(module) or module in self._global_modules:
            return True
        return isinstance(module, str) and sys.modules.get(module) is not None

    def global_problem(self, module: str, name: str) -> str | None:
        """Why the global ``module:name`` may not be named, or None if it may."""
        if (module, name) in self.globals or (module, name) in ALWAYS:
            return None
        if module == REBUILD:
            rule = REBUILDERS.get(name)
            if rule is None:
                return f"{module}:{name} (not one of mason's reconstructors)"
            if rule in ("data", "module", "access"):
                return None
            if rule in (CODE, FILES):
                return None if self.gate(rule) else rule
            return None if self.module_allowed(rule) else f"{rule} (to rebuild its objects)"
        if module == "mason" or module.startswith("mason."):
            return f"{module}:{name} (mason's internals are never reachable from a file)"
        if (module, name) in ACCESSORS:
            return None
        if any(_is_dunder(part) or not part for part in name.split(".")):
            return f"{module}:{name}"
        if (module, name) in RESOLVERS:
            return f"{module}:{name} (it resolves names or runs code: only its exact pattern allows it)"
        return None if self.module_allowed(module) else f"{module}:{name}"

    # -- objects ----------------------------------------------------------

    def origin_allowed(self, origin) -> bool:
        return isinstance(origin, str) and (origin == self.target or self.module_allowed(origin))

    def reach_problem(self, obj, how: str, exact: bool = False) -> str | None:
        """Why the load may not hold ``obj``, obtained as ``how``.

        Allowed: classes and functions whose home module is allowed, builtin
        functions of an allowed module, and plain values (numbers, strings).
        Everything else (modules, instances, bound methods, descriptors,
        dicts) only when the caller named this exact global (``exact``).
        """
        if exact or type(obj) in _SIMPLE_TYPES:
            return None
        home = (getattr(obj, "__module__", None), getattr(obj, "__qualname__", None))
        if home in RESOLVERS and home not in self.globals:
            return f"{how} (which is {home[0]}:{home[1]}, a resolver)"
        if isinstance(obj, type):
            if _is_builtin_value_type(obj) or self.origin_allowed(obj.__module__):
                return None
            return f"{how} (which is the class {obj.__module__}.{obj.__qualname__})"
        if isinstance(obj, types.FunctionType):
            if self.origin_allowed(obj.__module__):
                return None
            return f"{how} (which is the function {obj.__module__}.{obj.__qualname__})"
        if isinstance(obj, types.BuiltinFunctionType):
            owner = obj.__self__
            if owner is None or isinstance(owner, types.ModuleType):
                origin = owner.__name__ if owner is not None else obj.__module__
                if self.origin_allowed(origin):
                    return None
                return f"{how} (which is the builtin {origin}.{obj.__name__})"
            return f"{how} (a method bound to a {type(owner).__name__} object)"
        if isinstance(obj, types.ModuleType):
            return f"{how} (which is the module {obj.__name__})"
        return f"{how} (a {type(obj).__module__}.{type(obj).__qualname__} object, not a class or function)"

    def refuse(self, problem: str):
        raise ForbiddenGlobalError(f"this file uses {problem}, which is not allowed")

    def check(self, problems, functions=()) -> None:
        """Refuse, listing every offender, if the scanned stream needs more."""
        offenders = sorted(set(problems))
        if not offenders:
            return
        hints = []
        if CODE in offenders:
            names = ", ".join(sorted(set(functions))[:8]) or "?"
            hints.append(f"{CODE!r} allows the functions saved by value ({names})")
        if FILES in offenders:
            hints.append(f"{FILES!r} allows reopening saved file handles")
        shown = offenders[:20] + ([f"and {len(offenders) - 20} more"] if len(offenders) > 20 else [])
        raise ForbiddenGlobalError(
            "refused before running anything: this file would use "
            + ", ".join(shown)
            + ", outside the allowlist"
            + (" (" + "; ".join(hints) + ")" if hints else "")
        )


def _is_builtin_value_type(cls) -> bool:
    if cls in (type(None), type(NotImplemented), type(Ellipsis)):
        return True
    return ("builtins", cls.__name__) in ALWAYS and getattr(builtins, cls.__name__, None) is cls


# ====================================================================== presets


class _Preset:
    """A named set of allow patterns (exact globals): pass it as ``allow=``
    alone or inside a list with other patterns."""

    def __init__(self, name: str, globals_: set[tuple[str, str]], modules=()):
        self.name = name
        self.globals = frozenset(globals_)
        self.modules = frozenset(modules)

    def __repr__(self) -> str:
        return f"mason.{self.name}"

    def __iter__(self):
        return iter(sorted(f"{m}:{n}" for m, n in self.globals))


def _names(module: str, *names: str) -> set[tuple[str, str]]:
    return {(module, name) for name in names}


# Exact reconstructors, found by saving these types with this numpy (1.x
# and 2.x spell the core module differently) and pandas (2.x, 3.x); none of
# them resolves names or calls what it is given.
_DATA = set().union(
    _names("collections", "OrderedDict", "defaultdict", "Counter", "deque"),
    _names("datetime", "date", "datetime", "time", "timedelta", "timezone"),
    _names("decimal", "Decimal"),
    _names("fractions", "Fraction"),
    _names("uuid", "UUID"),
    _names("numpy", "ndarray", "dtype"),
    *[_names(f"numpy.{core}.multiarray", "_reconstruct", "scalar") for core in ("core", "_core")],
    *[_names(f"numpy.{core}.numeric", "_frombuffer") for core in ("core", "_core")],
    *[
        _names("numpy.dtypes", name)
        for name in (
            "Float64DType",
            "Float32DType",
            "Float16DType",
            "Int64DType",
            "Int32DType",
            "Int16DType",
            "Int8DType",
            "UInt64DType",
            "UInt32DType",
            "UInt16DType",
            "UInt8DType",
            "BoolDType",
            "Complex64DType",
            "Complex128DType",
            "StrDType",
            "BytesDType",
            "DateTime64DType",
            "TimeDelta64DType",
            "VoidDType",
            "ObjectDType",
            "StringDType",
        )
    ],
    _names(
        "pandas",
        "DataFrame",
        "Series",
        "Index",
        "RangeIndex",
        "MultiIndex",
        "DatetimeIndex",
        "TimedeltaIndex",
        "PeriodIndex",
        "CategoricalIndex",
        "IntervalIndex",
        "Categorical",
        "CategoricalDtype",
        "StringDtype",
        "Timestamp",
        "Timedelta",
        "Period",
        "Interval",
        "DatetimeTZDtype",
        "PeriodDtype",
        "IntervalDtype",
        "Int64Dtype",
        "Int32Dtype",
        "Float64Dtype",
        "BooleanDtype",
        "ArrowDtype",
        "NA",
    ),
    _names(
        "pandas.arrays",
        "DatetimeArray",
        "TimedeltaArray",
        "PeriodArray",
        "StringArray",
        "IntegerArray",
        "FloatingArray",
        "BooleanArray",
        "IntervalArray",
        "Categorical",
        "ArrowStringArray",
        "ArrowExtensionArray",
    ),
    # Columns backed by Arrow (pandas 3's default strings when pyarrow is
    # installed): arrays from their buffers, and data types by their factories.
    _names(
        "pyarrow.lib",
        "_restore_array",
        "py_buffer",
        "type_for_alias",
        "field",
        "timestamp",
        "time32",
        "time64",
        "duration",
        "decimal128",
        "decimal256",
        "dictionary",
        "list_",
        "large_list",
        "struct",
        "map_",
        "chunked_array",
    ),
    _names("pandas.core.frame", "DataFrame"),
    _names("pandas.core.series", "Series"),
    _names("pandas.core.indexes.base", "Index", "_new_Index"),
    _names("pandas.core.indexes.datetimes", "_new_DatetimeIndex"),
    _names("pandas.core.indexes.period", "_new_PeriodIndex"),
    _names("pandas.core.indexes.range", "RangeIndex"),
    _names("pandas.core.indexes.multi", "MultiIndex"),
    _names("pandas.core.arrays.categorical", "Categorical"),
    _names("pandas.core.dtypes.dtypes", "CategoricalDtype", "DatetimeTZDtype", "PeriodDtype"),
    _names("pandas.core.internals.managers", "BlockManager", "SingleBlockManager"),
    _names("pandas.core.internals.blocks", "new_block"),
    _names("pandas._libs.internals", "_unpickle_block"),
    _names("pandas._libs.arrays", "__pyx_unpickle_NDArrayBacked"),
    _names("pandas._libs.tslibs.timestamps", "_unpickle_timestamp"),
    _names("pandas._libs.tslibs.timedeltas", "_timedelta_unpickle"),
    _names("pandas._libs.tslibs.nattype", "__nat_unpickle"),
    _names(
        "pandas._libs.tslibs.offsets",
        "Day",
        "Hour",
        "Minute",
        "Second",
        "Milli",
        "Micro",
        "Nano",
        "MonthEnd",
        "MonthBegin",
        "YearEnd",
        "YearBegin",
        "QuarterEnd",
        "QuarterBegin",
        "Week",
        "BusinessDay",
    ),
    _names("pytz", "_p", "_UTC", "utc"),
    _names("zoneinfo", "ZoneInfo"),
)


def _validated_arrow_array(restore):
    """pyarrow's ``_restore_array`` trusts the lengths and offsets it is given
    (a crafted file makes an array that reads past its buffers: a crash or a
    leak of memory); a restricted load checks every array it builds."""

    def restore_array(*args):
        array = restore(*args)
        array.validate(full=True)  # lengths, offsets, dictionary indices, UTF-8
        return array

    return restore_array


#: (module, name) -> a wrapper: reconstructors of allowed names that trust
#: their arguments; a restricted load hands out the wrapped function instead
#: (found by identity, whatever name the stream uses to reach it).
GUARDED = {("pyarrow.lib", "_restore_array"): _validated_arrow_array}

#: data only: numpy arrays/dtypes/scalars, pandas frames, series, indexes,
#: categoricals and timestamps, and the standard library's value types,
#: each by its exact reconstructor
DATA = _Preset("DATA", _DATA)
