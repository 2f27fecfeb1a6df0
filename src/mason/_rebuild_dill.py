"""Reconstructors of mason._rebuild for files written by dill.

Part of mason._rebuild, which re-exports every public name here: files name
them ``mason._rebuild.<name>``, and the FROZEN rules of that module hold.
"""

from __future__ import annotations

import builtins
import sys
import types
import weakref

from ._rebuild import (
    _EMPTY_CELL,
    _LOAD,
    _NO_ATTRIBUTE,
    _check,
    _check_class_args,
    _is_dotted,
    _is_name,
    _made,
    _require_made,
    import_module,
    make_cell,
    make_module,
    module_attribute,
)
from ._rebuild_builtins import class_attribute, make_dead_weakproxy, make_dead_weakref, make_rlock, make_tempfile
from ._rebuild_io import make_file, reopen_file
from .errors import ForbiddenGlobalError, UnpicklingError

# ---------------------------------------------------------------- files written by dill
#
# dill's reconstructors, read without dill: _dillcompat.py maps each name a
# dill file uses (dill._dill._create_function...) to one of these, which take
# dill's own arguments.  Each is closed like every other reconstructor here:
# dill's versions call whatever they are given (``_create_type(typeobj,
# *args)`` is ``typeobj(*args)``; ``_eval_repr`` is ``eval``), these check it.


def dill_create_function(code, globals, name=None, defaults=None, closure=None, fdict=None, kwdefaults=None):
    """dill's ``_create_function``: a function whose attributes arrive with its state."""
    _check(isinstance(code, types.CodeType), "a function's code is not a code object")
    _check(globals is None or type(globals) is dict, "a function's globals are not a dict")
    _check(name is None or isinstance(name, str), "a function's name is not a string")
    _check(defaults is None or type(defaults) is tuple, "a function's defaults are not a tuple")
    _check(
        closure is None or (type(closure) is tuple and all(type(c) is types.CellType for c in closure)),
        "a function's closure is not a tuple of cells",
    )
    _check(
        (fdict is None or isinstance(fdict, dict)) and (kwdefaults is None or isinstance(kwdefaults, dict)),
        "a function's __dict__ or keyword defaults are not dicts",
    )
    globals = globals if globals else {}  # dill's ``fglobals or dict()``
    if "__builtins__" not in globals:
        globals["__builtins__"] = builtins.__dict__
    try:
        func = types.FunctionType(code, globals, name, defaults, closure)
    except (TypeError, ValueError) as exc:  # closure size differs from the code's
        raise UnpicklingError(f"damaged function {name!r}: {exc}") from None
    if fdict:
        func.__dict__.update(fdict)
    if kwdefaults is not None:
        func.__kwdefaults__ = kwdefaults
    return _made(func)


def dill_create_code(*args):
    """dill's ``_create_code``: a code object from the fields of the Python
    that wrote it, only if that is this Python (see ``_dillcompat.make_code``)."""
    from ._dillcompat import make_code

    return make_code(args)


def dill_create_cell(contents=None):
    """dill's ``_create_cell``: a cell holding ``contents``, empty for dill's
    empty-cell marker (mason's, as _dillcompat reads it)."""
    cell = make_cell()
    if contents is not _EMPTY_CELL:
        cell.cell_contents = contents
    return cell


def dill_create_type(metaclass, name, bases, namespace):
    """dill's ``_create_type(type(cls), name, bases, dict)``: a class made by
    its metaclass from its saved namespace (only a metaclass may be called)."""
    _check_class_args(metaclass, name, bases, namespace)
    try:
        return _made(metaclass(name, bases, dict(namespace)))
    # bases that cannot be combined, a metaclass's own checks of the namespace
    except (TypeError, ValueError, AttributeError, KeyError) as exc:
        raise UnpicklingError(f"cannot rebuild class {name!r}: {exc}") from None


def dill_load_type(name):
    """dill's ``_load_type``: a type of ``builtins`` or ``types`` by dill's name for it."""
    from ._dillcompat import load_type

    return load_type(name)


def dill_import_module(name):
    """dill's ``_import_module``: a module by name; dill's ``__runtime__.name``
    (a module-type object that was not importable) is a new, empty module
    of that name, not registered in ``sys.modules``, that its saved state fills."""
    _check(isinstance(name, str), "a module name is not a string")
    if name.startswith("__runtime__."):
        runtime = name[len("__runtime__.") :]
        _check(_is_dotted(runtime), f"a module name must be a dotted name, not {runtime!r}")
        return make_module(runtime)
    return import_module(name)


def dill_class_attribute(cls, name, repr_text):
    """dill's ``_getattr(objclass, name, repr)``: a descriptor as stored in its
    class.  dill evaluates part of ``repr``; mason reads only the class."""
    _check(isinstance(repr_text, str), "a descriptor's repr is not text")
    return class_attribute(cls, name)


def dill_namedtuple(name, fields, module, defaults=None):
    """dill's ``_create_namedtuple``: the namedtuple class ``module.name`` when
    an importable module (not ``__main__``) holds one with these fields, as a
    global would name it; otherwise a new class."""
    _check_namedtuple(name, fields, module, defaults)
    return _existing_namedtuple(module, name, tuple(fields)) or _new_namedtuple(name, fields, module, defaults)


def _check_namedtuple(name, fields, module, defaults) -> None:
    _check(
        _is_name(name)
        and isinstance(module, str)
        and isinstance(fields, (tuple, list))
        and all(_is_name(f) for f in fields)
        and (defaults is None or isinstance(defaults, (tuple, list))),
        "a namedtuple's name, fields or defaults are malformed",
    )


def _existing_namedtuple(module, name, fields):
    if module == "__main__" or not _is_dotted(module) or name.startswith("_"):
        return None
    try:
        found = module_attribute(module, name)
    except (ImportError, UnpicklingError):
        return None
    if isinstance(found, type) and issubclass(found, tuple) and getattr(found, "_fields", None) == fields:
        return found
    return None


def _new_namedtuple(name, fields, module, defaults):
    import collections

    try:
        return _made(collections.namedtuple(name, fields, defaults=defaults, module=module))
    except (TypeError, ValueError) as exc:
        raise UnpicklingError(f"cannot rebuild namedtuple {name!r}: {exc}") from None


def dill_ndarray(reconstruct, args, state, npdict=None):
    """dill's ``_create_array``: a numpy array of a subclass, with its instance
    ``__dict__``; ``reconstruct`` may only be numpy's own ``_reconstruct``."""
    import numpy

    cores = [sys.modules.get(f"numpy.{core}.multiarray") for core in ("core", "_core")]
    _check(
        any(reconstruct is getattr(core, "_reconstruct", None) for core in cores if core is not None),
        "dill's array reconstructor is not numpy's _reconstruct",
    )
    _check(type(args) is tuple and (npdict is None or isinstance(npdict, dict)), "dill's array arguments are malformed")
    array = reconstruct(*args)
    _check(isinstance(array, numpy.ndarray), "dill's array is not an array")
    array.__setstate__(state)
    if npdict:
        array.__dict__.update(npdict)
    return _made(array)


def dill_dtype_class(scalar_type):
    """dill's ``_create_dtypemeta``: the dtype class of a numpy scalar type
    (``numpy.dtypes.Float64DType``), or ``numpy.dtype`` itself for None."""
    import numpy

    if scalar_type is None:
        return numpy.dtype
    _check(
        isinstance(scalar_type, type) and issubclass(scalar_type, numpy.generic),
        "a dtype class is asked for something that is not a numpy scalar type",
    )
    return type(numpy.dtype(scalar_type))


def dill_filehandle(name, mode, position, closed, opener, strictio, fmode, fdata):
    """dill's ``_create_filehandle``, reopened as mason reopens its own saved
    handles (:func:`reopen_file`; :func:`make_file` when saved strict).
    ``opener`` is the ``open`` dill saved, and is not called."""
    from ._dillcompat import is_opener

    _check(
        is_opener(opener)
        and isinstance(name, str)
        and isinstance(mode, str)
        and fmode in (0, 1, 2)
        and (fdata is None or isinstance(fdata, (str, bytes))),
        "a dill file handle's state is malformed",
    )
    _check(type(position) is int and isinstance(closed, bool), "a dill file handle's position is malformed")
    if name in ("<tmpfile>", "<fdopen>"):  # anonymous files: their contents were never saved
        return make_tempfile(mode, b"" if "b" in mode else "", 0, closed, None)
    contents = fdata if fmode == 2 else None
    rebuild = make_file if strictio else reopen_file
    return rebuild(name, mode, position, closed, fmode, contents, None)


def dill_rlock(count, owner, *args):
    """dill's ``_create_rlock``: an RLock held ``count`` times, by this thread
    (the owner dill saved is a thread of the process that saved it)."""
    _check(type(count) is int and (owner is None or type(owner) is int), "an RLock's state is malformed")
    return make_rlock(count if owner is not None else 0)


def dill_weakref(obj, *args):
    """dill's ``_create_weakref``: a weak reference, dead when saved dead (None)."""
    _check(not args, "a weak reference with a callback dill does not save")
    return make_dead_weakref() if obj is None else weakref.ref(obj)


def dill_weakproxy(obj, callable_=False, *args):
    """dill's ``_create_weakproxy``: a weak proxy, dead when saved dead (None)."""
    _check(not args and isinstance(callable_, bool), "a weak proxy's state is malformed")
    return make_dead_weakproxy(callable_) if obj is None else weakref.proxy(obj)


def dill_typing_tuple(argz, *args):
    """dill's ``_create_typing_tuple``: ``typing.Tuple[()]`` and the like."""
    import typing

    _check(type(argz) is tuple, "a typing.Tuple's arguments are not a tuple")
    if not argz:
        return typing.Tuple[()].copy_with(())
    if argz == ((),):
        return typing.Tuple[()]
    return typing.Tuple[argz]


def dill_eval_repr(text):
    """dill's ``_eval_repr`` without ``eval``: range, Ellipsis and
    NotImplemented from their reprs; any other text is refused."""
    from ._dillcompat import eval_repr

    return eval_repr(text)


def dill_setitems(dest, source):
    """dill's ``_setitems(dest, source)``: ``dest.update(source)``, for a
    plain dict that is no module's namespace (dill uses it on the namespace
    of a class being made, and on a function's copied globals)."""
    _check(type(dest) is dict and isinstance(source, dict), "dill's _setitems is given something that is not a dict")
    state = _LOAD.get()
    if (
        dest is builtins.__dict__
        or (state is not None and dest is state.namespace)
        or any(getattr(module, "__dict__", None) is dest for module in list(sys.modules.values()))
    ):
        raise ForbiddenGlobalError("this file writes into a module's namespace with dill's _setitems: refused")
    dest.update(source)


def dill_setattr(obj, name, value):
    """dill's ``setattr`` (its postprocessing, its ``_setattr`` shim): an
    attribute of a class, function or cell this load made.  Setting a class
    or function's name to what it already is (a namedtuple found by name)
    changes nothing and is allowed."""
    _check(isinstance(name, str), "dill's setattr is given a name that is not a string")
    if type(obj) is types.CellType:
        _check(name == "cell_contents", f"dill sets the attribute {name!r} of a cell")
        _require_made(obj, types.CellType, "dill_setattr")
        obj.cell_contents = value
        return None
    if not isinstance(obj, (type, types.FunctionType)):
        raise ForbiddenGlobalError(
            f"this file sets the attribute {name!r} of a {type(obj).__name__} object with setattr: a dill"
            " file may set attributes only of the classes, functions and cells it made"
        )
    kind = type if isinstance(obj, type) else types.FunctionType
    if name in ("__qualname__", "__module__", "__name__") and getattr(obj, name, _NO_ATTRIBUTE) == value:
        return None
    _require_made(obj, kind, "dill_setattr")
    setattr(obj, name, value)
    return None


def dill_delattr(obj, name):
    """dill's ``_delattr`` shim: empty a cell this load made."""
    _check(
        type(obj) is types.CellType and name == "cell_contents", "dill deletes something other than a cell's contents"
    )
    _require_made(obj, types.CellType, "dill_delattr")
    try:
        del obj.cell_contents
    except ValueError:  # already empty
        pass
    return None
