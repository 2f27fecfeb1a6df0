"""Dask sessions on real clusters (``LocalCluster``, worker processes, loopback).

Persisted collections and futures are written by the workers that hold
them and come back either persisted on the loading process's cluster or
lazy, reading their files when computed; lazy collections are task graphs.
Round trips go into fresh interpreters; the damage and edge cases run here,
against one cluster shared by the module (its scheduler runs in this
process; its workers are processes of their own).
"""

from __future__ import annotations

import copyreg
import importlib.util
import json
import logging
import os
import textwrap
import types

import pytest
from conftest import run_python

import mason
from mason.errors import CorruptSessionError, ForbiddenGlobalError, PicklingError, SkippedVariableWarning

np = pytest.importorskip("numpy")
pd = pytest.importorskip("pandas")
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("distributed") is None, reason="needs mason[dask] (dask and distributed)"
)
# Imported by the fixture below, not when the module is collected.
dask = da = dd = distributed = None


@pytest.fixture(scope="module", autouse=True)
def _dask_imported_for_this_module_only():
    """Importing dask installs tblib's pickling of tracebacks and exceptions
    into copyreg, for the whole process.  Imported at collection, that would
    change what every other test module in this process sees (test_catalog
    checks that dill cannot pickle a traceback); so dask is imported here,
    and copyreg's table is put back when this module is done."""
    global dask, da, dd, distributed
    saved = dict(copyreg.dispatch_table)
    import dask
    import dask.array as da
    import dask.dataframe as dd
    import distributed

    yield
    copyreg.dispatch_table.clear()
    copyreg.dispatch_table.update(saved)


@pytest.fixture(scope="module")
def cluster(_dask_imported_for_this_module_only):
    # No retries: the test that kills a worker wants its write to fail at once.
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        cluster = distributed.LocalCluster(
            n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1", dashboard_address=None
        )
    yield cluster
    cluster.close()


@pytest.fixture(scope="module")
def client(cluster):
    client = distributed.Client(cluster)
    yield client
    client.close()


def save(path, options=None, **variables) -> None:
    notebook = types.ModuleType("notebook")
    vars(notebook).update(variables)
    mason.dump_module(path, module=notebook, **(options or {}))


def folders(path) -> list[str]:
    root = f"{path}.dask"
    return sorted(os.listdir(root)) if os.path.isdir(root) else []


def _meta(path) -> dict:
    from mason._format import ContainerReader

    with ContainerReader.open(path) as reader:
        return reader.meta


# ====================================================================== round trips, fresh interpreters

LAZY = """
    import dask
    dask.config.set(scheduler="sync")
    import numpy as np, pandas as pd
    import dask.array as da, dask.dataframe as dd, dask.bag as db
    def double(v):
        return v * 2
    class Scale:
        def __init__(self, k):
            self.k = k
        def __call__(self, v):
            return v * self.k
    x = da.arange(100, chunks=10).map_blocks(double) + 1
    pdf = pd.DataFrame(
        {"a": range(20), "c": pd.Categorical(list("uvw") * 6 + ["u", "v"])},
        index=pd.Index(range(100, 120), name="idx"),
    )
    df = dd.from_pandas(pdf, npartitions=3)
    df2 = df.assign(b=df.a.map(double, meta=("a", "i8")))
    b = db.from_sequence(range(10), npartitions=3).map(Scale(3)).filter(lambda v: v % 2 == 0)
    d = dask.delayed(double)(dask.delayed(sum)([1, 2, 3]))
    want = dict(x=x.compute(), df2=df2.compute(), b=b.compute(), d=d.compute())
"""


def test_lazy_collections_are_saved_as_their_graphs(tmp_path):
    path = tmp_path / "lazy.mason"
    run_python(textwrap.dedent(LAZY) + f"import mason\nmason.dump_module({str(path)!r})\n", cwd=tmp_path)
    assert not (tmp_path / "lazy.mason.dask").exists()  # nothing lived on a cluster
    run_python(
        f"""
        import dask
        dask.config.set(scheduler="sync")
        import mason, numpy as np, pandas as pd
        mason.load_module({str(path)!r})
        assert np.array_equal(x.compute(), want["x"])
        pd.testing.assert_frame_equal(df2.compute(), want["df2"])
        assert df2.compute().c.dtype == "category" and df2.compute().index.name == "idx"
        assert b.compute() == want["b"] and d.compute() == want["d"] == 12
        assert double.__module__ == "__main__" and double(4) == 8
        """,
        cwd=tmp_path,
    )


# Everything a client gathers passes through here: a save may gather only
# the workers' small records, a load nothing at all.
GATHER_SPY = """
    import distributed
    GATHERED = []
    _gather = distributed.Client._gather
    async def _spy(self, futures, *args, **kwargs):
        result = await _gather(self, futures, *args, **kwargs)
        GATHERED.extend(result if isinstance(result, list) else [result])
        return result
    distributed.Client._gather = _spy
"""

PERSISTED = (
    """
    import numpy as np, pandas as pd
    import dask, dask.array as da, dask.dataframe as dd, dask.bag as db
    import distributed
    import mason
"""[1:]
    + textwrap.indent(textwrap.dedent(GATHER_SPY), "    ")
    + """
    client = distributed.Client({address!r})
    def double(v):
        return v * 2
    x = da.random.default_rng(0).random((400, 300), chunks=(100, 100)).persist()
    xm = x.map_blocks(double) + 1  # lazy, on top of persisted partitions
    pdf = pd.DataFrame(
        {{"a": np.arange(40), "c": pd.Categorical(["u", "v", "w", "u"] * 10), "s": [f"s{{i}}" for i in range(40)]}},
        index=pd.Index(np.arange(100, 140), name="idx"),
    )
    df = dd.from_pandas(pdf, npartitions=4).persist()
    unknown = dd.from_pandas(pdf, npartitions=4).clear_divisions().persist()
    evens = df[df.a % 2 == 0]
    b = db.from_sequence(range(30), npartitions=3).map(double).persist()
    total = b.sum().persist()
    dl = dask.delayed(double)(21).persist()
    fut = client.submit(double, 7)
    futs = client.map(double, range(3))
    scattered = client.scatter(np.arange(5))  # no task behind it: only its value
    scalar = df.a.sum().persist()
    want = dict(
        x=x.compute(), xm=xm.compute(), df=df.compute(), unknown=unknown.compute(), evens=evens.compute(),
        b=b.compute(), total=total.compute(), scalar=scalar.compute(),
    )
    GATHERED.clear()
    mason.dump_module({path!r}, exclude=["GATHERED", "_gather", "_spy"])  # not part of the session under test
    assert len(GATHERED) == 31 and all(type(r) is dict and set(r) == {{"size", "digest"}} for r in GATHERED), GATHERED
"""
)

CHECK = """
    import numpy as np, pandas as pd
    assert np.array_equal(x.compute(), want["x"]) and np.array_equal(xm.compute(), want["xm"])
    pd.testing.assert_frame_equal(df.compute(), want["df"])
    assert df.known_divisions and df.divisions == (100, 110, 120, 130, 139)
    pd.testing.assert_frame_equal(unknown.compute(), want["unknown"])
    assert not unknown.known_divisions
    pd.testing.assert_frame_equal(evens.compute(), want["evens"])
    assert df.compute().c.dtype == "category" and list(df.compute().c.cat.categories) == ["u", "v", "w"]
    assert b.compute() == want["b"] and total.compute() == want["total"] == 870
    assert dl.compute() == 42 and scalar.compute() == want["scalar"] == 780
"""


def test_persisted_collections_and_futures_round_trip(tmp_path, cluster):
    path = str(tmp_path / "s.mason")
    run_python(PERSISTED.format(address=cluster.scheduler_address, path=path), cwd=tmp_path)
    meta = _meta(path)["dask"]
    assert meta["scheduler"] == cluster.scheduler_address
    # 12 array chunks, 4 + 4 dataframe partitions, 3 bag partitions, 1 bag
    # item, 1 delayed, 1 + 3 futures, 1 scattered value, 1 scalar
    assert sum(entry is not None for entry in meta["partitions"]) == 31
    assert {entry["variable"] for entry in meta["partitions"]} == {
        "x", "df", "unknown", "b", "total", "dl", "fut", "futs", "scattered", "scalar"
    }  # fmt: skip
    (folder,) = folders(path)
    assert meta["directories"] == [f"s.mason.dask/{folder}"]  # beside the file: they move together

    # Without a client: lazy collections that read the files when computed.
    run_python(
        f"""
        import dask, warnings
        dask.config.set(scheduler="sync")
        import mason
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            mason.load_module({path!r})
        notes = [str(w.message) for w in caught if issubclass(w.category, mason.MasonWarning)]
        assert len(notes) == 1 and "client: a Client is a connection to the scheduler at {cluster.scheduler_address}" in notes[0], notes
        {textwrap.indent(textwrap.dedent(CHECK), "        ").strip()}
        from dask.delayed import Delayed
        assert "client" not in globals()  # left out, with the note above
        assert type(fut) is Delayed and fut.compute() == 14
        assert [f.compute() for f in futs] == [0, 2, 4] and list(scattered.compute()) == [0, 1, 2, 3, 4]
        """,
        cwd=tmp_path,
    )

    # With a client on a new cluster: persisted there, read by its workers.
    run_python(
        f"""
        import distributed, mason
        if __name__ == "__main__":
            cluster = distributed.LocalCluster(
                n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1", dashboard_address=None
            )
            client = mine = distributed.Client(cluster)
            {textwrap.indent(textwrap.dedent(GATHER_SPY), "            ").strip()}
            mason.load_module({path!r})
            assert GATHERED == [], GATHERED  # the workers read the partitions; nothing came here
            assert client is mine  # the saved client was left out, not put over this one
            graph = dict(x.__dask_graph__())
            assert len(graph) == 12 and all(type(v) is distributed.Future and v.status == "finished" for v in graph.values())
            assert all(client.who_has(x).values())  # held by the new workers
            assert type(fut) is distributed.Future and fut.result() == 14
            assert client.gather(futs) == [0, 2, 4] and list(scattered.result()) == [0, 1, 2, 3, 4]
            {textwrap.indent(textwrap.dedent(CHECK), "            ").strip()}
            # each partition was read by a worker: the reads ran there
            reads = client.run(lambda dask_worker: sum(str(k).startswith("mason-partition-") for k in dask_worker.data))
            assert sum(reads.values()) == 31, reads
            client.close()
            cluster.close()
        """,
        cwd=tmp_path,
        timeout=180,
    )


# ====================================================================== in this process, on the module's cluster


def test_restore_onto_the_current_cluster_and_load_twice(tmp_path, client):
    x = da.arange(1000, chunks=100).persist()
    path = tmp_path / "s.mason"
    save(path, x=x, f=client.submit(sum, [1, 2]), n=3)
    first = mason.load_module_asdict(path)
    second = mason.load_module_asdict(path)
    keys = [future.key for future in dict(first["x"].__dask_graph__()).values()]
    assert keys == [future.key for future in dict(second["x"].__dask_graph__()).values()]
    assert all(key.startswith("mason-partition-") for key in keys)  # one read per file, not per load
    assert first["x"].sum().compute() == second["x"].sum().compute() == 499500
    assert first["f"].result() == 3 and second["n"] == 3


def test_saving_twice_replaces_the_partitions_of_the_replaced_file(tmp_path, client):
    path = tmp_path / "s.mason"
    save(path, x=da.arange(100, chunks=50).persist())
    (first,) = folders(path)
    save(path, x=(da.arange(100, chunks=50) * 2).persist())
    (second,) = folders(path)  # the first folder is gone, once the new file is in place
    assert second != first
    assert mason.load_module_asdict(path)["x"].sum().compute() == 9900
    save(path, y=1)  # nothing on a cluster any more: nothing left behind
    assert folders(path) == [] and "dask" not in _meta(path)


def test_restored_partitions_are_written_again_by_the_workers(tmp_path, client):
    path = tmp_path / "s.mason"
    save(path, x=da.arange(100, chunks=50).persist())
    (first,) = folders(path)
    restored = mason.load_module_asdict(path)["x"]  # futures on this cluster
    save(path, x=restored, y=restored + 1)
    (second,) = folders(path)
    assert second != first and len(_meta(path)["dask"]["partitions"]) == 2
    loaded = mason.load_module_asdict(path)
    assert loaded["x"].sum().compute() == 4950 and loaded["y"].sum().compute() == 5050


def test_signed_sessions_sign_their_partitions(tmp_path, client):
    path = tmp_path / "s.mason"
    save(path, x=da.arange(10, chunks=5).persist())
    with pytest.raises(ValueError, match="save the session again with key="):
        mason.sign(path, key=b"k")  # a signature would not cover the partitions
    save(path, {"key": b"k"}, x=da.arange(10, chunks=5).persist())
    assert all(entry["digest"].startswith("sha256:") for entry in _meta(path)["dask"]["partitions"])
    assert mason.load_module_asdict(path, key=b"k")["x"].sum().compute() == 45


def test_a_failed_save_leaves_the_previous_file_and_its_partitions(tmp_path, client):
    path = tmp_path / "s.mason"
    save(path, x=da.arange(100, chunks=50).persist())
    (first,) = folders(path)
    doomed = client.submit(lambda: 1 / 0)
    distributed.wait(doomed)
    notebook = types.ModuleType("notebook")
    notebook.x = da.arange(100, chunks=50).persist()
    notebook.bad = doomed
    with pytest.raises(PicklingError, match=r"bad: .*ZeroDivisionError"):
        mason.dump_module(path, module=notebook, on_error="raise")
    assert folders(path) == [first]  # the new save's folder is removed, the old one kept
    assert mason.load_module_asdict(path)["x"].sum().compute() == 4950
    # Lenient: the variable whose data the workers could not write is left out, and named.
    with pytest.warns(SkippedVariableWarning, match=r"bad: the workers could not write partition"):
        mason.dump_module(path, module=notebook)
    loaded = mason.load_module_asdict(path)
    assert "bad" not in loaded and loaded["x"].sum().compute() == 4950


def test_a_collection_of_a_closed_client_is_named_not_saved_as_keys(tmp_path, cluster, client):
    other = distributed.Client(cluster.scheduler_address, set_as_default=False)
    gone = other.persist(da.arange(10, chunks=5))
    distributed.wait(gone)
    other.close()
    with pytest.warns(SkippedVariableWarning, match=r"gone: .*through a Client that is closed"):
        save(tmp_path / "s.mason", gone=gone, kept=1)
    assert set(mason.load_module_asdict(tmp_path / "s.mason")) >= {"kept"}


def test_the_object_api_refuses_data_that_lives_on_a_cluster(client):
    x = da.arange(10, chunks=5).persist()
    with pytest.raises(PicklingError, match="lives only on a Dask cluster"):
        mason.dumps(x)
    with pytest.raises(PicklingError, match="lives only on a Dask cluster"):
        mason.dumps({"f": client.submit(sum, [1])})
    assert mason.loads(mason.dumps(da.arange(10, chunks=5) + 1)).sum().compute() == 55  # lazy: its graph


def test_restricted_loads_refuse_dask_partitions(tmp_path, client):
    path = tmp_path / "s.mason"
    save(path, x=da.arange(10, chunks=5).persist(), n=1)
    with pytest.warns(SkippedVariableWarning, match="x: refused by the allowlist"):
        loaded = mason.load_module_asdict(path, allow=mason.DATA)
    assert loaded["n"] == 1 and "x" not in loaded
    with pytest.raises(ForbiddenGlobalError):
        mason.load_module_asdict(path, allow=mason.DATA, on_error="raise")


DAMAGE_WITHOUT_CLIENT = """
    import dask, shutil, warnings
    dask.config.set(scheduler="sync")
    import mason
    from mason.errors import CorruptSessionError, SkippedVariableWarning
    # A missing file is found at load time, naming the variable.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = mason.load_module_asdict({missing!r})
    (warning,) = [w.message for w in caught if isinstance(w.message, SkippedVariableWarning)]
    assert set(warning.failures) == {{"x"}} and "is missing" in warning.failures["x"], warning.failures
    assert loaded["n"] == 1
    # A damaged file of the right size is found when read, naming file and variable.
    lazy = mason.load_module_asdict({damaged!r})["x"]
    try:
        lazy.sum().compute()
    except CorruptSessionError as exc:
        assert "saved with variable 'x'" in str(exc) and "not those the session recorded" in str(exc), exc
    else:
        raise AssertionError("damage not found")
    # Restored lazily and saved again: the new file reads the same files, which
    # stay while any session file refers to them, even saved over the old one.
    notebook = mason.load_module({intact!r})
    mason.dump_module({copy!r}, module=notebook)
    mason.dump_module({intact!r}, module=notebook)
    assert int(notebook.x.sum().compute()) == 4950
"""


def test_damaged_or_missing_partitions_are_named(tmp_path, client, capsys):
    paths = {name: str(tmp_path / f"{name}.mason") for name in ("missing", "damaged", "intact")}
    for path in paths.values():
        save(path, x=da.arange(100, chunks=50).persist(), n=1)
    table = _meta(paths["missing"])["dask"]
    os.remove(tmp_path / table["directories"][0] / table["partitions"][0]["name"])
    table = _meta(paths["damaged"])["dask"]
    victim = tmp_path / table["directories"][0] / table["partitions"][1]["name"]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))

    # `mason verify` reads every partition file too (nothing is unpickled).
    from mason.cli import main as cli_main

    capsys.readouterr()
    assert cli_main(["verify", paths["intact"]]) == 0
    assert "and 2 Dask partition files" in capsys.readouterr().out
    for name, reason in (("missing", "is missing"), ("damaged", "not those the session recorded")):
        assert cli_main(["verify", paths[name]]) == 1, name
        assert reason in capsys.readouterr().err

    # With a client: the workers' reads fail at load, and the variable is named.
    for name, reason in (("missing", "is missing"), ("damaged", "not those the session recorded")):
        with pytest.warns(SkippedVariableWarning, match=f"x: .*{reason}"):
            assert mason.load_module_asdict(paths[name])["n"] == 1
        with pytest.raises(CorruptSessionError, match=f"cannot restore variable 'x': .*{reason}"):
            mason.load_module_asdict(paths[name], on_error="raise")

    copy = str(tmp_path / "copy.mason")
    (intact_folder,) = [f for f in os.listdir(tmp_path / "intact.mason.dask")]
    run_python(DAMAGE_WITHOUT_CLIENT.format(copy=copy, **paths), cwd=tmp_path)
    # Both files read the intact session's first folder; nothing was written.
    assert os.listdir(tmp_path / "intact.mason.dask") == [intact_folder]
    assert not os.path.exists(copy + ".dask")
    for path in (copy, paths["intact"]):
        assert mason.load_module_asdict(path)["x"].sum().compute() == 4950  # and onto the cluster


KILLER = """
    import os, warnings
    import dask.array as da, distributed, mason
    client = distributed.Client({address!r})
    class DiesWhenSaved:
        # Pickling it on a worker (what a partition write does) kills that worker.
        def __reduce__(self):
            try:
                distributed.get_worker()
            except ValueError:
                return (DiesWhenSaved, ())
            os._exit(1)
    kept = da.arange(100, chunks=50).persist()
    victim = client.submit(DiesWhenSaved)
    distributed.wait(victim)
    try:
        mason.dump_module({path!r}, on_error="raise")
    except mason.PicklingError as exc:
        assert "victim" in str(exc) and "KilledWorker" in str(exc), exc
    else:
        raise AssertionError("the save did not fail")
    assert mason.load_module_asdict({path!r})["old"] == 1  # the previous file, untouched
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mason.dump_module({path!r})
    assert any("victim" in str(w.message) for w in caught), [str(w.message) for w in caught]
    print([str(w.message) for w in caught])
    print(sorted(mason.load_module_asdict({path!r})))
"""


def test_a_worker_dying_mid_save(tmp_path, cluster, client):
    path = str(tmp_path / "s.mason")
    save(path, old=1)
    proc = run_python(KILLER.format(address=cluster.scheduler_address, path=path), cwd=tmp_path, timeout=180)
    assert "'kept'" in proc.stdout and "'victim'" not in proc.stdout
    assert len(folders(path)) == 1  # the failed save's folder is gone
    client.wait_for_workers(2, timeout=60)  # the nanny restarts the worker for the tests after this one


def test_import_mason_and_plain_sessions_do_not_import_dask(tmp_path):
    run_python(
        f"""
        import sys, mason
        x = 1
        mason.dump_module({str(tmp_path / "s.mason")!r})
        mason.load_module({str(tmp_path / "s.mason")!r})
        assert not any(name.split(".")[0] in ("dask", "distributed") for name in sys.modules)
        """
    )


def test_partition_table_damage_is_refused_before_unpickling(tmp_path, client):
    from mason._dask.source import PartitionSource

    path = tmp_path / "s.mason"
    save(path, x=da.arange(10, chunks=5).persist())
    table = _meta(path)["dask"]
    for damage, message in (
        (lambda t: t.update(version=99), "upgrade mason"),
        (lambda t: t["partitions"][0].update(name="../../etc/passwd"), "not a partition file name"),
        (lambda t: t["partitions"][0].update(size=-1), "not a byte count"),
        (lambda t: t["partitions"][0].update(dir=7), "not one of the 1 directories"),
        (lambda t: t.update(directories=["../elsewhere"]), "neither absolute nor a plain relative"),
    ):
        forged = json.loads(json.dumps(table))
        damage(forged)
        with pytest.raises(CorruptSessionError, match=message):
            PartitionSource(forged, str(path), None, None)


# ====================================================================== S3 (moto), the workers writing and reading

BUCKET = "mason-dask"


@pytest.fixture(scope="module")
def s3():
    """A moto S3 server on a free loopback port (as in test_remote.py): its endpoint."""
    pytest.importorskip("s3fs")
    boto3 = pytest.importorskip("boto3")
    moto_server = pytest.importorskip("moto.server")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    ).create_bucket(Bucket=BUCKET)
    yield endpoint
    server.stop()


def test_partitions_on_s3(s3, client, tmp_path):
    endpoint = s3
    url = f"s3://{BUCKET}/dask-{os.urandom(4).hex()}/s.mason"
    # Credentials in storage_options only: the workers get them with each task.
    storage = {"endpoint_url": endpoint, "key": "testing", "secret": "testing"}
    pdf = pd.DataFrame({"a": np.arange(30), "c": pd.Categorical(["p", "q", "r"] * 10)})
    notebook = types.ModuleType("notebook")
    notebook.df = dd.from_pandas(pdf, npartitions=3).persist()
    notebook.x = da.ones((100, 100), chunks=50).persist()
    mason.dump_module(url, module=notebook, storage_options=storage)
    fs = pytest.importorskip("s3fs").S3FileSystem(
        client_kwargs={"endpoint_url": endpoint}, key="testing", secret="testing"
    )
    (folder,) = [p for p in fs.ls(url[5:] + ".dask") if not p.endswith(".json")]
    assert len([p for p in fs.ls(folder) if p.endswith(".mason")]) == 7
    loaded = mason.load_module_asdict(url, storage_options=storage)  # onto the cluster
    pd.testing.assert_frame_equal(loaded["df"].compute(), pdf)
    assert loaded["x"].sum().compute() == 10_000
    run_python(  # and lazily, in a process without a client
        f"""
        import dask, mason, pandas as pd
        dask.config.set(scheduler="sync")
        loaded = mason.load_module_asdict({url!r}, storage_options={storage!r})
        assert loaded["df"].compute().a.sum() == 435 and loaded["x"].sum().compute() == 10_000
        """,
        cwd=tmp_path,
    )
    notebook.x = da.zeros(10, chunks=5).persist()
    mason.dump_module(url, module=notebook, storage_options=storage)  # the first folder goes
    assert [p for p in fs.ls(url[5:] + ".dask", refresh=True)] != [folder]
    assert folder not in fs.ls(url[5:] + ".dask", refresh=True)
