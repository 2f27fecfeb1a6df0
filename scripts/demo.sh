#!/usr/bin/env bash
# The main job: save a realistic session in one interpreter, inspect the
# file, restore it in another.
MASON_EXTRAS=demo
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
exec .venv/bin/python examples/demo.py "$@"
