#!/usr/bin/env bash
# Creates the peer (PyTorch + lightly) environment for benchmarks/peer_throughput.py in .venv-peer/ (git-ignored).
# Idempotent: a stamp file records what was installed; re-running with the same pins does nothing.
# torch/torchvision: on this machine pip takes both wheels from local disk (a CUDA build, ~5.5 GB, run on the CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-peer
PY=${PEER_PYTHON:-python3.11}
TORCH=2.14.1
TORCHVISION=0.29.1
LIGHTLY=${LIGHTLY_VERSION:-1.6.0}
PINS="torch==$TORCH torchvision==$TORCHVISION lightly==$LIGHTLY"
STAMP=$VENV/.peer-stamp
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$PINS" ]; then
  echo "peer env up to date: $PINS"
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
# torch first, pinned, so that lightly's own `torch` requirement installs nothing more.
"$VENV/bin/python" -m pip install -q "torch==$TORCH" "torchvision==$TORCHVISION"
"$VENV/bin/python" -m pip install -q "lightly==$LIGHTLY" "torch==$TORCH" "torchvision==$TORCHVISION"
"$VENV/bin/python" -c "import torch, torchvision, lightly; print('peer env:', torch.__version__, torchvision.__version__, lightly.__version__)"
echo "$PINS" > "$STAMP"
