#!/usr/bin/env bash
# The main job: set up, then pretrain SimCLR on the embedded digits data and print the kNN accuracy.
# Extra arguments are passed to ssljax.main, e.g. --config.total_steps=100.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
WORKDIR="${WORKDIR:-workdirs/simclr_digits}"
.venv/bin/python -m ssljax.main --config configs/simclr_digits.py --workdir "$WORKDIR" "$@"
