"""Source records: the text of a function or lambda, and how to compile it
again into exactly the code object it was saved as.

A function saved by value carries its bytecode, which only its own minor
version of Python can run.  When its source is known (a file, or a notebook
cell in ``linecache``), it also carries a *source record* (see
:func:`make_record` for the layout).  Another minor version compiles the
record again (:func:`compile_record`): the text is parsed, put back at its
own line and column, and wrapped in empty stand-ins for the scopes that
enclosed it (read from its qualified name), so that the compiler derives
the same free variables (closure cells, in the same order), the same
``__class__`` cell for zero-argument ``super()``, the same private-name
mangling and the same qualified names as the original.  Nothing compiled
here runs: only the code object of the function itself is kept.

The saving side (``_reducers/source.py``) stores a record only for code
whose file, compiled again, holds an equal code object: a stale file
(edited after the function was defined) is never taken for its source.
"""

from __future__ import annotations
import __future__

import ast
import sys
import types

from .errors import UnpicklingError

__all__ = ["RECORD_LAYOUT", "FUTURE_FLAGS", "make_record", "read_record", "record_name", "compile_record"]

#: the first item of every source record: the layout below
RECORD_LAYOUT = 1

# A record is ``(RECORD_LAYOUT, filename, fields)``: the file name (one
# string object for all the code of a file: the pickle memo stores it once)
# and one string that packs the rest, which a load on the saving Python
# never reads (three opcodes to unpickle, not a dozen):
#
#     "{kind} {line} {col} {flags}\n{qualname}\n{freevars}\n{imports}\n{text}"
#
# (freevars and imports: names separated by spaces).
_FIELDS = 5

#: kinds of source
DEF = "def"  # a def or async def statement, decorators included
LAMBDA = "lambda"  # a lambda expression
#: code that a library generated with exec and generates again with its
#: owner (a dataclass's ``__init__``): the text is why it has no source, and
#: another version gets a stand-in that the owner's state setter replaces
GENERATED = "generated"

#: compiler flags of the ``from __future__`` imports that still change
#: what code compiles to (co_flags carries them); the others are mandatory
FUTURE_FLAGS = __future__.annotations.compiler_flag | __future__.barry_as_FLUFL.compiler_flag
#: co_flags: the code was compiled inside a function or comprehension
CO_NESTED = 0x10
_KEPT_FLAGS = FUTURE_FLAGS | CO_NESTED

# How the compiler names scopes in a qualified name: ``f.<locals>.g`` for a
# function in a function; comprehensions (Python 3.10 and 3.11 for all of
# them, later for generator expressions only) add their own name, no <locals>.
_LOCALS = "<locals>"
_COMPREHENSIONS = {
    "<listcomp>": ast.ListComp,
    "<setcomp>": ast.SetComp,
    "<dictcomp>": ast.DictComp,
    "<genexpr>": ast.GeneratorExp,
}
#: what stand-in scopes are named: the code inside never names it
_HIDDEN = "<mason>"
#: the parts of a qualified name that are not identifiers
_SCOPE_NAMES = frozenset({_LOCALS, "<lambda>", *_COMPREHENSIONS})
#: where a GENERATED stand-in starts
_STAND_IN_LINE = 1


def make_record(
    kind: str, text: str, filename: str, line: int, col: int, qualname: str, freevars: tuple, flags: int, imports: tuple
) -> tuple:
    """A source record.

    ``text``: for ``DEF``, whole lines from the first decorator (or the
    ``def``) to the end of the statement, first line with its indentation;
    for ``LAMBDA``, exactly the expression.  ``line``: the line ``text``
    starts on; ``col``: the UTF-8 byte column it starts at (0 for ``DEF``).
    ``qualname``: the qualified name the compiler gave the code;
    ``freevars``: its ``co_freevars``; ``flags``: its ``from __future__``
    flags; ``imports``: the global names it uses that an ``import`` statement
    binds at the top level of its module (Python 3.11+ compiles attribute
    calls on those differently).
    """
    fields = f"{kind} {line} {col} {flags & _KEPT_FLAGS}\n{qualname}\n{' '.join(freevars)}\n{' '.join(imports)}\n{text}"
    return (RECORD_LAYOUT, filename, fields)


def read_record(record):
    """``(kind, text, filename, line, col, qualname, freevars, flags,
    imports)`` of a record; raises ``UnpicklingError`` for anything else."""
    if type(record) is not tuple or len(record) != 3 or record[0] != RECORD_LAYOUT or type(record[0]) is not int:
        raise UnpicklingError("damaged file: its source record has an unknown layout (saved by a newer mason?)")
    _, filename, fields = record
    parts = fields.split("\n", _FIELDS - 1) if type(fields) is str and type(filename) is str else ()
    if len(parts) == _FIELDS:
        head, qualname, freevars, imports, text = parts
        head = head.split(" ")
        freevars, imports = tuple(freevars.split()), tuple(imports.split())
        if (
            len(head) == 4
            and head[0] in (DEF, LAMBDA, GENERATED)
            and all(h.isascii() and h.isdigit() and len(h) < 10 for h in head[1:])
            and int(head[1]) >= 1
            and all(part.isidentifier() or part in _SCOPE_NAMES for part in qualname.split("."))
            and all(v.isidentifier() for v in freevars + imports)
        ):
            return head[0], text, filename, int(head[1]), int(head[2]), qualname, freevars, int(head[3]), imports
    raise UnpicklingError("damaged file: its source record is malformed")


def record_name(record) -> str:
    """The qualified name a (well-formed) record compiles to."""
    return read_record(record)[5]


def compile_record(record) -> types.CodeType:
    """The code object ``record`` describes, compiled by this interpreter.

    Raises ``UnpicklingError`` (naming the function) when the text does not
    parse or compile here, or compiles to code with other free variables.
    """
    kind, text, filename, line, col, qualname, freevars, flags, imports = read_record(record)
    name = qualname.rpartition(".")[2]
    try:
        if kind == GENERATED:
            node, line = _stand_in(name, text, freevars), _STAND_IN_LINE
            scoped = f"{_HIDDEN}.<locals>.{name}" if freevars else name
        else:
            node, scoped = _parse(kind, text, filename, line, col), qualname
        module = _wrap(node, line, scoped, freevars, imports, flags)
        compiled = compile(module, filename, "exec", flags=flags & FUTURE_FLAGS, dont_inherit=True)
    except (SyntaxError, ValueError, TypeError, OverflowError, RecursionError, MemoryError) as exc:
        raise UnpicklingError(
            f"cannot compile the source of {qualname} on Python {sys.version_info[0]}.{sys.version_info[1]}: "
            f"{type(exc).__name__}: {exc}"
        ) from None
    code = _find(compiled, name, line)
    if code is None:
        raise UnpicklingError(f"the source of {qualname} does not define it")
    if getattr(code, "co_qualname", qualname) != qualname:  # a stand-in, or a comprehension inlined here
        code = code.replace(co_qualname=qualname)
    if code.co_freevars != freevars:
        raise UnpicklingError(
            f"the source of {qualname} compiles here with the free variables {code.co_freevars}, "
            f"not {freevars}: its closure cannot be attached"
        )
    return code


# ---------------------------------------------------------------- parsing


def _parse(kind: str, text: str, filename: str, line: int, col: int):
    """The AST node of ``text``, at its original lines and columns."""
    if kind == DEF:
        if text[:1] in (" ", "\t"):  # an indented statement: open a block for it
            tree = ast.parse("if 1:\n" + text, filename)
            body = tree.body[0].body
            shift = line - 2
        else:
            body = ast.parse(text, filename).body
            shift = line - 1
        if len(body) != 1 or not isinstance(body[0], (ast.FunctionDef, ast.AsyncFunctionDef)):
            raise ValueError("the text is not one def statement")
        node = body[0]
    else:
        # On a line of its own, after as many spaces as it had bytes before
        # it, inside parentheses: it may span lines as it did in the original.
        tree = ast.parse("(\n" + " " * col + text + "\n)", filename, mode="eval")
        node = tree.body
        if not isinstance(node, ast.Lambda):
            raise ValueError("the text is not one lambda expression")
        shift = line - 2
    if shift:
        ast.increment_lineno(node, shift)
    return node


# ---------------------------------------------------------------- enclosing scopes


def _scopes(qualname: str) -> tuple[list[tuple[str, str]], str]:
    """The scopes enclosing ``qualname`` (``("def" | "class" | "comp",
    name)``, outermost first) and its own name.  ``f.<locals>.C.m``: def f,
    class C, m; ``<listcomp>.<lambda>``: a list comprehension, a lambda."""
    parts = qualname.split(".")
    scopes = []
    i = 0
    while i < len(parts) - 1:
        if parts[i + 1 : i + 2] == [_LOCALS]:
            scopes.append(("def", parts[i]))
            i += 2
        else:
            scopes.append(("comp" if parts[i] in _COMPREHENSIONS else "class", parts[i]))
            i += 1
    return scopes, parts[-1]


def _wrap(node, line: int, qualname: str, freevars: tuple, imports: tuple, flags: int) -> ast.Module:
    """A module that defines ``node`` inside stand-ins of its enclosing scopes.

    Nothing of it ever runs: only the compiler's view of the names matters.
    The innermost enclosing function or comprehension binds the free
    variables; the module imports what the original module imported.  Each
    stand-in binds its name in its parent, as the original statement did (a
    name the code uses from there is then among its free variables, in the
    original too).  Code compiled inside a comprehension that its version
    inlined (3.12+) names no scope for it, but is flagged nested: a list
    comprehension stands in for it.  Free variables that no named scope
    binds (type parameters, 3.12+) get a hidden function that binds them.
    """
    scopes, name = _scopes(qualname)
    lambda_ = isinstance(node, ast.Lambda)
    if lambda_ != (name == "<lambda>") or (not lambda_ and name != node.name):
        raise ValueError(f"the text does not define {name!r}")
    own_free = [v for v in freevars if v != "__class__"]
    binders = [i for i, (kind, _) in enumerate(scopes) if kind != "class"]
    if lambda_ and (flags & CO_NESTED) and not binders:
        scopes.append(("comp", "<listcomp>"))
        binders.append(len(scopes) - 1)
    if own_free and not binders:
        # Bound where no qualified name shows it: the type parameters of a
        # generic class or function (3.12+).  A hidden function binds them.
        scopes.insert(0, ("def", _HIDDEN))
        binders.append(0)
    if "__class__" in freevars and not any(kind == "class" for kind, _ in scopes):
        raise ValueError("a __class__ cell without an enclosing class")
    inner = node
    for index in reversed(range(len(scopes))):
        kind, scope_name = scopes[index]
        bind = own_free if binders and index == binders[-1] else []
        if kind == "comp":
            if isinstance(inner, ast.stmt):
                raise ValueError("a statement inside a comprehension")
            inner = _comprehension(_COMPREHENSIONS[scope_name], inner, bind)
            continue
        body = [ast.Expr(value=inner)] if isinstance(inner, ast.expr) else [inner]
        if kind == "def":
            if bind:
                body.insert(
                    0,
                    ast.Assign(targets=[ast.Name(id=v, ctx=ast.Store()) for v in bind], value=ast.Constant(value=None)),
                )
            inner = ast.FunctionDef(
                name=scope_name,
                args=_no_args(),
                body=body,
                decorator_list=[],
                returns=None,
                type_comment=None,
                **_TYPE_PARAMS,
            )
        else:
            inner = ast.ClassDef(name=scope_name, bases=[], keywords=[], body=body, decorator_list=[], **_TYPE_PARAMS)
    body = [ast.Expr(value=inner)] if isinstance(inner, ast.expr) else [inner]
    if imports:
        body.insert(0, ast.Import(names=[ast.alias(name=name) for name in imports]))
    module = ast.Module(body=body, type_ignores=[])
    # Stand-ins start on another line than the code: _find cannot take one for it.
    elsewhere = 2 if line == 1 else 1
    for wrapper in ast.walk(module):
        if "lineno" in wrapper._attributes and getattr(wrapper, "lineno", None) is None:
            wrapper.lineno = wrapper.end_lineno = elsewhere
            wrapper.col_offset = wrapper.end_col_offset = 0
    return module


def _comprehension(kind, element, bind: list):
    """``[element for <bind> in ()]`` (of ``kind``): a scope that binds ``bind``."""
    names = bind or [_HIDDEN]
    target = (
        ast.Name(id=names[0], ctx=ast.Store())
        if len(names) == 1
        else ast.Tuple(elts=[ast.Name(id=v, ctx=ast.Store()) for v in names], ctx=ast.Store())
    )
    generators = [ast.comprehension(target=target, iter=ast.Tuple(elts=[], ctx=ast.Load()), ifs=[], is_async=0)]
    if kind is ast.DictComp:
        return ast.DictComp(key=element, value=ast.Constant(value=None), generators=generators)
    return kind(elt=element, generators=generators)


def _stand_in(name: str, message: str, freevars: tuple) -> ast.FunctionDef:
    """``def name(*args, **kwargs)`` that uses ``freevars`` and raises ``message``."""
    body = [
        ast.Expr(value=ast.Tuple(elts=[ast.Name(id=v, ctx=ast.Load()) for v in freevars], ctx=ast.Load())),
        ast.Raise(
            exc=ast.Call(
                func=ast.Name(id="RuntimeError", ctx=ast.Load()), args=[ast.Constant(value=message)], keywords=[]
            ),
            cause=None,
        ),
    ]
    args = ast.arguments(
        posonlyargs=[],
        args=[],
        vararg=ast.arg(arg="args"),
        kwonlyargs=[],
        kw_defaults=[],
        kwarg=ast.arg(arg="kwargs"),
        defaults=[],
    )
    node = ast.FunctionDef(
        name=name, args=args, body=body, decorator_list=[], returns=None, type_comment=None, **_TYPE_PARAMS
    )
    for part in ast.walk(node):
        if "lineno" in part._attributes:
            part.lineno = part.end_lineno = _STAND_IN_LINE
            part.col_offset = part.end_col_offset = 0
    return node


def _no_args() -> ast.arguments:
    return ast.arguments(posonlyargs=[], args=[], vararg=None, kwonlyargs=[], kw_defaults=[], kwarg=None, defaults=[])


# Python 3.12 gave function and class statements type parameters (PEP 695).
_TYPE_PARAMS = {"type_params": []} if sys.version_info >= (3, 12) else {}


def _find(module_code: types.CodeType, name: str, line: int) -> types.CodeType | None:
    """The code object named ``name`` that starts on ``line``, the outermost
    one (its own nested code may share both), in the compiled module."""
    stack = list(reversed(module_code.co_consts))
    while stack:
        const = stack.pop()
        if isinstance(const, types.CodeType):
            if const.co_name == name and const.co_firstlineno == line:
                return const
            stack.extend(reversed(const.co_consts))
    return None
