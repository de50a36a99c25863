#!/usr/bin/env bash
# Set up (or refresh) the project's virtual environment in .venv.
# Installs the CPU build of torch first when no torch is present (a plain `torch`
# requirement would otherwise pull a multi-GB CUDA build); on a GPU machine install
# the CUDA torch you want into .venv before running this and it is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
. .venv/bin/activate
if ! python -c "import torch" 2>/dev/null; then
    python -m pip install -q "torch==2.13.0"
fi
python -m pip install -q -e ".[test]"
python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (vpstudy)" >/dev/null
