"""Session benchmark: mason.dump_module / load_module vs dill, cloudpickle, pickle and the machine.

How to run (from the repository root, with the project's virtualenv)::

    .venv/bin/python benchmarks/bench_session.py --quick          # sizes / 10, under 2 minutes
    .venv/bin/python benchmarks/bench_session.py                  # full sizes: ~6 GB RAM, a few GB of disk
    .venv/bin/python benchmarks/bench_session.py --quick --sessions data-heavy --compression zlib,lzma
    .venv/bin/python benchmarks/bench_session.py --repeat 5 --json bench-results/session.json

Options: ``--quick`` divides session sizes by 10; ``--repeat N`` (default 3);
``--impls`` (default ``mason,dill,cloudpickle,pickle``); ``--sessions``
(default: all registered); ``--compression CODECS`` adds ``mason+CODEC`` rows
(``zlib``, ``lzma``, ``zstd``, ``lz4``, or ``all``; codecs whose package is
missing are skipped with a note); ``--lazy`` adds a ``mason+lazy`` row;
``--cell-source`` puts the session's source in ``linecache`` as IPython does
for a notebook cell (mason saves the source of its code next to the
bytecode; without it the session is exec'd from a string, which has none);
``--baseline`` (what the ratios and the
machine limits compare against, default mason); ``--tmpdir DIR`` (where the
session files go, default ``$TMPDIR`` or ``bench-results/``); ``--timeout``
(seconds per child process); ``--json PATH`` (raw samples + summary).

Implementations (each with its library's defaults; every save ends with an
fsync inside the timed region, as mason's own atomic write does):

* ``mason``       -- ``mason.dump_module(path, module=__main__)`` / ``mason.load_module(path)``
  (with ``mason[fast]`` installed, as here, records carry ``crc32+xxh3`` sums and are checked
  by their xxh3 half)
* ``mason+CODEC`` -- the same with ``compression=CODEC`` (default level; ``--compression``)
* ``mason+xxh3``  -- ``dump_module(path, checksum="xxh3_64")``: every record summed with xxh3
  (``mason[fast]``; a reader needs it too) instead of CRC-32 (``--xxh3``)
* ``mason+crc32`` -- ``dump_module(path, checksum="crc32")``: plain CRC-32 sums, the default
  where xxhash is not installed (``--crc32``)
* ``mason+lazy``  -- plain mason's save; ``load_module(path, verify_blobs=False)``, so
  blob pages are read only when touched (``--lazy``)
* ``dill``        -- ``dill.dump_module(f, module=__main__)`` + flush + fsync / ``dill.load_module(path)``
* ``cloudpickle`` -- ``cloudpickle.dump(user_vars, f)`` + flush + fsync, where ``user_vars`` is
  ``__main__``'s dict without dunder names and modules / ``pickle.load(f)`` then
  ``globals().update(...)``
* ``pickle``      -- ``pickle.dump(data, f, protocol=5)`` + flush + fsync of the *data part* only:
  the variables plain pickle can save and load elsewhere (nothing that refers to a function or
  class of ``__main__``; the left-out names are reported) / ``pickle.load`` + ``globals().update``

What is measured
----------------
For each (session, implementation, repetition) two fresh interpreters run
(``python -c``, so ``__main__`` is a real main module, ``PYTHONHASHSEED=0``):

1. *save child*: imports the library and warms it up with one tiny
   ``dumps``/``loads`` (lazy first-use imports are not timed), then ``exec``s
   the session's source into ``__main__`` (functions and classes get
   ``__module__ == '__main__'`` and must be saved by value).  After
   ``gc.collect()`` the peak-RSS mark is reset (Linux ``/proc/self/clear_refs``)
   so the memory *held before the save* is the base line; ``perf_counter``
   wraps the save call, fsync included.  ``save extra`` = ``ru_maxrss`` after
   the save - RSS before it: the memory the save needed on top of the
   session.  Then the file size and a fingerprint of every saved variable.
2. *load child*: imports the library (and the modules the session imports,
   e.g. numpy, pandas, sklearn: the same cost for everyone, so not timed),
   warms up, and times ``load`` followed by a *touch*: every numpy array's
   bytes are summed (each array bound to a variable or held in dicts/lists/
   tuples of at most 1,000 items, three levels deep, and every numeric/datetime/categorical-code column
   of each DataFrame/Series).  A lazily memory-mapped load pays for its page
   faults here, so ``load+touch`` is an honest comparison with eager loaders.
   ``load peak`` = ``ru_maxrss`` of the load process right after the touch
   (the whole process: interpreter, imports, data; mapped file pages that were
   touched count as resident).  The fingerprints must equal the save child's,
   else the row says ``MISMATCH``.

Implementations are interleaved round-robin within each repetition (the first
one rotates per repetition).  After them, a *limits child* measures the
machine on as many bytes as the baseline's file had in that repetition:
``write+fsync`` (os.write of a preallocated, already-touched buffer in 64 MiB
chunks to a new file, then fsync), ``page-cache read`` (reading that file
right back into a preallocated, touched buffer) and ``memcpy``
(``numpy.copyto`` of that many bytes), and ``first touch`` (allocating and
filling that many bytes of fresh memory: the page-fault cost every loader that
allocates, and every write into new page cache, pays; on a VM whose host backs
guest memory lazily it can be slower than the disk).  Files are deleted after
each measurement.  Reported numbers are medians; ``spread`` is (max-min)/median.
MB are 10**6 bytes.

Ratios: ``mason vs X`` = median(X) / median(mason) for times (> 1: mason is
faster), mason / X for file size and memory (< 1: mason uses less).  Against
the limits: ``mason save = 0.81 of raw write+fsync`` means mason's save runs at
81% of the raw write's throughput for the same number of bytes
(raw time / mason time); ``load+touch = 0.7 of page-cache read`` likewise.

Sessions (registry ``SESSIONS``; sizes at full scale, / 10 with ``--quick``):

* ``data-heavy``    -- ~1.5 GB of numpy arrays (float64, uint8 images, int64,
  float32, a dict of 10 arrays) + a 2M-row DataFrame (int, float, bool,
  categorical, string and datetime columns).
* ``small-objects`` -- 200k dicts (sharing one config dict, 20k of them also
  indexed by a second dict), 100k dataclass instances, sets and a frozenset.
* ``code-heavy``    -- bench_pickler's ``code`` workload as a session: 2,000
  functions/lambdas/closures and 200 classes with instances.
* ``notebook``      -- numpy data, a Pipeline(StandardScaler, LogisticRegression)
  fitted on 20k x 20, a results DataFrame, helper functions and a lambda.
* ``tiny``          -- a few ints, a string, a list and a function: fixed cost.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from typing import Callable

from _harness import (
    REPO_ROOT,
    NotSupported,
    child_env,
    current_rss_kb,
    parse_impls,
    peak_rss_kb,
    reset_peak_rss,
    rotation,
    run_child,
    run_session_child,
    spread,
    time_write_and_read,
    versions,
    write_json,
)
from bench_pickler import WORKLOADS as PICKLER_WORKLOADS
from bench_pickler import code_source

LIB_IMPLS = ("mason", "dill", "cloudpickle", "pickle")
#: compression codecs of mason and the package each needs (None: standard library)
CODECS = {"zlib": None, "lzma": None, "zstd": "zstandard", "lz4": "lz4"}
_MB = 1e6


# --------------------------------------------------------------------------
# Session registry
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Session:
    """One benchmark session.

    ``source(scale)`` returns Python source exec'd into ``__main__`` of the save
    child (scale 1.0, or 0.1 with ``--quick``); it may bind ``BENCH_META``
    (a JSON-able dict shown in the report and removed before saving).
    ``imports`` are imported, untimed, by the load child before loading.
    ``setup_source`` is exec'd, untimed, in both children first (e.g. to
    write a helper module of the notebook's own and put it on sys.path).
    ``check_source`` may define ``check(ns) -> dict`` of extra behavioural
    fingerprints (JSON-able values); ``ns`` holds only the variables that
    were saved, so a check must look at what is there.  Every variable also
    gets a generic structural fingerprint.
    """

    name: str
    description: str
    source: Callable[[float], str]
    imports: tuple = ()
    check_source: str = ""
    setup_source: str = ""


SESSIONS: dict[str, Session] = {}


def register(session: Session) -> Session:
    SESSIONS[session.name] = session
    return session


# ---- (a) data-heavy -------------------------------------------------------


def data_heavy_source(scale: float) -> str:
    def n(x):
        return max(1, round(x * scale))

    return f"""\
import numpy as np
import pandas as pd

rng = np.random.default_rng(20240611)
# About 1.5 GB at full size: random float64 (incompressible), 6-bit "images",
# structured int64 (compressible), float32, and a dict of smaller arrays.
features = rng.standard_normal(({n(1_171_875)}, 64))
images = rng.integers(0, 64, size=({n(1_144)}, 512, 512), dtype=np.uint8)
counts = (np.arange({n(37_500_000)}, dtype=np.int64) * 7919) % 100_003
weights = rng.random({n(50_000_000)}, dtype=np.float32)
runs = {{"run_%02d" % i: rng.standard_normal({n(1_250_000)}) for i in range(10)}}

n_rows = {n(2_000_000)}
df = pd.DataFrame({{
    "id": np.arange(n_rows, dtype=np.int64),
    "value": rng.standard_normal(n_rows),
    "qty": rng.integers(0, 1_000, n_rows, dtype=np.int32),
    "flag": rng.random(n_rows) < 0.3,
    "category": pd.Categorical.from_codes(
        rng.integers(0, 12, n_rows), categories=["cat_%d" % k for k in range(12)]),
    "name": ["user_%06d" % (i % 100_000) for i in range(n_rows)],
    "ts": pd.date_range("2024-01-01", periods=n_rows, freq="s"),
}})

BENCH_META = {{
    "array_MB": round(sum(a.nbytes for a in [features, images, counts, weights, *runs.values()]) / 1e6),
    "arrays": 4 + len(runs),
    "df_rows": n_rows,
    "df_MB": round(int(df.memory_usage(deep=True).sum()) / 1e6),
}}
"""


register(
    Session(
        name="data-heavy",
        description="~1.5 GB of numpy arrays + a 2M-row DataFrame (numeric, categorical, string, datetime)",
        source=data_heavy_source,
        imports=("numpy", "pandas"),
    )
)


# ---- (b) many small objects ----------------------------------------------


def small_objects_source(scale: float) -> str:
    n_dicts = max(10, round(200_000 * scale))
    n_dc = max(1, round(100_000 * scale))
    n_set = max(8, round(50_000 * scale))
    return f"""\
from dataclasses import dataclass


@dataclass
class Measurement:
    sensor: str
    value: float
    ok: bool
    tags: tuple = ()


config = {{"threshold": 0.5, "units": "mV", "channels": list(range(16))}}
records = [
    {{"id": i, "name": "rec-%06d" % i, "score": i * 0.25, "active": i % 3 == 0,
      "tags": ["t%d" % (i % 17), "g%d" % (i % 5)], "config": config}}
    for i in range({n_dicts})
]
by_id = {{r["id"]: r for r in records[::10]}}
measurements = [
    Measurement("s%d" % (i % 64), i * 0.5, i % 7 != 0, ("a", i % 3)) for i in range({n_dc})
]
seen = {{"name-%d" % i for i in range({n_set})}}
buckets = {{k: set(range(k, k + 8)) for k in range(0, {n_set}, 8)}}
frozen = frozenset(range({n_set}))

BENCH_META = {{"dicts": len(records), "dataclasses": len(measurements),
              "set_items": len(seen) + 8 * len(buckets) + len(frozen)}}
"""


_SMALL_OBJECTS_CHECK = """\
def check(ns):
    out = {}
    if "records" in ns and "config" in ns:
        out["config shared"] = all(r["config"] is ns["config"] for r in ns["records"])
    if "records" in ns and "by_id" in ns:
        out["records shared"] = all(ns["by_id"][r["id"]] is r for r in ns["records"][::10])
    if "measurements" in ns and "Measurement" in ns:
        cls = ns["Measurement"]
        out["dataclass type"] = all(type(m) is cls for m in ns["measurements"])
        out["dataclass eq"] = ns["measurements"][-1] == cls(
            "s%d" % ((len(ns["measurements"]) - 1) % 64), (len(ns["measurements"]) - 1) * 0.5,
            (len(ns["measurements"]) - 1) % 7 != 0, ("a", (len(ns["measurements"]) - 1) % 3))
    return out
"""

register(
    Session(
        name="small-objects",
        description="200k dicts, 100k dataclass instances, sets, shared references",
        source=small_objects_source,
        check_source=_SMALL_OBJECTS_CHECK,
    )
)


# ---- (c) code-heavy -------------------------------------------------------


def code_heavy_source(scale: float) -> str:
    # bench_pickler's generator binds BENCH_OBJ (a dict of all functions,
    # classes and instances); as a session variable it is called `registry`.
    return code_source(scale) + "\nregistry = BENCH_OBJ\ndel BENCH_OBJ\n"


_CODE_HEAVY_CHECK = (
    PICKLER_WORKLOADS["code"].check_source
    + """

_code_check = check


def check(ns):
    return {"behaviour": _code_check(ns["registry"])} if "registry" in ns else {}
"""
)

register(
    Session(
        name="code-heavy",
        description="2,000 functions/lambdas/closures + 200 classes with instances",
        source=code_heavy_source,
        check_source=_CODE_HEAVY_CHECK,
    )
)


# ---- (d) notebook-like mix ------------------------------------------------


def notebook_source(scale: float) -> str:
    n_samples = max(200, round(20_000 * scale))
    return f'''\
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

rng = np.random.default_rng(7)
n_samples, n_features = {n_samples}, 20
X = rng.standard_normal((n_samples, n_features))
true_w = rng.standard_normal(n_features)
y = (X @ true_w + 0.5 * rng.standard_normal(n_samples) > 0).astype(np.int64)
model = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression(max_iter=500))])
model.fit(X, y)

results = pd.DataFrame(X[:, :5], columns=["f%d" % i for i in range(5)])
results["label"] = y
results["proba"] = model.predict_proba(X)[:, 1]
results["segment"] = pd.Categorical(np.where(results["proba"] > 0.5, "pos", "neg"))


def accuracy(frame, threshold=0.5):
    """Share of rows whose thresholded probability matches the label."""
    return float(((frame["proba"] > threshold) == frame["label"].astype(bool)).mean())


def top_features(pipe, k=5):
    coef = pipe.named_steps["clf"].coef_[0]
    return [int(i) for i in np.argsort(-np.abs(coef))[:k]]


normalize = lambda s: s.strip().lower()
threshold = 0.5
summary = {{"accuracy": accuracy(results), "top": top_features(model), "n": n_samples}}
BENCH_META = {{"samples": n_samples, "features": n_features}}
'''


_NOTEBOOK_CHECK = """\
def check(ns):
    import numpy as np

    out = {}
    if "model" in ns:
        probe = np.random.default_rng(0).standard_normal((50, 20))
        out["predict_proba"] = repr(np.round(ns["model"].predict_proba(probe), 9).tolist())
    if "accuracy" in ns and "results" in ns:
        out["accuracy()"] = repr(ns["accuracy"](ns["results"]))
    if "top_features" in ns and "model" in ns:
        out["top_features()"] = repr(ns["top_features"](ns["model"]))
    if "normalize" in ns:
        out["normalize()"] = ns["normalize"]("  Hello ")
    return out
"""

register(
    Session(
        name="notebook",
        description="fitted sklearn Pipeline(StandardScaler, LogisticRegression) on 20k x 20 + DataFrame + helpers",
        source=notebook_source,
        imports=("numpy", "pandas", "sklearn.linear_model", "sklearn.pipeline", "sklearn.preprocessing"),
        check_source=_NOTEBOOK_CHECK,
    )
)


# ---- (e) tiny ---------------------------------------------------------------


def tiny_source(scale: float) -> str:
    return """\
a = 1
b = 2.5
name = "tiny"
items = [1, 2, 3, "four"]


def f(x):
    return x + a
"""


register(
    Session(
        name="tiny",
        description="a few ints, a string, a list and a function: the fixed cost",
        source=tiny_source,
        check_source='def check(ns):\n    return {"f(1)": ns["f"](1)} if "f" in ns else {}\n',
    )
)

# A notebook's own helper module (a .py beside it, no installed distribution):
# recording the environment must not cost more the more packages are installed.
_HELPER_SETUP = """\
import os, sys, tempfile
_dir = os.path.join(tempfile.gettempdir(), "mason-bench-helper-%d" % os.getuid())
os.makedirs(_dir, exist_ok=True)
with open(os.path.join(_dir, "nb_helpers.py"), "w") as _f:
    _f.write("class Point:\\n    def __init__(self, x, y):\\n        self.x, self.y = x, y\\n"
             "    def __eq__(self, other):\\n        return (self.x, self.y) == (other.x, other.y)\\n"
             "def scale(p, k):\\n    return Point(p.x * k, p.y * k)\\n")
if _dir not in sys.path:
    sys.path.insert(0, _dir)
import nb_helpers
"""


def tiny_helper_source(scale: float) -> str:
    return tiny_source(scale) + "\nfrom nb_helpers import Point, scale\norigin = Point(0, 1)\n"


register(
    Session(
        name="tiny-helper",
        description="the tiny session plus an instance and functions of the notebook's own helper module",
        source=tiny_helper_source,
        setup_source=_HELPER_SETUP,
        check_source=(
            'def check(ns):\n    return {"scale": repr(vars(ns["scale"](ns["origin"], 3)))} if "origin" in ns else {}\n'
        ),
    )
)


# --------------------------------------------------------------------------
# Child process side
# --------------------------------------------------------------------------

_WARMUP_OBJ = {"a": [1, 2.5, "x", (3, None)], "b": {4, 5}, "c": b"y"}


def _user_names(main) -> list:
    """The user's variables of a module: no dunder names, no modules."""
    import types

    return [
        k
        for k, v in vars(main).items()
        if not (k.startswith("__") and k.endswith("__")) and not isinstance(v, types.ModuleType)
    ]


def _fsync(fh) -> None:
    fh.flush()
    os.fsync(fh.fileno())


def _session_ops(impl: str) -> dict:
    """``save(path, main, data)``, ``load(path, main)``, ``warm()`` of one implementation."""
    import pickle

    name, _, variant = impl.partition("+")
    if name == "mason":
        import mason

        save_kwds: dict = {"compression": variant} if variant in CODECS else {}
        if variant in ("xxh3", "crc32"):
            save_kwds = {"checksum": "xxh3_64" if variant == "xxh3" else "crc32"}
        load_kwds = {"verify_blobs": False} if variant == "lazy" else {}

        def save(path, main, data):
            mason.dump_module(path, module=main, **save_kwds)  # atomic write with fsync

        def load(path, main):
            mason.load_module(path, **load_kwds)

        return {"save": save, "load": load, "warm": lambda: mason.loads(mason.dumps(_WARMUP_OBJ))}
    if name == "dill":
        import dill

        def save(path, main, data):
            with open(path, "wb") as fh:
                dill.dump_module(fh, module=main)
                _fsync(fh)

        def load(path, main):
            dill.load_module(path)

        return {"save": save, "load": load, "warm": lambda: dill.loads(dill.dumps(_WARMUP_OBJ))}

    def load_update(path, main):
        with open(path, "rb") as fh:
            ns = pickle.load(fh)
        main.__dict__.update(ns)

    if name == "cloudpickle":
        import cloudpickle

        def save(path, main, data):
            with open(path, "wb") as fh:
                cloudpickle.dump({k: main.__dict__[k] for k in _user_names(main)}, fh)
                _fsync(fh)

        return {"save": save, "load": load_update, "warm": lambda: pickle.loads(cloudpickle.dumps(_WARMUP_OBJ))}
    if name == "pickle":

        def save(path, main, data):
            with open(path, "wb") as fh:
                pickle.dump(data, fh, protocol=5)
                _fsync(fh)

        return {"save": save, "load": load_update, "warm": lambda: pickle.loads(pickle.dumps(_WARMUP_OBJ, protocol=5))}
    raise NotSupported(f"unknown implementation {impl!r}")


class _RefersToMain(Exception):
    pass


def _plain_pickle_part(main) -> tuple[dict, dict]:
    """(variables plain pickle can save and load elsewhere, {left-out name: reason}).

    Plain pickle stores functions and classes by reference, so anything that
    refers to one defined in ``__main__`` would dump but not load in another
    process; those variables are left out, as are ones pickle cannot dump at
    all.  Arrays are probed out-of-band (nothing copied).
    """
    import pickle

    class Probe(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, type) or (callable(obj) and hasattr(obj, "__code__")):
                if getattr(obj, "__module__", None) == "__main__":
                    raise _RefersToMain(f"refers to __main__.{getattr(obj, '__qualname__', '?')}")
            return None

    class Sink:
        def write(self, b):
            return len(b)

    data, left_out = {}, {}
    for name in _user_names(main):
        value = main.__dict__[name]
        try:
            Probe(Sink(), protocol=5, buffer_callback=lambda buf: False).dump(value)
        except _RefersToMain as exc:
            left_out[name] = str(exc)
        except Exception as exc:  # noqa: BLE001 - whatever pickle refuses is left out
            left_out[name] = f"{type(exc).__name__}: {exc}"[:200]
        else:
            data[name] = value
    return data, left_out


# ---- touching what was loaded ---------------------------------------------


def _array_sum(a) -> int:
    """Read every byte of a numpy array; an exact integer sum of its words."""
    import numpy as np

    if a.dtype.hasobject or a.size == 0:
        return 0  # Python objects are already in memory; nothing is mapped lazily
    if a.flags.c_contiguous and a.nbytes % 8 == 0:
        words = a.reshape(-1).view(np.uint64)
    elif a.dtype.itemsize in (1, 2, 4, 8):
        words = a.view(f"u{a.dtype.itemsize}")
    else:
        words = np.ascontiguousarray(a).reshape(-1).view(np.uint8)
    return int(words.sum(dtype=np.uint64))


def _series_arrays(s) -> list:
    """The numpy arrays behind a pandas Series: numeric/datetime values, categorical codes."""
    import numpy as np
    import pandas as pd

    if isinstance(s.dtype, pd.CategoricalDtype):
        return [s.array.codes]
    if isinstance(s.dtype, np.dtype) and s.dtype.kind in "biufcmM":
        return [s.to_numpy(copy=False)]
    inner = getattr(s.array, "_ndarray", None)  # e.g. tz-aware datetimes
    if inner is not None and not inner.dtype.hasobject:
        return [inner]
    return []  # object / string columns: Python objects, already in memory


def _touch(x, depth=0) -> tuple[int, int]:
    """(bytes touched, sum) over the arrays in ``x``."""
    np = sys.modules.get("numpy")
    pd = sys.modules.get("pandas")
    if np is not None and isinstance(x, np.ndarray):
        return (0, 0) if x.dtype.hasobject else (x.nbytes, _array_sum(x))
    if pd is not None and isinstance(x, (pd.DataFrame, pd.Series)):
        columns = [x.iloc[:, i] for i in range(x.shape[1])] if isinstance(x, pd.DataFrame) else [x]
        nbytes = total = 0
        for col in columns:
            for a in _series_arrays(col):
                nbytes += a.nbytes
                total += _array_sum(a)
        return nbytes, total
    if depth < 3 and isinstance(x, (dict, list, tuple)) and len(x) <= 1_000:
        nbytes = total = 0
        for v in x.values() if isinstance(x, dict) else x:
            b, t = _touch(v, depth + 1)
            nbytes += b
            total += t
        return nbytes, total
    return 0, 0


# ---- fingerprints ------------------------------------------------------------


def _digest(text: str) -> str:
    import hashlib

    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _code_fp(co) -> str:
    import types

    consts = ",".join(_code_fp(c) if isinstance(c, types.CodeType) else _fp(c, {}, 0) for c in co.co_consts)
    return (
        f"code:{co.co_qualname if hasattr(co, 'co_qualname') else co.co_name}:"
        f"{_digest(co.co_code.hex())}:{co.co_names}:{co.co_varnames}:[{consts}]"
    )


def _fp(x, memo: dict, depth: int) -> str:
    """A structural fingerprint of ``x``, equal for an object and its faithful copy."""
    import types

    if x is None or isinstance(x, (bool, int, float, complex)):
        return f"{type(x).__name__}:{x!r}"
    if isinstance(x, (str, bytes)):
        return f"{type(x).__name__}:{x!r}" if len(x) <= 64 else f"{type(x).__name__}#{len(x)}:{_digest(repr(x))}"
    key = id(x)
    if key in memo:
        return memo[key]
    if depth > 8:
        return f"deep:{type(x).__qualname__}"
    memo[key] = f"cycle:{type(x).__qualname__}"
    np = sys.modules.get("numpy")
    pd = sys.modules.get("pandas")
    if np is not None and isinstance(x, np.ndarray):
        if x.dtype.hasobject:
            out = f"nd:{x.dtype.str}:{x.shape}:" + _fp(x.tolist(), memo, depth + 1)
        else:
            out = f"nd:{x.dtype.str}:{x.shape}:{_array_sum(x)}"
    elif np is not None and isinstance(x, np.generic):
        out = f"np:{x.dtype.str}:{x!r}"
    elif pd is not None and isinstance(x, pd.DataFrame):
        cols = ",".join(f"{c!r}={_series_fp(x.iloc[:, i])}" for i, c in enumerate(x.columns))
        out = f"df:{x.shape}:{_fp(list(x.index[:3]), memo, depth + 1)}:{cols}"
    elif pd is not None and isinstance(x, pd.Series):
        out = f"series:{x.name!r}:{_series_fp(x)}"
    elif isinstance(x, dict):
        out = "{" + ",".join(f"{_fp(k, memo, depth + 1)}:{_fp(v, memo, depth + 1)}" for k, v in x.items()) + "}"
    elif isinstance(x, (list, tuple)):
        out = type(x).__name__ + "[" + ",".join(_fp(v, memo, depth + 1) for v in x) + "]"
    elif isinstance(x, (set, frozenset)):
        out = type(x).__name__ + "{" + ",".join(sorted(_fp(v, memo, depth + 1) for v in x)) + "}"
    elif isinstance(x, types.FunctionType):
        cells = [c.cell_contents if _cell_full(c) else "<empty>" for c in (x.__closure__ or ())]
        out = (
            f"fn:{x.__module__}.{x.__qualname__}:{_code_fp(x.__code__)}:"
            f"{_fp(x.__defaults__, memo, depth + 1)}:{_fp(x.__kwdefaults__, memo, depth + 1)}:"
            f"{_fp(cells, memo, depth + 1)}:{_fp(x.__doc__, memo, depth + 1)}"
        )
    elif isinstance(x, type):
        attrs = sorted(k for k in vars(x) if not (k.startswith("__") and k.endswith("__")))
        out = f"class:{x.__module__}.{x.__qualname__}:{[b.__qualname__ for b in x.__mro__]}:{attrs}"
    elif isinstance(x, (types.BuiltinFunctionType, types.ModuleType, types.MethodType)):
        out = f"ref:{type(x).__name__}:{getattr(x, '__qualname__', getattr(x, '__name__', '?'))}"
    elif hasattr(x, "bit_generator"):  # numpy.random.Generator
        out = f"rng:{_fp(x.bit_generator.state, memo, depth + 1)}"
    else:
        try:
            state = x.__getstate__() if hasattr(x, "__getstate__") else vars(x)
        except (TypeError, AttributeError):
            state = None
        out = f"obj:{type(x).__module__}.{type(x).__qualname__}:{_fp(state, memo, depth + 1)}"
    memo[key] = out
    return out


def _cell_full(cell) -> bool:
    try:
        cell.cell_contents
    except ValueError:
        return False
    return True


def _series_fp(s) -> str:
    import pandas as pd

    parts = [str(s.dtype), str(len(s))]
    if isinstance(s.dtype, pd.CategoricalDtype):
        parts.append(repr(list(s.cat.categories)))
    arrays = _series_arrays(s)
    if arrays:
        parts += [str(_array_sum(a)) for a in arrays]
    else:
        parts.append(_digest("\x00".join(map(repr, s.tolist()))))
    return "|".join(parts)


def _fingerprints(ns: dict, check_source: str) -> dict:
    """{variable: fingerprint} plus the session's own behavioural checks (``check: ...`` keys)."""
    # A fresh memo per variable: what is cut off by depth or cycles must not
    # depend on which variable reached a shared object first.
    out = {name: _digest(_fp(value, {}, 0)) for name, value in ns.items()}
    if check_source:
        check_ns: dict = {"__name__": "bench_session_check"}
        exec(compile(check_source, "<session-check>", "exec"), check_ns)
        for key, value in check_ns["check"](ns).items():
            out[f"check: {key}"] = repr(value) if len(repr(value)) <= 80 else _digest(repr(value))
    return out


# ---- the three kinds of child ------------------------------------------------


def _child_save(main, spec: dict, result: dict) -> None:
    import gc
    import warnings

    ops = _session_ops(spec["impl"])
    ops["warm"]()
    if spec.get("setup_source"):
        exec(compile(spec["setup_source"], "<session-setup>", "exec"), {})
    t0 = time.perf_counter()
    if spec.get("cell_source"):
        # As IPython does for a notebook cell: functions saved by value carry their source.
        import linecache

        linecache.cache["<session>"] = (len(spec["source"]), None, spec["source"].splitlines(True), "<session>")
    exec(compile(spec["source"], "<session>", "exec"), main.__dict__)
    result["build_s"] = time.perf_counter() - t0
    result["meta"] = main.__dict__.pop("BENCH_META", None)
    names = _user_names(main)
    data = None
    if spec["impl"] == "pickle":
        data, result["left_out"] = _plain_pickle_part(main)
        if not data:
            raise NotSupported(
                f"plain pickle can save none of the {len(names)} variables "
                f"(all refer to functions or classes of __main__)"
            )
    gc.collect()
    result["rss_before_kb"] = current_rss_kb()
    result["peak_reset"] = reset_peak_rss()
    before = peak_rss_kb() if result["peak_reset"] else result["rss_before_kb"]
    path = spec["path"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        ops["save"](path, main, data)
        t1 = time.perf_counter()
    peak = peak_rss_kb()
    result["save_s"] = t1 - t0
    result["save_peak_kb"] = peak
    if before is not None and peak is not None:
        result["save_extra_kb"] = max(0, peak - before)
    result["warnings"] = [f"{w.category.__name__}: {w.message}"[:300] for w in caught][:20]
    result["size"] = os.path.getsize(path)
    saved = list(data) if data is not None else names
    result["check"] = _fingerprints({k: main.__dict__[k] for k in saved}, spec["check_source"])


def _child_load(main, spec: dict, result: dict) -> None:
    import gc
    import importlib

    for module in spec["imports"]:
        importlib.import_module(module)
    if spec.get("setup_source"):
        exec(compile(spec["setup_source"], "<session-setup>", "exec"), {})
    ops = _session_ops(spec["impl"])
    ops["warm"]()
    gc.collect()
    result["rss_before_kb"] = current_rss_kb()
    t0 = time.perf_counter()
    ops["load"](spec["path"], main)
    t1 = time.perf_counter()
    touched = sum(_touch(main.__dict__[k])[0] for k in _user_names(main))
    t2 = time.perf_counter()
    result["load_peak_kb"] = peak_rss_kb()
    result["load_s"] = t1 - t0
    result["touch_s"] = t2 - t1
    result["load_touch_s"] = t2 - t0
    result["touched_bytes"] = touched
    result["check"] = _fingerprints({k: main.__dict__[k] for k in _user_names(main)}, spec["check_source"])


def _child_limits(spec: dict, result: dict) -> None:
    """write+fsync, page-cache read, memcpy and first touch of ``n_bytes`` bytes."""
    import numpy as np

    n = max(1, int(spec["n_bytes"]))
    path = spec["path"]
    src = np.empty(n, np.uint8)
    block = np.random.default_rng(1).integers(0, 256, min(n, 1 << 20), dtype=np.uint8)
    for off in range(0, n, len(block)):
        src[off : off + len(block)] = block[: n - off]
    # Fresh memory's first touch (page faults, and on a VM whose host backs
    # guest memory lazily, the host's faults too); it also pre-touches the
    # read buffer, so the timed read below does not fault it in.
    t0 = time.perf_counter()
    dst = np.empty(n, np.uint8)
    dst.fill(1)
    result["fault_s"] = time.perf_counter() - t0
    try:
        result["write_s"], result["read_s"] = time_write_and_read(path, src, dst)
        dst.fill(0)
        t0 = time.perf_counter()
        np.copyto(dst, src)
        result["memcpy_s"] = time.perf_counter() - t0
    finally:
        if os.path.exists(path):
            os.remove(path)
    result["n_bytes"] = n


def _child_main() -> None:
    run_session_child(_child_save, _child_load, _child_limits)


# --------------------------------------------------------------------------
# Parent process side
# --------------------------------------------------------------------------

_SAMPLE_KEYS = ("save_s", "load_s", "touch_s", "load_touch_s", "save_extra_kb", "load_peak_kb", "size", "build_s")
_LIMIT_KEYS = ("write_s", "read_s", "memcpy_s", "fault_s", "n_bytes")


def _names(names: list) -> str:
    return ", ".join(names[:8]) + (f" ... ({len(names)} in all)" if len(names) > 8 else "")


def _compare_checks(saved: dict, loaded: dict) -> tuple[str | None, str | None]:
    """(mismatch, structural note) of a loaded session against what was saved.

    A missing variable or a failed behavioural check (``check: ...`` keys) is a
    mismatch: the timings are not comparable and the row says so.  A variable
    that behaves the same but whose structure differs (e.g. a class that comes
    back without its ``__slots__`` descriptors) is only noted.
    """
    missing = sorted(k for k in saved if k not in loaded)
    differ = sorted(k for k in saved if k in loaded and saved[k] != loaded[k])
    behaviour = [k for k in differ if k.startswith("check: ")]
    structure = [k for k in differ if not k.startswith("check: ")]
    parts = []
    if missing:
        parts.append("not restored: " + _names(missing))
    if behaviour:
        parts.append("behaves differently: " + _names([k[len("check: ") :] for k in behaviour]))
    mismatch = "MISMATCH: " + "; ".join(parts) if parts else None
    note = "structure differs: " + _names(structure) if structure else None
    return mismatch, note


def _remove(path: str) -> None:
    directory, base = os.path.split(path)
    for name in os.listdir(directory):
        # The file itself, and any temporary sibling a failed atomic write left.
        if name == base or name.startswith("." + base):
            os.remove(os.path.join(directory, name))


def run_benchmark(sessions, impls, repeat, scale, timeout, workdir, baseline, log=print, cell_source=False) -> dict:
    env = child_env(any(i.startswith("mason") for i in impls))
    results: dict = {}
    for session in sessions:
        source = session.source(scale)
        per_impl = {
            name: {
                **{k: [] for k in _SAMPLE_KEYS},
                "error": None,
                "traceback": None,
                "check": None,
                "meta": None,
                "left_out": None,
                "warnings": None,
                "peak_reset": None,
            }
            for name in impls
        }
        limits = {k: [] for k in _LIMIT_KEYS}
        limits["error"] = None
        results[session.name] = {"description": session.description, "impls": per_impl, "limits": limits}
        for rep in range(repeat):
            order = rotation(impls, rep)
            t_rep = time.perf_counter()
            base_size = None
            for name in order:
                rec = per_impl[name]
                if rec["error"]:
                    continue
                path = os.path.join(workdir, f"session-{name.replace('+', '-')}.bin")
                common = {
                    "impl": name,
                    "path": path,
                    "check_source": session.check_source,
                    "imports": list(session.imports),
                    "setup_source": session.setup_source,
                    "cell_source": cell_source,
                }
                try:
                    sres = run_child("bench_session", dict(common, mode="save", source=source), workdir, env, timeout)
                    if "error" in sres:
                        rec["error"] = "save: " + sres["error"]
                        rec["traceback"] = sres.get("traceback")
                        rec["left_out"] = sres.get("left_out")
                        continue
                    lres = run_child("bench_session", dict(common, mode="load"), workdir, env, timeout)
                finally:
                    _remove(path)
                if "error" in lres:
                    rec["error"] = "load: " + lres["error"]
                    rec["traceback"] = lres.get("traceback")
                    continue
                mismatch, note = _compare_checks(sres["check"], lres["check"])
                if mismatch:
                    rec["error"] = mismatch
                    rec["warnings"] = sres.get("warnings")
                    continue
                rec["check"] = "ok" if note is None else f"ok but {note}"
                for key in ("meta", "left_out", "warnings", "peak_reset"):
                    rec[key] = sres.get(key)
                for key in _SAMPLE_KEYS:
                    rec[key].append(lres.get(key) if key in lres else sres.get(key))
                if name == baseline:
                    base_size = sres["size"]
            if base_size is not None and not limits["error"]:
                lim = run_child(
                    "bench_session",
                    {"mode": "limits", "n_bytes": base_size, "path": os.path.join(workdir, "limits.bin")},
                    workdir,
                    env,
                    timeout,
                )
                _remove(os.path.join(workdir, "limits.bin"))
                if "error" in lim:
                    limits["error"] = lim["error"]
                    limits["traceback"] = lim.get("traceback")
                else:
                    for key in _LIMIT_KEYS:
                        limits[key].append(lim[key])
            log(
                f"  [{session.name}] repetition {rep + 1}/{repeat} ({', '.join(order)}) "
                f"{time.perf_counter() - t_rep:.1f}s",
                file=sys.stderr,
                flush=True,
            )
        for rec in list(per_impl.values()) + [limits]:
            rec["median"] = {
                k: statistics.median(v)
                for k, v in rec.items()
                if k in _SAMPLE_KEYS + _LIMIT_KEYS and v and None not in v
            }
    return results


def compute_ratios(results: dict, baseline: str) -> dict:
    """Per session: baseline vs each other implementation, and baseline vs the machine limits."""
    ratios: dict = {}
    for sname, sres in results.items():
        base = sres["impls"].get(baseline, {}).get("median", {})
        out: dict = {"vs": {}, "limits": None}
        for name, rec in sres["impls"].items():
            if name == baseline or name.startswith(baseline + "+"):
                continue  # mason's own variants get their own section
            med = rec.get("median", {})
            if not base or not med or rec["error"]:
                out["vs"][name] = None
                continue
            r = {
                "save": med["save_s"] / base["save_s"],
                "load_touch": med["load_touch_s"] / base["load_touch_s"],
                "size": base["size"] / med["size"],
            }
            if med.get("load_peak_kb"):
                r["load_peak"] = base["load_peak_kb"] / med["load_peak_kb"]
            ratios_ok = med.get("save_extra_kb") and base.get("save_extra_kb") is not None
            r["save_extra"] = base["save_extra_kb"] / med["save_extra_kb"] if ratios_ok else None
            out["vs"][name] = r
        lim = sres["limits"].get("median", {})
        if base and lim:
            out["limits"] = {
                "write": lim["write_s"] / base["save_s"],
                "read": lim["read_s"] / base["load_touch_s"],
                "memcpy": lim["memcpy_s"] / base["load_touch_s"],
            }
        ratios[sname] = out
    return ratios


def _mb(nbytes) -> str:
    if nbytes is None:
        return "n/a"
    mb = nbytes / _MB
    return f"{mb:,.1f}" if mb >= 10 or mb == 0 else f"{mb:.3g}"


def _kb_mb(kib) -> str:
    return _mb(kib * 1024) if kib is not None else "n/a"


def _x(r) -> str:
    return f"{r:.2f}x" if r is not None else "n/a"


def _rate(nbytes, seconds) -> str:
    if not seconds:
        return "n/a"
    rate = nbytes / seconds
    return f"{rate / 1e9:.2f} GB/s" if rate >= 1e9 else f"{rate / 1e6:.0f} MB/s"


def format_report(results: dict, ratios: dict, baseline: str) -> str:
    lines = []
    for sname, sres in results.items():
        impls = sres["impls"]
        meta = next((r["meta"] for r in impls.values() if r.get("meta")), None)
        lines.append("")
        lines.append(f"== {sname}: {sres['description']}")
        if meta:
            lines.append(
                "   (" + ", ".join(f"{k}={v:,}" if isinstance(v, int) else f"{k}={v}" for k, v in meta.items()) + ")"
            )
        lines.append(
            f"   {'impl':<12} {'save s':>8} {'spread':>6} {'load+touch s':>12} {'spread':>6} "
            f"{'(touch s)':>9} {'save extra MB':>13} {'load peak MB':>12} {'file MB':>9}  check"
        )
        notes = []
        for name, rec in impls.items():
            med = rec.get("median", {})
            if rec["error"] or "save_s" not in med:
                lines.append(
                    f"   {name:<12} {'n/a':>8} {'':>6} {'n/a':>12} {'':>6} {'':>9} {'n/a':>13} "
                    f"{'n/a':>12} {'n/a':>9}  {rec['error'] or 'no data'}"
                )
                if rec.get("traceback") and not rec["error"].startswith(("save: NotSupported",)):
                    notes.append(
                        f"{name} traceback:\n"
                        + "\n".join("      " + ln for ln in rec["traceback"].rstrip().splitlines())
                    )
                continue
            check = rec["check"]
            if rec.get("left_out"):
                left = rec["left_out"]
                check += f", left out {len(left)}: " + ", ".join(sorted(left))
            lines.append(
                f"   {name:<12} {med['save_s']:>8.4f} {spread(rec['save_s']):>6} "
                f"{med['load_touch_s']:>12.4f} {spread(rec['load_touch_s']):>6} "
                f"{med['touch_s']:>9.4f} {_kb_mb(med.get('save_extra_kb')):>13} {_kb_mb(med.get('load_peak_kb')):>12} "
                f"{_mb(med['size']):>9}  {check}"
            )
            if rec.get("warnings"):
                notes.append(f"{name} warned while saving: " + " | ".join(rec["warnings"][:3]))
            if rec.get("peak_reset") is False:
                notes.append(f"{name}: peak RSS could not be reset; 'save extra' may include the build")
        lim = sres["limits"]
        lmed = lim.get("median", {})
        if lim.get("error"):
            lines.append(f"   machine limits: n/a ({lim['error']})")
        elif lmed:
            n = lmed["n_bytes"]
            lines.append(
                f"   machine limits for {_mb(n)} MB ({baseline}'s file): "
                f"write+fsync {lmed['write_s']:.4f} s ({_rate(n, lmed['write_s'])}), "
                f"page-cache read {lmed['read_s']:.4f} s ({_rate(n, lmed['read_s'])}), "
                f"memcpy {lmed['memcpy_s']:.4f} s ({_rate(n, lmed['memcpy_s'])}), "
                f"first touch of fresh memory {lmed['fault_s']:.4f} s "
                f"({_rate(n, lmed['fault_s'])})"
            )
        for note in notes:
            lines.append("   note: " + note)
        sr = ratios.get(sname, {})
        if sr.get("vs"):
            lines.append(
                f"   ratios (time: other/{baseline}, >1 means {baseline} is faster; "
                f"file and memory: {baseline}/other, <1 means {baseline} needs less):"
            )
            for name, r in sr["vs"].items():
                if r is None:
                    lines.append(f"     {baseline} vs {name}: n/a")
                    continue
                lines.append(
                    f"     {baseline} vs {name}: save {_x(r['save'])}, "
                    f"load+touch {_x(r['load_touch'])}, file {_x(r['size'])}, "
                    f"save extra {_x(r.get('save_extra'))}, load peak {_x(r.get('load_peak'))}"
                )
        if sr.get("limits"):
            li = sr["limits"]
            lines.append(
                f"   {sname}: {baseline} save = {li['write']:.2f} of raw write+fsync; "
                f"load+touch = {li['read']:.2f} of page-cache read "
                f"({li['memcpy']:.2f} of memcpy)"
            )
        comp = [(n, r) for n, r in impls.items() if "+" in n]
        base = impls.get(baseline, {}).get("median", {})
        if comp and base and "+" not in baseline:
            lines.append(
                f"   mason variants vs plain {baseline} (time: variant/{baseline}, "
                f">1 = the variant is slower; size: variant/{baseline}):"
            )
            for name, rec in comp:
                med = rec.get("median", {})
                if "save_s" not in med:
                    lines.append(f"     {name}: n/a ({rec['error']})")
                    continue
                rate = (
                    f"; saves {_rate(base['size'], med['save_s'])} of uncompressed data"
                    if name.partition("+")[2] in CODECS
                    else ""
                )
                lines.append(
                    f"     {name:<12} save {med['save_s'] / base['save_s']:.2f}x, "
                    f"load+touch {med['load_touch_s'] / base['load_touch_s']:.2f}x "
                    f"(touch {med['touch_s']:.4f} s), "
                    f"size {med['size'] / base['size']:.3f} ({_mb(med['size'])} MB{rate})"
                )
    return "\n".join(lines)


def _available_codecs(requested) -> tuple[list, list]:
    import importlib.util

    ok, notes = [], []
    for codec in requested:
        package = CODECS[codec]
        if package is None or importlib.util.find_spec(package) is not None:
            ok.append(codec)
        else:
            notes.append(f"compression {codec!r} skipped: needs the {package} package (pip install 'mason[fast]')")
    return ok, notes


def _default_tmp_base() -> str:
    return os.environ.get("TMPDIR") or os.path.join(REPO_ROOT, "bench-results")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="session sizes / 10")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions (default 3)")
    parser.add_argument("--impls", default=",".join(LIB_IMPLS), help="comma-separated, from: " + ",".join(LIB_IMPLS))
    parser.add_argument(
        "--sessions", default=None, help="comma-separated session names (default: all): " + ",".join(SESSIONS)
    )
    parser.add_argument(
        "--compression",
        default="none",
        help="comma-separated codecs for extra mason+CODEC rows: none, " + ", ".join(CODECS) + ", all (default none)",
    )
    parser.add_argument(
        "--lazy", action="store_true", help="add a mason+lazy row: load_module(path, verify_blobs=False)"
    )
    parser.add_argument(
        "--xxh3",
        action="store_true",
        help="add a mason+xxh3 row: dump_module(path, checksum='xxh3_64') (needs mason[fast] to save and to load)",
    )
    parser.add_argument(
        "--crc32",
        action="store_true",
        help="add a mason+crc32 row: dump_module(path, checksum='crc32'), the default without xxhash",
    )
    parser.add_argument(
        "--baseline", default=None, help="implementation for the ratios and machine limits (default mason)"
    )
    parser.add_argument(
        "--tmpdir", default=None, help="directory for the session files (default $TMPDIR or bench-results/)"
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds allowed per child process (default 600)")
    parser.add_argument("--json", metavar="PATH", help="write raw samples and summary as JSON")
    parser.add_argument(
        "--cell-source",
        action="store_true",
        help="put each session's source in linecache, as IPython does for notebook cells "
        "(mason then saves the source of its functions and classes)",
    )
    args = parser.parse_args(argv)

    impls = parse_impls(parser, args.impls, LIB_IMPLS)
    codecs = [c.strip().lower() for c in args.compression.split(",") if c.strip()]
    if "all" in codecs:
        codecs = list(CODECS)
    for c in codecs:
        if c not in CODECS and c != "none":
            parser.error(f"unknown codec {c!r}; choose from none, {', '.join(CODECS)}, all")
    codecs, codec_notes = _available_codecs([c for c in codecs if c != "none"])
    flags = {"lazy": args.lazy, "xxh3": args.xxh3, "crc32": args.crc32}
    variants = [name for name, wanted in flags.items() if wanted] + codecs
    if variants:
        if "mason" not in impls:
            parser.error("--compression, --lazy, --xxh3 and --crc32 need mason in --impls")
        at = impls.index("mason") + 1
        impls[at:at] = [f"mason+{v}" for v in variants]
    names = args.sessions.split(",") if args.sessions else list(SESSIONS)
    for n in names:
        if n not in SESSIONS:
            parser.error(f"unknown session {n!r}; choose from {', '.join(SESSIONS)}")
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")
    baseline = args.baseline or ("mason" if "mason" in impls else impls[0])
    if baseline not in impls:
        parser.error(f"baseline {baseline!r} is not in --impls")
    scale = 0.1 if args.quick else 1.0

    tmp_base = os.path.abspath(args.tmpdir or _default_tmp_base())
    os.makedirs(tmp_base, exist_ok=True)
    if not args.quick and "data-heavy" in names:
        free = shutil.disk_usage(tmp_base).free
        if free < 5e9:
            print(
                f"warning: {free / 1e9:.1f} GB free in {tmp_base}; the full data-heavy "
                f"session needs a few GB (use --tmpdir or --quick)",
                file=sys.stderr,
            )

    vers = versions(["mason", "dill", "cloudpickle"])
    print(
        f"bench_session: python {vers['python']} on {platform.platform()}, "
        f"{os.cpu_count()} CPUs; " + ", ".join(f"{k} {v}" for k, v in vers.items() if k != "python")
    )
    print(
        f"sessions={','.join(names)} impls={','.join(impls)} repeat={args.repeat} "
        f"scale={scale:g} baseline={baseline} tmpdir={tmp_base} "
        f"(medians; every save and load in a fresh process)",
        flush=True,
    )
    for note in codec_notes:
        print("note: " + note)
    t0 = time.perf_counter()
    workdir = tempfile.mkdtemp(prefix="bench_session_", dir=tmp_base)
    try:
        results = run_benchmark(
            [SESSIONS[n] for n in names],
            impls,
            args.repeat,
            scale,
            args.timeout,
            workdir,
            baseline,
            cell_source=args.cell_source,
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    ratios = compute_ratios(results, baseline)
    print(format_report(results, ratios, baseline))
    total = time.perf_counter() - t0
    print(f"\ntotal wall time {total:.1f}s")

    if args.json:
        write_json(
            args.json,
            {
                "argv": sys.argv[1:],
                "quick": args.quick,
                "repeat": args.repeat,
                "scale": scale,
                "impls": impls,
                "baseline": baseline,
                "versions": vers,
                "codec_notes": codec_notes,
                "platform": platform.platform(),
                "cpu_count": os.cpu_count(),
                "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "total_wall_s": total,
                "results": results,
                "ratios": ratios,
            },
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
