"""mason's main job, end to end: a notebook-like session is saved in one
Python process, the file is inspected without running anything from it,
and the session is restored in a second, fresh process.

Run:  bash scripts/demo.sh      (or: python examples/demo.py [--keep DIR])
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

SAVE = r'''
import dataclasses, threading, warnings
import numpy as np
import pandas as pd
import mason

# --- an analysis session, as a notebook would leave it
rng = np.random.default_rng(0)
measurements = rng.normal(20.0, 2.5, size=(1_000, 3))
frame = pd.DataFrame(measurements, columns=["a", "b", "c"])
frame["day"] = pd.date_range("2026-01-01", periods=len(frame), freq="h")
threshold = 22.5

def above(df, column):
    """Rows where a column exceeds the session's threshold."""
    return df[df[column] > threshold]

scale = lambda x, k=2: x * k

@dataclasses.dataclass
class Experiment:
    name: str
    runs: list
    def best(self):
        return max(self.runs)

exp = Experiment("baseline", [0.71, 0.74, 0.69])
same_exp = exp                      # two names, one object
stream = (x * x for x in range(10)) # a generator: cannot be saved
lock = threading.Lock()

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    mason.dump_module(PATH, exclude=["PATH", "caught"])
for w in caught:
    print("  warning:", w.message)
print(f"  saved {len(above(frame, 'a'))} rows above {threshold}; exp.best() = {exp.best()}")
'''

LOAD = r"""
import mason
mason.load_module(PATH)
print("  restored names:", ", ".join(sorted(n for n in globals() if not n.startswith("_") and n not in ("mason", "PATH"))))
print(f"  above(frame, 'a') -> {len(above(frame, 'a'))} rows (threshold {threshold})")
print(f"  scale(21) -> {scale(21)};  exp.best() -> {exp.best()};  same_exp is exp -> {same_exp is exp}")
print(f"  frame dtypes: {dict(frame.dtypes.astype(str))}")
threshold = 25.0   # functions see the live globals of the restored session
print(f"  after threshold = 25.0: above(frame, 'a') -> {len(above(frame, 'a'))} rows")
print("  'stream' restored?", "stream" in globals())
"""


def run_fresh(code: str, path: Path) -> None:
    program = f"PATH = {str(path)!r}\n" + textwrap.dedent(code)
    subprocess.run([sys.executable, "-c", program], check=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", metavar="DIR", help="write the session file here and keep it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.keep or tmp) / "analysis.mason"
        path.parent.mkdir(parents=True, exist_ok=True)
        print(f"1. saving a session in a fresh interpreter -> {path}")
        run_fresh(SAVE, path)

        print("\n2. inspecting the file (nothing from it is unpickled)")
        import mason

        info = mason.inspect(path)
        print(
            f"  module {info.module}, saved with Python {'.'.join(map(str, info.environment['python']))}, "
            f"packages {info.environment['packages']}"
        )
        for var in info.variables:
            if not var["name"].startswith("__"):
                print(f"  {var['name']:<13} {var['type']:<36} {var['stored']:<10} {var['size']:>9,} bytes")
        for var in info.skipped:
            print(f"  {var['name']:<13} {var['type']:<36} skipped    {var['reason']}")

        print("\n3. restoring it in another fresh interpreter")
        run_fresh(LOAD, path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
