#!/usr/bin/env bash
# Set up, then lint and run the whole test suite: unit tests, the kill-and-resume test, the
# notebooks under nbval (smoke profile) and the explorer in headless Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if ! command -v chromium >/dev/null 2>&1; then
    echo "installing Debian's chromium for the browser test"
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium >/dev/null
fi
. .venv/bin/activate
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
export VPSTUDY_PROFILE=smoke VPSTUDY_RUNS="$scratch/runs" VPSTUDY_REPORTS="$scratch/reports" VPSTUDY_CACHE="$scratch/cache"
ruff check vpstudy tests scripts                     # lint (pyproject.toml [tool.ruff])
python -m pytest -q --nbval-lax tests notebooks "$@"
