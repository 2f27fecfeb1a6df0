"""Out-of-band blobs: memory-mapped copy-on-write loading, eager loading, compression."""

import textwrap

import pytest
from conftest import run_python

import mason
import mason._format
from mason._session import check_session_meta


def run(tmp_path, code):
    return run_python(
        f"import mason, numpy as np\nPATH = {str(tmp_path / 's.mason')!r}\n" + textwrap.dedent(code), cwd=tmp_path
    )


def test_mapped_arrays_survive_overwrite_and_delete_of_the_file(tmp_path):
    run(tmp_path, "big = np.arange(1_000_000, dtype=np.float64)\nmason.dump_module(PATH)\n")
    run(
        tmp_path,
        """
        import os, types
        ns = mason.load_module_asdict(PATH)
        arr = ns['big']
        assert arr.flags.writeable and arr[123] == 123.0
        arr[0] = -1.0                      # copy-on-write: the file does not change
        again = mason.load_module_asdict(PATH)['big']
        assert again[0] == 0.0
        other = types.ModuleType('other'); other.big = np.zeros(10)
        mason.dump_module(PATH, module=other)   # atomic rename: a new inode
        os.remove(PATH)
        assert arr[0] == -1.0 and arr[999_999] == 999_999.0 and float(arr[1:].sum()) == float(np.arange(1, 1_000_000).sum())
        """,
    )


def test_eager_loading_and_every_compression(tmp_path):
    from mason._format import compression

    def installed(name):
        try:
            return compression.by_name(name) is not None
        except ValueError:  # its optional package is missing
            return False

    codecs = [None] + [name for name in ("zlib", "lzma", "zstd", "lz4") if installed(name)]
    run(
        tmp_path,
        f"""
        import os, types
        mod = types.ModuleType('data')
        mod.ints = np.tile(np.arange(1000, dtype=np.int64), 200)      # compressible
        mod.frame_like = {{'a': np.linspace(0, 1, 5000), 'b': np.ones((50, 50), order='F')}}
        sizes = {{}}
        for codec in {codecs!r}:
            mason.dump_module(PATH, module=mod, compression=codec)
            sizes[codec] = os.path.getsize(PATH)
            for mmap in (True, False):
                ns = mason.load_module_asdict(PATH, mmap=mmap)
                assert np.array_equal(ns['ints'], mod.ints) and ns['ints'].flags.writeable
                assert np.array_equal(ns['frame_like']['b'], mod.frame_like['b'])
                assert ns['frame_like']['b'].flags.f_contiguous
        for codec, size in sizes.items():
            if codec is not None:
                assert size < sizes[None] / 2, (codec, size, sizes[None])
        """,
    )


def test_unknown_compression_is_a_clear_error(tmp_path):
    import io
    import types

    import mason

    with pytest.raises(ValueError, match="compression"):
        mason.dump_module(io.BytesIO(), module=types.ModuleType("m"), compression="brotli")


def test_big_bytes_variables_travel_out_of_band(tmp_path):
    """Top-level bytes and bytearray variables go to blobs, not into the
    pickle segment (which would double a save's memory), and come back with
    their type and contents."""
    path = tmp_path / "bytes.mason"
    run_python(
        f"""
        import mason, os
        raw = os.urandom(300_000)
        buf = bytearray(raw[:100_000])
        small = b"tiny"
        nested = {{"payload": raw[:70_000]}}
        mason.dump_module({str(path)!r})
        """
    )
    info = {v["name"]: v for v in mason.inspect(path).variables}
    with mason._format.ContainerReader.open(path) as reader:
        meta = {v["name"]: v for v in check_session_meta(reader)}
        assert [reader.blob_info(b)["length"] for b in meta["raw"]["blobs"]] == [300_000]
        assert [reader.blob_info(b)["length"] for b in meta["buf"]["blobs"]] == [100_000]
        assert meta["small"]["blobs"] == [] and meta["nested"]["blobs"] == []
        assert reader.segment_info(meta["raw"]["segment"])["length"] < 1000
    assert info["raw"]["size"] >= 300_000
    run_python(
        f"""
        import mason
        mason.load_module({str(path)!r})
        assert type(raw) is bytes and len(raw) == 300_000 and raw[:70_000] == nested["payload"]
        assert type(buf) is bytearray and buf == raw[:100_000]
        buf[0] ^= 1  # a private, writable copy
        assert small == b"tiny"
        """
    )
