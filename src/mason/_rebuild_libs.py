"""Reconstructors of mason._rebuild for third-party libraries: matplotlib's
rcParams, torch tensors and storages, Dask futures and collections.

Part of mason._rebuild, which re-exports every public name here: files name
them ``mason._rebuild.<name>``, and the FROZEN rules of that module hold.
No library is imported at module level: each function imports its own.
"""

from __future__ import annotations

import contextvars

from ._rebuild import _LOAD, _check, _is_name, _made, _require_made
from .errors import UnpicklingError

# ---------------------------------------------------------------- matplotlib


def matplotlib_rcparams(changed):
    """matplotlib's live ``rcParams`` with a session's changes applied.

    Values were validated when the user set them; one that this matplotlib
    no longer accepts is skipped with a warning instead of failing the load.
    """
    import warnings

    import matplotlib

    for key, value in changed.items():
        try:
            matplotlib.rcParams[key] = value
        except (KeyError, ValueError) as exc:
            warnings.warn(f"rcParams[{key!r}] not restored: {exc}", stacklevel=2)
    return matplotlib.rcParams


# ---------------------------------------------------------------- torch

#: ``map_location`` of the load in progress (None: where it was saved).
#: Set by the Unpickler around each ``load``; read by :func:`torch_storage`.
_MAP_LOCATION: contextvars.ContextVar = contextvars.ContextVar("mason_map_location", default=None)


def torch_storage(data, location):
    """A torch ``UntypedStorage`` holding ``data``, placed on the device the
    load's ``map_location`` chooses for ``location`` (where it was saved).

    On the CPU the storage is the buffer itself: a memory-mapped blob stays
    mapped copy-on-write, and nothing is copied.
    """
    import torch

    view = memoryview(data)
    if view.readonly:  # writes through the tensor must never reach a caller's bytes
        view = memoryview(bytearray(view))
    if view.nbytes:
        flat = torch.frombuffer(view.cast("B"), dtype=torch.uint8)
    else:
        flat = torch.empty(0, dtype=torch.uint8)
    return _place_storage(flat.untyped_storage(), location)


def _place_storage(storage, location):
    """Where ``torch.load`` would put a storage saved on ``location``, given
    the current ``map_location``: a device (name or ``torch.device``), a dict
    from saved device names to device names, or ``f(storage, location)``
    returning a storage (None: the default)."""
    if not isinstance(location, str):
        raise UnpicklingError(f"damaged tensor: device {location!r} is not a name")
    mapping = _MAP_LOCATION.get()
    if mapping is None:
        target = location
    elif isinstance(mapping, dict):
        target = mapping.get(location, location)
    elif callable(mapping):
        result = mapping(storage, location)
        if result is not None:
            return getattr(result, "_untyped_storage", result)  # a TypedStorage's bytes
        target = location
    else:
        target = mapping
    return _storage_to(storage, str(target), location)


def _storage_to(storage, target: str, location: str):
    import torch

    try:
        device = torch.device(target)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise UnpicklingError(f"map_location: {target!r} is not a torch device ({exc})") from None
    if device.type == "cpu":
        return storage
    hint = "load with map_location='cpu' to restore it on the CPU"
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UnpicklingError(f"a tensor was saved on {location!r}, but CUDA is not available here; {hint}")
    try:
        flat = torch.empty(0, dtype=torch.uint8).set_(storage)
        return flat.to(device).untyped_storage()
    except (RuntimeError, AssertionError, ValueError) as exc:  # torch's errors for a device it lacks
        raise UnpicklingError(f"cannot place a tensor saved on {location!r} on {target!r}: {exc}; {hint}") from None


def _torch_dtype(name):
    import torch

    # Only plain names: torch's module __getattr__ must not be asked for anything else.
    dtype = getattr(torch, name, None) if _is_name(name) and not name.startswith("_") else None
    if not isinstance(dtype, torch.dtype):
        raise UnpicklingError(f"this torch has no dtype {name!r} (saved with another version of torch?)")
    return dtype


def torch_tensor(storage, dtype, offset, shape, stride, requires_grad):
    """A strided tensor viewing ``storage`` (views of one storage share it)."""
    import torch

    try:
        tensor = torch.empty(0, dtype=_torch_dtype(dtype), device=storage.device)
        tensor.set_(storage, offset, shape, stride)
    except (RuntimeError, TypeError) as exc:
        raise UnpicklingError(f"damaged tensor: {exc}") from None
    if requires_grad:
        tensor.requires_grad_(True)
    return _made(tensor)


def torch_parameter(storage, dtype, offset, shape, stride, requires_grad):
    """An ``nn.Parameter`` over ``storage``."""
    import torch

    return _made(torch.nn.Parameter(torch_tensor(storage, dtype, offset, shape, stride, False), requires_grad))


def torch_tensor_setstate(tensor, state):
    """A tensor's gradient and Python attributes."""
    import torch

    _require_made(tensor, torch.Tensor, "torch_tensor_setstate")
    _check(isinstance(state, dict) and isinstance(state.get("dict") or {}, dict), "tensor state is malformed")
    grad = state.get("grad")
    if grad is not None:
        tensor.grad = grad
    tensor.__dict__.update(state.get("dict") or {})


def torch_typed_storage(storage, dtype):
    """A (deprecated) ``TypedStorage`` over an untyped storage."""
    import torch

    return torch.storage.TypedStorage(wrap_storage=storage, dtype=_torch_dtype(dtype), _internal=True)


# ---------------------------------------------------------------- dask
#
# Data that lived on a Dask cluster is in partition files; the pickle holds
# partition numbers, which the session's table (the load's ``partitions``)
# turns into futures on the current cluster or, without a client, into
# tasks that read the files (see mason._dask).


class _LeftOut:
    """Stands for an object that is not a value and is not restored (a
    client's connection to a cluster).  A session variable holding one is
    left out of the namespace, with a note saying why."""

    __slots__ = ("note",)

    def __init__(self, note: str):
        self.note = note

    def __repr__(self) -> str:
        return f"<not restored by mason: {self.note}>"


def _partition_table():
    state = _LOAD.get()
    source = None if state is None else state.partitions
    if source is None:
        raise UnpicklingError(
            "damaged file: it refers to Dask partitions, but only a session file records where they are"
        )
    return source


def dask_future(number):
    """A ``distributed.Future`` a session saved: a future on the current
    cluster whose value a worker read from its partition file, or, without a
    running client, a ``dask.delayed`` value that reads it when computed."""
    _check(type(number) is int, "a Dask partition number is not an int")
    return _partition_table().future(number)


def dask_graph(rest, partitions):
    """The graph of a persisted collection: ``rest`` (its other tasks) and,
    for each ``(key, number)`` of ``partitions``, the saved partition as a
    future on the current cluster or a task reading its file."""
    _check(
        type(rest) is dict
        and type(partitions) is list
        and all(type(p) is tuple and len(p) == 2 and type(p[1]) is int for p in partitions),
        "a Dask graph's partitions are malformed",
    )
    return _partition_table().graph(rest, partitions)


def dask_partition_file(number):
    """A partition file of the session (what a lazily restored task reads)."""
    _check(type(number) is int, "a Dask partition number is not an int")
    return _partition_table().file(number)


def dask_cluster_note(kind, address):
    """A Dask client or cluster: a connection, not a value; restored as a
    note of the scheduler it reached (a session leaves it out)."""
    _check(_is_name(kind) and (address is None or isinstance(address, str)), "a Dask client's record is malformed")
    where = f" to the scheduler at {address}" if address else ""
    again = f" (distributed.Client({address!r}))" if address else ""
    return _LeftOut(
        f"a {kind} is a connection{where}, not a value: connect again{again} before loading to restore"
        " persisted collections onto that cluster"
    )
