#!/usr/bin/env bash
# The whole test suite (slow fault-injection runs need --runslow).
MASON_EXTRAS=test
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
exec .venv/bin/python -m pytest -n 2 -q "$@"
