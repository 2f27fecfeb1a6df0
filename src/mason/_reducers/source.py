"""The source of functions and lambdas saved by value: found, cut out, checked.

One :class:`SourceFinder` serves one pickler.  It reads a code object's file
(or notebook cell) from ``linecache`` and compiles it once per dump, with
the code's own ``from __future__`` flags: the compiled file holds a code
object equal to the one being saved (bytecode, constants, names, lines and,
3.11+, columns) only if the text is the one it was compiled from, not a file
edited since.  The text of the ``def`` (decorators included) or ``lambda``
is cut out where the instruction that loads that code object says it is
(Python 3.11+ positions; 3.10 reads the syntax tree), and becomes a source
record (see ``mason._portable``).  Otherwise the finder says why there is
no source, which a load on another Python version reports.
"""

from __future__ import annotations

import ast
import dis
import linecache
import os
import threading
import types

from .. import _portable
from .._compat import PY311, PY_VERSION
from ..errors import UnpicklingError
from .functions import code_global_names

__all__ = ["SourceFinder"]

#: why a code object carries no source (the load on another Python says so)
_NOT_A_FUNCTION = "only functions and lambdas are saved with their source"
NO_FILE = (
    "no source: {filename!r} is neither a file nor a notebook cell in linecache (code made by exec or"
    " compile of a string, or typed at a prompt that keeps no source)"
)

_LOAD_CONST = dis.opmap["LOAD_CONST"]
_EXTENDED_ARG = dis.opmap["EXTENDED_ARG"]
_IMPORTS = frozenset(dis.opmap[name] for name in ("IMPORT_NAME", "IMPORT_FROM"))
_STORES = frozenset(dis.opmap[name] for name in ("STORE_NAME", "STORE_GLOBAL"))
#: IPython compiles cells that await at the top level with this flag
_TOP_LEVEL_AWAIT = getattr(ast, "PyCF_ALLOW_TOP_LEVEL_AWAIT", 0)


class _File:
    """One file (or cell) compiled once: its code objects by (name, first
    line), each with the span of its text (3.11+: where the instruction that
    loads it points), and the names its top level binds by import."""

    __slots__ = ("lines", "size", "filename", "codes", "imports", "error", "_tree")

    def __init__(self, lines: list[str], filename: str, flags: int):
        self.lines = lines
        self.size = sum(map(len, lines))
        self.filename = filename
        self.codes: dict[tuple[str, int], list[tuple[types.CodeType, tuple | None]]] = {}
        self.imports: frozenset[str] = frozenset()
        self.error: str | None = None
        self._tree: _Tree | None = None
        try:
            module = compile("".join(lines), filename, "exec", flags=flags | _TOP_LEVEL_AWAIT, dont_inherit=True)
        except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
            self.error = f"its source {filename!r} no longer compiles ({type(exc).__name__}: {exc})"
            return
        self.imports = frozenset(_imported_names(module))
        stack = [module]
        while stack:
            code = stack.pop()
            for child, span in _children(code):
                self.codes.setdefault((child.co_name, child.co_firstlineno), []).append((child, span))
                stack.append(child)

    def tree(self) -> _Tree | None:
        if self._tree is None:
            try:
                self._tree = _Tree(ast.parse("".join(self.lines), self.filename))
            except (SyntaxError, ValueError, RecursionError, MemoryError):
                return None
        return self._tree


# Files compiled by earlier dumps, most recent last, while linecache holds
# the very same lines (a file read again, changed, is compiled again): a
# function dumped again and again (``mason.dumps(f)`` per task) compiles its
# file once.  Bounded by the size of their text.
_CACHE: dict[tuple[str, int], _File] = {}
_CACHE_TEXT = 2_000_000  # characters of source kept compiled, at most
_cache_lock = threading.Lock()


def _new_lock_after_fork() -> None:
    # a child forked while another thread held the lock (a background
    # checkpoint) would otherwise wait for it forever
    global _cache_lock
    _cache_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_lock_after_fork)


def _compiled(lines: list[str], filename: str, flags: int) -> _File:
    key = (filename, flags)
    with _cache_lock:
        cached = _CACHE.pop(key, None)
        if cached is not None and cached.lines is lines:
            _CACHE[key] = cached
            return cached
    made = _File(lines, filename, flags)
    with _cache_lock:
        if made.size <= _CACHE_TEXT:
            _CACHE[key] = made
            total = sum(f.size for f in _CACHE.values())
            while total > _CACHE_TEXT:
                total -= _CACHE.pop(next(iter(_CACHE))).size
    return made


def _children(code: types.CodeType):
    """(code object, span) for each code object ``code`` loads; the span is
    (line, end line, column, end column) of its def or lambda (3.11+), else None."""
    consts = code.co_consts
    if not any(type(const) is types.CodeType for const in consts):
        return
    # Only the LOAD_CONST instructions, found by C searches: a loop over
    # every instruction of every function of a big file costs more than
    # compiling it.
    raw = code.co_code
    ops, args = raw[::2], raw[1::2]
    load = bytes((_LOAD_CONST,))
    positions = list(code.co_positions()) if PY311 else None
    seen = set()
    at = ops.find(load)
    while at != -1:
        index, before = args[at], at - 1
        shift = 8
        while before >= 0 and ops[before] == _EXTENDED_ARG:
            index |= args[before] << shift
            shift += 8
            before -= 1
        const = consts[index]
        if type(const) is types.CodeType and index not in seen:  # a finally block is compiled twice
            seen.add(index)
            yield const, positions[at] if positions is not None else None
        at = ops.find(load, at + 1)


def _imported_names(module: types.CodeType):
    """Names that import statements at the top level of a module bind (the
    store right after IMPORT_NAME or IMPORT_FROM)."""
    raw, names = module.co_code, module.co_names
    previous = None
    extended = 0
    for i in range(0, len(raw), 2):
        op, arg = raw[i], raw[i + 1] | extended
        if op == _EXTENDED_ARG:
            extended = arg << 8
            continue
        extended = 0
        if op in _STORES and previous in _IMPORTS:
            yield names[arg]
        if op or not PY311:  # 3.11+: inline cache entries (opcode 0) sit between instructions
            previous = op


class _Tree:
    """A file's syntax tree: its defs and lambdas by (first line, name).

    Only Python 3.10 needs it (its code objects have no column positions),
    and later versions when two defs or lambdas on one line compile alike.
    """

    __slots__ = ("nodes", "qualnames")

    def __init__(self, tree: ast.Module):
        self.nodes: dict[tuple[int, str], list] = {}
        self.qualnames: dict[int, str] = {}  # id(node) -> its qualified name (Python 3.10)
        self._index(tree, "")

    def _index(self, node, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            self._visit(child, prefix)

    def _visit(self, node, prefix: str) -> None:
        """Index ``node`` and what it holds; ``prefix``: the qualified name
        of the scope it is in, as the compiler writes it (``f.<locals>.``)."""
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            self.nodes.setdefault((first, node.name), []).append(node)
            qualname = prefix + node.name
            self.qualnames[id(node)] = qualname
            for part in node.decorator_list + [node.args] + ([node.returns] if node.returns else []):
                self._visit(part, prefix)  # evaluated where the def is
            for part in node.body:
                self._visit(part, qualname + ".<locals>.")
        elif isinstance(node, ast.Lambda):
            self.nodes.setdefault((node.lineno, "<lambda>"), []).append(node)
            qualname = prefix + "<lambda>"
            self.qualnames[id(node)] = qualname
            self._visit(node.args, prefix)
            self._visit(node.body, qualname + ".<locals>.")
        elif isinstance(node, ast.ClassDef):
            for part in node.decorator_list + node.bases + node.keywords:
                self._visit(part, prefix)
            for part in node.body:
                self._visit(part, prefix + node.name + ".")
        elif not PY311 and isinstance(node, _COMPREHENSIONS_T):
            # Python 3.10: a comprehension is a scope of its own, named
            # without <locals>, except its first iterable
            first = node.generators[0].iter
            self._visit(first, prefix)
            inner = prefix + _COMPREHENSIONS[type(node)] + "."
            for part in ast.iter_child_nodes(node):
                if part is node.generators[0]:
                    for sub in ast.iter_child_nodes(part):
                        if sub is not first:
                            self._visit(sub, inner)
                else:
                    self._visit(part, inner)
        else:
            self._index(node, prefix)


_COMPREHENSIONS = {
    ast.ListComp: "<listcomp>",
    ast.SetComp: "<setcomp>",
    ast.DictComp: "<dictcomp>",
    ast.GeneratorExp: "<genexpr>",
}
_COMPREHENSIONS_T = tuple(_COMPREHENSIONS)


class SourceFinder:
    """Source records for the code objects of one dump (files compiled once)."""

    def __init__(self):
        self._files: dict[tuple[str, int], _File | None] = {}
        self._generated: dict[int, tuple[types.CodeType, str]] = {}
        self._reasons: dict[str, str] = {}

    def mark_generated(self, code: types.CodeType, why: str) -> None:
        """``code`` was made by a library with exec, which its owner (a
        dataclass) makes again on another Python: it gets a stand-in there."""
        self._generated[id(code)] = (code, why)

    def record(self, code: types.CodeType):
        """A checked source record for ``code``, or ``(name, why)``: why it has none."""
        generated = self._generated.get(id(code))
        if generated is not None and generated[0] is code:
            message = f"{generated[1]} on Python {PY_VERSION[0]}.{PY_VERSION[1]}; it cannot run on this Python"
            return _portable.make_record(
                _portable.GENERATED,
                message,
                code.co_filename,
                1,
                0,
                getattr(code, "co_qualname", code.co_name),
                code.co_freevars,
                0,
                (),
            )
        name = code.co_name
        if name.startswith("<") and name != "<lambda>":
            return name, _NOT_A_FUNCTION
        filename = code.co_filename
        source = self._file(filename, code.co_flags & _portable.FUTURE_FLAGS)
        compiled = () if source is None else source.codes.get((name, code.co_firstlineno), ())
        for twin, span in compiled:
            if twin == code and getattr(twin, "co_qualname", None) == getattr(code, "co_qualname", None):
                record = self._record(code, source, span)
                if record is not None:
                    return record
                break
        record = self._made_by_namedtuple(code)
        if record is not None:
            return record
        # The reason is one string object per file: a file of many functions
        # without source stores it once.
        if source is None or (filename.startswith("<") and filename.endswith(">") and not compiled):
            # "<string>" holds the text of `python -c` on 3.13+, not of exec'd strings
            why = NO_FILE.format(filename=filename)
        elif source.error is not None:
            why = source.error
        elif compiled:
            why = f"its source in {filename!r} does not compile to its code (edited since?)"
        else:
            why = f"its source is not in {filename!r} where its code says (edited since?)"
        return name, self._reasons.setdefault(why, why)

    def _file(self, filename: str, flags: int) -> _File | None:
        key = (filename, flags)
        if key not in self._files:
            lines = linecache.getlines(filename)
            self._files[key] = _compiled(lines, filename, flags) if lines else None
        return self._files[key]

    def _record(self, code, source: _File, span):
        """The record of ``code``, whose twin in ``source`` was compiled from the text at ``span``."""
        imports = sorted(source.imports & code_global_names(code)) if source.imports else ()
        qualname = getattr(code, "co_qualname", None)
        if span is not None and None not in span:
            line, end_line, col, end_col = span
            if code.co_name == "<lambda>":
                text = _segment(source.lines, line, col, end_line, end_col)
                kind = _portable.LAMBDA
            else:  # from the first decorator, whole lines
                text = _segment(source.lines, code.co_firstlineno, 0, end_line, end_col)
                line, col, kind = code.co_firstlineno, 0, _portable.DEF
                text = None if text is None else text + "\n"
            if text is not None:
                return _portable.make_record(
                    kind, text, code.co_filename, line, col, qualname, code.co_freevars, code.co_flags, imports
                )
        # Python 3.10, or no positions: the syntax tree tells where the text is
        tree = source.tree()
        nodes = [] if tree is None else tree.nodes.get((code.co_firstlineno, code.co_name), [])
        for node in nodes:
            record = _node_record(code, node, source.lines, qualname or tree.qualnames[id(node)], imports)
            # One candidate is the one the compiled file confirmed; of several
            # (lambdas on one line), the one that compiles to this code.
            if record is not None and (len(nodes) == 1 or _compiles_to(record, code)):
                return record
        return None

    def _made_by_namedtuple(self, code):
        """The ``__new__`` of a ``collections.namedtuple`` class is made by
        eval of a text that its field names give back: that text, if it
        compiles to this very code."""
        fields = code.co_argcount - 1
        if (
            code.co_name != "<lambda>"
            or code.co_filename != "<string>"
            or fields < 1
            or code.co_varnames[:1] != ("_cls",)
            or code.co_names != ("_tuple_new",)
        ):
            return None
        args = ", ".join(code.co_varnames[1 : fields + 1]) + ("," if fields == 1 else "")
        text = f"lambda _cls, {args}: _tuple_new(_cls, ({args}))"
        record = _portable.make_record(
            _portable.LAMBDA, text, code.co_filename, 1, 0, "<lambda>", (), code.co_flags, ()
        )
        return record if _compiles_to(record, code) else None


def _node_record(code, node, lines: list[str], qualname: str, imports):
    if isinstance(node, ast.Lambda):
        text = _segment(lines, node.lineno, node.col_offset, node.end_lineno, node.end_col_offset)
        kind, line, col = _portable.LAMBDA, node.lineno, node.col_offset
    else:
        line = min([node.lineno] + [d.lineno for d in node.decorator_list])
        text = _segment(lines, line, 0, node.end_lineno, node.end_col_offset)
        text = None if text is None else text + "\n"
        kind, col = _portable.DEF, 0
    if text is None:
        return None
    return _portable.make_record(
        kind, text, code.co_filename, line, col, qualname, code.co_freevars, code.co_flags, imports
    )


def _compiles_to(record, code) -> bool:
    """Whether ``record`` compiles here to ``code``: same bytecode,
    constants, names, flags, lines and (3.11+) columns and qualified name."""
    try:
        compiled = _portable.compile_record(record)
    except UnpicklingError:  # the text is not this code's
        return False
    return compiled == code and getattr(compiled, "co_qualname", None) == getattr(code, "co_qualname", None)


def _segment(lines: list[str], line: int, col: int, end_line: int, end_col: int) -> str | None:
    """The text from (line, col) to (end_line, end_col): columns are UTF-8 byte offsets."""
    if not (1 <= line <= end_line <= len(lines)):
        return None
    try:
        if line == end_line:
            return lines[line - 1].encode()[col:end_col].decode()
        first = lines[line - 1].encode()[col:].decode()
        last = lines[end_line - 1].encode()[:end_col].decode()
    except UnicodeDecodeError:  # columns that do not fall between characters: not this text
        return None
    return first + "".join(lines[line : end_line - 1]) + last
