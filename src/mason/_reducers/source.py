"""The source of functions and lambdas saved by value: found, cut out, checked.

One :class:`SourceFinder` serves one pickler.  It reads a code object's file
(or notebook cell) from ``linecache``, parses it once per dump, finds the
``def`` or ``lambda`` the code was compiled from, and returns a source
record (see ``mason._portable``) only after compiling that record on this
interpreter gave back a code object equal to the original: bytecode,
constants, names, lines and columns (so, of two lambdas on one line, the
right one).  Otherwise it returns why there is no source, which a load on
another Python version reports.
"""

from __future__ import annotations

import ast
import linecache
import types

from .. import _portable
from .._compat import PY311, PY_VERSION
from ..errors import UnpicklingError
from .functions import code_global_names

__all__ = ["SourceFinder"]

#: why a code object carries no source (the load on another Python says so)
NO_FILE = ("no source: {filename!r} is neither a file nor a notebook cell in linecache (code made by exec or"
           " compile of a string, or typed at a prompt that keeps no source)")


class _File:
    """One parsed file: its lines and its defs and lambdas by (first line, name)."""

    __slots__ = ("lines", "nodes", "qualnames", "imports", "error")

    def __init__(self, lines: list[str], filename: str):
        self.lines = lines
        self.nodes: dict[tuple[int, str], list] = {}
        self.qualnames: dict[int, str] = {}  # id(node) -> its qualified name (Python 3.10)
        self.imports: frozenset[str] = frozenset()  # names import statements bind at the top level
        self.error: str | None = None
        try:
            tree = ast.parse("".join(lines), filename)
        except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
            self.error = f"its source file {filename!r} no longer parses ({type(exc).__name__}: {exc})"
            return
        self._index(tree, "")
        self.imports = frozenset(_top_level_imports(tree))

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


def _top_level_imports(tree):
    """Names bound by import statements in the module's own scope (in any
    block, but not inside functions or classes)."""
    stack = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                yield (alias.asname or alias.name).partition(".")[0]
        elif not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            stack.extend(ast.iter_child_nodes(node))


_COMPREHENSIONS = {ast.ListComp: "<listcomp>", ast.SetComp: "<setcomp>", ast.DictComp: "<dictcomp>",
                   ast.GeneratorExp: "<genexpr>"}
_COMPREHENSIONS_T = tuple(_COMPREHENSIONS)


class SourceFinder:
    """Source records for the code objects of one dump (files parsed once)."""

    def __init__(self):
        self._files: dict[str, _File | None] = {}
        self._generated: dict[int, tuple[types.CodeType, str]] = {}

    def mark_generated(self, code: types.CodeType, why: str) -> None:
        """``code`` was made by a library with exec, which its owner (a
        dataclass) makes again on another Python: it gets a stand-in there."""
        self._generated[id(code)] = (code, why)

    def record(self, code: types.CodeType):
        """A checked source record for ``code``, or a string saying why there is none."""
        generated = self._generated.get(id(code))
        if generated is not None and generated[0] is code:
            message = f"{generated[1]} on Python {PY_VERSION[0]}.{PY_VERSION[1]}; it cannot run on this Python"
            return _portable.make_record(_portable.GENERATED, message, code.co_filename, 1, 0,
                                         getattr(code, "co_qualname", code.co_name), code.co_freevars, 0, ())
        name = code.co_name
        if name.startswith("<") and name != "<lambda>":
            return f"{name}: only functions and lambdas are saved with their source"
        what = getattr(code, "co_qualname", name)
        filename = code.co_filename
        source = self._file(filename)
        candidates = () if source is None else source.nodes.get((code.co_firstlineno, name), ())
        for node in candidates:
            record = self._record_for(code, node, source)
            if record is not None:
                return record
        record = self._made_by_namedtuple(code)
        if record is not None:
            return record
        if source is None or (filename.startswith("<") and filename.endswith(">") and not candidates):
            # "<string>" holds the text of `python -c` on 3.13+, not of exec'd strings
            return f"{what}: " + NO_FILE.format(filename=filename)
        if source.error is not None:
            return f"{what}: {source.error}"
        if candidates:
            return f"{what}: its source in {filename!r} does not compile to its code (edited since?)"
        return f"{what}: its source is not in {filename!r} at line {code.co_firstlineno} (edited since?)"

    def _made_by_namedtuple(self, code):
        """The ``__new__`` of a ``collections.namedtuple`` class is made by
        eval of a text that its field names give back: that text, if it
        compiles to this very code."""
        fields = code.co_argcount - 1
        if (code.co_name != "<lambda>" or code.co_filename != "<string>" or fields < 1
                or code.co_varnames[:1] != ("_cls",) or code.co_names != ("_tuple_new",)):
            return None
        args = ", ".join(code.co_varnames[1 : fields + 1]) + ("," if fields == 1 else "")
        text = f"lambda _cls, {args}: _tuple_new(_cls, ({args}))"
        record = _portable.make_record(_portable.LAMBDA, text, code.co_filename, 1, 0, "<lambda>", (),
                                       code.co_flags, ())
        return record if self._compiles_to(record, code) else None

    def _file(self, filename: str) -> _File | None:
        if filename in self._files:
            return self._files[filename]
        lines = linecache.getlines(filename)
        parsed = _File(lines, filename) if lines else None
        self._files[filename] = parsed
        return parsed

    def _record_for(self, code, node, source: _File):
        try:
            return self._checked_record(code, node, source)
        except UnicodeError:  # columns that do not fall between characters: not this text
            return None

    def _checked_record(self, code, node, source: _File):
        if isinstance(node, ast.Lambda):
            text = _segment(source.lines, node.lineno, node.col_offset, node.end_lineno, node.end_col_offset)
            kind, line, col = _portable.LAMBDA, node.lineno, node.col_offset
        else:
            line = min([node.lineno] + [d.lineno for d in node.decorator_list])
            text = _segment(source.lines, line, 0, node.end_lineno, node.end_col_offset) + "\n"
            kind, col = _portable.DEF, 0
        if text is None:
            return None
        qualname = code.co_qualname if PY311 else source.qualnames[id(node)]
        imports = sorted(source.imports & code_global_names(code)) if source.imports else ()
        record = _portable.make_record(kind, text, code.co_filename, line, col, qualname, code.co_freevars,
                                       code.co_flags, imports)
        return record if self._compiles_to(record, code) else None

    @staticmethod
    def _compiles_to(record, code) -> bool:
        """Whether ``record`` compiles here to ``code``: same bytecode,
        constants, names, flags, lines and (3.11+) columns and qualified name."""
        try:
            compiled = _portable.compile_record(record)
        except UnpicklingError:  # the text is not this code's (an ambiguous lambda, an edited file)
            return False
        return compiled == code and getattr(compiled, "co_qualname", None) == getattr(code, "co_qualname", None)


def _segment(lines: list[str], line: int, col: int, end_line: int, end_col: int) -> str | None:
    """The text from (line, col) to (end_line, end_col): columns are UTF-8 byte offsets."""
    if not (1 <= line <= end_line <= len(lines)):
        return None
    if line == end_line:
        return lines[line - 1].encode()[col:end_col].decode(errors="strict")
    first = lines[line - 1].encode()[col:].decode()
    last = lines[end_line - 1].encode()[:end_col].decode()
    return first + "".join(lines[line : end_line - 1]) + last
