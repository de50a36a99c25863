#!/usr/bin/env bash
# The main job: set up, then train gSTA at the default profile and print its test metrics
# beside the last-frame and all-black baselines. PROFILE=smoke|cpu|paper picks the scale.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
python -m vpstudy train --model gsta --profile "${PROFILE:-cpu}"
