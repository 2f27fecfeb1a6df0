"""Plumbing shared by the benchmarks: fresh child processes, memory, statistics.

A benchmark script runs every measurement in a fresh interpreter started with
``python -c`` (so ``__main__`` is a real main module, as in a script or an
interactive session).  The parent writes a JSON *spec* to a file, the child
imports the benchmark module by name, calls its ``_child_main()``, and writes a
JSON *result* next to the spec; ``run_child`` returns that dict.

Parent side: ``child_env``, ``run_child``, ``rotation``, ``spread``,
``versions``, ``write_json``.  Child side: ``read_spec``, ``clean_main``,
``error_fields``, ``finish_child`` and the memory helpers ``reset_peak_rss`` /
``peak_rss_kb``.  Only the standard library is used here.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(BENCH_DIR)


class NotSupported(Exception):
    """The implementation cannot do what the workload asks (reported as ``n/a``)."""


# --------------------------------------------------------------------------
# Child side
# --------------------------------------------------------------------------


def child_boot(module: str) -> str:
    """The ``python -c`` program of a child: import ``module`` from benchmarks/, run it."""
    return f"import sys; sys.path.insert(0, sys.argv[1]); import {module} as _m; _m._child_main()"


def read_spec() -> dict:
    with open(sys.argv[-1], encoding="utf-8") as fh:
        return json.load(fh)


def clean_main():
    """Leave ``__main__`` like a fresh interactive session (only dunder names); return it.

    The boot program's own names (``sys``, ``_m``) go, and benchmarks/ leaves
    ``sys.path`` so nothing saved can be found there by reference.
    """
    main = sys.modules["__main__"]
    if BENCH_DIR in sys.path:
        sys.path.remove(BENCH_DIR)
    for key in [k for k in vars(main) if not (k.startswith("__") and k.endswith("__"))]:
        delattr(main, key)
    return main


def error_fields(exc: BaseException) -> dict:
    """``error`` (one line) and ``traceback`` (its tail) for the parent's report."""
    import traceback

    msg = str(exc).splitlines()[0] if str(exc) else ""
    return {
        "error": f"{type(exc).__name__}: {msg}"[:300],
        "traceback": traceback.format_exc()[-4000:],
    }


def peak_rss_kb() -> int | None:
    """``ru_maxrss`` of this process in KiB (Linux units), None where unavailable."""
    try:
        import resource
    except ImportError:  # pragma: no cover - non-POSIX
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak  # macOS reports bytes


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS to its current RSS (Linux >= 4.0); False if impossible.

    Writing ``5`` to ``/proc/self/clear_refs`` resets the high-water mark that
    ``ru_maxrss`` reports, so a peak read afterwards belongs to what ran
    afterwards rather than to, say, building the workload.
    """
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        return False
    return True


def current_rss_kb() -> int | None:
    """Resident set size now, in KiB (Linux ``/proc/self/statm``), None elsewhere."""
    try:
        with open("/proc/self/statm") as fh:
            resident_pages = int(fh.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return resident_pages * os.sysconf("SC_PAGE_SIZE") // 1024


def finish_child(result: dict) -> None:
    """Write the result for the parent and exit at once (no teardown of big object graphs)."""
    result.setdefault("maxrss_kb", peak_rss_kb())
    spec_path = sys.argv[-1]
    result_path = os.path.join(os.path.dirname(spec_path), "result.json")
    with open(result_path, "w", encoding="utf-8") as fh:
        json.dump(result, fh)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


# --------------------------------------------------------------------------
# Parent side
# --------------------------------------------------------------------------


def child_env(want_mason: bool = True) -> dict:
    """Environment of the children: fixed hash seed; the repository's src/ if mason is not installed."""
    env = dict(os.environ)
    env["PYTHONHASHSEED"] = "0"
    env.pop("PYTHONSTARTUP", None)
    try:
        import importlib.util

        missing = importlib.util.find_spec("mason") is None
    except (ImportError, ValueError):
        missing = True
    src = os.path.join(REPO_ROOT, "src")
    if want_mason and missing and os.path.isdir(os.path.join(src, "mason")):
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
        print(f"note: mason is not installed; children import it from {src}", file=sys.stderr)
    return env


def run_child(module: str, spec: dict, workdir: str, env: dict, timeout: float) -> dict:
    """Run ``module._child_main()`` in a fresh interpreter on ``spec``; return its result dict.

    The spec and result files live in ``workdir``; a child that dies or times
    out yields ``{"error": ...}`` (with ``wall_s`` always set).
    """
    spec_path = os.path.join(workdir, "spec.json")
    result_path = os.path.join(workdir, "result.json")
    if os.path.exists(result_path):
        os.remove(result_path)
    with open(spec_path, "w", encoding="utf-8") as fh:
        json.dump(spec, fh)
    cmd = [sys.executable, "-c", child_boot(module), BENCH_DIR, spec_path]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd,
            cwd=workdir,
            env=env,
            timeout=timeout,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout:.0f}s", "wall_s": time.perf_counter() - t0}
    wall = time.perf_counter() - t0
    try:
        with open(result_path, encoding="utf-8") as fh:
            result = json.load(fh)
    except (OSError, ValueError):
        tail = (proc.stderr or proc.stdout or "").strip().splitlines()
        # A negative return code is a signal: -9 is usually the kernel's OOM killer.
        return {
            "error": f"child exited {proc.returncode}: {tail[-1] if tail else 'no output'}",
            "traceback": "\n".join(tail[-40:]),
            "wall_s": wall,
        }
    result["wall_s"] = wall
    return result


def rotation(items, rep: int) -> list:
    """``items`` rotated by ``rep``: round-robin order with the first one changing per repetition."""
    items = list(items)
    if not items:
        return items
    k = rep % len(items)
    return items[k:] + items[:k]


def spread(xs) -> str:
    """(max - min) / median as a percentage: a noise indicator ('' for fewer than 2 samples)."""
    xs = [x for x in xs if x is not None]
    if len(xs) < 2:
        return ""
    med = statistics.median(xs)
    return f"{(max(xs) - min(xs)) / med * 100:.0f}%" if med > 0 else ""


def versions(impls) -> dict:
    """Python's version and the installed version of each named distribution."""
    from importlib import metadata

    out = {"python": sys.version.split()[0]}
    for name in impls:
        if name == "pickle":
            continue
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def write_json(path: str, payload: dict) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(payload, fh, indent=2)
    print(f"wrote {path}")


def parse_impls(parser, text: str, allowed) -> list:
    """The ``--impls`` list, checked against ``allowed`` (argparse error otherwise)."""
    impls = [s.strip() for s in text.split(",") if s.strip()]
    for name in impls:
        if name not in allowed:
            parser.error(f"unknown implementation {name!r}; choose from {', '.join(allowed)}")
    if len(set(impls)) != len(impls):
        parser.error("duplicate implementation in --impls")
    return impls


DISK_CHUNK = 64 << 20  # bytes per os.write / readinto when timing the disk


def time_write_and_read(path: str, src, dst) -> tuple[float, float]:
    """Seconds to write ``src`` (a buffer) to ``path`` with fsync, then to
    ``readinto`` it back into ``dst`` (same size, already touched, so the read
    is not timing page faults).  ``path`` is left for the caller to remove."""
    view_src, view_dst = memoryview(src).cast("B"), memoryview(dst).cast("B")
    n = view_src.nbytes
    t0 = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    off = 0
    while off < n:
        off += os.write(fd, view_src[off : off + DISK_CHUNK])
    os.fsync(fd)
    os.close(fd)
    write_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    with open(path, "rb", buffering=0) as fh:
        off = 0
        while off < n:
            got = fh.readinto(view_dst[off : off + DISK_CHUNK])
            if not got:
                raise OSError(f"short read at {off} of {n} bytes")
            off += got
    read_s = time.perf_counter() - t0
    if view_src[:4096] != view_dst[:4096]:
        raise AssertionError("read back different bytes")
    return write_s, read_s


def run_session_child(save, load, limits) -> None:
    """A session benchmark's child: ``save(main, spec, result)`` or
    ``load(main, spec, result)`` by the spec's mode, else ``limits(spec,
    result)``; any exception is reported to the parent in the result."""
    main = clean_main()
    spec = read_spec()
    result: dict = {}
    try:
        if spec["mode"] == "save":
            save(main, spec, result)
        elif spec["mode"] == "load":
            load(main, spec, result)
        else:
            limits(spec, result)
    except BaseException as exc:  # noqa: BLE001 - report everything to the parent
        result.update(error_fields(exc))
    finish_child(result)
