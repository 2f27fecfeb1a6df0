"""Write the golden dill files: the same session saved by several versions of dill.

A test-only step, run by hand (it downloads dill from the package index);
tests/test_dill_files.py reads what it writes without dill installed.

    python tests/golden/dill/make_dill_golden.py                  # every version, this Python
    python tests/golden/dill/make_dill_golden.py 0.3.6 0.4.1      # some versions
    python tests/golden/dill/make_dill_golden.py --python python3.12 0.4.1

For each version, ``pip install --target`` puts that dill alone in a private
temporary directory, which goes first on ``PYTHONPATH`` of a fresh
interpreter running write_dill_files.py (numpy, if any, comes from the
interpreter's own environment).  The files go to ``<version>/`` next to this
script, named after the Python that wrote them (``session-py311.pkl``):
functions saved by value hold bytecode of that Python only.  String hashing
is fixed (``PYTHONHASHSEED=0``) so sets are written in the same order on
every run.  Keep the files once written: they pin what old dill files look
like, and are never regenerated to make a test pass.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
WRITER = HERE / "write_dill_files.py"
VERSIONS = ("0.3.6", "0.3.7", "0.3.8", "0.3.9", "0.4.0", "0.4.1")


def python_tag(python: str) -> str:
    out = subprocess.run(
        [python, "-c", "import sys; print('py%d%d' % sys.version_info[:2])"],
        check=True, capture_output=True, text=True,
    )
    return out.stdout.strip()


def write(version: str, python: str, workdir: Path) -> Path:
    target = workdir / f"dill-{version}"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), f"dill=={version}"],
        check=True,
    )
    outdir = HERE / version
    outdir.mkdir(exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(target), PYTHONHASHSEED="0")
    out = subprocess.run(
        [python, str(WRITER), str(outdir), "-" + python_tag(python)],
        capture_output=True, text=True, env=env, cwd=workdir,
    )
    if out.returncode:
        raise SystemExit(f"dill {version} could not write the files:\n{out.stderr}")
    written = out.stdout.strip().splitlines()[-1]
    if written != version:
        raise SystemExit(f"asked for dill {version}, but the writer ran dill {written}")
    check = subprocess.run(
        [python, "-c", READ_BACK, str(outdir), "-" + python_tag(python)],
        capture_output=True, text=True, env=env, cwd=workdir,
    )
    if check.returncode:
        raise SystemExit(f"dill {version} cannot read back its own files:\n{check.stderr}")
    return outdir


# Every file must load with the dill that wrote it, in a fresh interpreter:
# what dill itself cannot read back is no test of mason.
READ_BACK = """
import glob, os, sys, dill
outdir, suffix = sys.argv[1:3]
for path in sorted(glob.glob(os.path.join(outdir, "*" + suffix + ".pkl"))):
    if os.path.basename(path).startswith("session"):
        dill.load_module_asdict(path)
    elif os.path.basename(path).startswith("module"):
        dill.load_module(path)
    else:
        with open(path, "rb") as f:
            dill.load(f)
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("versions", nargs="*", default=VERSIONS)
    parser.add_argument("--python", default=sys.executable, help="the interpreter that writes the files")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        for version in args.versions:
            outdir = write(version, args.python, Path(tmp))
            print(f"dill {version}: {outdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
