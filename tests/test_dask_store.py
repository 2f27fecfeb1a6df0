"""Dask sessions in a checkpoint store: the workers write persisted
collections' partitions and futures' values as content-addressed objects of
the store, deduplicated like any other piece, and restores read them back
(on the current cluster, or lazily)."""

from __future__ import annotations

import copyreg
import importlib.util
import textwrap
import types

import pytest
from conftest import run_python

import mason
from mason.errors import CorruptStoreError, SkippedVariableWarning

np = pytest.importorskip("numpy")
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("distributed") is None, reason="needs mason[dask] (dask and distributed)"
)
da = distributed = None


@pytest.fixture(scope="module", autouse=True)
def _dask_imported_for_this_module_only():
    """As in test_dask.py: dask's copyreg entries are undone after this module."""
    global da, distributed
    saved = dict(copyreg.dispatch_table)
    import dask.array as da
    import distributed

    yield
    copyreg.dispatch_table.clear()
    copyreg.dispatch_table.update(saved)


@pytest.fixture(scope="module")
def client(_dask_imported_for_this_module_only):
    cluster = distributed.LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1", dashboard_address=None
    )
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def notebook(**variables) -> types.ModuleType:
    module = types.ModuleType("notebook")
    vars(module).update(variables)
    return module


def dask_table(store, checkpoint_id) -> dict:
    from mason._store.catalog import Store

    opened = Store.open(store)
    return opened.manifest(opened.entry(checkpoint_id)).meta["dask"]


def _ones(n):
    return np.ones(n)


def test_checkpoint_twice_then_restore_with_and_without_a_cluster(tmp_path, client):
    store = str(tmp_path / "store")
    x = da.random.default_rng(0).random((400, 300), chunks=(100, 100)).persist()
    module = notebook(x=x, f=client.submit(_ones, 5000, pure=False), n=3, want=x.compute())
    first = mason.checkpoint(store, module=module)
    second = mason.checkpoint(store, module=module)  # nothing changed: no partition written again
    written = {c.id: c.bytes_written for c in mason.checkpoints(store)}
    assert written[first] > 400 * 300 * 8 and written[second] < 20_000, written
    table = dask_table(store, second)
    assert table["kind"] == "store" and sum(e is not None for e in table["partitions"]) == 13
    assert {e["variable"] for e in table["partitions"]} == {"x", "f"}
    assert mason.verify_store(store).unreferenced == 0

    # In this process, with its client: futures read by the workers.
    restored = mason.restore_asdict(store, second)
    graph = dict(restored["x"].__dask_graph__())
    assert all(
        type(v) is distributed.Future and str(v.key).startswith("mason-store-partition-") for v in graph.values()
    )
    assert np.array_equal(restored["x"].compute(), module.want) and restored["f"].result().sum() == 5000

    check = f"""
        import numpy as np, mason
        d = mason.restore_asdict({store!r}, {second!r})
        assert np.array_equal(d["x"].compute(), d["want"]) and d["f"].compute().sum() == 5000 and d["n"] == 3
        """
    # Lazily, in a fresh process without a client.
    run_python("import dask\ndask.config.set(scheduler='sync')\n" + textwrap.dedent(check), cwd=tmp_path)
    # On a new cluster, in a fresh process.
    run_python(
        f"""
        import distributed, numpy as np, mason
        if __name__ == "__main__":
            cluster = distributed.LocalCluster(
                n_workers=1, processes=True, threads_per_worker=1, host="127.0.0.1", dashboard_address=None
            )
            client = distributed.Client(cluster)
            d = mason.restore_asdict({store!r}, {second!r})
            assert all(type(v) is distributed.Future for v in dict(d["x"].__dask_graph__()).values())
            assert np.array_equal(d["x"].compute(), d["want"]) and d["f"].result().sum() == 5000
            client.close()
            cluster.close()
        """,
        cwd=tmp_path,
        timeout=120,
    )


def test_prune_keeps_what_a_kept_checkpoint_needs(tmp_path, client):
    store = str(tmp_path / "store")
    mason.checkpoint(store, module=notebook(x=da.arange(100_000, chunks=25_000).persist()))
    kept = mason.checkpoint(store, module=notebook(y=(da.arange(100_000, chunks=25_000) * 3).persist()))
    report = mason.prune(store, keep=1)
    assert report.objects_removed >= 4  # the dropped checkpoint's partitions
    assert mason.verify_store(store).unreferenced == 0
    assert mason.restore_asdict(store, kept)["y"].sum().compute() == 3 * 4999950000
    # A restored collection checkpointed again refers to the same objects.
    again = mason.checkpoint(store, module=notebook(y=mason.restore_asdict(store, kept)["y"]))
    assert next(c.bytes_written for c in mason.checkpoints(store) if c.id == again) < 20_000
    mason.prune(store, keep=1)
    mason.verify_store(store)
    assert mason.restore_asdict(store, again)["y"].sum().compute() == 3 * 4999950000


def test_a_damaged_partition_object_is_named_on_restore(tmp_path, client):
    store = tmp_path / "store"
    checkpoint_id = mason.checkpoint(store, module=notebook(x=da.arange(50_000, chunks=25_000).persist(), n=1))
    name = dask_table(store, checkpoint_id)["partitions"][0]["parts"][1][0][0]  # the first buffer's first piece
    (path,) = store.rglob(name)
    data = bytearray(path.read_bytes())
    data[10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.warns(SkippedVariableWarning, match="CorruptStoreError: .*variable 'x'.*damaged"):
        restored = mason.restore_asdict(store, checkpoint_id)  # lenient by default: x is named and left out
    assert "x" not in restored and restored["n"] == 1
    with pytest.raises(CorruptStoreError):
        mason.verify_store(store)


def test_signed_checkpoints_refuse_dask_partitions(tmp_path, client):
    store = tmp_path / "store"
    with pytest.warns(SkippedVariableWarning, match="signed checkpoints"):
        checkpoint_id = mason.checkpoint(
            store, module=notebook(x=da.arange(10, chunks=5).persist(), n=1), key=b"k" * 32
        )
    assert mason.restore_asdict(store, checkpoint_id, key=b"k" * 32)["n"] == 1
