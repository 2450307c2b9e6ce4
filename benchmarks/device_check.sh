#!/usr/bin/env bash
# One call on a machine with an accelerator (e.g. the device tool's GPU): the kernels' parity with
# their references and their times (benchmarks/device_kernels.py), written to BENCHMARKS.md with
# the device named. Needs only jax with the accelerator plugin (the machine's own install).
#   bash benchmarks/device_check.sh            # full shapes
#   bash benchmarks/device_check.sh --small    # smoke run, any machine
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
"$PY" -c "import jax; print('[device_check]', jax.devices())"
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" "$PY" -m benchmarks.device_kernels "$@"
