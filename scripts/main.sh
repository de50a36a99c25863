#!/usr/bin/env bash
# The main job: set up, run both studies at the default profile (cpu; PROFILE=smoke|cpu|paper
# picks another) through the ablation notebook, then regenerate reports/ from the run records.
# Runs already recorded under runs/ are skipped, so a second call only rebuilds the report.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
profile=${PROFILE:-cpu}
status=0
python -m vpstudy study simvp --profile "$profile" || status=$?
python -m vpstudy study lightweight --profile "$profile" || status=$?
python -m vpstudy report
echo "report: reports/README.md"
exit $status
