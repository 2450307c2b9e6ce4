#!/usr/bin/env bash
# The tests: set up, run the default suite, then the slow learning runs in a separate bounded step.
#   bash scripts/test.sh           # both steps (what CI runs)
#   bash scripts/test.sh --fast    # the default suite only
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
export PYTHONHASHSEED=0
PYTEST=".venv/bin/python -m pytest -p no:cacheprovider"
WORKERS="${SSLJAX_TEST_WORKERS:-2}"
echo "[ssljax] default suite (-m 'not slow and not bench', $WORKERS workers)"
$PYTEST -q -m "not slow and not bench" -n "$WORKERS" --durations=15 tests
if [ "${1:-}" != "--fast" ]; then
  echo "[ssljax] slow learning runs (-m slow, bounded to ${SSLJAX_SLOW_TIMEOUT:-3000}s)"
  # Learning runs are dominated by step time: full XLA optimisation, one device and ssljax's
  # XLA:CPU flags (convolutions to XLA's own kernels), as the quickstart and `ssljax.main` run.
  CPU_FLAGS="$(.venv/bin/python -c 'from ssljax.cpu.xla_flags import CPU_DEFAULTS; print(" ".join(CPU_DEFAULTS))')"
  XLA_FLAGS="--xla_force_host_platform_device_count=1 $CPU_FLAGS" \
    timeout "${SSLJAX_SLOW_TIMEOUT:-3000}" $PYTEST -q -m "slow and not multiprocess and not bench" -n "$WORKERS" --durations=30 tests
  echo "[ssljax] multi-process runs, alone (gloo gives processes 30 s to meet)"
  timeout 900 $PYTEST -q -m multiprocess tests
fi
