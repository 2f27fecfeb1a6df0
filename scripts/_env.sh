# Sourced by the other scripts: a project-local virtual environment with
# mason installed (editable) and the extras named in $MASON_EXTRAS.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
stamp=.venv/.mason-installed-${MASON_EXTRAS:-none}
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -e ".[${MASON_EXTRAS:-test}]"
    touch "$stamp"
fi
