"""What may a pickle import or call: an allowlist, checked twice.

1. Before anything runs, the stream is *scanned*: replayed through an
   unpickler whose ``find_class`` hands out inert tokens instead of real
   globals, so every opcode is interpreted by CPython's own unpickler (memo,
   marks, frames, extension codes) while no foreign code runs.  The scan
   collects every global the stream names and every argument of mason's own
   reconstructors that decides what they would import (a module name, an
   attribute path), and the load is refused, listing all offenders, if any
   is outside the allowlist.
2. While loading, the same policy guards ``find_class`` and mason's
   reconstructors, and also checks where a resolved object really comes from
   (``numpy:os`` names the ``os`` module, whatever the prefix says).

Patterns: ``"numpy"`` allows the module and its submodules; ``"os.path:join"``
allows one global.  Two pseudo-globals name what mason itself can rebuild
that is more than data: :data:`CODE` (functions and methods saved by value,
i.e. bytecode from the file) and :data:`FILES` (file handles reopened by
name, which may create files).  Plain data types of ``builtins`` and
``copyreg``'s object rebuilders are always allowed.

An allowlist narrows what a file can reach; it is not a sandbox (see
docs/security.md).
"""

from __future__ import annotations

import builtins
import io
import itertools
import pickle
import re
import types

from .errors import ForbiddenGlobalError, UnpicklingError

__all__ = ["CODE", "FILES", "Allowlist", "ScanReport", "scan_pickle", "StreamScanner"]

#: allow-pattern for functions and methods saved by value (they carry bytecode)
CODE = "mason:code"
#: allow-pattern for file handles that are reopened by name on load
FILES = "mason:files"

_REBUILD = "mason._rebuild"

# Data types and object rebuilders that cannot reach anything by themselves.
_ALWAYS = frozenset(
    [("builtins", name) for name in (
        "object", "bool", "int", "float", "complex", "str", "bytes", "bytearray",
        "list", "tuple", "dict", "set", "frozenset", "slice", "range", "type",
        "NoneType", "Ellipsis", "NotImplemented",
    )]
    + [("copyreg", name) for name in ("_reconstructor", "__newobj__", "__newobj_ex__")]
)

# mason._rebuild: structural reconstructors (they rebuild what their
# arguments describe; those arguments are globals checked on their own) ...
_SAFE_REBUILDERS = frozenset({
    "make_module", "module_setstate", "make_cell", "cell_setstate", "make_function",
    "function_setstate", "empty_cell_marker", "make_class", "make_enum", "class_setstate",
    "make_typevar", "make_staticmethod", "make_classmethod", "make_dict_keys",
    "make_dict_values", "make_dict_items", "make_mappingproxy", "make_memoryview",
    "make_weakref", "make_lock", "make_rlock", "class_attribute", "make_dead_weakref",
    "make_weakproxy_to", "make_dead_weakproxy", "make_tempfile", "make_stringio",
    "make_keyed_ref", "make_weakref_with_callback", "make_array", "bytes_from_buffer",
})
# ... the ones that are more than data, by the pseudo-global that allows them ...
_GATED_REBUILDERS = {"code_from_marshal": CODE, "make_file": FILES}
# ... and the ones whose arguments decide what they reach (checked per call).
_CHECKED_REBUILDERS = frozenset({"import_module", "module_dict", "getattr_chain"})
# ... and the ones that import a third-party package to rebuild its objects.
_PACKAGE_REBUILDERS = {
    "matplotlib_rcparams": "matplotlib",
    "torch_storage": "torch",
    "torch_tensor": "torch",
    "torch_parameter": "torch",
    "torch_tensor_setstate": "torch",
    "torch_typed_storage": "torch",
}

_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


class Allowlist:
    """Module prefixes and ``module:name`` globals that a load may use.

    ``session_module``: the module a session was saved from; its own
    namespace is what the load fills, so naming it is always allowed.
    """

    def __init__(self, patterns, session_module: str | None = None):
        if isinstance(patterns, str):
            patterns = [patterns]
        self.modules: set[str] = set()
        self.globals: set[tuple[str, str]] = set()
        for pattern in patterns:
            if not isinstance(pattern, str):
                raise TypeError(f"allow patterns are strings, not {type(pattern).__name__}: {pattern!r}")
            module, sep, name = pattern.partition(":")
            if not _MODULE.fullmatch(module) or (sep and not _MODULE.fullmatch(name)):
                raise ValueError(f"not an allow pattern: {pattern!r} (use 'package' or 'module:name')")
            if sep:
                self.globals.add((module, name))
            else:
                self.modules.add(module)
        self.session_module = session_module
        self.patterns = tuple(patterns)

    @classmethod
    def from_arg(cls, allow, session_module: str | None = None) -> Allowlist | None:
        """None means no restriction (the default of every load function)."""
        if allow is None or isinstance(allow, Allowlist):
            return allow
        return cls(allow, session_module)

    # -- the policy -------------------------------------------------------

    def module_allowed(self, module: str) -> bool:
        """May the file import (or reach into the globals of) ``module``?"""
        if module == self.session_module or module == "mason":  # the one loading it
            return True
        return any(module == m or module.startswith(m + ".") for m in self.modules)

    def global_problem(self, module: str, name: str) -> str | None:
        """Why ``module:name`` may not be used, or None if it may."""
        if (module, name) in self.globals or (module, name) in _ALWAYS:
            return None
        if module == _REBUILD:
            if name in _SAFE_REBUILDERS or name in _CHECKED_REBUILDERS:
                return None
            package = _PACKAGE_REBUILDERS.get(name)
            if package is not None:
                return None if self.module_allowed(package) else package
            gate = _GATED_REBUILDERS.get(name)
            if gate is None:
                return f"{module}:{name} (a reconstructor this allowlist does not know)"
            return None if tuple(gate.split(":")) in self.globals else gate
        if any(part.startswith("__") and part.endswith("__") for part in name.split(".")):
            # Dunder attributes (__globals__, __builtins__, __subclasses__) are
            # the way out of any module: only an exact pattern allows one.
            return f"{module}:{name}"
        return None if self.module_allowed(module) else f"{module}:{name}"

    def call_problem(self, name: str, args: tuple, origin_of) -> str | None:
        """Why calling ``mason._rebuild.<name>(*args)`` may not happen.

        ``origin_of(obj)`` says which module an argument object comes from
        (a token's recorded origin while scanning, the real object's module
        while loading), or None when unknown.
        """
        if name in ("import_module", "module_dict"):
            module = args[0] if args else None
            if not isinstance(module, str):
                return f"{_REBUILD}:{name} with a computed module name"
            return None if self.module_allowed(module) else module
        if name == "getattr_chain":
            if len(args) != 2 or not isinstance(args[1], str):
                return f"{_REBUILD}:getattr_chain with a computed attribute path"
            owner = origin_of(args[0])
            if owner is None:
                return f"{_REBUILD}:getattr_chain on an object of unknown origin"
            return self.global_problem(owner, args[1])
        return None

    def origin_problem(self, module: str, name: str, obj) -> str | None:
        """Why a resolved global may not be used: it really lives elsewhere."""
        if (module, name) in self.globals or (module, name) in _ALWAYS or module == _REBUILD:
            return None
        origin = _origin(obj)
        if origin is None or _is_data_type(obj):
            return None
        if self.module_allowed(origin):
            return None
        if isinstance(obj, types.ModuleType):
            return f"{module}:{name} (which is the module {origin})"
        return f"{module}:{name} (which is {origin}:{getattr(obj, '__qualname__', '?')})"

    # -- enforcement while loading ----------------------------------------

    def guard(self, module: str, name: str, resolve):
        """The global ``module:name`` from ``resolve()``, if the policy allows it."""
        problem = self.global_problem(module, name)
        if problem is not None:
            _refuse(problem)
        obj = resolve()
        problem = self.origin_problem(module, name, obj)
        if problem is not None:
            _refuse(problem)
        if module == _REBUILD and name in _CHECKED_REBUILDERS:
            return self._guarded_call(name, obj)
        return obj

    def _guarded_call(self, name, function):
        def checked(*args):
            problem = self.call_problem(name, args, _origin)
            if problem is not None:
                _refuse(problem)
            result = function(*args)
            if name == "getattr_chain":
                problem = self.origin_problem(_origin(args[0]) or "?", args[1], result)
                if problem is not None:
                    _refuse(problem)
            return result

        return checked

    def check(self, report: ScanReport) -> None:
        """Refuse, listing every offender, if the scanned stream needs more."""
        offenders = sorted(set(report.problems))
        if not offenders:
            return
        hints = []
        if CODE in offenders:
            names = ", ".join(sorted(set(report.functions))[:8]) or "?"
            hints.append(f"{CODE!r} allows the functions saved by value ({names})")
        if FILES in offenders:
            hints.append(f"{FILES!r} allows reopening saved file handles")
        raise ForbiddenGlobalError(
            "refused before running anything: this file would use "
            + ", ".join(offenders)
            + ", outside the allowlist"
            + (" (" + "; ".join(hints) + ")" if hints else "")
        )


def _refuse(problem: str):
    raise ForbiddenGlobalError(f"this file uses {problem}, which is not allowed")


def _origin(obj) -> str | None:
    if isinstance(obj, types.ModuleType):
        return obj.__name__
    origin = getattr(obj, "__module__", None)
    return origin if isinstance(origin, str) and isinstance(obj, (type, types.FunctionType, types.BuiltinFunctionType)) else None


def _is_data_type(obj) -> bool:
    name = getattr(obj, "__name__", None)
    return ("builtins", name) in _ALWAYS and getattr(builtins, name, None) is obj


# ====================================================================== scanning


class ScanReport:
    """What a pickle stream would import and call, found without running it."""

    def __init__(self) -> None:
        self.globals: set[str] = set()  # "module:name"
        self.modules: set[str] = set()  # every module it would import
        self.functions: list[str] = []  # names of functions saved by value
        self.problems: list[str] = []  # offenders, when scanned with an allowlist


class _TokenMeta(type):
    """Tokens are classes (NEWOBJ wants a type); every operation an unpickler
    applies to an object is a no-op on them, and calling one asks the scan."""

    def __call__(cls, *args, **kwargs):
        return cls._scan._called(cls, args)

    def __setitem__(cls, key, value):
        pass

    def __setstate__(cls, state):
        pass

    def append(cls, value):
        pass

    def extend(cls, values):
        pass

    def add(cls, value):
        pass


class _Token(metaclass=_TokenMeta):
    _scan = None
    origin: str | None = None  # the module this stands for, when known
    rebuilder: str | None = None  # the mason._rebuild function it stands for

    def __new__(cls, *args, **kwargs):  # NEWOBJ: cls.__new__(cls, *args)
        return cls._scan._opaque


class StreamScanner(pickle.Unpickler):
    """Replays pickles through inert tokens; ``report`` collects what they name.

    One scanner reads consecutive pickles that share a memo (the segments of
    a session) when fed through ``switch``/``scan_next``.
    """

    def __init__(self, file, allowlist: Allowlist | None = None):
        super().__init__(file, buffers=itertools.repeat(b""))
        self.allowlist = allowlist
        self.report = ScanReport()
        self._tokens: dict[tuple, type] = {}
        self._opaque = self._make_token(None, None)

    def _make_token(self, origin, rebuilder):
        return _TokenMeta("token", (_Token,), {"_scan": self, "origin": origin, "rebuilder": rebuilder})

    def find_class(self, module, name):
        if not isinstance(module, str) or not isinstance(name, str):
            raise UnpicklingError("a global with a name that is not a string")
        self.report.globals.add(f"{module}:{name}")
        if module != _REBUILD and (module, name) not in _ALWAYS:
            self.report.modules.add(module)
        if self.allowlist is not None:
            problem = self.allowlist.global_problem(module, name)
            if problem is not None:
                self.report.problems.append(problem)
        key = (module, name)
        token = self._tokens.get(key)
        if token is None:
            origin = module if module != _REBUILD else None
            token = self._tokens[key] = self._make_token(origin, name if module == _REBUILD else None)
        return token

    def persistent_load(self, pid):
        return self._opaque

    def _called(self, token, args):
        name = token.rebuilder
        if name is None:
            return self._opaque
        if name in ("import_module", "module_dict") and args and isinstance(args[0], str):
            if self.allowlist is None or args[0] != self.allowlist.session_module:
                self.report.modules.add(args[0])
        elif name == "make_function" and len(args) >= 3 and isinstance(args[2], str):
            self.report.functions.append(args[2])
        if self.allowlist is not None:
            problem = self.allowlist.call_problem(name, args, lambda obj: getattr(obj, "origin", None))
            if problem is not None:
                self.report.problems.append(problem)
        if name == "import_module" and args and isinstance(args[0], str):
            return self._tokens.setdefault(("module", args[0]), self._make_token(args[0], None))
        return self._opaque

    def scan(self):
        try:
            return super().load()
        except (pickle.UnpicklingError, EOFError, TypeError, ValueError, AttributeError,
                KeyError, IndexError, RecursionError, MemoryError) as exc:
            raise UnpicklingError(f"the pickle stream cannot be checked: {type(exc).__name__}: {exc}") from None


def scan_pickle(data, allowlist: Allowlist | None = None) -> ScanReport:
    """Scan one pickle (bytes-like) without running it."""
    scanner = StreamScanner(io.BytesIO(data), allowlist)
    scanner.scan()
    return scanner.report
