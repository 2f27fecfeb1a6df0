"""A structure-aware fuzzer for restricted loads and the readers (issue 10).

Hypothesis draws small pickle *programs*: expressions (constants, globals,
calls of every spelling, mason's reconstructors with plausible arguments,
attribute accessors, containers, BUILD/SETITEM/APPEND on a target, memo
reads and writes) compiled to opcodes.  Each expression pushes exactly one
value, so the stack always holds what the next opcode expects, and a model
of the memo (shared by a session's segments) makes most memo reads hit: most
streams are valid pickles.  A few get raw mutations on top.
The names come from three pools: mason's own reconstructors, globals that
run code or reach what they should not (``os:system``, resolvers, numpy's
dotted paths to ``sys.modules`` and ``ctypes``), and harmless allowed ones.
The strings include ``evilmod`` (a module on ``sys.path`` whose import
creates a marker file), a shell command and Python code that create it,
dunder attribute names and dotted paths.

Each case (one to three streams sharing a memo, and an allowlist) goes
through ``mason.loads``, the restricted machine alone (no scan before it:
the load must enforce the policy on its own), ``load_module_asdict`` of a
session holding the streams (``on_error`` 'raise' and 'warn'), and
``mason.inspect`` and ``mason inspect/verify/diff`` on that file.  The
property: no marker, no ``evilmod`` import, only mason errors, every call
quick, and process-wide state (copyreg's extension tables, the policy
tables, ``os.environ``, ``sys.path``, ``builtins``) as it was.

CI runs a few hundred cases; ``MASON_FUZZ_EXAMPLES=N`` runs N, and
``fuzz/fuzz_pickles.py --examples N`` runs the same property at scale and
prints what it covered.
"""

from __future__ import annotations

import builtins
import contextlib
import copyreg
import dataclasses
import importlib
import inspect
import io
import marshal
import os
import pickle
import pickletools
import re
import signal
import struct
import sys
import time
import warnings
from collections import Counter

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import mason
import mason._allowlist as allowlist_module
import mason._rebuild as rebuild_module
import mason._vm as vm_module
from mason import cli
from mason._allowlist import Allowlist
from mason._format import ContainerWriter
from mason._restricted import RestrictedUnpickler
from mason.errors import ForbiddenGlobalError, MasonError

_EXAMPLES = int(os.environ.get("MASON_FUZZ_EXAMPLES", "0"))
CI_EXAMPLES = _EXAMPLES or 150
HONESTY_EXAMPLES = 150
LIMIT_S = 5.0  # one call (a load, an inspect, a command): slower is a finding
WATCHDOG_S = 30  # a hang fails the case instead of the suite
LIMIT_BYTES = 64 << 20  # what one call may build from a stream of a few hundred bytes

MARKER = "<MARKER>"  # replaced by the marker's path when a program is rendered

# ------------------------------------------------------------------ name pools

REBUILD = "mason._rebuild"
REBUILDER_GLOBALS = [(REBUILD, name) for name in sorted(allowlist_module.REBUILDERS)]
REBUILDER_ARITY = {
    name: len(inspect.signature(function).parameters)
    for name in allowlist_module.REBUILDERS
    if callable(function := getattr(rebuild_module, name, None))
}
FAKE_MASON_GLOBALS = [
    (REBUILD, "os.system"),
    (REBUILD, "importlib.import_module"),
    (REBUILD, "_LOAD"),
    (REBUILD, "__builtins__"),
    ("mason", "_vm.sys.modules"),
    ("mason._allowlist", "ALWAYS"),
    ("mason._vm", "_MAX_WEIGHT"),
]
DANGEROUS_GLOBALS = [
    ("os", "system"),
    ("posix", "system"),
    ("os", "environ"),
    ("sys", "modules"),
    ("sys", "path"),
    ("builtins", "exec"),
    ("builtins", "eval"),
    ("builtins", "getattr"),
    ("builtins", "__import__"),
    ("builtins", "compile"),
    ("builtins", "open"),
    ("builtins", "setattr"),
    ("builtins", "globals"),
    ("builtins", "str.join"),
    ("builtins", "object.__subclasses__"),
    ("builtins", "type.__subclasses__"),
    ("__builtin__", "eval"),
    ("__builtin__", "getattr"),
    ("subprocess", "Popen"),
    ("subprocess", "check_output"),
    ("importlib", "import_module"),
    ("pkgutil", "resolve_name"),
    ("operator", "attrgetter"),
    ("operator", "methodcaller"),
    ("_operator", "attrgetter"),
    ("functools", "partial"),
    ("functools", "reduce"),
    ("codecs", "open"),
    ("runpy", "run_path"),
    ("pickle", "loads"),
    ("marshal", "loads"),
    ("ctypes", "pythonapi"),
    ("copyreg", "add_extension"),
    ("copyreg", "_extension_cache"),
    ("copy_reg", "add_extension"),
    ("evilmod", "VALUE"),
    ("evilmod", "anything"),
    ("numpy", "core._internal.sys.modules"),
    ("numpy", "_core._internal.sys.modules"),
    ("numpy", "ctypeslib.ctypes.pythonapi"),
    ("numpy", "ctypeslib.ctypes.pythonapi.PyRun_SimpleString"),
    ("numpy", "ctypeslib.ctypes"),
    ("numpy", "load"),
    ("numpy", "testing._private.utils.runstring"),
    ("numpy.testing._private.utils", "runstring"),
    ("numpy", "__builtins__"),
    ("json", "codecs"),
    ("json", "_default_encoder.encode"),
    ("json", "__builtins__"),
    ("json", "decoder.__builtins__"),
    ("json", "decoder.re.compile"),
    ("collections", "_sys.modules"),
    ("collections", "namedtuple"),
    ("collections", "OrderedDict.__init__"),
]
HARMLESS_GLOBALS = [
    ("collections", "OrderedDict"),
    ("collections", "defaultdict"),
    ("collections", "deque"),
    ("collections", "Counter"),
    ("builtins", "list"),
    ("builtins", "dict"),
    ("builtins", "set"),
    ("builtins", "tuple"),
    ("builtins", "frozenset"),
    ("builtins", "object"),
    ("builtins", "type"),
    ("builtins", "bytes"),
    ("builtins", "bytearray"),
    ("builtins", "range"),
    ("builtins", "slice"),
    ("builtins", "int"),
    ("builtins", "str"),
    ("__builtin__", "set"),
    ("copyreg", "_reconstructor"),
    ("copy_reg", "_reconstructor"),
    ("copyreg", "__newobj__"),
    ("copyreg", "__newobj_ex__"),
    ("_codecs", "encode"),
    ("json", "dumps"),
    ("json", "loads"),
    ("json", "JSONDecoder"),
    ("json", "decoder.JSONDecoder"),
    ("datetime", "datetime"),
    ("datetime", "timedelta"),
    ("decimal", "Decimal"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy", "frombuffer"),
    ("numpy", "array"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
]
CLASSES = [
    ("collections", "OrderedDict"),
    ("builtins", "object"),
    ("builtins", "list"),
    ("builtins", "dict"),
    ("builtins", "type"),
    ("builtins", "set"),
    ("subprocess", "Popen"),
    ("json", "JSONDecoder"),
    ("numpy", "ndarray"),
    ("datetime", "timedelta"),
    ("collections", "deque"),
    ("builtins", "int"),
]

MODULE_STRINGS = [
    "os",
    "posix",
    "sys",
    "builtins",
    "subprocess",
    "importlib",
    "evilmod",
    "evilmod.sub",
    "json",
    "json.decoder",
    "collections",
    "numpy",
    "numpy.ctypeslib",
    "ctypes",
    "mason",
    "mason._allowlist",
    "mason._rebuild",
    "mason._vm",
    "copyreg",
    "__main__",
    "codecs",
    "pickle",
    "runpy",
    "os.path",
    "",
    ".x",
]
ATTRIBUTE_STRINGS = [
    "system",
    "exec",
    "eval",
    "getattr",
    "modules",
    "Popen",
    "import_module",
    "resolve_name",
    "environ",
    "path",
    "pythonapi",
    "ctypes",
    "VALUE",
    "OrderedDict",
    "dumps",
    "ALWAYS",
    "RESOLVERS",
    "REBUILDERS",
    "_extension_cache",
    "core._internal.sys.modules",
    "_core._internal.sys.modules",
    "ctypeslib.ctypes.pythonapi",
    "ctypeslib.ctypes.pythonapi.PyRun_SimpleString",
    "_vm.sys.modules",
    "os.system",
    "decoder.JSONDecoder",
    "_default_encoder.encode",
    "fromkeys",
    "append",
    "update",
]
DUNDER_STRINGS = [
    "__globals__",
    "__builtins__",
    "__subclasses__",
    "__class__",
    "__dict__",
    "__base__",
    "__bases__",
    "__mro__",
    "__init__",
    "__code__",
    "__reduce_ex__",
    "__getattribute__",
    "__setstate__",
    "__import__",
    "__loader__",
    "__spec__",
    "__self__",
    "__func__",
    "__module__",
    "__call__",
]
PAYLOAD_STRINGS = [
    f"touch {MARKER}",
    f"open({MARKER!r}, 'w').close()",
    f"__import__('os').system('touch {MARKER}')",
    "__import__('evilmod')",
    "import evilmod",
    "evilmod:VALUE",
    "evilmod.VALUE",
    "os:system",
    "os.system",
    "subprocess.Popen",
]
PLAIN_STRINGS = ["x", "a b", "latin1", "utf-8", "zlib_codec", "rot13", "bogus", "w", "rb", "\u00e9t\u00e9", "1"]
# arguments a reconstructor might be given: right types, values at the edges
MODES = ["w", "wb", "r+", "x", "a+", "rb+", "abab", "t", ""]
OPTION_KEYS = ["encoding", "errors", "newline", "buffering", "closefd"]
OPTION_VALUES = ["utf-8", "bogus", "rot13", "ascii", "strict", "x", "\r", -5, 0, 2**40, None]
FORMATS = ["B", "b", "Q", "d", "x", "zz", "<i", "?", "P"]
INTS = [0, 1, 2, 3, -1, 255, 256, 65535, 2**31 - 1, -(2**31), 2**31, 2**63, 10**6]
BYTES = [b"", b"x", b"\x00" * 8, b"\x80\x04N."]
# functions saved by value that run nothing harmful: mason.CODE allows running the file's code,
# so a stream that is allowed CODE may call these (and only these exist in the pools)
CODES = [marshal.dumps((lambda *a: a).__code__), marshal.dumps((lambda: None).__code__)]
VERSION = tuple(sys.version_info[:2])

# extension codes registered while fuzzing (EXT1/EXT2/EXT4), and some that are not
EXTENSIONS = {
    0x31: ("os", "system"),
    0x32: ("evilmod", "VALUE"),
    0x33: ("collections", "OrderedDict"),
    0x7E58: ("builtins", "exec"),
    0x7E59: ("builtins", "list"),
    0x7E5A0: (REBUILD, "import_module"),
}
UNREGISTERED_CODES = [0, 0x99, 0x7E5B, 0x7FFFFFFF]

ALLOWS = {
    "[]": [],
    "collections": ["collections"],
    "DATA": mason.DATA,
    "numpy": ["numpy"],
    "json+CODE": ["json", mason.CODE],
}

# opcodes the grammar emits (test_the_grammar_emits_every_opcode checks it does)
REQUIRED_OPS = frozenset(
    [
        "GLOBAL",
        "STACK_GLOBAL",
        "REDUCE",
        "BUILD",
        "INST",
        "OBJ",
        "NEWOBJ",
        "NEWOBJ_EX",
        "EXT1",
        "EXT2",
        "EXT4",
        "MARK",
        "TUPLE",
        "TUPLE1",
        "TUPLE2",
        "TUPLE3",
        "EMPTY_TUPLE",
        "LIST",
        "EMPTY_LIST",
        "DICT",
        "EMPTY_DICT",
        "SETITEM",
        "SETITEMS",
        "APPEND",
        "APPENDS",
        "ADDITEMS",
        "EMPTY_SET",
        "FROZENSET",
        "PUT",
        "BINPUT",
        "LONG_BINPUT",
        "MEMOIZE",
        "GET",
        "BINGET",
        "LONG_BINGET",
        "FRAME",
        "PROTO",
        "STOP",
        "NONE",
        "NEWTRUE",
        "NEWFALSE",
        "BININT1",
        "BININT2",
        "BININT",
        "LONG1",
        "LONG4",
        "INT",
        "LONG",
        "BINFLOAT",
        "FLOAT",
        "SHORT_BINBYTES",
        "BINBYTES",
        "BINBYTES8",
        "BYTEARRAY8",
        "SHORT_BINUNICODE",
        "BINUNICODE",
        "BINUNICODE8",
        "UNICODE",
        "STRING",
        "SHORT_BINSTRING",
        "BINSTRING",
        "POP",
        "POP_MARK",
        "DUP",
    ]
)

# ------------------------------------------------------------------ programs


@dataclasses.dataclass
class Program:
    """One pickle stream, abstract: (opcode name, argument) pairs, then raw mutations."""

    ops: list
    mutations: list = dataclasses.field(default_factory=list)

    def render(self, marker: str) -> bytes:
        return mutate(render(self.ops, marker), self.mutations)

    def opnames(self) -> set[str]:
        return {name for name, _ in self.ops}


@dataclasses.dataclass
class Case:
    """What one example runs: 1-3 streams (a session's segments, sharing a memo) and an allowlist."""

    programs: list
    allow: str  # a key of ALLOWS

    def __repr__(self):  # what hypothesis prints for a failing case: enough to rebuild it
        lines = [f"Case(allow={self.allow!r}, programs=["]
        lines += [f"  Program(ops={p.ops!r}, mutations={p.mutations!r})," for p in self.programs]
        return "\n".join(lines + ["])"])


def _text_arg(value: str, marker: str) -> str:
    return value.replace(MARKER, marker)


def render(ops, marker: str) -> bytes:
    """The bytes of a program; FRAME lengths are computed from what follows."""
    chunks: list[bytes] = []
    frames: list[tuple[int, int]] = []  # (chunk index, length correction)
    for name, arg in ops:
        if name == "FRAME":
            frames.append((len(chunks), arg))
            chunks.append(b"")
            continue
        chunks.append(_encode(name, arg, marker))
    for index, delta in frames:
        size = sum(len(c) for c in chunks[index + 1 :]) + delta
        chunks[index] = b"\x95" + struct.pack("<Q", max(size, 0))
    return b"".join(chunks)


_SIMPLE = {
    "NONE": b"N",
    "NEWTRUE": b"\x88",
    "NEWFALSE": b"\x89",
    "EMPTY_TUPLE": b")",
    "EMPTY_LIST": b"]",
    "EMPTY_DICT": b"}",
    "EMPTY_SET": b"\x8f",
    "MARK": b"(",
    "TUPLE": b"t",
    "TUPLE1": b"\x85",
    "TUPLE2": b"\x86",
    "TUPLE3": b"\x87",
    "LIST": b"l",
    "DICT": b"d",
    "FROZENSET": b"\x91",
    "SETITEM": b"s",
    "SETITEMS": b"u",
    "APPEND": b"a",
    "APPENDS": b"e",
    "ADDITEMS": b"\x90",
    "STACK_GLOBAL": b"\x93",
    "OBJ": b"o",
    "NEWOBJ": b"\x81",
    "NEWOBJ_EX": b"\x92",
    "REDUCE": b"R",
    "BUILD": b"b",
    "MEMOIZE": b"\x94",
    "POP": b"0",
    "POP_MARK": b"1",
    "DUP": b"2",
    "STOP": b".",
    "BINPERSID": b"Q",
    "NEXT_BUFFER": b"\x97",
    "READONLY_BUFFER": b"\x98",
}


def _encode(name: str, arg, marker: str) -> bytes:
    if name in _SIMPLE:
        return _SIMPLE[name]
    if name == "PROTO":
        return b"\x80" + bytes([arg])
    if name == "BININT1":
        return b"K" + bytes([arg])
    if name == "BININT":
        return b"J" + struct.pack("<i", arg)
    if name == "LONG1":
        data = arg.to_bytes((arg.bit_length() + 8) // 8, "little", signed=True) if arg else b""
        return b"\x8a" + bytes([len(data)]) + data
    if name == "BININT2":
        return b"M" + struct.pack("<H", arg)
    if name == "LONG4":
        data = arg.to_bytes((arg.bit_length() + 8) // 8, "little", signed=True) if arg else b""
        return b"\x8b" + struct.pack("<i", len(data)) + data
    if name == "INT":
        return b"I%d\n" % arg
    if name == "LONG":
        return b"L%dL\n" % arg
    if name == "FLOAT":
        return b"F" + repr(arg).encode() + b"\n"
    if name == "BINFLOAT":
        return b"G" + struct.pack(">d", arg)
    if name == "SHORT_BINBYTES":
        return b"C" + bytes([len(arg)]) + arg
    if name == "BINBYTES":
        return b"B" + struct.pack("<I", len(arg)) + arg
    if name in ("BINBYTES8", "BYTEARRAY8"):
        return (b"\x8e" if name == "BINBYTES8" else b"\x96") + struct.pack("<Q", len(arg)) + arg
    if name in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING", "SHORT_BINSTRING", "BINSTRING"):
        text = _text_arg(arg, marker)
        data = text.encode("utf-8", "surrogatepass")
        if name == "SHORT_BINUNICODE" and len(data) < 256:
            return b"\x8c" + bytes([len(data)]) + data
        if name == "UNICODE":
            return b"V" + text.encode("raw-unicode-escape") + b"\n"
        if name == "STRING":
            return b"S" + repr(text).encode("ascii", "backslashreplace") + b"\n"
        if name == "SHORT_BINSTRING" and len(data) < 256:
            return b"U" + bytes([len(data)]) + data
        if name == "BINSTRING":
            return b"T" + struct.pack("<i", len(data)) + data
        if name == "BINUNICODE8":
            return b"\x8d" + struct.pack("<Q", len(data)) + data
        return b"X" + struct.pack("<I", len(data)) + data
    if name in ("GLOBAL", "INST"):
        module, attr = arg
        return (b"c" if name == "GLOBAL" else b"i") + module.encode() + b"\n" + attr.encode() + b"\n"
    if name == "EXT1":
        return b"\x82" + bytes([arg & 0xFF])
    if name == "EXT2":
        return b"\x83" + struct.pack("<H", arg & 0xFFFF)
    if name == "EXT4":
        return b"\x84" + struct.pack("<i", arg)
    if name in ("PUT", "GET"):
        return (b"p" if name == "PUT" else b"g") + b"%d\n" % arg
    if name in ("BINPUT", "BINGET"):
        return (b"q" if name == "BINPUT" else b"h") + bytes([arg & 0xFF])
    if name in ("LONG_BINPUT", "LONG_BINGET"):
        return (b"r" if name == "LONG_BINPUT" else b"j") + struct.pack("<I", arg)
    if name == "PERSID":
        return b"P" + arg.encode() + b"\n"
    raise ValueError(f"unknown opcode name {name!r}")


def mutate(data: bytes, mutations) -> bytes:
    """Raw damage after rendering; positions are fractions of the length (per mille)."""
    out = bytearray(data)
    for kind, where, value in mutations:
        pos = len(out) * where // 1000
        if kind == "truncate":
            del out[pos:]
        elif kind == "delete":
            del out[pos : pos + value % 8 + 1]
        elif kind == "insert":
            out[pos:pos] = bytes([value])
        elif kind == "replace" and pos < len(out):
            out[pos] = value
        elif kind == "duplicate":
            out[pos:pos] = out[pos : pos + value % 16 + 1]
    return bytes(out)


# A mostly well-formed stream: a program is expressions, each of which pushes
# exactly one value; the memo model is shared by the segments of a session.

_OPCODE_BYTES = sorted({op.code.encode("latin-1")[0] for op in pickletools.opcodes})


class _Builder:
    """Draws a program expression by expression (see the module docstring)."""

    def __init__(self, draw, memo: set, budget: int):
        self.draw = draw
        self.memo = memo  # the indices written, shared by the segments of a session
        self.budget = budget  # expressions left: keeps programs small
        self.ops: list = []

    def emit(self, name, arg=None):
        self.ops.append((name, arg))

    def pick(self, options):
        # an index, not sampled_from: a strategy over a list is built anew on every call
        return options[self.draw(st.integers(0, len(options) - 1))]

    def chance(self, percent: int) -> bool:
        return self.draw(st.integers(0, 99)) >= 100 - percent  # shrinks towards "no"

    # -- leaves --------------------------------------------------------

    def string(self, value: str | None = None):
        if value is None:
            pool = self.pick([MODULE_STRINGS, ATTRIBUTE_STRINGS, DUNDER_STRINGS, PAYLOAD_STRINGS, PLAIN_STRINGS])
            value = self.pick(pool)
        spelling = self.pick(
            ["SHORT_BINUNICODE"] * 5
            + ["BINUNICODE", "BINUNICODE8", "UNICODE", "STRING", "SHORT_BINSTRING", "BINSTRING"]
        )
        self.emit(spelling, value)

    def constant(self):
        kind = self.pick(["str", "str", "str", "int", "none", "bool", "bytes", "float"])  # of constant
        if kind == "str":
            return self.string()
        if kind == "int":
            value = self.pick(INTS)
            spellings = ["LONG1", "LONG4", "INT", "LONG"]
            if -(2**31) <= value < 2**31:
                spellings += ["BININT"] * 2
            if 0 <= value < 65536:
                spellings += ["BININT2"] * 2
            if 0 <= value < 256:
                spellings += ["BININT1"] * 4
            self.emit(self.pick(spellings), value)
            return
        if kind == "none":
            self.emit("NONE")
            return
        if kind == "bool":
            self.emit(self.pick(["NEWTRUE", "NEWFALSE"]))
            return
        if kind == "bytes":
            how = self.pick(["SHORT_BINBYTES", "SHORT_BINBYTES", "BINBYTES", "BINBYTES8", "BYTEARRAY8"])
            self.emit(how, self.pick(BYTES + CODES))
            return
        self.emit(self.pick(["BINFLOAT", "BINFLOAT", "FLOAT"]), self.pick([0.0, -1.5, 1e300]))

    def global_(self, name=None):
        if name is None:
            pool = self.pick(
                [
                    REBUILDER_GLOBALS,
                    DANGEROUS_GLOBALS,
                    DANGEROUS_GLOBALS,
                    HARMLESS_GLOBALS,
                    HARMLESS_GLOBALS,
                    FAKE_MASON_GLOBALS,
                    "extension",
                ]
            )
            if pool == "extension":  # registered, or not
                self.extension(self.pick(sorted(EXTENSIONS) * 3 + UNREGISTERED_CODES))
                return
            name = self.pick(pool)
        codes = [code for code, key in EXTENSIONS.items() if key == name]
        how = self.pick(["GLOBAL", "STACK_GLOBAL", "STACK_GLOBAL"] + (["EXT"] * 2 if codes else []))
        if how == "GLOBAL":
            self.emit("GLOBAL", name)
        elif how == "STACK_GLOBAL":
            self.string(name[0])
            self.string(name[1])
            self.emit("STACK_GLOBAL")
        else:
            self.extension(codes[0])

    def extension(self, code):
        shortest = "EXT1" if code < 0x100 else "EXT2" if code < 0x10000 else "EXT4"
        self.emit(self.pick([shortest, shortest, "EXT4"]), code)  # EXT4 can spell any code

    def memo_get(self):
        known = sorted(self.memo)
        if not known and self.chance(90):
            return self.constant()
        if known and self.chance(90):
            index = self.pick(known)
        else:  # a hole, a collision, a huge index
            index = self.pick([0, 1, 2, 5, 255, 256, 70000, len(self.memo)])
        spelling = self.pick(["BINGET", "BINGET", "GET", "LONG_BINGET"] if index < 256 else ["GET", "LONG_BINGET"])
        self.emit(spelling, index)

    def memo_put(self):
        how = self.pick(["MEMOIZE", "MEMOIZE", "BINPUT", "PUT", "LONG_BINPUT"])
        if how == "MEMOIZE":
            self.emit("MEMOIZE")
            self.memo.add(len(self.memo))  # MEMOIZE numbers by the memo's size, holes or not
            return
        # indices that collide with what MEMOIZE numbers (or will number) next
        index = self.pick([0, 1, 2, 3, len(self.memo), len(self.memo) + 1, 255, 256, 70000])
        if how == "BINPUT" and index > 255:
            how = "LONG_BINPUT"
        self.emit(how, index)
        self.memo.add(index)

    # -- expressions -----------------------------------------------------

    def expr(self, want: str | None = None) -> None:
        """Emit opcodes that push exactly one value (``want``: what it should be, loosely)."""
        self.budget -= 1
        if self.budget > 0:
            self._expr(want)
        elif want in ("callable", "class"):
            self.global_()
        else:
            self.constant()
        if self.chance(25):
            self.memo_put()
        if self.chance(4):  # noise that leaves the stack as it was
            self.ops += self.pick(
                [[("DUP", None), ("POP", None)], [("MARK", None), ("POP_MARK", None)], [("NONE", None), ("POP", None)]]
            )

    def _expr(self, want):
        if want == "callable":
            form = self.pick(["global", "global", "global", "accessor", "rebuild", "memo"])
        elif want == "class":
            form = self.pick(["class", "class", "class", "accessor", "memo"])
        elif want == "key":
            form = self.pick(["constant", "constant", "constant", "tuple", "memo", "global"])
        else:
            form = self.pick(
                [
                    "constant",
                    "constant",
                    "global",
                    "call",
                    "call",
                    "call",
                    "rebuild",
                    "rebuild",
                    "accessor",
                    "container",
                    "container",
                    "mutate",
                    "mutate",
                    "memo",
                ]
            )
        if form == "constant":
            return self.constant()
        if form == "global":
            return self.global_()
        if form == "class":
            return self.global_(self.pick(CLASSES))
        if form == "memo":
            return self.memo_get()
        if form == "call":
            return self.call()
        if form == "rebuild":
            return self.rebuild()
        if form == "accessor":
            return self.accessor()
        if form == "tuple":
            return self.tuple_(self.draw(st.integers(0, 2)), key=True)
        if form == "container":
            return self.container()
        return self.mutation()

    def args(self, n=None, key=False) -> None:
        for _ in range(self.draw(st.integers(0, 3)) if n is None else n):
            self.expr("key" if key else None)

    def tuple_(self, n, key=False, items=None):
        spelling = self.pick(["MARK", "MARK"] + (["SHORT"] if n <= 3 else []))
        if spelling == "MARK":
            self.emit("MARK")
        if items is None:
            self.args(n, key)
        else:
            for item in items:
                item()
        if spelling == "MARK":
            self.emit("TUPLE")
        else:
            self.emit(("EMPTY_TUPLE", "TUPLE1", "TUPLE2", "TUPLE3")[n])

    def call(self):
        how = self.pick(["REDUCE", "REDUCE", "REDUCE", "OBJ", "INST", "NEWOBJ", "NEWOBJ_EX"])
        if how == "REDUCE":
            self.expr("callable")
            self.tuple_(self.draw(st.integers(0, 3)))
            self.emit("REDUCE")
        elif how == "OBJ":
            self.emit("MARK")
            self.expr(self.pick(["class", "callable"]))
            self.args()
            self.emit("OBJ")
        elif how == "INST":
            name = self.pick(self.pick([CLASSES, DANGEROUS_GLOBALS, HARMLESS_GLOBALS]))
            self.emit("MARK")
            self.args()
            self.emit("INST", name)
        else:
            self.expr("class")
            self.tuple_(self.draw(st.integers(0, 2)))
            if how == "NEWOBJ_EX":
                self.dict_(self.draw(st.integers(0, 1)))
            self.emit(how)

    def rebuild_call(self, name, *items):
        """mason._rebuild.<name>(*items) by REDUCE; items are callables that emit one value."""
        self.global_((REBUILD, name))
        self.tuple_(len(items), items=items)
        self.emit("REDUCE")

    def rebuild(self):
        name = self.pick(
            [
                "import_module",
                "import_module",
                "module_dict",
                "getattr_chain",
                "class_attribute",
                "module_setstate",
                "function_setstate",
                "class_setstate",
                "cell_setstate",
                "make_function",
                "make_module",
                "make_class",
                "make_weakref_with_callback",
                "make_tempfile",
                "other",
                "other",
                "other",
                "other",
            ]
        )
        s = self.string
        module = lambda: s(self.pick(MODULE_STRINGS))
        attr = lambda: s(self.pick(self.pick([ATTRIBUTE_STRINGS, DUNDER_STRINGS])))
        anything = lambda: self.expr()
        state = lambda: self.dict_(self.draw(st.integers(0, 2)))
        imported = lambda: self.rebuild_call("import_module", module)
        if name in ("import_module", "module_dict", "make_module"):
            return self.rebuild_call(name, module)
        if name in ("getattr_chain", "class_attribute"):
            target = self.pick([imported, lambda: self.expr("class"), anything])
            return self.rebuild_call(name, target, attr)
        if name == "module_setstate":
            return self.rebuild_call(name, self.pick([imported, anything]), state)
        if name == "function_setstate":
            target = self.pick([lambda: self.global_(self.pick(HARMLESS_GLOBALS)), anything])
            return self.rebuild_call(
                name, target, lambda: self.tuple_(3, items=[state, lambda: self.emit("NONE"), state])
            )
        if name == "class_setstate":
            return self.rebuild_call(name, lambda: self.expr("class"), lambda: self.tuple_(2, items=[state, state]))
        if name == "cell_setstate":
            return self.rebuild_call(name, anything, lambda: self.tuple_(1))
        if name == "make_function":
            version = [lambda v=v: self.emit("BININT1", v) for v in VERSION]
            code = lambda: self.rebuild_call(
                "code_from_marshal",
                lambda: self.tuple_(2, items=version),
                lambda: self.emit("SHORT_BINBYTES", self.pick(CODES)),
            )
            globals_ = self.pick([state, lambda: self.rebuild_call("module_dict", module)])
            return self.rebuild_call(name, code, globals_, attr, lambda: self.emit("NONE"))
        if name == "make_class":
            return self.rebuild_call(
                name,
                lambda: self.expr("class"),
                attr,
                lambda: self.tuple_(1, items=[lambda: self.expr("class")]),
                state,
            )
        if name == "make_weakref_with_callback":
            return self.rebuild_call(name, anything, lambda: self.expr("callable"))
        if name == "make_tempfile":
            return self.rebuild_call(
                name,
                lambda: s(self.pick(["w", "wb", "r+"])),
                anything,
                lambda: self.emit("BININT1", 0),
                lambda: self.emit("NEWFALSE"),
                lambda: self.emit("NONE"),
            )
        # any other reconstructor, with as many arguments as it takes, each plausible
        global_ = self.pick(REBUILDER_GLOBALS)
        n = REBUILDER_ARITY.get(global_[1], 2)
        if self.chance(10):
            n = max(0, n + self.pick([-1, 1]))
        self.global_(global_)
        self.tuple_(n, items=[self.plausible] * n)
        self.emit("REDUCE")

    def plausible(self):
        """A value of a type reconstructors take, at the edges (modes, formats, options, sizes)."""
        kind = self.pick(["any", "any", "mode", "options", "format", "shape", "int", "bool", "class"])
        if kind == "any":
            self.expr()
        elif kind in ("mode", "format"):
            self.string(self.pick(MODES if kind == "mode" else FORMATS))
        elif kind == "options":
            self.emit("EMPTY_DICT")
            for _ in range(self.draw(st.integers(1, 2))):
                self.string(self.pick(OPTION_KEYS))
                value = self.pick(OPTION_VALUES)
                if isinstance(value, str):
                    self.string(value)
                elif value is None:
                    self.emit("NONE")
                else:
                    self.emit("LONG1", value)
                self.emit("SETITEM")
        elif kind == "shape":
            n = self.draw(st.integers(0, 3))
            self.tuple_(n, items=[lambda: self.emit("LONG1", self.pick([0, 1, 2, -1, 2**40]))] * n)
        elif kind == "int":
            # sizes: 2**28 is over any cap a load should have (and cheap to allocate), 2**70 is not possible
            self.emit("LONG1", self.pick([0, 1, -1, 2**16, 2**16 + 1, 2**28, 2**70]))
        elif kind == "bool":
            self.emit(self.pick(["NEWTRUE", "NEWFALSE"]))
        else:
            self.global_(self.pick(CLASSES))

    def accessor(self):
        """builtins.getattr / getattr_chain / class_attribute of a name."""
        getter = self.pick(
            [
                ("builtins", "getattr"),
                ("__builtin__", "getattr"),
                (REBUILD, "getattr_chain"),
                (REBUILD, "getattr_chain"),
                (REBUILD, "class_attribute"),
            ]
        )
        first = self.pick(
            [
                lambda: self.rebuild_call("import_module", lambda: self.string(self.pick(MODULE_STRINGS))),
                lambda: self.expr("class"),
                lambda: self.expr(),
            ]
        )
        self.global_(getter)
        self.tuple_(2, items=[first, lambda: self.string(self.pick(self.pick([ATTRIBUTE_STRINGS, DUNDER_STRINGS])))])
        self.emit("REDUCE")

    def dict_(self, n):
        if self.chance(50):
            self.emit("MARK")
            for _ in range(n):
                self.expr("key")
                self.expr()
            self.emit("DICT")
        else:
            self.emit("EMPTY_DICT")
            self.setitems(n)

    def setitems(self, n):
        if n == 1 and self.chance(50):
            self.expr("key")
            self.expr()
            self.emit("SETITEM")
            return
        self.emit("MARK")
        for _ in range(n):
            self.expr("key")
            self.expr()
        self.emit("SETITEMS")

    def container(self):
        kind = self.pick(["tuple", "list", "dict", "set", "frozenset"])
        n = self.draw(st.integers(0, 3))
        if kind == "tuple":
            return self.tuple_(n)
        if kind == "dict":
            return self.dict_(n)
        if kind == "list":
            if self.chance(50):
                self.emit("MARK")
                self.args(n)
                self.emit("LIST")
            else:
                self.emit("EMPTY_LIST")
                self.appends(n)
            return
        if kind == "set":
            self.emit("EMPTY_SET")
            self.emit("MARK")
            self.args(n, key=True)
            self.emit("ADDITEMS")
            return
        self.emit("MARK")
        self.args(n, key=True)
        self.emit("FROZENSET")

    def appends(self, n):
        if n == 1 and self.chance(50):
            self.expr()
            self.emit("APPEND")
            return
        self.emit("MARK")
        self.args(n)
        self.emit("APPENDS")

    def mutation(self):
        """BUILD / SETITEM(S) / APPEND(S) / ADDITEMS on a target: often one the load did not create."""
        target = self.pick(["global", "global", "call", "rebuild", "memo", "container"])
        {
            "global": self.global_,
            "call": self.call,
            "rebuild": self.rebuild,
            "memo": self.memo_get,
            "container": self.container,
        }[target]()
        how = self.pick(["BUILD", "SETITEMS", "APPENDS", "ADDITEMS"])
        if how == "BUILD":
            self.pick(
                [
                    lambda: self.dict_(self.draw(st.integers(0, 2))),
                    lambda: self.tuple_(2, items=[lambda: self.emit("NONE"), lambda: self.dict_(1)]),
                    lambda: self.expr(),
                ]
            )()
            self.emit("BUILD")
        elif how == "SETITEMS":
            self.setitems(self.draw(st.integers(1, 2)))
        elif how == "APPENDS":
            self.appends(self.draw(st.integers(1, 2)))
        else:
            self.emit("MARK")
            self.args(self.draw(st.integers(1, 2)), key=True)
            self.emit("ADDITEMS")


@st.composite
def programs(draw, memo=None, proto=None):
    """One mostly well-formed pickle program (see _Builder), sometimes damaged."""
    memo = set() if memo is None else memo
    proto = draw(st.sampled_from([2, 3, 4, 4, 5, 5, 0, 1])) if proto is None else proto
    b = _Builder(draw, memo, budget=draw(st.integers(2, 24)))
    if draw(st.integers(0, 99)) < 90:
        b.emit("PROTO", proto)
        if proto >= 4 and draw(st.booleans()):  # its length is right, or wrong by a little or a lot
            b.emit("FRAME", 0 if draw(st.integers(0, 99)) < 90 else draw(st.sampled_from([-1, 1, 2**40])))
    for _ in range(draw(st.integers(0, 3))):  # statements: side effects, then POP
        b.expr()
        b.emit("POP")
    b.expr()
    if draw(st.integers(0, 99)) >= 95:  # a frame, a protocol, an extension code out of place
        at = draw(st.integers(0, len(b.ops)))
        extra = draw(
            st.sampled_from(
                [
                    ("FRAME", 0),
                    ("PROTO", 2),
                    ("PROTO", 99),
                    ("BINPERSID", None),
                    ("PERSID", "0"),
                    ("NEXT_BUFFER", None),
                    ("READONLY_BUFFER", None),
                    ("EXT1", 0x99),
                    ("EXT4", 0x7FFFFFFF),
                    ("EXT2", 0),
                ]
            )
        )
        b.ops.insert(at, extra)
    b.emit("STOP")
    mutations = []
    if draw(st.integers(0, 99)) >= 80:
        mutations = draw(
            st.lists(
                st.tuples(
                    st.sampled_from(["truncate", "delete", "insert", "replace", "duplicate"]),
                    st.integers(0, 999),
                    st.sampled_from(_OPCODE_BYTES + [0, 0xFF]),
                ),
                min_size=1,
                max_size=3,
            )
        )
    return Program(b.ops, mutations)


@st.composite
def cases(draw):
    memo: set = set()
    proto = draw(st.sampled_from([2, 4, 5]))
    streams = [
        draw(programs(memo=memo, proto=draw(st.sampled_from([proto, None])))) for _ in range(draw(st.integers(1, 3)))
    ]
    return Case(streams, draw(st.sampled_from(sorted(ALLOWS))))


# ------------------------------------------------------------------ the property


class Hang(BaseException):
    """Not an Exception: nothing in mason may catch it and call it a bad variable."""


@contextlib.contextmanager
def watchdog(seconds: int):
    if not hasattr(signal, "SIGALRM"):
        yield
        return

    def expired(signum, frame):
        raise Hang(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


class Finding(AssertionError):
    """The property failed: the message says how."""


class Trap:
    """While entered: a directory first on sys.path (and the working directory)
    with an ``evilmod`` whose import creates the marker, and EXTENSIONS registered."""

    def __init__(self, directory: str):
        self.directory = directory
        self.marker = os.path.join(directory, "RAN")
        self.session = os.path.join(directory, "case.mason")
        with open(os.path.join(directory, "evilmod.py"), "w") as f:
            f.write(f"open({self.marker!r}, 'w').close()\nVALUE = 1\n")

    def __enter__(self):
        warm_imports()
        self._cwd = os.getcwd()
        sys.path.insert(0, self.directory)
        sys.modules.pop("evilmod", None)
        for code, key in EXTENSIONS.items():
            copyreg.add_extension(*key, code)
        os.chdir(self.directory)  # a stray relative write would land here
        return self

    def __exit__(self, *exc):
        os.chdir(self._cwd)
        for code, key in EXTENSIONS.items():
            copyreg.remove_extension(*key, code)
        with contextlib.suppress(ValueError):
            sys.path.remove(self.directory)
        sys.modules.pop("evilmod", None)

    def check(self, where: str) -> None:
        if os.path.exists(self.marker):
            os.remove(self.marker)
            raise Finding(f"{where}: the marker file was created (code from the stream ran)")
        if "evilmod" in sys.modules:
            del sys.modules["evilmod"]
            raise Finding(f"{where}: evilmod was imported")


#: modules an allowed global may import: importing them changes process-wide state
#: legitimately (numpy adds its reducers to copyreg.dispatch_table), so it happens first
WARM_MODULES = [
    "numpy",
    "numpy.ctypeslib",
    "numpy._core.multiarray",
    "numpy.core.multiarray",
    "numpy.testing._private.utils",
    "json",
    "json.decoder",
    "datetime",
    "decimal",
    "collections",
]


def warm_imports() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numpy.core is deprecated in numpy 2
        for name in WARM_MODULES:
            with contextlib.suppress(ImportError):
                importlib.import_module(name)


def snapshot() -> dict:
    """Process-wide state a load must leave alone (values copied, objects by identity)."""
    return {
        "copyreg._extension_cache": dict(copyreg._extension_cache),
        "copyreg._extension_registry": dict(copyreg._extension_registry),
        "copyreg._inverted_registry": dict(copyreg._inverted_registry),
        "copyreg.dispatch_table": dict(copyreg.dispatch_table),
        "_allowlist.ALWAYS": (allowlist_module.ALWAYS, set(allowlist_module.ALWAYS)),
        "_allowlist.REBUILDERS": (allowlist_module.REBUILDERS, dict(allowlist_module.REBUILDERS)),
        "_allowlist.RESOLVERS": (allowlist_module.RESOLVERS, set(allowlist_module.RESOLVERS)),
        "_allowlist.ACCESSORS": (allowlist_module.ACCESSORS, set(allowlist_module.ACCESSORS)),
        "DATA": (mason.DATA, set(mason.DATA.globals), set(mason.DATA.modules)),
        "vars(_allowlist)": _bindings(allowlist_module),
        "vars(_vm)": _bindings(vm_module),
        "vars(_rebuild)": _bindings(rebuild_module),
        "os.environ": dict(os.environ),
        "sys.path": list(sys.path),
        "builtins": {k: id(v) for k, v in vars(builtins).items()},
        "cwd": os.getcwd(),
    }


def _bindings(module) -> dict:
    # __warningregistry__ changes whenever a warning passes through the module (numpy.core's)
    return {k: id(v) for k, v in vars(module).items() if k != "__warningregistry__"}


def _changed(before: dict, after: dict) -> list[str]:
    changed = []
    for name, old in before.items():
        new = after[name]
        if old == new:
            continue
        if isinstance(old, dict):  # name the entries
            keys = sorted(str(k) for k in set(old) | set(new) if old.get(k, _MISSING) != new.get(k, _MISSING))
            name = f"{name}[{', '.join(keys[:5])}]"
        changed.append(name)
    return changed


_MISSING = object()


def session_bytes(segments) -> bytes:
    """A mason session whose variables v0, v1... hold the raw pickle segments."""
    buffer = io.BytesIO()
    writer = ContainerWriter(buffer)
    variables = []
    for i, data in enumerate(segments):
        index = writer.add_segment(data)
        variables.append(
            {"name": f"v{i}", "type": "object", "stored": "value", "segment": index, "blobs": [], "size": len(data)}
        )
    writer.finish(
        {
            "kind": "mason.session",
            "module": "__main__",
            "module_kind": "main",
            "variables": variables,
            "skipped": [],
            "environment": {"python": list(sys.version_info[:3])},
        }
    )
    return buffer.getvalue()


def machine_load(data: bytes, allow):
    """The restricted machine alone, without the scan that runs first in a real load."""
    unpickler = RestrictedUnpickler(io.BytesIO(data), Allowlist.from_arg(allow))
    unpickler.stream_bytes = len(data)
    return unpickler.load()


def _cli(argv) -> None:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = cli.main(argv)
    if status not in (0, 1, 2) or "Traceback" in err.getvalue():
        raise Finding(f"mason {' '.join(argv[:1])} exited {status}: {err.getvalue()[-2000:]}")


def outcome(exc: BaseException | None) -> str:
    if exc is None:
        return "loaded"
    if isinstance(exc, ForbiddenGlobalError):
        return "refused"
    if isinstance(exc, MasonError):
        return "malformed"
    return "foreign"


@dataclasses.dataclass
class Stats:
    """What a run covered, for the honesty checks and the script's report."""

    cases: int = 0
    streams: int = 0
    opcodes: Counter = dataclasses.field(default_factory=Counter)
    outcomes: Counter = dataclasses.field(default_factory=Counter)  # (step, outcome) -> count
    refused_by: Counter = dataclasses.field(default_factory=Counter)  # who refused -> count
    refusals: Counter = dataclasses.field(default_factory=Counter)  # (who refused, what) -> count
    samples: dict = dataclasses.field(default_factory=dict)  # (who refused, why) -> a message
    slowest: tuple = (0.0, "", None)  # (seconds, step, case)


#: what a refusal's message says it refused: (kind, pattern), the most specific first
REFUSAL_KINDS = [
    ("mason's internals", r"mason's internals|not one of mason's"),
    ("a resolver", r"resolves names or runs code|a resolver\)"),
    ("a dunder attribute", r"\(never reachable\)|\(dunder attributes|[:.]__\w+__(?=[ ,])"),
    ("a module namespace", r"the namespace of module"),
    ("an import by name", r"\(imported by name\)"),
    ("a metaclass", r"metaclass"),
    ("BUILD or set-state on a foreign object", r"BUILD on|sets the state of"),
    ("writing into a foreign object", r"item assignment|appending|adding to a set"),
    ("a call of a non-global", r"a call of |NEWOBJ of|NEWOBJ on|not an allowed class"),
    ("an attribute of type or object", r"an attribute of the class"),
    ("reaching a module", r"which is the module|\(through the module"),
    ("reaching a function or class of another module", r"which is the (?:builtin|function|class) "),
    ("reaching an instance or method", r"object, not a class|a method bound|\(through a "),
    ("a weakref callback", r"callback the file did not create"),
    ("a checked builtin call", r"latin1|builtins:type,|bigger than the file|range of"),
    ("mason.CODE / mason.FILES", r"mason:code|mason:files"),
    ("a package's rebuilder", r"\(to rebuild its objects\)"),
    ("a global outside the allowlist", r"(?:use |uses |, )[\w.]+:[\w.]+(?=,)"),
]


def refusal_kinds(message: str) -> list[str]:
    """The kinds of offender a refusal names, most specific first."""
    return [kind for kind, pattern in REFUSAL_KINDS if re.search(pattern, message)] or ["other"]


def count_refusal(stats: Stats, who: str, exc: ForbiddenGlobalError) -> None:
    """The scan names every offender of a stream; the machine stops at the first."""
    stats.refused_by[who] += 1
    kinds = refusal_kinds(str(exc))
    for kind in kinds if who == "scan" else kinds[:1]:
        stats.refusals[who, kind] += 1
        stats.samples.setdefault((who, kind), str(exc))


def footprint(obj, depth: int = 1) -> int:
    """Bytes held by a loaded buffer, string or array and, for a container, by
    its items one level down (other objects count 0: touching them could run code)."""
    kind = type(obj)
    if kind is memoryview or (kind.__name__ == "ndarray" and kind.__module__ == "numpy"):
        return obj.nbytes
    if kind in (bytes, bytearray, str):
        return sys.getsizeof(obj)
    if kind in (list, tuple, set, frozenset, dict):
        items = obj.values() if kind is dict else obj
        inner = sum(footprint(item, depth - 1) for item in items) if depth and len(obj) < 10_000 else 0
        return sys.getsizeof(obj) + inner
    return 0


def attempt(step: str, call, case, stats: Stats, strict: bool = True) -> BaseException | None:
    """Run one call; slowness is a finding, and so (``strict``: a public entry
    point) is any error but a mason error."""
    started = time.perf_counter()
    exc = result = None
    try:
        result = call()
    except Exception as error:  # noqa: BLE001 - judged below: only mason's errors are expected
        exc = error
    elapsed = time.perf_counter() - started
    size = footprint(result)
    result = None  # a big result is freed before the next call
    if size > LIMIT_BYTES:
        raise Finding(f"{step} built {size} bytes from a small stream (the limit is {LIMIT_BYTES})")
    if elapsed > stats.slowest[0]:
        stats.slowest = (elapsed, step, case)
    kind = outcome(exc)
    stats.outcomes[step, kind] += 1
    if kind == "foreign" and strict:
        raise Finding(f"{step}: {type(exc).__name__}: {exc}") from exc
    if elapsed > LIMIT_S:
        raise Finding(f"{step} took {elapsed:.1f} s")
    return exc


def run_case(case: Case, trap: Trap, stats: Stats) -> None:
    """The property, for one case: raises Finding when it fails."""
    before = snapshot()
    allow = ALLOWS[case.allow]
    segments = [program.render(trap.marker) for program in case.programs]
    stats.cases += 1
    stats.streams += len(segments)
    for program in case.programs:
        stats.opcodes.update(program.opnames())
    with watchdog(WATCHDOG_S), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, data in enumerate(segments):
            exc = attempt("loads", lambda data=data: mason.loads(data, allow=allow), case, stats)
            if isinstance(exc, ForbiddenGlobalError):  # by the scan, or by the machine the scan let through
                count_refusal(stats, "scan" if "refused before running" in str(exc) else "machine after the scan", exc)
            trap.check(f"loads of stream {i}")
            # internal: its callers turn its other errors into mason's, so only count them
            exc = attempt("machine", lambda data=data: machine_load(data, allow), case, stats, strict=False)
            if isinstance(exc, ForbiddenGlobalError):
                count_refusal(stats, "machine alone", exc)
            trap.check(f"the restricted machine alone on stream {i}")
        with open(trap.session, "wb") as f:
            f.write(session_bytes(segments))
        for on_error in ("raise", "warn"):
            attempt(
                f"session-{on_error}",
                lambda on_error=on_error: mason.load_module_asdict(trap.session, allow=allow, on_error=on_error),
                case,
                stats,
            )
            trap.check(f"load_module_asdict(on_error={on_error!r})")
        attempt("inspect", lambda: mason.inspect(trap.session), case, stats)
        for argv in (["inspect", trap.session], ["verify", trap.session], ["diff", trap.session, trap.session]):
            attempt(f"cli-{argv[0]}", lambda argv=argv: _cli(argv), case, stats)
        trap.check("inspect / verify / diff")
    changed = _changed(before, snapshot())
    if changed:
        raise Finding(f"process-wide state changed: {', '.join(changed)}")


# ------------------------------------------------------------------ tests


@pytest.fixture(scope="module")
def trap(tmp_path_factory):
    with Trap(str(tmp_path_factory.mktemp("fuzz-pickles"))) as trap:
        yield trap


@settings(max_examples=CI_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(case=cases())
def test_generated_streams_run_nothing(case, trap):
    """The property of the module docstring, on CI_EXAMPLES cases (MASON_FUZZ_EXAMPLES=N for more)."""
    stats = Stats()
    run_case(case, trap, stats)
    for step, result in stats.outcomes:
        if step in ("loads", "machine"):
            event(f"{step}: {result}")


def test_the_fuzzer_reaches_the_policy(trap):
    """Keep the fuzzer honest: most streams get as far as the allowlist's
    judgement instead of dying as malformed, some load, and the restricted
    machine alone (no scan before it) refuses them for many different reasons:
    the generated streams reach its checks, not only the list of names."""
    stats = Stats()

    @settings(
        max_examples=HONESTY_EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(program=programs(), allow=st.sampled_from(sorted(ALLOWS)))
    def run(program, allow):
        data = program.render(trap.marker)
        stats.streams += 1
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            stats.outcomes["loads", outcome(_catch(lambda: mason.loads(data, allow=ALLOWS[allow])))] += 1
            exc = _catch(lambda: machine_load(data, ALLOWS[allow]))
        stats.outcomes["machine", outcome(exc)] += 1
        if isinstance(exc, ForbiddenGlobalError):
            count_refusal(stats, "machine alone", exc)
        trap.check("honesty run")

    run()
    total = stats.streams
    assert stats.outcomes["loads", "foreign"] == 0, stats.outcomes
    for step in ("loads", "machine"):
        assert stats.outcomes[step, "refused"] >= 0.3 * total, (step, stats.outcomes)
        assert stats.outcomes[step, "malformed"] <= 0.5 * total, (step, stats.outcomes)
        assert stats.outcomes[step, "loaded"] >= 0.1 * total, (step, stats.outcomes)
    assert len(stats.refusals) >= 6, stats.refusals  # kinds of refusal by the machine alone


class _Covered(BaseException):
    """Ends a generation run early (hypothesis lets a BaseException through)."""


def test_the_grammar_emits_every_opcode():
    """Every opcode in REQUIRED_OPS comes out of the grammar within a few hundred programs."""
    seen: set[str] = set()

    @settings(
        max_examples=2000, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck)
    )
    @given(program=programs())
    def run(program):
        seen.update(program.opnames())
        if REQUIRED_OPS <= seen:
            raise _Covered

    with contextlib.suppress(_Covered):
        run()
    assert not REQUIRED_OPS - seen, f"the grammar never emitted {sorted(REQUIRED_OPS - seen)}"


def _catch(call) -> BaseException | None:
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - the caller judges it
        return exc
    return None


def test_the_trap_catches_what_it_looks_for(trap):
    """Without an allowlist the same streams do run code: the checks would see it."""
    run_shell = Program(
        [
            ("PROTO", 4),
            ("GLOBAL", ("os", "system")),
            ("SHORT_BINUNICODE", f"touch {MARKER}"),
            ("TUPLE1", None),
            ("REDUCE", None),
            ("STOP", None),
        ]
    )
    pickle.loads(run_shell.render(trap.marker))
    with pytest.raises(Finding, match="marker"):
        trap.check("an unrestricted load")
    pickle.loads(Program([("GLOBAL", ("evilmod", "VALUE")), ("STOP", None)]).render(trap.marker))
    with pytest.raises(Finding):
        trap.check("an unrestricted load")
    before = snapshot()
    os.environ["MASON_FUZZ_CANARY"] = "1"
    try:
        assert _changed(before, snapshot()) == ["os.environ[MASON_FUZZ_CANARY]"]
    finally:
        del os.environ["MASON_FUZZ_CANARY"]


def test_render_is_a_valid_pickle():
    """The assembler itself: a small program renders to what pickle reads."""
    ops = [
        ("PROTO", 4),
        ("FRAME", 0),
        ("MARK", None),
        ("SHORT_BINUNICODE", "a"),
        ("BININT1", 1),
        ("DICT", None),
        ("MEMOIZE", None),
        ("BINGET", 0),
        ("TUPLE2", None),
        ("STOP", None),
    ]
    assert pickle.loads(render(ops, "m")) == ({"a": 1}, {"a": 1})
    assert mason.loads(render(ops, "m"), allow=[]) == ({"a": 1}, {"a": 1})
