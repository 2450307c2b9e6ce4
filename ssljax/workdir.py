"""A run's working directory: creating and probing it, and updating its JSON files atomically."""
from __future__ import annotations

import json
import os
from typing import Any

import jax

from ssljax import config as config_lib


def merge_json(path: str, values: dict[str, Any]) -> None:
  """Updates the JSON object in `path` with `values`, keeping other keys (e.g. the evaluate CLI's rows).

  Written to a temporary file and renamed, so a crash never leaves a torn eval.json.
  """
  data = {}
  if os.path.exists(path):
    try:
      with open(path) as f:
        data = json.load(f)
    except (OSError, json.JSONDecodeError):
      data = {}
  data.update(values)
  with open(path + ".tmp", "w") as f:
    json.dump(data, f, indent=2)
  os.replace(path + ".tmp", path)


def prepare(workdir: str, config, is_main: bool) -> None:
  """Creates `workdir`, checks it is writable (one line if not) and writes config.json."""
  try:
    os.makedirs(workdir, exist_ok=True)
    # One probe file per process: hosts sharing the workdir must not remove each other's.
    probe = os.path.join(workdir, f".write_test.{jax.process_index()}.{os.getpid()}")
    with open(probe, "w") as f:
      f.write("ok")
    os.remove(probe)
  except OSError as e:
    raise config_lib.ConfigError(f"workdir {workdir!r} is not writable: {e.strerror}") from e
  if is_main:
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json_best_effort(indent=2, sort_keys=True))
