"""Reconstructors of mason._rebuild for code saved with its source (loaded on
another minor version of Python) and for dataclass instances.

Part of mason._rebuild, which re-exports every public name here: files name
them ``mason._rebuild.<name>``, and the FROZEN rules of that module hold.
"""

from __future__ import annotations

import marshal
import sys
import types

from ._rebuild import _check, _CodeType, _is_name, _require_made, class_setstate
from .errors import UnpicklingError, VersionMismatchError

# ---------------------------------------------------------------- portable code

#: the minor version of Python loading: code saved by it runs from its bytecode
_HERE = sys.version_info[:2]


def _unmarshal_code(data):
    if type(data) is not bytes:
        _check(isinstance(data, (bytearray, memoryview)), "a code object is not bytes")
    try:
        code = marshal.loads(data)
    except (ValueError, EOFError, TypeError) as exc:
        raise UnpicklingError(f"damaged code object: {exc}") from None
    if type(code) is not types.CodeType:
        raise UnpicklingError("damaged code object: marshal data is not code")
    return code


def code_portable(version, data, source):
    """A code object: from its bytecode on the minor version of Python that
    saved it, else compiled again from its source.

    ``source`` is a source record (see ``mason._portable``: the text of the
    function or lambda and what compiling it exactly needs), or ``(name,
    why)``: the code's name and why it has no source; then, as with
    :func:`code_from_marshal`, another version raises
    :class:`VersionMismatchError`, with that reason.
    """
    if type(version) is tuple and version == _HERE and type(data) is bytes:
        # The fast path, every load on the saving Python: _unmarshal_code inline.
        try:
            code = marshal.loads(data)
        except (ValueError, EOFError, TypeError) as exc:
            raise UnpicklingError(f"damaged code object: {exc}") from None
        if type(code) is _CodeType:
            return code
        raise UnpicklingError("damaged code object: marshal data is not code")
    _check(
        isinstance(version, (tuple, list)) and len(version) >= 2 and all(type(v) is int for v in version[:2]),
        "a code object's Python version is malformed",
    )
    if tuple(version[:2]) == _HERE:
        return _unmarshal_code(data)
    if type(source) is tuple and len(source) == 2 and all(type(part) is str for part in source):
        raise VersionMismatchError(
            f"{source[0]}: {source[1]}; its bytecode was compiled by Python {version[0]}.{version[1]} and "
            f"cannot run on Python {sys.version_info[0]}.{sys.version_info[1]}: load it with Python "
            f"{version[0]}.{version[1]}"
        )
    from ._portable import compile_record, record_name

    code = compile_record(source)
    qualname = record_name(source)
    if not hasattr(code, "co_qualname") and qualname != code.co_name:
        # Python 3.10 takes a function's __qualname__ from co_name, and the
        # file saved it only where co_qualname (3.11+) would not give it.
        code = code.replace(co_name=qualname)
    return code


def dataclass_setstate(cls, state):
    """Attributes of a by-value dataclass, made again on another Python.

    ``state`` is ``(attributes, virtual subclasses, (version, options,
    made, replace))``: ``options`` are the flags of ``@dataclass(...)``,
    ``made`` the names of the methods dataclasses made, ``replace`` whether
    it set ``__replace__`` (3.13+).  On the Python that saved it this is
    :func:`class_setstate`, exact.  On another, those methods are stand-ins
    (their code was made by exec: it has no source); the other attributes
    are set, then this Python's dataclasses makes the methods again from the
    saved fields and options (code generated from field names: it counts as
    code from the file).
    """
    import dataclasses

    _require_made(cls, type, "dataclass_setstate")
    _check(
        isinstance(state, tuple) and len(state) == 3 and isinstance(state[2], tuple) and len(state[2]) == 4,
        "dataclass state is malformed",
    )
    attrs, abc_registry, (version, options, made, replace) = state
    _check(
        isinstance(version, tuple)
        and len(version) >= 2
        and all(type(v) is int for v in version[:2])
        and isinstance(options, dict)
        and all(_is_name(k) and type(v) is bool for k, v in options.items())
        and isinstance(made, tuple)
        and all(_is_name(name) for name in made)
        and type(replace) is bool
        and isinstance(attrs, dict),
        "dataclass state is malformed",
    )
    if tuple(version[:2]) == sys.version_info[:2]:
        class_setstate(cls, (attrs, abc_registry))
        try:
            cls.__dataclass_params__ = dataclasses._DataclassParams(**options)
        except TypeError as exc:
            raise UnpicklingError(f"damaged dataclass {cls.__qualname__}: {exc}") from None
        if replace:
            replace_function = getattr(dataclasses, "_replace", None)  # Python 3.13+
            _check(replace_function is not None, "a dataclass's __replace__ on a Python that has none")
            cls.__replace__ = replace_function
        return
    fields = attrs.get("__dataclass_fields__")
    own = cls.__dict__.get("__annotations__") or {}
    _check(
        isinstance(fields, dict)
        and all(isinstance(f, dataclasses.Field) for f in fields.values())
        and all(_is_field_name(name) for name in list(fields) + list(own)),
        "a dataclass's fields are malformed",
    )
    class_setstate(
        cls, ({k: v for k, v in attrs.items() if k not in made and k != "__dataclass_fields__"}, abc_registry)
    )
    for name in own:
        if name in fields:  # a Field default carries the field's options
            setattr(cls, name, fields[name])
    import inspect

    accepted = inspect.signature(dataclasses.dataclass).parameters
    options = {k: v for k, v in options.items() if k in accepted and k not in ("slots", "weakref_slot")}
    if "match_args" in accepted:  # saved by 3.10 or 3.11, which kept no such option
        options.setdefault("match_args", "__match_args__" in attrs)
    try:
        dataclasses.dataclass(cls, **options)
    except (TypeError, ValueError, AttributeError) as exc:
        raise UnpicklingError(
            f"cannot make dataclass {cls.__qualname__} again on Python {sys.version_info[0]}."
            f"{sys.version_info[1]}: {type(exc).__name__}: {exc}"
        ) from None


def _is_field_name(name) -> bool:
    import keyword

    return _is_name(name) and not keyword.iskeyword(name)
