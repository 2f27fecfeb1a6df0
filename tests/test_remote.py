"""Sessions at URLs, through fsspec: ``memory://`` in this process, and a
real S3 API (moto's server on a loopback port) across fresh interpreters.

A URL is recognised without fsspec; opening one needs ``mason[remote]``.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import types
import uuid
from pathlib import Path

import pytest
from conftest import run_python

import mason
from mason._storage import is_url
from mason.cli import main

fsspec = pytest.importorskip("fsspec")

MASON_SCRIPT = Path(sys.executable).parent / "mason"


def make_module(code: str = "", **values) -> types.ModuleType:
    """A module that is not importable (so saved by value), with ``values`` and what ``code`` defines."""
    module = types.ModuleType("remote_case")
    module.__dict__.update(values)
    exec(code, module.__dict__)
    del module.__dict__["__builtins__"], module.__dict__["__doc__"]
    return module


class Unpicklable:
    def __reduce__(self):
        raise RuntimeError("refuses to be pickled")


# ====================================================================== URLs or paths


@pytest.mark.parametrize(
    "target",
    ["s3://bucket/key.mason", "gs://b/k", "memory://x", "file:///tmp/x", "simplecache::s3://b/k", "S3://B/K"],
)
def test_urls_are_recognised(target):
    assert is_url(target)


@pytest.mark.parametrize(
    "target",
    [
        "C:\\Users\\me\\s.mason",
        "C:/Users/me/s.mason",
        "C://Users/me",
        "s.mason",
        "dir/s3:/x",
        "/abs/path",
        "://x",
        Path("s3://bucket/key"),
    ],
)
def test_paths_are_not_urls(target):
    assert not is_url(target)


def test_without_fsspec_a_url_names_the_extra(tmp_path):
    proc = run_python(
        """
        import sys
        sys.modules["fsspec"] = None  # as if not installed
        import mason
        try:
            mason.dump_module("memory://x/s.mason", module="json")
        except ValueError as exc:
            print("ERROR:", exc)
        """,
        cwd=tmp_path,
    )
    assert "pip install 'mason[remote]'" in proc.stdout
    assert "memory://x/s.mason" in proc.stdout


def test_no_optional_import_without_a_url(tmp_path):
    run_python(
        f"""
        import sys, mason
        x = 1
        mason.dump_module({str(tmp_path / "s.mason")!r})
        mason.load_module_asdict({str(tmp_path / "s.mason")!r})
        mason.inspect({str(tmp_path / "s.mason")!r})
        assert "fsspec" not in sys.modules and "tqdm" not in sys.modules, sorted(sys.modules)
        """,
        cwd=tmp_path,
    )


def test_storage_options_need_a_url(tmp_path):
    module = make_module(x=1)
    with pytest.raises(ValueError, match="URLs only"):
        mason.dump_module(tmp_path / "s.mason", module=module, storage_options={"key": "k"})
    mason.dump_module(tmp_path / "s.mason", module=module)
    with pytest.raises(ValueError, match="URLs only"):
        mason.load_module_asdict(tmp_path / "s.mason", storage_options={"key": "k"})
    with pytest.raises(ValueError, match="URLs only"):
        mason.inspect(str(tmp_path / "s.mason"), storage_options={"key": "k"})


# ====================================================================== memory://


@pytest.fixture
def memory_url():
    name = f"memory://mason-tests/{uuid.uuid4().hex}/s.mason"
    yield name
    directory = name.rsplit("/", 1)[0]
    fs = fsspec.filesystem("memory")
    if fs.exists(directory):
        fs.rm(directory, recursive=True)


def test_memory_round_trip(memory_url):
    module = make_module("def add(a, b):\n    return a + b\n", data={"a": [1, 2]}, text="hello")
    mason.dump_module(memory_url, module=module)
    info = mason.inspect(memory_url)
    assert info.names() == ["add", "data", "text"]
    loaded = mason.load_module_asdict(memory_url)
    assert loaded["data"] == {"a": [1, 2]} and loaded["text"] == "hello"
    assert loaded["add"](2, 3) == 5
    assert loaded["__session__"] == memory_url


def test_memory_numpy_blobs_are_read_not_mapped(memory_url):
    np = pytest.importorskip("numpy")
    module = make_module(arr=np.arange(1000.0))
    mason.dump_module(memory_url, module=module)
    loaded = mason.load_module_asdict(memory_url)  # mmap=True is the default: falls back to reading
    assert (loaded["arr"] == np.arange(1000.0)).all()
    loaded["arr"][0] = 5  # a private, writable copy
    assert mason.load_module_asdict(memory_url)["arr"][0] == 0


def test_memory_failed_save_keeps_the_previous_file(memory_url):
    mason.dump_module(memory_url, module=make_module(x=1))
    before = fsspec.filesystem("memory").cat_file(memory_url)
    with pytest.raises(mason.PicklingError, match="refuses to be pickled"):
        mason.dump_module(memory_url, module=make_module(a=list(range(10000)), z=Unpicklable()), on_error="raise")
    assert fsspec.filesystem("memory").cat_file(memory_url) == before
    assert mason.load_module_asdict(memory_url)["x"] == 1


def test_missing_url_is_file_not_found(memory_url):
    with pytest.raises(FileNotFoundError, match="no mason session file here"):
        mason.inspect(memory_url)


def test_damaged_remote_file_names_the_url(memory_url):
    mason.dump_module(memory_url, module=make_module(x=1))
    fs = fsspec.filesystem("memory")
    data = bytearray(fs.cat_file(memory_url))
    data[-40] ^= 0xFF
    fs.pipe_file(memory_url, bytes(data))
    with pytest.raises(mason.CorruptSessionError, match="memory://"):
        mason.inspect(memory_url)


def test_file_url_is_a_local_atomic_write(tmp_path):
    target = tmp_path / "s.mason"
    mason.dump_module(target.as_uri(), module=make_module(x=1))
    assert target.stat().st_mode & 0o777 == 0o600  # local guarantees: private, written by rename
    assert mason.load_module_asdict(target.as_uri())["x"] == 1
    with pytest.raises(mason.PicklingError):
        mason.dump_module(target.as_uri(), module=make_module(z=Unpicklable()), on_error="raise")
    assert mason.inspect(target.as_uri()).names() == ["x"]
    assert sorted(os.listdir(tmp_path)) == ["s.mason"]


def test_cli_on_memory_urls(memory_url, capsys, tmp_path):
    script = tmp_path / "script.py"
    script.write_text("import math\nx = 2\ny = math.sqrt(x)\n")
    assert main(["run", "--save", memory_url, str(script)]) == 0
    assert f"to {memory_url}" in capsys.readouterr().out

    assert main(["inspect", "--json", memory_url]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["file"] == memory_url
    assert [v["name"] for v in info["variables"]] == ["__doc__", "math", "x", "y"]

    assert main(["verify", memory_url]) == 0
    assert capsys.readouterr().out.startswith("ok: 4 variables, 0 blobs,")

    other = memory_url.replace("s.mason", "t.mason")
    script.write_text("import math\nx = 3\ny = math.sqrt(x)\n")
    assert main(["run", "--save", other, str(script)]) == 0
    capsys.readouterr()
    assert main(["diff", "--json", memory_url, other]) == 1
    changed = json.loads(capsys.readouterr().out)["changed"]
    assert [c["name"] for c in changed] == ["x", "y"]

    assert main(["load", memory_url]) == 0
    assert "restored 4 variables" in capsys.readouterr().out

    assert main(["inspect", memory_url.replace("s.mason", "missing.mason")]) == 1
    assert "no mason session file here" in capsys.readouterr().err


# ====================================================================== S3 (moto)

BUCKET = "mason-sessions"


@pytest.fixture(scope="module")
def s3():
    """A moto S3 server on a free loopback port: (endpoint URL, environment for fresh processes)."""
    pytest.importorskip("s3fs")
    pytest.importorskip("boto3")
    moto_server = pytest.importorskip("moto.server")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    env = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        # never the developer's own configuration or credentials
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
    client = s3_client(endpoint)
    client.create_bucket(Bucket=BUCKET)
    yield endpoint, env
    server.stop()


def s3_client(endpoint):
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )


def options(endpoint, **extra):
    return {"endpoint_url": endpoint, "key": "testing", "secret": "testing", **extra}


@pytest.fixture
def s3_key():
    return f"{uuid.uuid4().hex}/session.mason"


SAVE_ON_S3 = """
    import numpy as np
    import mason
    arr = np.arange(100_000, dtype=np.float64).reshape(100, 1000)
    def scale(v, k=3):
        return v * k
    class Point:
        def __init__(self, x, y):
            self.x, self.y = x, y
        def norm2(self):
            return self.x ** 2 + self.y ** 2
    p = Point(3, 4)
    mason.dump_module({url!r}, storage_options={options!r})
"""

LOAD_FROM_S3 = """
    import numpy as np
    import mason
    mason.load_module({url!r}, storage_options={options!r})
    assert arr.shape == (100, 1000) and arr[99, 999] == 99_999.0
    assert scale(arr, 2)[1, 0] == 2000.0 and scale(2) == 6
    assert type(p).__name__ == "Point" and p.norm2() == 25
    assert type(p) is Point
    print("loaded", sorted(mason.inspect({url!r}, storage_options={options!r}).names()))
"""


def test_s3_round_trip_between_fresh_interpreters(s3, s3_key, tmp_path):
    endpoint, env = s3
    url = f"s3://{BUCKET}/{s3_key}"
    save = SAVE_ON_S3.replace("{url!r}", repr(url)).replace("{options!r}", repr(options(endpoint)))
    load = LOAD_FROM_S3.replace("{url!r}", repr(url)).replace("{options!r}", repr(options(endpoint)))
    # Credentials and endpoint in storage_options only: the environment has none.
    clean = {name: "" for name in env if name.startswith("AWS_")}
    clean.update(AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull)
    run_python(save, cwd=tmp_path, env=clean)
    proc = run_python(load, cwd=tmp_path, env=clean)
    assert "loaded ['Point', '__annotations__', '__doc__', 'arr', 'mason', 'np', 'p', 'scale']" in proc.stdout

    head = s3_client(endpoint).head_object(Bucket=BUCKET, Key=s3_key)
    assert head["ContentLength"] > 800_000  # the array went up whole


def test_s3_inspect_and_cli(s3, s3_key, tmp_path):
    endpoint, env = s3
    url = f"s3://{BUCKET}/{s3_key}"
    module = make_module(numbers=list(range(100)), label="s3")
    mason.dump_module(url, module=module, storage_options=options(endpoint))
    info = mason.inspect(url, storage_options=options(endpoint))
    assert info.module == "remote_case" and info.names() == ["label", "numbers"]

    # The installed console script, configured the usual way: the environment.
    def run_cli(*argv):
        return subprocess.run(
            [str(MASON_SCRIPT), *argv],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=dict(os.environ, **env),
            timeout=120,
        )

    proc = run_cli("inspect", url)
    assert proc.returncode == 0, proc.stderr
    assert f"file:     {url}" in proc.stdout
    assert "numbers" in proc.stdout and "2 variables" in proc.stdout

    proc = run_cli("verify", url)
    assert proc.returncode == 0, proc.stderr
    size = s3_client(endpoint).head_object(Bucket=BUCKET, Key=s3_key)["ContentLength"]
    assert proc.stdout.strip() == f"ok: 2 variables, 0 blobs, {size:,} bytes verified"

    proc = run_cli("inspect", f"s3://{BUCKET}/no-such-key.mason")
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"mason: error: s3://{BUCKET}/no-such-key.mason: no mason session file here"


@pytest.mark.parametrize("multipart", [False, True], ids=["single-put", "multipart"])
def test_s3_failed_save_keeps_the_previous_object(s3, s3_key, monkeypatch, multipart):
    np = pytest.importorskip("numpy")
    s3fs = pytest.importorskip("s3fs")
    endpoint, _ = s3
    url = f"s3://{BUCKET}/{s3_key}"
    client = s3_client(endpoint)
    mason.dump_module(url, module=make_module(x=1), storage_options=options(endpoint))
    before = client.get_object(Bucket=BUCKET, Key=s3_key)["Body"].read()

    started = []
    original = s3fs.core.S3File._initiate_upload

    def spy(self):
        original(self)
        started.append(self.mpu)

    monkeypatch.setattr(s3fs.core.S3File, "_initiate_upload", spy)
    # 6 MiB before the failing variable: with 5 MiB blocks a multipart upload
    # has started and sent a part when the failure comes.
    big = np.ones((6 if multipart else 1) << 20, dtype=np.uint8)
    module = make_module(a_big=big, z_bad=Unpicklable())
    block = 5 << 20 if multipart else 50 << 20
    with pytest.raises(mason.PicklingError, match="refuses to be pickled"):
        mason.dump_module(
            url, module=module, on_error="raise", storage_options=options(endpoint, default_block_size=block)
        )
    assert bool(started and started[0]) is multipart

    assert client.get_object(Bucket=BUCKET, Key=s3_key)["Body"].read() == before
    assert client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []  # aborted, not left
    loaded = mason.load_module_asdict(url, storage_options=options(endpoint))
    assert loaded["x"] == 1 and "a_big" not in loaded


def test_s3_failed_abort_warns_and_keeps_the_previous_object(s3, s3_key, monkeypatch):
    s3fs = pytest.importorskip("s3fs")
    endpoint, _ = s3
    url = f"s3://{BUCKET}/{s3_key}"
    mason.dump_module(url, module=make_module(x=1), storage_options=options(endpoint))

    def broken_discard(self):
        raise ConnectionError("network gone")

    monkeypatch.setattr(s3fs.core.S3File, "discard", broken_discard)
    with pytest.warns(mason.MasonWarning, match="could not abort the unfinished upload.*network gone"):
        with pytest.raises(mason.PicklingError):
            mason.dump_module(
                url, module=make_module(y=2, z=Unpicklable()), on_error="raise", storage_options=options(endpoint)
            )
    assert mason.load_module_asdict(url, storage_options=options(endpoint))["x"] == 1


def test_s3_multipart_save_loads_back(s3, s3_key):
    np = pytest.importorskip("numpy")
    endpoint, _ = s3
    url = f"s3://{BUCKET}/{s3_key}"
    arrays = {f"a{i}": np.full(3 << 20, i, dtype=np.uint8) for i in range(3)}
    mason.dump_module(url, module=make_module(**arrays), storage_options=options(endpoint, default_block_size=5 << 20))
    loaded = mason.load_module_asdict(url, storage_options=options(endpoint), names=["a2"])
    assert loaded["a2"].shape == (3 << 20,) and loaded["a2"][-1] == 2


def test_ipython_magics_take_urls(tmp_path):
    pytest.importorskip("IPython")
    proc = run_python(
        """
        from IPython.core.interactiveshell import InteractiveShell
        shell = InteractiveShell.instance()
        def cell(code):
            result = shell.run_cell(code, store_history=True)
            result.raise_error()
            return result.result
        cell("%load_ext mason.ipython")
        cell("x = 20\\ndef f():\\n    return x + 1")
        cell("%save_session memory://notebooks/nb.mason")
        cell("del x, f")
        cell("%load_session memory://notebooks/nb.mason")
        assert cell("f()") == 21
        """,
        cwd=tmp_path,
    )
    assert "Saved 2 variables to memory://notebooks/nb.mason" in proc.stdout
