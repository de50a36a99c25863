#!/usr/bin/env bash
# The main job: set up, run both studies at the default profile (cpu; PROFILE=smoke|cpu|paper
# picks another) through the ablation notebook, then regenerate reports/ from the run records.
# Runs already recorded under runs/ are skipped, so a second call only rebuilds the report.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
profile=${PROFILE:-cpu}
# three seeds per row (the report's intervals need them); one at the smoke profile.
# Two runs at a time, one thread each: ~1.25x the throughput of one 2-thread run here.
if [ "$profile" = smoke ]; then seeds=${SEEDS:-1}; else seeds=${SEEDS:-3}; fi
jobs=${JOBS:-2}
status=0
python -m vpstudy study simvp --profile "$profile" --seeds "$seeds" --jobs "$jobs" || status=$?
python -m vpstudy study lightweight --profile "$profile" --seeds "$seeds" --jobs "$jobs" || status=$?
python -m vpstudy report
echo "report: reports/README.md"
exit $status
