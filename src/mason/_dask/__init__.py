"""Dask sessions: persisted collections and futures saved and restored by the cluster itself.

A session that holds data on a Dask cluster (persisted collections,
``distributed.Future`` objects) is saved without pulling that data through
the client: every worker writes the partitions it holds, each as a small
mason container, and the session file records where each one is.  Lazy
collections need none of this: they are task graphs, pickled like any
other object.

    save:  reducers (``_reducers/dask.py``) -> a partition sink (sink.py)
           -> write tasks on the workers (cluster.py) -> partition files (partition.py)
    load:  the session's partition table -> a partition source (source.py)
           -> read tasks on the workers (with a client), or lazy read tasks (without)

``cluster.py`` is the only module here that imports dask or distributed;
``import mason`` imports none of them (docs/dask.md tells the whole story).
"""
