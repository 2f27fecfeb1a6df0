#!/usr/bin/env bash
# The whole test suite (slow fault-injection runs need --runslow), after the
# linter, the formatter's check and the type checker, so CI keeps them clean.
MASON_EXTRAS=test
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
.venv/bin/ruff check src tests benchmarks fuzz examples
.venv/bin/ruff format --check src tests benchmarks fuzz examples
.venv/bin/mypy
exec .venv/bin/python -m pytest -n 2 -q "$@"
