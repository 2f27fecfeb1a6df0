"""Reducers for Dask: data held on a cluster, and the graphs that hold it.

Lazy collections need nothing here: they are task graphs, pickled like any
object (the notebook's own functions by value).  What needs care is data
that lives only on a cluster: a ``distributed.Future``, and the graphs of
persisted collections, whose values are futures (``x.persist()`` gives
``{key: Future}``).  Pickled as is, each would be a bare key that no later
client can resolve.  Here every such future goes to the save's partition
sink, whose workers write its value to a partition file; the pickle keeps
the partition's number in the session's table.

Futures sit as graph values in four places, each reduced here so that a
load can put back either futures on its own cluster or lazy read tasks:
``MaterializedLayer`` (arrays, bags), ``FromGraph`` (dataframes),
``Delayed`` and bag ``Item`` (plain dict graphs).  A future anywhere else
is restored as a future (with a client) or a ``Delayed`` (without).

Clients and clusters are connections, not values: they are saved as a note
of the scheduler they reached, and left out on load.

Nothing here imports dask or distributed: their types come from
``sys.modules`` (if a package is not loaded, none of its objects exist).
"""

from __future__ import annotations

import functools
import pickle
import sys

from .. import _rebuild
from ..errors import PicklingError

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time: `import mason` stays fast
    from typing import Any


_NO_SINK = (
    "holds data that lives only on a Dask cluster (a distributed Future{what}), and only its key could be"
    " saved here: mason.dump_module and mason.checkpoint save such data (the workers write it);"
    " elsewhere compute() it first"
)


class PartitionedGraph:
    """A graph (dict) some of whose values are partitions on a cluster or in
    files; pickled as the other entries plus the partitions' numbers."""

    __slots__ = ("mapping",)

    def __init__(self, mapping):
        self.mapping = mapping


def _is_read_task(value, task_type, read) -> bool:
    """A task of a lazily restored collection that reads one partition file."""
    return type(value) is task_type and value.func is read and len(value.args) == 1


def _has_partitions(mapping) -> bool:
    future = _future_type()
    task, read = _read_task_markers()
    for value in mapping.values():
        if future is not None and isinstance(value, future):
            return True
        if task is not None and _is_read_task(value, task, read):
            return True
    return False


def _future_type():
    return getattr(sys.modules.get("distributed"), "Future", None)


def _read_task_markers():
    spec = sys.modules.get("dask._task_spec")
    partition = sys.modules.get("mason._dask.partition")
    if spec is None or partition is None:
        return None, None
    return spec.Task, partition.read_partition


# ---------------------------------------------------------------- reducers


def reduce_future(sink, future):
    """A future anywhere but as a graph value: its value goes to a partition file."""
    if sink is None:
        raise PicklingError(_NO_SINK.format(what=f" with key {future.key!r}"))
    return _rebuild.dask_future, (sink.add(future),)


def reduce_partition_file(sink, part):
    """A partition file of an earlier save that a restored collection still
    reads (outside a graph value): referred to again, not copied."""
    if sink is None:
        raise PicklingError(_NO_SINK.format(what=f", read from {part.location}"))
    return _rebuild.dask_partition_file, (sink.add_file(part),)


def reduce_partitioned_graph(sink, graph):
    if sink is None:
        raise PicklingError(_NO_SINK.format(what=" in a persisted collection's graph"))
    future = _future_type()
    task, read = _read_task_markers()
    rest, partitions = {}, []
    for key, value in graph.mapping.items():
        if future is not None and isinstance(value, future):
            partitions.append((key, sink.add(value)))
        elif task is not None and _is_read_task(value, task, read):
            partitions.append((key, sink.add_file(value.args[0])))
        else:
            rest[key] = value
    return _rebuild.dask_graph, (rest, partitions)


def reduce_materialized_layer(layer):
    """A layer of a high-level graph (arrays, bags, persisted delayed)."""
    if not _has_partitions(layer.mapping):
        return layer.__reduce_ex__(pickle.HIGHEST_PROTOCOL)
    return type(layer), (PartitionedGraph(layer.mapping), layer.annotations, layer.collection_annotations)


def reduce_from_graph(expr):
    """The expression of a persisted dataframe, series, index or scalar."""
    layer = expr.operand("layer")
    if not _has_partitions(layer):
        return expr.__reduce__()
    operands = [expr.operand(name) for name in ("_meta", "divisions", "keys", "name_prefix")]
    return type(expr), (PartitionedGraph(layer), *operands)


def reduce_delayed(value):
    """A ``Delayed`` whose graph is a plain dict (what ``persist()`` gives)."""
    if type(value.dask) is not dict or not _has_partitions(value.dask):
        return value.__reduce_ex__(pickle.HIGHEST_PROTOCOL)
    return type(value), (value.key, PartitionedGraph(value.dask), value._length, value._layer)


def reduce_bag_item(item):
    """A bag ``Item`` (``bag.sum().persist()``) whose graph is a plain dict."""
    if type(item.dask) is not dict or not _has_partitions(item.dask):
        return item.__reduce_ex__(pickle.HIGHEST_PROTOCOL)
    return type(item), (PartitionedGraph(item.dask), item.key, item._layer)


def reduce_client(client):
    """A ``distributed.Client``: a connection, kept as the scheduler it reached."""
    from .._dask.cluster import scheduler_address

    return _rebuild.dask_cluster_note, (type(client).__name__, scheduler_address(client))


def reduce_cluster(cluster):
    """A cluster object (``LocalCluster`` ...): processes, kept as its scheduler's address."""
    address = getattr(cluster, "scheduler_address", None)
    return _rebuild.dask_cluster_note, (type(cluster).__name__, address if isinstance(address, str) else None)


# ---------------------------------------------------------------- registry


def _with_subclasses(cls) -> list:
    found, todo = [], [cls]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(current.__subclasses__())
    return found


def loaded_table(sink) -> dict:
    """Reducers for the parts of dask and distributed imported so far.

    ``sink``: the save's partition sink, or None (``mason.dump``, which has
    nowhere to put a cluster's data: such objects raise PicklingError)."""
    table: dict[Any, Any] = {}
    modules = sys.modules
    distributed = modules.get("distributed")
    # hasattr: a package still being imported has not defined its names yet.
    if distributed is not None and hasattr(distributed, "Future") and hasattr(distributed, "Client"):
        table[distributed.Future] = functools.partial(reduce_future, sink)
        for client in _with_subclasses(distributed.Client):
            table[client] = reduce_client
        cluster = getattr(modules.get("distributed.deploy.cluster"), "Cluster", None)
        if cluster is not None:
            for kind in _with_subclasses(cluster):
                table[kind] = reduce_cluster
    if "dask" not in modules:
        return table
    table[PartitionedGraph] = functools.partial(reduce_partitioned_graph, sink)
    partition = modules.get("mason._dask.partition")
    if partition is not None:
        table[partition.PartitionFile] = functools.partial(reduce_partition_file, sink)
    layers = modules.get("dask.highlevelgraph")
    if layers is not None and hasattr(layers, "MaterializedLayer"):
        table[layers.MaterializedLayer] = reduce_materialized_layer
    delayed = modules.get("dask.delayed")
    if delayed is not None and hasattr(delayed, "Delayed"):
        table[delayed.Delayed] = reduce_delayed
    bag = modules.get("dask.bag.core")
    if bag is not None and hasattr(bag, "Item"):
        table[bag.Item] = reduce_bag_item
    io = modules.get("dask.dataframe.dask_expr.io.io")
    if io is not None and hasattr(io, "FromGraph"):
        table[io.FromGraph] = reduce_from_graph
    return table
