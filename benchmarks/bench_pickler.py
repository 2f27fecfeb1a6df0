"""Pickler benchmark: mason vs dill vs cloudpickle vs pickle.

How to run (from the repository root, with the project's virtualenv)::

    .venv/bin/python benchmarks/bench_pickler.py --quick
    .venv/bin/python benchmarks/bench_pickler.py --repeat 7 --json bench-results/pickler.json
    .venv/bin/python benchmarks/bench_pickler.py --impls dill,cloudpickle,pickle
    .venv/bin/python benchmarks/bench_pickler.py --workloads code --impls mason,dill

Options: ``--quick`` divides workload sizes by 10 and uses 3 repetitions
(default: full sizes, 5 repetitions); ``--repeat N`` overrides the number of
repetitions; ``--impls`` picks the implementations (default
``mason,dill,cloudpickle,pickle``); ``--workloads`` picks workloads (default:
all registered); ``--baseline`` is the implementation the ratios compare
against (default: mason, or the first of ``--impls`` without mason);
``--json PATH`` writes every raw sample plus the summary to PATH.

Implementations compared (each with its library's default protocol):

* ``mason``       -- ``mason.dumps(obj)`` / ``mason.loads(data)``
* ``dill``        -- ``dill.dumps(obj)`` / ``dill.loads(data)``
* ``cloudpickle`` -- ``cloudpickle.dumps(obj)`` / ``pickle.loads(data)``
* ``pickle``      -- ``pickle.dumps(obj, protocol=5)`` / ``pickle.loads(data)``

What is measured
----------------
Every measurement happens in fresh child processes (same interpreter as the
parent, ``PYTHONHASHSEED=0``).  For each (workload, implementation,
repetition):

1. A *dump child* is started with ``python -c``, so its ``__main__`` is a real
   interactive-style main module (no ``__file__``).  The harness removes its
   own names from ``__main__`` and ``exec``s the workload's generated Python
   source into ``__main__.__dict__``.  Functions and classes defined there
   therefore have ``__module__ == '__main__'``, exactly as in a script or an
   interactive session, and dill / cloudpickle / mason must pickle them *by
   value*.  After one tiny warm-up call (so lazy first-call initialisation of
   the library is not counted), ``time.perf_counter()`` is taken around the
   single ``dumps(obj)`` call only.  The bytes are written to a temp file
   (not timed) and a behavioural fingerprint of the object is computed.
2. A *load child* (another fresh process, with an empty ``__main__``, so no
   class or function can be found "live" by reference) reads the bytes (not
   timed), does a tiny warm-up, and times the single ``loads(data)`` call.
   It then computes the same fingerprint on the loaded object.  The two
   fingerprints must match, otherwise the row is flagged ``MISMATCH``.

Implementations are interleaved: within each repetition every implementation
runs once (round-robin, with the starting implementation rotated per
repetition), so drift of the machine affects all of them alike.  Reported
numbers are medians over the repetitions; ``spread`` is (max-min)/median.
``size`` is the length of the pickled bytes.  If an implementation raises
(e.g. plain ``pickle`` cannot pickle lambdas / ``__main__`` classes by value)
the row shows ``n/a`` and the reason, and further repetitions are skipped.

Ratios are ``median(other) / median(baseline)`` for dumps and loads times, so
``> 1`` means the baseline (mason) is faster; the size ratio is
``size(baseline) / size(other)`` (``< 1`` means mason's output is smaller).

Workloads (registry ``WORKLOADS``; a workload is a name plus a function that
returns Python source building ``__main__`` state, plus a fingerprint source):

* ``small-objects`` -- ~200k small builtin objects (ints, strs, floats,
  lists, tuples, sets, nested lists) inside dicts/lists.
* ``code`` -- 2,000 functions (800 ``def`` functions, 600 lambdas, 600
  closures, each with its own code object) and 200 classes (properties,
  class/static methods, inheritance, ``super()``, ``__slots__``) with 3
  instances each, all defined in ``__main__``.

``kind='object'`` workloads must bind ``BENCH_OBJ`` (the object that is
pickled) and may bind ``BENCH_META`` (a JSON-able dict shown in the report).
``kind='session'`` workloads (for ``dump_module`` / ``load_module``; plumbing is
in place, register one with ``register(Workload(..., kind='session'))``) build
module state; the timed call is ``dump_module(path, module=__main__)`` and, in
the load child, ``load_module(path)``; ``size`` is the file size.  Only mason
and dill provide session operations; the others report ``n/a``.

The benchmark uses only the standard library plus the compared libraries.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from typing import Callable

from _harness import (
    NotSupported,
    child_env,
    clean_main,
    error_fields,
    finish_child,
    parse_impls,
    read_spec,
    rotation,
    run_child,
    spread,
    versions,
    write_json,
)

ALL_IMPLS = ("mason", "dill", "cloudpickle", "pickle")
SESSION_IMPLS = ("mason", "dill")


# --------------------------------------------------------------------------
# Workload registry
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Workload:
    """One benchmark workload.

    ``source(scale)`` returns Python source text that is exec'd into the
    ``__main__`` module of the dump child (scale is 1.0, or 0.1 with
    ``--quick``).  ``check_source`` defines ``check(x)`` returning a short
    JSON-able fingerprint; it runs in a private namespace (not ``__main__``)
    on the original in the dump child and on the loaded result in the load
    child.  For ``kind='object'`` ``x`` is ``BENCH_OBJ`` (resp. the result of
    ``loads``); for ``kind='session'`` ``x`` is the ``__main__`` module.
    """

    name: str
    description: str
    source: Callable[[float], str]
    check_source: str
    kind: str = "object"  # 'object' or 'session'


WORKLOADS: dict[str, Workload] = {}


def register(workload: Workload) -> Workload:
    if workload.kind not in ("object", "session"):
        raise ValueError(f"unknown workload kind {workload.kind!r}")
    WORKLOADS[workload.name] = workload
    return workload


# ---- (a) small-objects ---------------------------------------------------

_SMALL_OBJECTS_TEMPLATE = """\
def _build(n_records):
    groups = {}
    for i in range(n_records):
        rec = {
            "id": 1_000_003 + i * 7919,
            "name": "item-%06d" % i,
            "score": i * 0.37 + 0.125,
            "tags": ["t%d" % (i % 97), "group-%d" % (i % 13)],
            "pos": (i * 3 + 100_000, -(i * 5) - 100_000),
            "flags": {i * 11 + 500_000, i * 13 + 700_000},
            "children": [[i + 2_000_000, i / 7.0], ["c%d" % i]],
        }
        groups.setdefault("g%d" % (i % 50), []).append(rec)
    return groups


def _count(x):
    n = 1
    if isinstance(x, dict):
        for v in x.values():
            n += _count(v)
    elif isinstance(x, (list, tuple, set, frozenset)):
        for v in x:
            n += _count(v)
    return n


BENCH_OBJ = _build(@N_RECORDS@)
BENCH_META = {"records": @N_RECORDS@, "objects": _count(BENCH_OBJ)}
del _build, _count
"""

# Objects per record, counted as in _count: dict + id + name + score
# + tags(1+2) + pos(1+2) + flags(1+2) + children(1 + [1+2] + [1+1]) = 19.
_OBJECTS_PER_RECORD = 19


def small_objects_source(scale: float) -> str:
    n_records = max(1, round(200_000 * scale / _OBJECTS_PER_RECORD))
    return _SMALL_OBJECTS_TEMPLATE.replace("@N_RECORDS@", str(n_records))


_CANONICAL_CHECK = """\
import hashlib

def _canon(x, out):
    if isinstance(x, dict):
        out.append("{")
        for k in sorted(x, key=repr):
            out.append(repr(k))
            _canon(x[k], out)
        out.append("}")
    elif isinstance(x, (list, tuple)):
        out.append("[" if isinstance(x, list) else "(")
        for v in x:
            _canon(v, out)
        out.append("]")
    elif isinstance(x, (set, frozenset)):
        out.append("s" + repr(sorted(map(repr, x))))
    else:
        out.append(type(x).__name__ + ":" + repr(x))

def check(x):
    out = []
    _canon(x, out)
    return hashlib.sha256("\\x00".join(out).encode()).hexdigest()
"""

register(
    Workload(
        name="small-objects",
        description="~200k small builtin objects in nested dicts/lists/tuples/sets",
        source=small_objects_source,
        check_source=_CANONICAL_CHECK,
    )
)


# ---- (b) code: functions, lambdas, closures, classes -----------------------


def _gen_function(i: int, rnd: random.Random) -> str:
    c1, c2, c3 = rnd.randint(2, 99), rnd.randint(2, 99), rnd.randint(2, 999)
    m, n = rnd.randint(3, 17), rnd.randint(3, 12)
    variant = i % 5
    if variant == 0:
        return f'''
def func_{i}(a, b={c1}, *args, k={c2}, **kw):
    """Generated function {i}: loop and branch."""
    total = a * {c1} + b
    for j in range({n}):
        total += (j * {c2}) % {m}
    if total > {c3}:
        total -= {c3}
    return total + len(args) + k + len(kw)
'''
    if variant == 1:
        lit = f"lit{rnd.randint(0, 10**6)}"
        return f'''
def func_{i}(s, n={n}):
    """Generated function {i}: strings and a generator expression."""
    parts = [s[::-1], str(n * {c1}), {lit!r}]
    return "-".join(p.upper() if len(p) % 2 else p for p in parts)
'''
    if variant == 2:
        return f'''
def func_{i}(xs=None):
    """Generated function {i}: comprehensions."""
    xs = xs if xs is not None else list(range({n * 3}))
    d = {{x: x * {c1} for x in xs if x % {m} == 0}}
    return sum(d.values()) - len(d) + sum([y * {c2} for y in range({n})])
'''
    if variant == 3:
        f1 = round(rnd.uniform(0.5, 9.5), 3)
        return f'''
def func_{i}(x: int, y: float = {f1}) -> float:
    """Generated function {i}: annotations and try/except."""
    try:
        return round(x / (y - {f1 + 0.5}), 6)
    except ZeroDivisionError:
        return float("inf")
'''
    return f'''
def func_{i}(*values, scale={c1}):
    """Generated function {i}: nested helper and while loop."""
    def inner(v):
        return (v * scale) % {c3}
    acc, j = 0, 0
    while j < len(values):
        acc += inner(values[j])
        j += 1
    return acc
'''


def _gen_lambda(i: int, rnd: random.Random) -> str:
    c, d, m = rnd.randint(2, 99), rnd.randint(0, 999), rnd.randint(3, 97)
    variant = i % 4
    if variant == 0:
        return f"lam_{i} = lambda x, y={c}: (x * y + {d}) % {m}\n"
    if variant == 1:
        return f"lam_{i} = lambda s: (str(s) * {c % 5 + 1})[:{m}]\n"
    if variant == 2:
        return f"lam_{i} = lambda *a: sum(a) * {c} - {d}\n"
    return f"lam_{i} = lambda x, **kw: [x] * {c % 4 + 1} + sorted(kw)\n"


def _gen_closure(i: int, rnd: random.Random) -> str:
    a, b, c = rnd.randint(1, 50), rnd.randint(1, 50), rnd.randint(1, 999)
    variant = i % 3
    if variant == 0:
        return f"""
def make_closure_{i}(a, b):
    def closure_{i}(x):
        return x * a + b + {c}
    return closure_{i}
closure_{i} = make_closure_{i}({a}, {b})
"""
    if variant == 1:
        return f"""
def make_closure_{i}(table):
    def closure_{i}(key, default={c}):
        return table.get(key, default) + len(table)
    return closure_{i}
closure_{i} = make_closure_{i}({{"k{a}": {a}, "k{b}": {b}, "x": [{c}]}}.copy())
closure_{i}.__defaults__ = ({c},)
"""
    return f"""
def make_closure_{i}(base):
    offset = base * {c}
    def middle(step):
        def closure_{i}(x):
            return (x + offset) * step + base
        return closure_{i}
    return middle({b})
closure_{i} = make_closure_{i}({a})
"""


def _gen_class(i: int, rnd: random.Random) -> str:
    f, g = rnd.randint(2, 50), rnd.randint(1, 500)
    variant = i % 4
    if variant == 1 and i > 0:
        # Subclass of the previous class, using super() (a __class__ cell).
        return f'''
class Klass_{i}(Klass_{i - 1}):
    """Generated subclass {i}."""
    tag = "k{i}"
    factor = {f}

    def __init__(self, x, y={g}):
        super().__init__(x, y)
        self.extra = {{"i": {i}, "x": x}}

    def compute(self, z):
        return super().compute(z) + self.factor * {g}

    def __repr__(self):
        return "Klass_{i}(%r, %r)" % (self.x, self.y)
'''
    if variant == 2:
        return f'''
class Klass_{i}:
    """Generated slotted class {i}."""
    __slots__ = ("x", "y", "data")
    tag = "k{i}"
    factor = {f}

    def __init__(self, x, y={g}):
        self.x = x
        self.y = y
        self.data = [x, y, {i}]

    def compute(self, z):
        return self.x * z + self.y - self.factor

    @property
    def double(self):
        return self.x * 2 + {i}

    @classmethod
    def make(cls, x):
        return cls(x)

    @staticmethod
    def helper(v):
        return v * {f} + {g}

    def __eq__(self, other):
        return type(self) is type(other) and self.data == other.data

    __hash__ = None
'''
    return f'''
class Klass_{i}:
    """Generated class {i}."""
    tag = "k{i}"
    factor = {f}
    registry = {{"name": "Klass_{i}", "values": [{f}, {g}, {i}]}}

    def __init__(self, x, y={g}):
        self.x = x
        self.y = y
        self.items = [x, str(y), ({i}, {f})]

    def compute(self, z):
        return self.x * z + self.y + self.factor

    @property
    def double(self):
        return self.x * 2

    @classmethod
    def make(cls, x):
        return cls(x)

    @staticmethod
    def helper(v):
        return v + {g}

    def __repr__(self):
        return "Klass_{i}(%r, %r)" % (self.x, self.y)
'''


def code_source(scale: float) -> str:
    n_funcs = max(1, round(800 * scale))
    n_lams = max(1, round(600 * scale))
    n_clos = max(1, round(600 * scale))
    n_classes = max(1, round(200 * scale))
    n_inst = 3
    rnd = random.Random(20240611)
    parts = ["# Generated by benchmarks/bench_pickler.py (workload 'code')\n"]
    parts += [_gen_function(i, rnd) for i in range(n_funcs)]
    parts.append("\n")
    parts += [_gen_lambda(i, rnd) for i in range(n_lams)]
    parts += [_gen_closure(i, rnd) for i in range(n_clos)]
    parts += [_gen_class(i, rnd) for i in range(n_classes)]
    parts.append(f"""
BENCH_OBJ = {{
    "functions": [globals()["func_%d" % i] for i in range({n_funcs})],
    "lambdas": [globals()["lam_%d" % i] for i in range({n_lams})],
    "closures": [globals()["closure_%d" % i] for i in range({n_clos})],
    "classes": [globals()["Klass_%d" % i] for i in range({n_classes})],
}}
BENCH_OBJ["instances"] = [
    cls(i * 7 + j) for i, cls in enumerate(BENCH_OBJ["classes"]) for j in range({n_inst})
]
BENCH_META = {{
    "functions": {n_funcs}, "lambdas": {n_lams}, "closures": {n_clos},
    "classes": {n_classes}, "instances": {n_classes * n_inst},
}}
""")
    return "".join(parts)


_CODE_CHECK = """\
import hashlib

def check(obj):
    out = []
    for i, f in enumerate(obj["functions"]):
        v = i % 5
        if v == 0:
            r = f(i, 3, 1, 2, k=4, z=5)
        elif v == 1:
            r = f("abc%d" % i)
        elif v == 2:
            r = f()
        elif v == 3:
            r = f(i + 1)
        else:
            r = f(1, 2, 3, i)
        out.append((f.__name__, f.__module__, r))
    for i, f in enumerate(obj["lambdas"]):
        v = i % 4
        if v == 0:
            r = f(i)
        elif v == 1:
            r = f("ab%d" % i)
        elif v == 2:
            r = f(1, 2, i)
        else:
            r = f(i, b=1, a=2)
        out.append((f.__qualname__, r))
    for i, f in enumerate(obj["closures"]):
        r = f("k%d" % i) if i % 3 == 1 else f(i)
        out.append((f.__name__, r))
    for cls in obj["classes"]:
        inst = cls(5)
        out.append((cls.__qualname__, cls.__module__, cls.tag, cls.__doc__,
                    inst.compute(3), inst.double, cls.make(2).x, cls.helper(4),
                    [b.__name__ for b in cls.__mro__]))
    for inst in obj["instances"]:
        cls = type(inst)
        out.append((cls.__name__, inst.x, inst.y, inst.compute(2), inst.double,
                    repr(inst) if "__repr__" in vars(cls) else None,
                    cls is obj["classes"][int(cls.__name__.split("_")[1])]))
    return hashlib.sha256(repr(out).encode()).hexdigest()
"""

register(
    Workload(
        name="code",
        description="2,000 functions/lambdas/closures + 200 classes with instances, defined in __main__",
        source=code_source,
        check_source=_CODE_CHECK,
    )
)


# --------------------------------------------------------------------------
# Child process side
# --------------------------------------------------------------------------


def _impl_ops(name: str) -> dict:
    """Return the operations of one implementation (imported in the child)."""
    if name == "mason":
        import mason

        return {
            "dumps": mason.dumps,
            "loads": mason.loads,
            "dump_module": lambda path, module: mason.dump_module(path, module=module),
            "load_module": lambda path: mason.load_module(path),
        }
    if name == "dill":
        import dill

        return {
            "dumps": dill.dumps,
            "loads": dill.loads,
            "dump_module": lambda path, module: dill.dump_module(path, module=module),
            "load_module": lambda path: dill.load_module(path),
        }
    if name == "cloudpickle":
        import pickle

        import cloudpickle

        return {"dumps": cloudpickle.dumps, "loads": pickle.loads}
    if name == "pickle":
        import pickle

        return {"dumps": lambda obj: pickle.dumps(obj, protocol=5), "loads": pickle.loads}
    raise NotSupported(f"unknown implementation {name!r}")


_WARMUP_OBJ = {"a": [1, 2.5, "x", (3, None)], "b": {4, 5}, "c": b"y"}


def _child_main() -> None:
    import gc

    main = clean_main()
    spec = read_spec()
    result: dict = {}
    try:
        ops = _impl_ops(spec["impl"])
        kind = spec["kind"]
        check_ns: dict = {"__name__": "bench_check"}
        exec(compile(spec["check_source"], "<bench-check>", "exec"), check_ns)
        if kind == "session" and "dump_module" not in ops:
            raise NotSupported(f"{spec['impl']} has no dump_module/load_module")
        # Warm-up: lazy imports / first-call initialisation are not timed.
        ops["loads"](ops["dumps"](_WARMUP_OBJ))

        if spec["mode"] == "dump":
            t0 = time.perf_counter()
            exec(compile(spec["source"], "<session>", "exec"), main.__dict__)
            result["build_s"] = time.perf_counter() - t0
            result["meta"] = main.__dict__.get("BENCH_META")
            gc.collect()
            if kind == "object":
                obj = main.BENCH_OBJ
                t0 = time.perf_counter()
                data = ops["dumps"](obj)
                t1 = time.perf_counter()
                with open(spec["data_path"], "wb") as fh:
                    fh.write(data)
                result["size"] = len(data)
                del data
                result["check"] = check_ns["check"](obj)
            else:
                t0 = time.perf_counter()
                ops["dump_module"](spec["data_path"], main)
                t1 = time.perf_counter()
                result["size"] = os.path.getsize(spec["data_path"])
                result["check"] = check_ns["check"](main)
            result["dumps_s"] = t1 - t0
        else:  # load
            if kind == "object":
                with open(spec["data_path"], "rb") as fh:
                    data = fh.read()
                gc.collect()
                t0 = time.perf_counter()
                obj = ops["loads"](data)
                t1 = time.perf_counter()
                result["check"] = check_ns["check"](obj)
            else:
                gc.collect()
                t0 = time.perf_counter()
                ops["load_module"](spec["data_path"])
                t1 = time.perf_counter()
                result["check"] = check_ns["check"](main)
            result["loads_s"] = t1 - t0
    except BaseException as exc:  # noqa: BLE001 - report everything to the parent
        result.update(error_fields(exc))
    finish_child(result)


# --------------------------------------------------------------------------
# Parent process side
# --------------------------------------------------------------------------


def run_benchmark(workloads, impls, repeat, scale, timeout, log=print) -> dict:
    env = child_env("mason" in impls)
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench_pickler_") as workdir:
        for wl in workloads:
            source = wl.source(scale)
            per_impl = {
                name: {
                    "dumps_s": [],
                    "loads_s": [],
                    "sizes": [],
                    "build_s": [],
                    "maxrss_kb": [],
                    "error": None,
                    "check": None,
                    "meta": None,
                }
                for name in impls
            }
            results[wl.name] = {
                "description": wl.description,
                "kind": wl.kind,
                "source_chars": len(source),
                "impls": per_impl,
            }
            for rep in range(repeat):
                order = rotation(impls, rep)
                t_rep = time.perf_counter()
                for name in order:
                    rec = per_impl[name]
                    if rec["error"]:
                        continue
                    data_path = os.path.join(workdir, "data.bin")
                    base = {"impl": name, "kind": wl.kind, "check_source": wl.check_source, "data_path": data_path}
                    dres = run_child("bench_pickler", dict(base, mode="dump", source=source), workdir, env, timeout)
                    if "error" in dres:
                        rec["error"] = "dumps: " + dres["error"]
                        rec["traceback"] = dres.get("traceback")
                        continue
                    lres = run_child("bench_pickler", dict(base, mode="load"), workdir, env, timeout)
                    if os.path.exists(data_path):
                        os.remove(data_path)
                    if "error" in lres:
                        rec["error"] = "loads: " + lres["error"]
                        rec["traceback"] = lres.get("traceback")
                        continue
                    if dres["check"] != lres["check"]:
                        rec["error"] = "MISMATCH: loaded object behaves differently from the original"
                        continue
                    rec["check"] = "ok"
                    rec["meta"] = dres.get("meta")
                    rec["dumps_s"].append(dres["dumps_s"])
                    rec["loads_s"].append(lres["loads_s"])
                    rec["sizes"].append(dres["size"])
                    rec["build_s"].append(dres.get("build_s"))
                    rec["maxrss_kb"].append(max(dres.get("maxrss_kb", 0), lres.get("maxrss_kb", 0)))
                log(
                    f"  [{wl.name}] repetition {rep + 1}/{repeat} "
                    f"({', '.join(order)}) {time.perf_counter() - t_rep:.1f}s",
                    file=sys.stderr,
                )
            for rec in per_impl.values():
                if rec["dumps_s"] and not rec["error"]:
                    rec["median_dumps_s"] = statistics.median(rec["dumps_s"])
                    rec["median_loads_s"] = statistics.median(rec["loads_s"])
                    rec["size"] = int(statistics.median(rec["sizes"]))
    return results


def compute_ratios(results: dict, baseline: str) -> dict:
    ratios: dict = {}
    for wname, wres in results.items():
        base = wres["impls"].get(baseline)
        ratios[wname] = {}
        for name, rec in wres["impls"].items():
            if name == baseline:
                continue
            if not base or "median_dumps_s" not in base or "median_dumps_s" not in rec:
                ratios[wname][name] = None
                continue
            ratios[wname][name] = {
                "dumps": rec["median_dumps_s"] / base["median_dumps_s"],
                "loads": rec["median_loads_s"] / base["median_loads_s"],
                "size": base["size"] / rec["size"],
            }
    return ratios


def format_report(results: dict, ratios: dict, baseline: str) -> str:
    lines = []
    for wname, wres in results.items():
        meta = next((r["meta"] for r in wres["impls"].values() if r.get("meta")), None)
        meta_s = ", ".join(f"{k}={v:,}" if isinstance(v, int) else f"{k}={v}" for k, v in (meta or {}).items())
        lines.append("")
        lines.append(f"== {wname}: {wres['description']}")
        if meta_s:
            lines.append(f"   ({meta_s})")
        lines.append(
            f"   {'impl':<12} {'dumps s':>10} {'spread':>6} {'loads s':>10} {'spread':>6} {'size bytes':>12}  check"
        )
        for name, rec in wres["impls"].items():
            if "median_dumps_s" in rec:
                lines.append(
                    f"   {name:<12} {rec['median_dumps_s']:>10.4f} {spread(rec['dumps_s']):>6} "
                    f"{rec['median_loads_s']:>10.4f} {spread(rec['loads_s']):>6} "
                    f"{rec['size']:>12,}  {rec['check']}"
                )
            else:
                reason = rec.get("error") or "no data"
                lines.append(f"   {name:<12} {'n/a':>10} {'':>6} {'n/a':>10} {'':>6} {'n/a':>12}  {reason}")
        wr = ratios.get(wname, {})
        if wr:
            lines.append(f"   ratios (time: other/{baseline}, >1 means {baseline} is faster; size: {baseline}/other):")
            for name, r in wr.items():
                if r is None:
                    lines.append(f"     {baseline} vs {name}: n/a")
                    continue
                d = f"{r['dumps']:.2f}x ({'faster' if r['dumps'] >= 1 else 'slower'})"
                lo = f"{r['loads']:.2f}x ({'faster' if r['loads'] >= 1 else 'slower'})"
                lines.append(f"     {baseline} vs {name}: dumps {d}, loads {lo}, size {r['size']:.2f}x")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="workload sizes / 10 and 3 repetitions")
    parser.add_argument(
        "--repeat", type=int, default=None, help="repetitions per implementation (default 5, 3 with --quick)"
    )
    parser.add_argument("--impls", default=",".join(ALL_IMPLS), help="comma-separated, from: " + ",".join(ALL_IMPLS))
    parser.add_argument(
        "--workloads", default=None, help="comma-separated workload names (default: all): " + ",".join(WORKLOADS)
    )
    parser.add_argument("--baseline", default=None, help="implementation the ratios compare against (default mason)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds allowed per child process (default 600)")
    parser.add_argument("--json", metavar="PATH", help="write raw samples and summary as JSON")
    args = parser.parse_args(argv)

    impls = parse_impls(parser, args.impls, ALL_IMPLS)
    names = args.workloads.split(",") if args.workloads else list(WORKLOADS)
    for n in names:
        if n not in WORKLOADS:
            parser.error(f"unknown workload {n!r}; choose from {', '.join(WORKLOADS)}")
    workloads = [WORKLOADS[n] for n in names]
    repeat = args.repeat if args.repeat is not None else (3 if args.quick else 5)
    if repeat < 1:
        parser.error("--repeat must be >= 1")
    scale = 0.1 if args.quick else 1.0
    baseline = args.baseline or ("mason" if "mason" in impls else impls[0])
    if baseline not in impls:
        parser.error(f"baseline {baseline!r} is not in --impls")

    vers = versions(impls)
    print(
        f"bench_pickler: python {vers['python']} on {platform.platform()}, "
        f"{os.cpu_count()} CPUs; " + ", ".join(f"{k} {v}" for k, v in vers.items() if k != "python")
    )
    print(
        f"workloads={','.join(names)} impls={','.join(impls)} repeat={repeat} "
        f"scale={scale:g} (medians; each measurement in fresh processes)",
        flush=True,
    )
    t0 = time.perf_counter()
    results = run_benchmark(workloads, impls, repeat, scale, args.timeout)
    ratios = compute_ratios(results, baseline)
    print(format_report(results, ratios, baseline))
    total = time.perf_counter() - t0
    print(f"\ntotal wall time {total:.1f}s")

    if args.json:
        payload = {
            "argv": sys.argv[1:],
            "quick": args.quick,
            "repeat": repeat,
            "scale": scale,
            "impls": impls,
            "baseline": baseline,
            "versions": vers,
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "total_wall_s": total,
            "results": results,
            "ratios": ratios,
        }
        write_json(args.json, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
