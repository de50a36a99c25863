#!/usr/bin/env bash
# Set up, then run the whole test suite (unit tests, the resume test, notebooks).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export VPSTUDY_PROFILE=smoke
python -m pytest -q "$@"
