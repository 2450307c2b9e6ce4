#!/usr/bin/env bash
# The one-call GPU check (benchmarks/device_check.py): kernel correctness, attention TFLOP/s,
# contrastive losses at large N, train-step images/s and MFU, and the quickstart, written to
# BENCHMARKS.md ("Device check" sections naming the device), in at most 8 minutes.
#
#   bash benchmarks/device_check.sh                       # the GPU machine: all sections
#   bash benchmarks/device_check.sh --smoke               # any machine, toy shapes, a temp file
#   bash benchmarks/device_check.sh --sections train --budget 200
#
# The GPU machine needs no network. Its Python must hold jax (with the GPU plugin), flax, optax,
# orbax-checkpoint and chex; grain, ml-collections and the rest come from wheels in .whl/
# (git-ignored), filled beforehand where the package registry is reachable, for the GPU
# machine's Python version (3.11, 3.12, ...), then carried with the checkout:
#   PYVER=3.12 bash benchmarks/device_check.sh --download-wheels
# which runs `python -m pip download --dest .whl --python-version 3.12 --only-binary=:all:
# --platform manylinux_2_28_x86_64 ... grain==0.2.18 ml-collections==1.1.0 ...` (with their
# dependencies), then scikit-learn alone (for the digits CSV it ships), and drops numpy (jax's own
# dependency): about 40 MB. The pinned list: NEEDED / NO_DEPS in benchmarks/device_check.py.
# Without the wheels the kernel sections still run (they need only jax); train and quickstart
# then report what is missing.
set -uo pipefail
cd "$(dirname "$0")/.."
# $PYTHON, else the first of python3 / .venv/bin/python that has jax.
PY="${PYTHON:-}"
if [[ -z "$PY" ]]; then
  for candidate in python3 .venv/bin/python; do
    if "$candidate" -c "import jax" >/dev/null 2>&1; then PY="$candidate"; break; fi
  done
  PY="${PY:-python3}"
fi
if [[ "${1:-}" == "--download-wheels" ]]; then
  exec "$PY" benchmarks/device_check.py --download-wheels "${PYVER:-$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')}"
fi
# Offline install of what is missing (stdlib only: runs before grain / ml-collections exist).
"$PY" benchmarks/device_check.py --install-wheels || echo "[device_check] continuing without them"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" -m benchmarks.device_check "$@"
