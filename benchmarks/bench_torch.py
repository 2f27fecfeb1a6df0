"""PyTorch session benchmark: mason.dump_module / load_module vs torch.save / torch.load, dill and the disk.

How to run (from the repository root; any Python with torch installed)::

    PYTHONPATH=src python benchmarks/bench_torch.py --gib 0.25          # quick, CPU or GPU
    PYTHONPATH=src python benchmarks/bench_torch.py --gib 2             # the issue's size
    .venv/bin/python benchmarks/bench_torch.py --gib 1 --device cpu --repeat 5 --json bench-results/torch.json

Options: ``--gib N`` (GiB of tensors besides the model, default 0.25);
``--device`` (default ``cuda`` when ``torch.cuda.is_available()``, else
``cpu``); ``--repeat N`` (default 3); ``--impls`` (default
``mason,torch,torch+mmap,dill``; dill is skipped with a note when it is not
installed); ``--tmpdir DIR`` (where the files go, default ``$TMPDIR`` or
``bench-results/``); ``--timeout`` (seconds per child process); ``--json PATH``.

The session (built on the device, in ``__main__``): ``--gib`` GiB of tensors
-- float32 activations and a strided view of them, a bfloat16 embedding
table, int64 ids, a bool mask, a dict of 16 float16 shards -- plus an MLP
(``Linear(1024, 2048)``, ``GELU``, ``Linear(2048, 1024)``: 4.2M parameters)
and its ``torch.optim.Adam`` after one step (gradients cleared, so every
library saves the same bytes).

Implementations (every save ends with an fsync inside the timed region, as
mason's atomic write does):

* ``mason``      -- ``mason.dump_module(path, module=__main__)`` /
  ``mason.load_module(path[, map_location='cpu'])``
* ``torch``      -- ``torch.save(user_vars, f)`` + fsync / ``torch.load(path,
  weights_only=False[, map_location='cpu'])`` then ``globals().update(...)``
* ``torch+mmap`` -- the same, loaded with ``mmap=True``
* ``dill``       -- ``dill.dump_module(f, module=__main__)`` + fsync /
  ``dill.load_module(path)`` (tensors go through torch's own pickling;
  dill has no ``map_location``, so no "to cpu" load from a GPU)

For each repetition and implementation one fresh interpreter builds the
session and saves it, then one fresh interpreter per load target (the
device; and, from a GPU, the CPU with ``map_location='cpu'``) imports torch
and the library (untimed), times the load (with ``torch.cuda.synchronize()``)
and then a *touch*: an integer checksum of every tensor's bytes, computed on
the tensor's device.  A lazily mapped load pays for its page faults there,
so ``load+touch`` compares lazy and eager loaders fairly.  The checksums must
equal the save child's, else the row says ``MISMATCH``.  The file is read
from the page cache (it was just written).  ``load peak`` is the load
process's peak RSS (host memory).

After the implementations, a *limits child* measures the machine on as many
bytes as mason's file: ``write+fsync`` of an already-touched buffer to a new
file, ``page-cache read`` of it back into a touched buffer and, on a GPU,
``host->device`` (a pageable ``tensor.to(device)``) and ``device->host``.

Ratios: ``mason vs X`` = median(X) / median(mason) for times (> 1: mason is
faster), mason / X for file size.  Against the limits: ``save = 0.81 of raw
write+fsync`` means mason's save runs at 81% of the raw write's throughput.
MB are 10**6 bytes; medians over the repetitions; spread = (max-min)/median.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time

from _harness import (
    REPO_ROOT,
    NotSupported,
    child_env,
    parse_impls,
    peak_rss_kb,
    rotation,
    run_child,
    run_session_child,
    spread,
    time_write_and_read,
    versions,
    write_json,
)

IMPLS = ("mason", "torch", "torch+mmap", "dill")
_MB = 1e6


# --------------------------------------------------------------------------
# The session
# --------------------------------------------------------------------------


def session_source(gib: float, device: str) -> str:
    """Source exec'd into ``__main__`` of the save child: only data remains bound."""
    return f"""
import torch
torch.manual_seed(0)
_device = {device!r}
_total = int({gib!r} * 2**30)
_cols = 1024

def _rows(share, dtype):
    size = torch.empty(0, dtype=dtype).element_size()
    return max(1, int(_total * share) // (_cols * size))

activations = torch.randn(_rows(0.40, torch.float32), _cols, device=_device)
every_other_row = activations[::2]                      # a view: no bytes of its own
embeddings = torch.randn(_rows(0.25, torch.float32) * 2, _cols, device=_device).to(torch.bfloat16)
ids = torch.randint(0, 50_000, (_rows(0.10, torch.int64), _cols), device=_device)
mask = torch.rand(_rows(0.05, torch.bool), _cols, device=_device) > 0.5
shards = {{f"shard{{i:02d}}": torch.randn(max(1, _rows(0.20, torch.float16) // 16), _cols,
                                      device=_device).half() for i in range(16)}}

model = torch.nn.Sequential(torch.nn.Linear(1024, 2048), torch.nn.GELU(), torch.nn.Linear(2048, 1024)).to(_device)
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
_x = torch.randn(64, 1024, device=_device)
model(_x).pow(2).mean().backward()
optimizer.step()
optimizer.zero_grad()  # torch.save drops .grad and mason keeps it: save the same bytes
del _rows, _device, _total, _cols, _x
"""


# --------------------------------------------------------------------------
# Child process side
# --------------------------------------------------------------------------


def _user_names(main) -> list:
    import types

    return [
        k
        for k, v in vars(main).items()
        if not (k.startswith("__") and k.endswith("__")) and not isinstance(v, types.ModuleType)
    ]


def _fsync(fh) -> None:
    fh.flush()
    os.fsync(fh.fileno())


def _sync() -> None:
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def _tiny_session() -> dict:
    """What the warm-ups save and load: the first use of an optimizer's
    methods imports torch._dynamo (seconds), which no load should be timed on."""
    import torch

    param = torch.nn.Parameter(torch.ones(2))
    optimizer = torch.optim.Adam([param])
    param.grad = torch.ones(2)
    optimizer.step()
    optimizer.state_dict()
    return {"t": torch.arange(4.0), "p": param, "opt": optimizer}


def _ops(impl: str) -> dict:
    """``save(path, main)``, ``load(path, main, map_location)``, ``warm()`` of one implementation."""
    import io

    import torch

    tiny = _tiny_session()
    if impl == "mason":
        import mason

        def save(path, main):
            mason.dump_module(path, module=main)  # atomic write with fsync

        def load(path, main, map_location):
            mason.load_module(path, map_location=map_location)

        return {"save": save, "load": load, "warm": lambda: mason.loads(mason.dumps(tiny, protocol=5))}
    if impl in ("torch", "torch+mmap"):
        mmap = {"mmap": True} if impl == "torch+mmap" else {}

        def save(path, main):
            with open(path, "wb") as fh:
                torch.save({k: main.__dict__[k] for k in _user_names(main)}, fh)
                _fsync(fh)

        def load(path, main, map_location):
            main.__dict__.update(torch.load(path, map_location=map_location, weights_only=False, **mmap))

        def warm():
            buf = io.BytesIO()
            torch.save(tiny, buf)
            buf.seek(0)
            torch.load(buf, weights_only=False)

        return {"save": save, "load": load, "warm": warm}
    if impl == "dill":
        import dill

        def save(path, main):
            with open(path, "wb") as fh:
                dill.dump_module(fh, module=main)
                _fsync(fh)

        def load(path, main, map_location):
            if map_location is not None:
                raise NotSupported("dill has no map_location")
            dill.load_module(path)

        return {"save": save, "load": load, "warm": lambda: dill.loads(dill.dumps(tiny))}
    raise ValueError(impl)


def _checksum(tensor) -> int:
    """An exact checksum of a tensor's bytes, the same on any device: the sum
    of its int32 words (or bytes) in int64, computed where the tensor is, in
    blocks of about 1 MiB (so the touch allocates little fresh memory)."""
    import torch

    t = tensor.detach()
    if t.dim() == 0:
        t = t.reshape(1)
    if t.numel() == 0:
        return 0
    row_bytes = t[0].numel() * t.element_size()
    step = max(1, (1 << 20) // max(1, row_bytes))
    total = torch.zeros((), dtype=torch.int64, device=t.device)
    for start in range(0, t.shape[0], step):
        block = t[start : start + step].contiguous().reshape(-1).view(torch.uint8)
        words = block.view(torch.int32) if block.numel() % 4 == 0 else block
        total += words.sum(dtype=torch.int64)
    return int(total)


def _checksums(main) -> dict:
    """The checksum of every tensor of the session, by path."""
    import torch

    found: dict = {}

    def visit(name, value):
        if isinstance(value, torch.Tensor):
            found[name] = f"{value.dtype}{tuple(value.shape)}:{_checksum(value)}"
        elif isinstance(value, dict):
            for key, item in value.items():
                visit(f"{name}[{key!r}]", item)
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                visit(f"{name}[{i}]", item)
        elif isinstance(value, torch.nn.Module):
            visit(f"{name}.state_dict()", value.state_dict())
        elif isinstance(value, torch.optim.Optimizer):
            visit(f"{name}.state_dict()", value.state_dict()["state"])

    for key in sorted(_user_names(main)):
        visit(key, main.__dict__[key])
    _sync()
    return found


def _warm_checksums(device: str) -> None:
    """The touch's kernels once on small tensors: their first use (thread
    pools, CUDA context) is not part of any load."""
    import types

    import torch

    warm = types.ModuleType("warm")
    for dtype in (torch.float32, torch.bfloat16, torch.int64, torch.bool, torch.float16):
        setattr(warm, str(dtype), torch.ones(64, 1024, device=device).to(dtype))
        setattr(warm, f"{dtype} view", torch.ones(64, 1024, device=device).to(dtype)[::2])
    _checksums(warm)


def _tensor_bytes(main) -> int:
    import torch

    seen, total = set(), 0
    for value in list(vars(main).values()) + list(getattr(main, "shards", {}).values()):
        tensors = []
        if isinstance(value, torch.Tensor):
            tensors = [value]
        elif isinstance(value, torch.nn.Module):
            tensors = list(value.state_dict().values())
        elif isinstance(value, torch.optim.Optimizer):
            tensors = [t for s in value.state.values() for t in s.values() if isinstance(t, torch.Tensor)]
        for t in tensors:
            storage = t.untyped_storage()
            key = (storage.device, storage.data_ptr())
            if key not in seen:
                seen.add(key)
                total += storage.nbytes()
    return total


def _child_save(main, spec: dict, result: dict) -> None:
    import gc

    ops = _ops(spec["impl"])
    ops["warm"]()
    t0 = time.perf_counter()
    exec(compile(spec["source"], "<session>", "exec"), main.__dict__)
    _sync()
    result["build_s"] = time.perf_counter() - t0
    result["tensor_bytes"] = _tensor_bytes(main)
    result["check"] = _checksums(main)
    gc.collect()
    t0 = time.perf_counter()
    ops["save"](spec["path"], main)
    _sync()
    result["save_s"] = time.perf_counter() - t0
    result["size"] = os.path.getsize(spec["path"])


def _child_load(main, spec: dict, result: dict) -> None:
    import gc

    ops = _ops(spec["impl"])
    ops["warm"]()
    _warm_checksums(spec["device"] if spec["map_location"] is None else spec["map_location"])
    gc.collect()
    t0 = time.perf_counter()
    ops["load"](spec["path"], main, spec["map_location"])
    _sync()
    t1 = time.perf_counter()
    result["check"] = _checksums(main)
    t2 = time.perf_counter()
    result["load_s"] = t1 - t0
    result["load_touch_s"] = t2 - t0
    result["load_peak_kb"] = peak_rss_kb()
    import torch

    devices = {v.device.type for v in vars(main).values() if isinstance(v, torch.Tensor)}
    result["devices"] = sorted(devices)


def _child_limits(spec: dict, result: dict) -> None:
    """write+fsync and page-cache read of ``n_bytes`` bytes; host<->device copies on a GPU."""
    n = max(1, int(spec["n_bytes"]))
    path = spec["path"]
    block = os.urandom(1 << 20)
    src = bytearray(n)
    for off in range(0, n, len(block)):
        src[off : off + len(block)] = block[: n - off]
    dst = bytearray(n)
    for off in range(0, n, 4096):
        dst[off] = 1  # touched: the timed read does not fault it in
    try:
        result["write_s"], result["read_s"] = time_write_and_read(path, src, dst)
    finally:
        if os.path.exists(path):
            os.remove(path)
    del src, dst
    if spec["device"] != "cpu":
        import torch

        host = torch.ones(n, dtype=torch.uint8)
        host.to(spec["device"])  # warm up the context
        _sync()
        t0 = time.perf_counter()
        on_device = host.to(spec["device"])
        _sync()
        result["h2d_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        on_device.cpu()
        _sync()
        result["d2h_s"] = time.perf_counter() - t0
    result["n_bytes"] = n


def _child_main() -> None:
    run_session_child(_child_save, _child_load, _child_limits)


# --------------------------------------------------------------------------
# Parent process side
# --------------------------------------------------------------------------

_LIMIT_KEYS = ("write_s", "read_s", "h2d_s", "d2h_s", "n_bytes")


def _targets(device: str) -> list:
    """Load targets: (label, map_location)."""
    return [(device, None)] if device == "cpu" else [(device, None), ("cpu", "cpu")]


def _remove(path: str) -> None:
    directory, base = os.path.split(path)
    for name in os.listdir(directory):
        if name == base or name.startswith("." + base):  # and a failed atomic write's temp file
            os.remove(os.path.join(directory, name))


def run_benchmark(impls, gib, device, repeat, timeout, workdir, log=print) -> dict:
    env = child_env("mason" in impls)
    source = session_source(gib, device)
    targets = _targets(device)
    results: dict = {"impls": {}, "limits": {k: [] for k in _LIMIT_KEYS}, "meta": {}}
    results["limits"]["error"] = None
    for name in impls:
        rec = {"save_s": [], "size": [], "error": None, "traceback": None, "loads": {}}
        for label, _ in targets:
            rec["loads"][label] = {"load_s": [], "load_touch_s": [], "load_peak_kb": [], "error": None}
        results["impls"][name] = rec
    for rep in range(repeat):
        order = rotation(impls, rep)
        t_rep = time.perf_counter()
        mason_size = None
        for name in order:
            rec = results["impls"][name]
            if rec["error"]:
                continue
            path = os.path.join(workdir, f"session-{name.replace('+', '-')}.bin")
            common = {"impl": name, "path": path, "device": device}
            try:
                sres = run_child("bench_torch", dict(common, mode="save", source=source), workdir, env, timeout)
                if "error" in sres:
                    rec["error"], rec["traceback"] = "save: " + sres["error"], sres.get("traceback")
                    continue
                rec["save_s"].append(sres["save_s"])
                rec["size"].append(sres["size"])
                results["meta"]["tensor_bytes"] = sres["tensor_bytes"]
                if name == "mason":
                    mason_size = sres["size"]
                for label, map_location in targets:
                    lrec = rec["loads"][label]
                    if lrec["error"]:
                        continue
                    lres = run_child(
                        "bench_torch", dict(common, mode="load", map_location=map_location), workdir, env, timeout
                    )
                    if "error" in lres:
                        lrec["error"] = lres["error"]
                        lrec["traceback"] = lres.get("traceback")
                    elif lres["check"] != sres["check"]:
                        differ = sorted(k for k in sres["check"] if lres["check"].get(k) != sres["check"][k])
                        lrec["error"] = "MISMATCH: " + ", ".join(differ[:6])
                    elif lres["devices"] != [label]:
                        lrec["error"] = f"MISMATCH: tensors on {lres['devices']}, not {label}"
                    else:
                        for key in ("load_s", "load_touch_s", "load_peak_kb"):
                            lrec[key].append(lres[key])
            finally:
                _remove(path)
        if mason_size is not None and not results["limits"]["error"]:
            lim_path = os.path.join(workdir, "limits.bin")
            lim = run_child(
                "bench_torch",
                {"mode": "limits", "n_bytes": mason_size, "path": lim_path, "device": device},
                workdir,
                env,
                timeout,
            )
            _remove(lim_path)
            if "error" in lim:
                results["limits"]["error"] = lim["error"]
                results["limits"]["traceback"] = lim.get("traceback")
            else:
                for key in _LIMIT_KEYS:
                    if key in lim:
                        results["limits"][key].append(lim[key])
        log(
            f"  repetition {rep + 1}/{repeat} ({', '.join(order)}) {time.perf_counter() - t_rep:.1f}s",
            file=sys.stderr,
            flush=True,
        )
    _medians(results)
    return results


def _medians(results: dict) -> None:
    def med(rec, keys):
        rec["median"] = {k: statistics.median(rec[k]) for k in keys if rec.get(k) and None not in rec[k]}

    for rec in results["impls"].values():
        med(rec, ("save_s", "size"))
        for lrec in rec["loads"].values():
            med(lrec, ("load_s", "load_touch_s", "load_peak_kb"))
    med(results["limits"], _LIMIT_KEYS)


def compute_ratios(results: dict) -> dict:
    """mason vs each other implementation (other/mason for times, mason/other for size) and vs the limits."""
    base = results["impls"].get("mason")
    if not base or "save_s" not in base["median"]:
        return {}
    out: dict = {"vs": {}, "limits": {}}
    for name, rec in results["impls"].items():
        if name == "mason" or "save_s" not in rec["median"]:
            continue
        r = {
            "save": rec["median"]["save_s"] / base["median"]["save_s"],
            "size": base["median"]["size"] / rec["median"]["size"],
        }
        for label, lrec in rec["loads"].items():
            b, m = base["loads"][label]["median"], lrec["median"]
            if "load_s" in b and "load_s" in m:
                r[f"load {label}"] = m["load_s"] / b["load_s"]
                r[f"load+touch {label}"] = m["load_touch_s"] / b["load_touch_s"]
        out["vs"][name] = r
    lim = results["limits"]["median"]
    if "write_s" in lim:
        out["limits"]["save vs write+fsync"] = lim["write_s"] / base["median"]["save_s"]
        for label, lrec in base["loads"].items():
            if "load_touch_s" in lrec["median"]:
                out["limits"][f"load+touch {label} vs page-cache read"] = lim["read_s"] / lrec["median"]["load_touch_s"]
                if label != "cpu" and "h2d_s" in lim:
                    out["limits"][f"load+touch {label} vs read + host->device"] = (lim["read_s"] + lim["h2d_s"]) / lrec[
                        "median"
                    ]["load_touch_s"]
    return out


def _mb(nbytes) -> str:
    return "n/a" if nbytes is None else f"{nbytes / _MB:,.1f}"


def _rate(nbytes, seconds) -> str:
    if not seconds:
        return "n/a"
    rate = nbytes / seconds
    return f"{rate / 1e9:.2f} GB/s" if rate >= 1e9 else f"{rate / 1e6:.0f} MB/s"


def format_report(results: dict, ratios: dict, device: str) -> str:
    targets = [label for label, _ in _targets(device)]
    lines = [""]
    head = f"   {'impl':<11} {'save s':>8} {'spread':>6} {'file MB':>9}"
    for label in targets:
        head += f" | {'load s':>7} {'+touch s':>8} {'spread':>6} {'peak MB':>8} (to {label})"
    lines.append(head)
    notes = []
    for name, rec in results["impls"].items():
        med = rec["median"]
        if rec["error"] or "save_s" not in med:
            lines.append(f"   {name:<11} n/a  {rec['error'] or 'no data'}")
            if rec.get("traceback") and "NotSupported" not in (rec["error"] or ""):
                notes.append(f"{name}: " + rec["traceback"].strip().splitlines()[-1])
            continue
        row = f"   {name:<11} {med['save_s']:>8.3f} {spread(rec['save_s']):>6} {_mb(med['size']):>9}"
        for label in targets:
            lrec = rec["loads"][label]
            lmed = lrec["median"]
            if lrec["error"] or "load_s" not in lmed:
                row += f" | n/a: {lrec['error'] or 'no data'}"[:60]
                if lrec.get("traceback"):
                    notes.append(
                        f"{name} load to {label}:\n"
                        + "\n".join("      " + ln for ln in lrec["traceback"].rstrip().splitlines()[-12:])
                    )
                continue
            row += (
                f" | {lmed['load_s']:>7.3f} {lmed['load_touch_s']:>8.3f} {spread(lrec['load_touch_s']):>6} "
                f"{_mb(lmed['load_peak_kb'] * 1024):>8}" + " " * (len(label) + 6)
            )
        lines.append(row)
    lim = results["limits"]
    lmed = lim["median"]
    if lim.get("error"):
        lines.append(f"   machine limits: n/a ({lim['error']})")
    elif "write_s" in lmed:
        n = lmed["n_bytes"]
        text = (
            f"   machine limits for {_mb(n)} MB (mason's file): write+fsync {lmed['write_s']:.3f} s "
            f"({_rate(n, lmed['write_s'])}), page-cache read {lmed['read_s']:.3f} s ({_rate(n, lmed['read_s'])})"
        )
        if "h2d_s" in lmed:
            text += (
                f", host->device {lmed['h2d_s']:.3f} s ({_rate(n, lmed['h2d_s'])}), "
                f"device->host {lmed['d2h_s']:.3f} s ({_rate(n, lmed['d2h_s'])})"
            )
        lines.append(text)
    for note in notes:
        lines.append("   note: " + note)
    if ratios.get("vs"):
        lines.append("   ratios (time: other/mason, > 1 means mason is faster; file: mason/other):")
        for name, r in ratios["vs"].items():
            lines.append(f"     mason vs {name}: " + ", ".join(f"{k} {v:.2f}x" for k, v in r.items()))
    if ratios.get("limits"):
        lines.append("   mason against the machine (fraction of the raw speed):")
        lines.append("     " + ", ".join(f"{k} {v:.2f}" for k, v in ratios["limits"].items()))
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gib", type=float, default=0.25, help="GiB of tensors besides the model (default 0.25)")
    parser.add_argument("--device", default=None, help="cuda (default when available) or cpu")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions (default 3)")
    parser.add_argument("--impls", default=",".join(IMPLS), help="comma-separated, from: " + ",".join(IMPLS))
    parser.add_argument("--tmpdir", default=None, help="directory for the files (default $TMPDIR or bench-results/)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per child process (default 900)")
    parser.add_argument("--json", metavar="PATH", help="write raw samples and summary as JSON")
    args = parser.parse_args(argv)

    import importlib.util

    if importlib.util.find_spec("torch") is None:
        parser.error("torch is not installed in this Python")
    impls = parse_impls(parser, args.impls, IMPLS)
    notes = []
    if "dill" in impls and importlib.util.find_spec("dill") is None:
        impls.remove("dill")
        notes.append("dill is not installed: its row is left out")
    if "mason" not in impls:
        parser.error("--impls must include mason (the ratios compare against it)")
    if args.repeat < 1 or args.gib <= 0:
        parser.error("--repeat and --gib must be positive")
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available here")
    tmp_base = os.path.abspath(args.tmpdir or os.environ.get("TMPDIR") or os.path.join(REPO_ROOT, "bench-results"))
    os.makedirs(tmp_base, exist_ok=True)
    free = shutil.disk_usage(tmp_base).free
    if free < 3 * args.gib * 2**30:
        print(
            f"warning: {free / 1e9:.1f} GB free in {tmp_base}; this run writes about "
            f"{1.1 * args.gib * 2**30 / 1e9:.1f} GB per file (use --tmpdir)",
            file=sys.stderr,
        )

    vers = versions(["mason", "torch", "dill"])
    gpu = torch.cuda.get_device_name(0) if device.startswith("cuda") else "none"
    print(
        f"bench_torch: python {vers['python']} on {platform.platform()}, {os.cpu_count()} CPUs, GPU {gpu}; "
        + ", ".join(f"{k} {v}" for k, v in vers.items() if k != "python")
    )
    print(
        f"gib={args.gib:g} device={device} impls={','.join(impls)} repeat={args.repeat} tmpdir={tmp_base} "
        f"(medians; every save and every load in a fresh process)",
        flush=True,
    )
    for note in notes:
        print("note: " + note)
    t0 = time.perf_counter()
    workdir = tempfile.mkdtemp(prefix="bench_torch_", dir=tmp_base)
    try:
        results = run_benchmark(impls, args.gib, device, args.repeat, args.timeout, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    ratios = compute_ratios(results)
    tensor_bytes = results["meta"].get("tensor_bytes")
    print(f"\n== {args.gib:g} GiB of tensors + MLP + Adam on {device}: {_mb(tensor_bytes)} MB in distinct storages")
    print(format_report(results, ratios, device))
    total = time.perf_counter() - t0
    print(f"\ntotal wall time {total:.1f}s")
    if args.json:
        write_json(
            args.json,
            {
                "argv": sys.argv[1:],
                "gib": args.gib,
                "device": device,
                "gpu": gpu,
                "repeat": args.repeat,
                "impls": impls,
                "versions": vers,
                "notes": notes,
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
