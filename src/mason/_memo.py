"""What a pickle segment does to the shared memo, read without running it.

A session's segments share one unpickler memo.  When a variable fails to
load, the memo must look as if its segment had run, so that later segments
number their entries the same way; and the variables that use an object the
failed one would have built must be held back, but only those.

:func:`segment_effects` reads a segment's opcodes and tells, for every memo
entry it writes, the index (numbered exactly as the unpicklers number them:
PUT's argument, or MEMOIZE's "current number of entries") and, where the
opcodes alone determine it, the value: a constant, a global, or a call of
one of mason's module reconstructors with a constant name.  Those entries
can be filled again without the failed variable (``numpy.ndarray`` does not
depend on whether ``Point`` could be rebuilt); the others are holes, and a
variable whose segment reads a hole is held back.
"""

from __future__ import annotations

from .errors import CorruptSessionError

__all__ = ["UNKNOWN", "StaticGlobal", "StaticCall", "Effects", "segment_effects", "memo_gets"]

#: a value the opcodes alone do not determine
UNKNOWN = type("Unknown", (), {"__repr__": lambda self: "<unknown>", "__slots__": ()})()

_REBUILD = "mason._rebuild"
#: mason reconstructors whose result depends only on a constant name
_STATIC_CALLS = frozenset({"import_module", "module_dict", "module_attribute", "import_package"})
#: mason reconstructors of code objects: immutable, and made from constants
#: alone (version, bytecode, source record), so made again as well; a
#: function whose code cannot be made on this Python holds back only the
#: variables that use it, not those that share its code
_CODE_CALLS = frozenset({"code_from_marshal", "code_portable"})

_CONSTANTS = frozenset(
    {
        "INT",
        "BININT",
        "BININT1",
        "BININT2",
        "LONG",
        "LONG1",
        "LONG4",
        "STRING",
        "BINSTRING",
        "SHORT_BINSTRING",
        "BINBYTES",
        "SHORT_BINBYTES",
        "BINBYTES8",
        "UNICODE",
        "SHORT_BINUNICODE",
        "BINUNICODE",
        "BINUNICODE8",
        "FLOAT",
        "BINFLOAT",
    }
)
_FIXED = {"NONE": None, "NEWTRUE": True, "NEWFALSE": False, "EMPTY_TUPLE": ()}
_PUTS = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})
_GETS = frozenset({"GET", "BINGET", "LONG_BINGET"})


class StaticGlobal:
    __slots__ = ("module", "name")

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    def __repr__(self):
        return f"<global {self.module}:{self.name}>"


class StaticCall:
    """``mason._rebuild.<function>(*args)`` with constant string arguments."""

    __slots__ = ("function", "args")

    def __init__(self, function: str, args: tuple):
        self.function, self.args = function, args

    def __repr__(self):
        return f"<{self.function}{self.args!r}>"


class Effects:
    """``writes``: memo index -> the value last written there (or UNKNOWN),
    in the order first written; ``gets``: the indices read; ``size``: the
    number of memo entries afterwards."""

    __slots__ = ("writes", "gets", "size")

    def __init__(self):
        self.writes: dict[int, object] = {}
        self.gets: set[int] = set()
        self.size = 0


def segment_effects(data, has_key, size: int, known=None) -> Effects:
    """The memo effects of the pickle ``data``, given the memo before it.

    ``has_key(i)``: whether entry ``i`` exists before; ``size``: how many
    entries exist; ``known(i)``: the value of an existing entry when it is a
    constant (a string, say), else UNKNOWN.
    """
    effects = Effects()
    stack: list = []
    marks: list[list] = []
    length = size

    def pop(n: int) -> list:
        if n > len(stack):
            raise CorruptSessionError("damaged pickle segment: the stack runs empty")
        taken = stack[len(stack) - n :]
        del stack[len(stack) - n :]
        return taken

    def write(index: int) -> None:
        nonlocal length
        if not stack:
            raise CorruptSessionError("damaged pickle segment: memoizing from an empty stack")
        if index not in effects.writes and not has_key(index):
            length += 1
        effects.writes[index] = stack[-1]

    import pickletools  # here: ~5 ms of import that only recovery needs

    try:
        for op, arg, _ in pickletools.genops(bytes(data)):
            name = op.name
            if name in _CONSTANTS:
                stack.append(arg)
            elif name in _FIXED:
                stack.append(_FIXED[name])
            elif name == "MARK":
                marks.append(stack)
                stack = []
            elif name == "GLOBAL":
                module, _, attr = str(arg).partition(" ")
                stack.append(StaticGlobal(module, attr))
            elif name == "STACK_GLOBAL":
                module, attr = pop(2)
                static = isinstance(module, str) and isinstance(attr, str)
                stack.append(StaticGlobal(module, attr) if static else UNKNOWN)
            elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
                items = pop(int(name[-1]))
                stack.append(_static_tuple(items))
            elif name == "TUPLE":
                items = stack
                stack = marks.pop() if marks else _underflow()
                stack.append(_static_tuple(items))
            elif name == "REDUCE":
                func, args = pop(2)
                stack.append(_static_call(func, args))
            elif name == "MEMOIZE":
                write(length)
            elif name in _PUTS:
                write(int(arg))  # type: ignore[arg-type]
            elif name in _GETS:
                arg = int(arg)  # type: ignore[arg-type]
                effects.gets.add(arg)
                if arg in effects.writes:
                    stack.append(effects.writes[arg])
                elif known is not None and has_key(arg):
                    stack.append(known(arg))
                else:
                    stack.append(UNKNOWN)
            elif name == "STOP":
                break
            else:  # any other opcode: its declared stack effect, with unknown results
                before = [s.name for s in op.stack_before]
                if "mark" in before:
                    # The items above the mark go with it; those named
                    # before the mark (the list APPENDS extends) lie below.
                    stack = marks.pop() if marks else _underflow()
                    pop(before.index("mark"))
                else:
                    pop(len(before))
                stack.extend([UNKNOWN] * len(op.stack_after))
    except (ValueError, EOFError) as exc:  # what pickletools raises on a damaged stream
        raise CorruptSessionError(f"damaged pickle segment: {exc}") from None
    effects.size = length
    return effects


def _underflow():
    raise CorruptSessionError("damaged pickle segment: a mark is missing")


def _static_tuple(items):
    return tuple(items) if all(_is_static(item) for item in items) else UNKNOWN


def _is_static(value) -> bool:
    return (
        value is None
        or type(value) in (str, bytes, int, float, bool, StaticGlobal)
        or (type(value) is tuple and all(_is_static(v) for v in value))
    )


def _static_call(func, args):
    if not (isinstance(func, StaticGlobal) and func.module == _REBUILD and type(args) is tuple and args):
        return UNKNOWN
    if func.name in _STATIC_CALLS and all(_is_name_or_names(a) for a in args):
        return StaticCall(func.name, args)
    if func.name in _CODE_CALLS and all(type(a) is not StaticGlobal and _is_static(a) for a in args):
        return StaticCall(func.name, args)
    return UNKNOWN


def may_read(data, indices) -> bool:
    """Whether the segment ``data`` may read one of the memo ``indices``.

    A byte search, thousands of times faster than walking the opcodes: a
    segment that reads entry i holds BINGET i (``h`` and one byte) or
    LONG_BINGET i (``j`` and four), so if none of those byte strings occurs,
    it reads none of ``indices``.  (A text GET, ``g`` and digits, is never
    written by the protocol-5 pickler that made mason's segments; a crafted
    file can make any GET give any object anyway.)  True may be a false
    alarm: the caller then walks the opcodes with :func:`memo_gets`.
    """
    data = bytes(data)
    for index in indices:
        if not 0 <= index < 1 << 32:
            return True  # no such opcode argument: let the opcode walk decide
        if index < 256 and b"h" + bytes((index,)) in data:
            return True
        if b"j" + index.to_bytes(4, "little") in data:
            return True
    return False


def memo_gets(data) -> set[int]:
    """The memo indices the pickle ``data`` reads."""
    import pickletools

    try:
        return {int(arg) for op, arg, _ in pickletools.genops(bytes(data)) if op.name in _GETS}  # type: ignore[arg-type]
    except (ValueError, EOFError) as exc:
        raise CorruptSessionError(f"damaged pickle segment: {exc}") from None


def _is_name_or_names(value) -> bool:
    return type(value) is str or (type(value) is tuple and all(type(v) is str for v in value))
