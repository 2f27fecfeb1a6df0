"""What every session file says about itself: its metadata, checked before
anything else reads it, and the keyword options shared by saves and loads.

In memory, ``meta["variables"]`` is a list of records, one dict per saved
variable: name, type, stored ("value" or "reference"), size, segment (its
pickle segment), blobs (its out-of-band buffers), and memo_reset when true.
A file stores them as columns (see :func:`pack_variables`): a list of
hundreds of thousands of small JSON objects took longer to parse and check
than the variables took to unpickle.  Files written before columns hold the
list itself, which is read as it is.
"""

from __future__ import annotations

import contextlib
import io
import os

from ._storage import open_output
from .errors import (
    CorruptSessionError,
)

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time
    from typing import Any, Protocol

    class SessionReader(Protocol):
        """What a load reads a session through: a container's reader
        (``ContainerReader``) or a checkpoint's (``_store.StoreReader``)."""

        meta: dict[str, Any]

        @property
        def segment_count(self) -> int: ...
        @property
        def blob_count(self) -> int: ...
        def segment(self, i: int) -> memoryview: ...
        def segments(self, numbers: Any) -> list[memoryview]: ...
        def blob(self, i: int) -> memoryview: ...
        @property
        def segment_lengths(self) -> Any: ...
        def blob_info(self, i: int) -> dict[str, Any]: ...
        def verify_records(self, segments: Any, blobs: Any) -> None: ...
        def close(self) -> None: ...


#: what the ``"kind"`` key of a session file's metadata says
SESSION_KIND = "mason.session"
_ON_ERROR = ("warn", "raise")


class _Options:
    """Keyword options with defaults (plain classes: dataclasses would add
    milliseconds to ``import mason``)."""

    DEFAULTS: dict = {}

    def __init__(self, **kwds):
        for name, default in self.DEFAULTS.items():
            setattr(self, name, kwds.pop(name, default))
        if kwds:
            raise TypeError(f"unexpected option(s): {', '.join(sorted(kwds))}")


def _options(cls, kwds: dict, function: str):
    """An options object from keyword arguments; unknown ones are an error."""
    unknown = sorted(set(kwds) - set(cls.DEFAULTS))
    if unknown:
        raise TypeError(f"unexpected keyword argument(s) for {function}: {', '.join(unknown)}")
    options = cls(**kwds)
    if options.on_error not in _ON_ERROR:
        raise ValueError(f"on_error must be 'warn' or 'raise', not {options.on_error!r}")
    return options


@contextlib.contextmanager
def _output(target, storage_options=None):
    if isinstance(target, (str, os.PathLike)):
        with open_output(target, storage_options) as stream:
            yield stream
    elif hasattr(target, "write"):
        if storage_options:
            raise ValueError("storage_options apply to URLs only, not to a stream")
        if isinstance(target, io.TextIOBase):
            raise TypeError("a session must be written to a binary stream (open the file with 'wb')")
        yield target
    else:
        raise TypeError(f"filename must be a path or a binary stream, not {type(target).__name__}")


def check_session_meta(reader: SessionReader) -> list[dict]:
    """The index's variable records, after checking that the session
    metadata fits the file (see :func:`session_meta_problem`); columns read
    from the file are replaced by the records in ``reader.meta``."""
    meta = reader.meta
    if meta.get("kind") != SESSION_KIND:
        raise CorruptSessionError("this mason file holds no session (no session metadata in its index)")
    problem = session_meta_problem(meta, reader.segment_count, reader.blob_count)
    if problem:
        raise CorruptSessionError(f"index: the session metadata is malformed: {problem}")
    if type(meta["variables"]) is dict:
        blobs = meta["variables"]["blobs"]
        blob_lengths = {
            n: reader.blob_info(n)["raw_length"] for _, first, count in blobs for n in range(first, first + count)
        }
        meta["variables"] = unpack_variables(meta["variables"], reader.segment_lengths, blob_lengths)
    return meta["variables"]


# -- the variable columns ----------------------------------------------------------
#
#   {"name":   [str, ...],          one per variable; variable i is segment i
#    "type":   [int, ...],          index into "types"
#    "types":  [str, ...],          the type names, each once, in order of first use
#    "stored": [int, ...],          index into "storage"
#    "storage": [str, ...],         how variables are stored ("value", "reference")
#    "blobs":  [[variable, first blob, count], ...]   only variables with blobs, in order
#    "memo_reset": [variable, ...]}                    only where it is true, in order
#
# A variable's size (the raw bytes of its segment and blobs) is not stored:
# the container's tables say it.

_COLUMNS = ("blobs", "memo_reset", "name", "storage", "stored", "type", "types")


def pack_variables(variables: list[dict], segment_lengths=None, blob_lengths=None) -> dict | list:
    """The variable records as the columns a file stores, or the records
    themselves where columns cannot say it (a variable whose segment is not
    its position, or whose blobs are not consecutive, or whose size is not
    what its segment and blobs make: never in mason's own sessions, but
    possible in a file it re-signs).  ``blob_lengths``: raw length of each
    blob (default: each variable's size is taken as right)."""
    blobs = []
    for number, var in enumerate(variables):
        numbers = var["blobs"]
        if var["segment"] != number or numbers != list(range(numbers[0], numbers[0] + len(numbers)) if numbers else []):
            return variables
        if numbers:
            blobs.append([number, numbers[0], len(numbers)])
        if segment_lengths is not None and blob_lengths is not None:
            if var["size"] != segment_lengths[number] + sum(blob_lengths[n] for n in numbers):
                return variables
    types: dict[str, int] = {}
    storage: dict[str, int] = {}
    return {
        "name": [var["name"] for var in variables],
        "type": [types.setdefault(var["type"], len(types)) for var in variables],
        "types": list(types),
        "stored": [storage.setdefault(var["stored"], len(storage)) for var in variables],
        "storage": list(storage),
        "blobs": blobs,
        "memo_reset": [number for number, var in enumerate(variables) if var.get("memo_reset")],
    }


def variable_names(meta: dict) -> list[str]:
    """The names of a session's variables, in either form of ``meta["variables"]``."""
    variables = meta["variables"]
    return list(variables["name"]) if type(variables) is dict else [var["name"] for var in variables]


def unpack_variables(columns: dict, segment_lengths, blob_lengths) -> list[dict]:
    """The variable records of columns that passed :func:`_columns_problem`,
    in a container whose segments and blobs have these raw lengths (a
    sequence, and a mapping for the blobs the variables use)."""
    types, storage = columns["types"], columns["storage"]
    variables = [
        {"name": name, "type": types[type_], "stored": storage[stored], "size": size, "segment": number, "blobs": []}
        for number, (name, type_, stored, size) in enumerate(
            zip(columns["name"], columns["type"], columns["stored"], segment_lengths)
        )
    ]
    for number, first, count in columns["blobs"]:
        var = variables[number]
        var["blobs"] = list(range(first, first + count))
        var["size"] += sum(blob_lengths[n] for n in var["blobs"])
    for number in columns["memo_reset"]:
        variables[number]["memo_reset"] = True
    return variables


def _columns_problem(columns: dict, segments: int, blobs: int) -> str:
    """What is wrong with variable columns, or "" (each column is checked
    whole by builtins, so that a million variables cost milliseconds)."""
    missing = [key for key in _COLUMNS if key not in columns]
    if missing:
        return f"variables: no {', '.join(missing)}"
    names = columns["name"]
    if type(names) is not list or not _all_of(names, str):
        return "variables: name is not a list of strings"
    if len(names) != segments:
        return f"variables: {len(names)} names for the file's {segments} segments"
    for column, table in (("type", "types"), ("stored", "storage")):
        values, labels = columns[column], columns[table]
        if type(labels) is not list or not _all_of(labels, str):
            return f"variables: {table} is not a list of strings"
        if not _is_numbers(values, len(names), len(labels)):
            return f"variables: {column} is not {len(names)} numbers below {len(labels)}"
    ranges = columns["blobs"]
    if type(ranges) is not list:
        return "variables: blobs is not a list"
    after = after_blob = 0  # variables and blobs come in order, each range after the last
    for item in ranges:
        if not (
            type(item) is list
            and len(item) == 3
            and _all_of(item, int)
            and after <= item[0] < len(names)
            and after_blob <= item[1]
            and 1 <= item[2] <= blobs - item[1]
        ):
            return f"variables: blobs: {_brief(item)} is not [variable, first blob, count] of the file's {blobs} blobs"
        after, after_blob = item[0] + 1, item[1] + item[2]
    resets = columns["memo_reset"]
    if type(resets) is not list or not _is_numbers(resets, len(resets), len(names)) or resets != sorted(set(resets)):
        return "variables: memo_reset is not a list of variable numbers in order"
    return ""


def _all_of(values: list, kind: type) -> bool:
    return not values or set(map(type, values)) == {kind}


def _is_numbers(values, count: int, below: int) -> bool:
    """Whether ``values`` is a list of ``count`` ints in 0 .. below - 1."""
    return (
        type(values) is list
        and len(values) == count
        and (not values or (_all_of(values, int) and min(values) >= 0 and max(values) < below))
    )


def session_meta_problem(meta: dict, segments: int, blobs: int) -> str:
    """What is wrong with the shape of a session's metadata, or "" if nothing.

    The index passed its checksum, so a bad shape means a file mason did not
    write: refuse it here, naming the field, rather than with a KeyError,
    TypeError or OverflowError halfway through loading or inspecting it.
    ``segments`` and ``blobs`` are how many the container holds.
    """
    problem = _module_problem(meta.get("module"), meta.get("module_kind"))
    if problem:
        return problem
    variables = meta.get("variables")
    if type(variables) is dict:
        problem = _columns_problem(variables, segments, blobs)
        if problem:
            return problem
        variables = ()
    elif type(variables) is not list:
        return "variables is not a list"
    # Sessions have hundreds of thousands of variables: one inline test per
    # record, and the field is only looked for once one fails.
    for var in variables:
        if not (
            type(var) is dict
            and type(var.get("name")) is str
            and type(var.get("type")) is str
            and type(var.get("stored")) is str
            and type(var.get("size")) is int
            and 0 <= var["size"] < _MAX_COUNT
            and type(var.get("segment")) is int
            and 0 <= var["segment"] < segments
            and type(var.get("blobs")) is list
            and (not var["blobs"] or all(type(blob) is int and 0 <= blob < blobs for blob in var["blobs"]))
            and type(var.get("memo_reset", False)) is bool
        ):
            number = next(i for i, v in enumerate(variables) if v is var)
            return f"variable {number}: {_variable_problem(var, segments, blobs)}"
    skipped = meta.get("skipped", [])
    if type(skipped) is not list:
        return "skipped is not a list"
    for number, record in enumerate(skipped):
        if type(record) is not dict or type(record.get("name")) is not str:
            return f"skipped {number}: not a record with a name"
        for key in ("type", "reason"):
            if type(record.get(key, "")) is not str:
                return f"skipped {number}: {key} is not a string"
    return _environment_problem(meta.get("environment", {}))


# What _namespace.module_kind returns, and so all that mason writes.
_MODULE_KINDS = ("main", "importable", "dynamic")
# Sizes fit in 64 bits; a larger int is no size mason wrote (and breaks float formatting).
_MAX_COUNT = 1 << 63


def _module_problem(module, kind) -> str:
    if type(module) is not str or not module:
        return f"module {_brief(module)} is not a module name"
    if kind is not None and kind not in _MODULE_KINDS:
        return f"module_kind {_brief(kind)} is not one of {', '.join(_MODULE_KINDS)}"
    if kind == "main" and module != "__main__":
        return f"module {_brief(module)} is of kind main, which only __main__ is"
    # A dynamic module is only ever created under its name, never imported, and
    # mason saves it whatever name it has (types.ModuleType("my-mod")); the
    # others have importable names.
    parts = module.split(".")
    if not all(parts) or (kind != "dynamic" and not all(part.isidentifier() for part in parts)):
        return f"module {_brief(module)} is not a dotted module name"
    return ""


def _variable_problem(var, segments: int, blobs: int) -> str:
    """Which field of a variable's record is wrong (it failed the fast test)."""
    if type(var) is not dict:
        return "not an object"
    for key in ("name", "type", "stored"):
        if type(var.get(key)) is not str:
            return f"{key} is not a string"
    if not _is_count(var.get("size")):
        return f"size {_brief(var.get('size'))} is not a byte count"
    segment = var.get("segment")
    if not isinstance(segment, int) or not _is_count(segment) or segment >= segments:
        return f"segment {_brief(segment)} is not one of the file's {segments} segments"
    numbers = var.get("blobs")
    if type(numbers) is not list:
        return "blobs is not a list"
    for blob in numbers:
        if not _is_count(blob) or blob >= blobs:
            return f"blob {_brief(blob)} is not one of the file's {blobs} blobs"
    return "memo_reset is not true or false"


def _environment_problem(env) -> str:
    """What is wrong with the shape of the environment record, or ""."""
    if type(env) is not dict:
        return "environment is not an object"
    python = env.get("python", [3, 0])
    if not (type(python) is list and len(python) >= 2 and all(type(n) is int and 0 <= n < 1 << 31 for n in python)):
        return f"environment: python {_brief(python)} is not a version (a list of at least two small ints >= 0)"
    for key in ("implementation", "platform", "byteorder", "mason", "created"):
        if type(env.get(key, "")) is not str:
            return f"environment: {key} is not a string"
    packages = env.get("packages", {})
    if type(packages) is not dict:
        return "environment: packages is not an object"
    for name, version in packages.items():
        # Top-level import names, as saved: their versions are looked up here.
        if not name.isidentifier():
            return f"environment: packages: {_brief(name)} is not a top-level package name"
        if type(version) is not str:
            return f"environment: packages: the version of {name} is not a string"
    return ""


def _is_count(value) -> bool:
    return type(value) is int and 0 <= value < _MAX_COUNT


def _brief(value) -> str:
    # The value came from the file: bounded, so a huge one cannot flood the message.
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
