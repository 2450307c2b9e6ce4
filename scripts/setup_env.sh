#!/usr/bin/env bash
# Creates .venv (if missing) and installs ssljax with its pinned dependencies. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "[ssljax] creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
# Reinstall only when the pins changed since the last successful install.
stamp=.venv/.ssljax-installed
want="$(cat setup.py requirements-lock.txt | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[ssljax] installing dependencies (pinned in requirements-lock.txt; a few minutes the first time)"
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -c requirements-lock.txt -e ".[test]"
  echo "$want" > "$stamp"
fi
