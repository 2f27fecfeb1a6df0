"""What mason asks of Dask: the only module of mason that imports dask or
distributed.

Every partition moves by Dask's own distributed scheduler: writes are
tasks submitted with the future that holds the partition as their argument
(and pinned to the workers that hold it), reads are tasks whose results stay
on the workers.  Only small records (sizes, digests) and errors come back to
the client.  Nothing here runs a scheduler or opens a connection of its own.
"""

from __future__ import annotations

import sys

from ..errors import CorruptSessionError, CorruptStoreError, UnpicklingError
from .partition import PartitionFile, WriteTarget, read_partition, write_partition

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time: `import mason` stays fast
    from typing import Any


def current_client() -> Any:
    """The running client a load restores onto, or None (distributed is
    never imported for this: without it no client can be running)."""
    if "distributed" not in sys.modules:
        return None
    from distributed.client import _get_global_client

    client = _get_global_client()
    if client is None or client.status != "running":
        return None
    return client


def scheduler_address(client: Any) -> str | None:
    scheduler = getattr(client, "scheduler", None)
    address = getattr(scheduler, "address", None)
    return address if isinstance(address, str) else None


def client_problem(future: Any) -> str:
    """Why ``future``'s data can no longer be reached, or ""."""
    client = future.client
    if client.status not in ("running", "connecting", "newly-created"):
        where = scheduler_address(client)
        on = f" on the cluster at {where}" if where else ""
        return (
            f"the future {future.key!r} held its value{on} through a Client that is {client.status}: the data is"
            " gone from mason's reach (save before closing the client, or compute() the value)"
        )
    # A "lost" future (its worker died) is not a problem yet: the write task
    # asks for it, and the scheduler computes it again if it can.
    if future.status == "cancelled":
        return f"the future {future.key!r} is cancelled: its value is no longer on the cluster"
    return ""


# ====================================================================== saving


def submit_writes(items: list[tuple[Any, WriteTarget]]) -> list[Any]:
    """One write task per (future, target): it runs on a worker that holds
    the future's value (the scheduler's ``who_has``), which it receives as
    its argument without the value leaving that worker.  Submitted in one
    batch per client and set of holders (one graph update each, not one per
    partition)."""
    groups: dict[tuple, tuple[Any, list[int]]] = {}
    for client_id, client, positions in _by_client(items):
        holders = client.who_has([items[i][0] for i in positions])
        for i in positions:
            workers = tuple(sorted(holders.get(items[i][0].key, ())))
            groups.setdefault((client_id, workers), (client, []))[1].append(i)
    writes: list[Any] = [None] * len(items)
    for (_, workers), (client, positions) in groups.items():
        # A holder that dies: the value is computed again (or copied) and
        # written elsewhere rather than the save hanging.
        placement = {"workers": list(workers), "allow_other_workers": True} if workers else {}
        submitted = client.map(
            write_partition if type(items[positions[0]][1]) is WriteTarget else _store_writer(),
            [items[i][0] for i in positions],
            [items[i][1] for i in positions],
            key=[f"mason-write-{items[i][1].token}" for i in positions],
            pure=False,
            **placement,
        )
        for i, future in zip(positions, submitted):
            writes[i] = future
    return writes


def _store_writer() -> Any:
    from .storepart import write_store_partition

    return write_store_partition


def _by_client(items: list[tuple[Any, WriteTarget]]) -> list[tuple[int, Any, list[int]]]:
    found: dict[int, tuple[Any, list[int]]] = {}
    for i, (future, _) in enumerate(items):
        found.setdefault(id(future.client), (future.client, []))[1].append(i)
    return [(client_id, client, positions) for client_id, (client, positions) in found.items()]


def outcomes(futures: list[Any], results: bool = True) -> list[tuple[bool, Any]]:
    """(ok, result or error text) of each future, once all have finished.
    ``results=False``: the results stay where they are (None instead)."""
    if not futures:
        return []
    from distributed import wait

    wait(futures)
    finished = [future for future in futures if future.status == "finished"]
    values: dict[int, Any] = {}
    if results:  # small records (a write's size and digest): one gather per client
        by_client: dict[int, tuple[Any, list[Any]]] = {}
        for future in finished:
            by_client.setdefault(id(future.client), (future.client, []))[1].append(future)
        for client, group in by_client.values():
            for future, value in zip(group, client.gather(group)):
                values[id(future)] = value
    return [
        (True, values.get(id(future))) if future.status == "finished" else (False, _failure(future))
        for future in futures
    ]


def _failure(future: Any) -> str:
    try:
        exc = future.exception()
    except Exception as error:  # cancelled, or its client is gone: say so
        return f"{type(error).__name__}: {error}"
    if exc is None:
        return f"the task ended {future.status}"
    return f"{type(exc).__name__}: {exc}"


def cancel(futures: list[Any]) -> None:
    for future in futures:
        if future is not None:
            try:
                future.cancel()
            except Exception:  # a client already closed: nothing left to cancel
                pass


# ====================================================================== loading


def read_futures(client: Any, parts: list[PartitionFile]) -> list[Any]:
    """The partitions read by the workers of ``client``'s cluster, where they
    stay (each under its file's key: the same file is read once), after all
    reads finished; the first failure raises, naming its file."""
    futures = client.map(read_partition, parts, key=[part.key for part in parts], pure=False)
    for part, (ok, failure) in zip(parts, outcomes(futures, results=False)):
        if not ok:
            # mason's own errors name the file already; anything else is told where it happened.
            if failure.startswith("CorruptSessionError: "):
                raise CorruptSessionError(f"a worker refused it: {failure.partition(': ')[2]}")
            if failure.startswith("CorruptStoreError: "):
                raise CorruptStoreError(f"a worker refused it: {failure.partition(': ')[2]}")
            raise UnpicklingError(f"a worker could not read {part.describe()}: {failure}")
    return futures


def read_task(key: Any, part: PartitionFile) -> Any:
    """A task that reads ``part`` when computed, under ``key``."""
    from dask._task_spec import Task

    return Task(key, read_partition, part)


def read_delayed(part: PartitionFile) -> Any:
    """A ``Delayed`` whose value is read from ``part`` when computed."""
    from dask.delayed import Delayed

    return Delayed(part.key, {part.key: read_task(part.key, part)})
