"""Reducers for third-party types whose default pickling loses user state
or is slow.

Nothing here imports a third-party package: a reducer is added only when
its package is already loaded (if it is not, no object of it can exist).
"""

from __future__ import annotations

import ctypes
import pickle
import sys

from .. import _rebuild

# rcParams keys that describe the machine, not the user's style choices.
_RC_MACHINE_KEYS = frozenset({"backend", "backend_fallback", "interactive", "webagg.port", "webagg.address"})


def reduce_rcparams(params):
    """matplotlib's live ``rcParams``: by reference, with the user's changes
    replayed on load (only values that differ from the defaults)."""
    import matplotlib  # loaded: the object exists

    if params is not matplotlib.rcParams:
        return type(params), (), None, None, iter(dict.items(params))
    defaults = matplotlib.rcParamsDefault
    changed = {
        key: value
        for key, value in dict.items(params)
        if key not in _RC_MACHINE_KEYS and dict.get(defaults, key, _MISSING) != value
    }
    return _rebuild.matplotlib_rcparams, (changed,)


_MISSING = object()


# ---------------------------------------------------------------- torch
#
# torch pickles a storage by running torch.save into a bytes object, so a
# tensor is copied at least twice and always in-band.  Here a storage's bytes
# go out as one PickleBuffer (an aligned blob in a session file, memory-mapped
# on load) and a tensor is its storage plus the view's geometry.  Storages are
# memoized by the pickler (torch keeps one Python object per storage), so
# views of one storage still share it after loading.


def reduce_torch_storage(storage):
    """An ``UntypedStorage``: its bytes as a PickleBuffer (copied to the CPU
    first if needed) and the device it lived on, as torch names it
    ('cpu', 'cuda:0').  Protocol 5 only."""
    if storage.device.type == "meta":
        return storage.__reduce__()  # no bytes to save
    return _rebuild.torch_storage, (pickle.PickleBuffer(_storage_bytes(storage)), str(storage.device))


def reduce_torch_storage_in_band(storage):
    """The same for protocols before 5: the bytes are copied into the pickle."""
    if storage.device.type == "meta":
        return storage.__reduce__()
    return _rebuild.torch_storage, (bytes(_storage_bytes(storage)), str(storage.device))


def _storage_bytes(storage):
    """A writable buffer over the storage's bytes on the CPU (no copy there)."""
    if storage.device.type != "cpu":
        storage = storage.cpu()
    size = storage.nbytes()
    if size == 0:
        return bytearray()
    # A ctypes array over the storage's memory is a buffer made with the
    # standard library alone (a tensor has no buffer interface, and numpy
    # cannot represent bfloat16); it holds the storage alive.
    raw = (ctypes.c_char * size).from_address(storage.data_ptr())
    raw.owner = storage
    return raw


def reduce_torch_typed_storage(storage):
    """A (deprecated) ``TypedStorage``: its untyped storage and dtype."""
    return _rebuild.torch_typed_storage, (storage._untyped_storage, _dtype_name(storage.dtype))


def reduce_torch_tensor(tensor):
    """A strided tensor: storage, dtype, geometry, ``requires_grad``; its
    ``grad`` and Python attributes as state.  Sparse, quantized, nested and
    meta tensors keep torch's own pickling."""
    geometry = _tensor_geometry(tensor)
    if geometry is None:
        return tensor.__reduce_ex__(pickle.HIGHEST_PROTOCOL)
    return (_rebuild.torch_tensor, geometry, _tensor_state(tensor), None, None, _rebuild.torch_tensor_setstate)


def reduce_torch_parameter(param):
    """An ``nn.Parameter``: as a tensor, wrapped again on load."""
    geometry = _tensor_geometry(param)
    if geometry is None:
        return param.__reduce_ex__(pickle.HIGHEST_PROTOCOL)
    return (_rebuild.torch_parameter, geometry, _tensor_state(param), None, None, _rebuild.torch_tensor_setstate)


def _tensor_geometry(tensor):
    """The rebuild arguments of a plain strided tensor, or None for the kinds
    left to torch (no storage of bytes that a view describes)."""
    import torch  # loaded: the object exists

    if tensor.layout is not torch.strided or tensor.is_quantized or tensor.is_nested or tensor.device.type == "meta":
        return None
    requires_grad = tensor.requires_grad
    if tensor.is_conj() or tensor.is_neg():
        # A lazy conjugate/negation bit: save the values it stands for.
        with torch.no_grad():
            tensor = tensor.resolve_conj().resolve_neg()
    try:
        storage = tensor.untyped_storage()
    except (RuntimeError, NotImplementedError):  # wrapper tensors without storage
        return None
    return (
        storage,
        _dtype_name(tensor.dtype),
        tensor.storage_offset(),
        tuple(tensor.shape),
        tuple(tensor.stride()),
        requires_grad,
    )


def _tensor_state(tensor):
    """What a tensor carries besides its data, or None: the gradient of a
    leaf (torch.save drops it; a session keeps it) and Python attributes."""
    state = {}
    if tensor.is_leaf and tensor.grad is not None:
        state["grad"] = tensor.grad
    attrs = getattr(tensor, "__dict__", None)
    if attrs:
        state["dict"] = dict(attrs)
    return state or None


def _dtype_name(dtype) -> str:
    return str(dtype).rpartition(".")[2]  # 'torch.bfloat16' -> 'bfloat16'


# ---------------------------------------------------------------- registry


def live_singletons() -> list:
    """Objects of loaded packages that a reducer here saves by reference
    *with* the user's changes to them: a session must not save them as a
    bare module attribute, which would drop the changes."""
    matplotlib = sys.modules.get("matplotlib")
    params = getattr(matplotlib, "rcParams", None)
    return [] if params is None else [params]


def loaded_tables(protocol: int) -> dict:
    """Reducers for the third-party packages imported so far (for a pickler
    of ``protocol``)."""
    table = {}
    matplotlib = sys.modules.get("matplotlib")
    if matplotlib is not None and hasattr(matplotlib, "RcParams"):
        table[matplotlib.RcParams] = reduce_rcparams
    torch = sys.modules.get("torch")
    # hasattr: a package still being imported has not defined its names yet.
    if torch is not None and hasattr(torch, "UntypedStorage") and hasattr(torch, "nn"):
        table[torch.Tensor] = reduce_torch_tensor
        table[torch.nn.Parameter] = reduce_torch_parameter
        table[torch.UntypedStorage] = reduce_torch_storage if protocol >= 5 else reduce_torch_storage_in_band
        table[torch.storage.TypedStorage] = reduce_torch_typed_storage
    return table
