"""Resuming a run in a workdir that holds one: config changes, and the rules for starting over.

A workdir that holds checkpoints (or damaged ones) is never trained from step 0 unless the config
says `restart_from_scratch=True`, which moves the old run aside to `previous/<time>/` first. A
resumed run's config is compared with the run's `config.json`: keys that only change how or how
long the run goes (`SAFE_KEYS`) are applied and listed in one line; any other change stops the run
with one line naming the keys, unless `allow_config_change=True`.
"""
from __future__ import annotations

import fnmatch
import json
import os
import time
from typing import Any

import ml_collections

from ssljax.errors import ConfigError

# Keys whose change on resume leaves the training's mathematics alone (how long, how often, on
# which mesh and with which kernels it runs, how the host loads data, what is evaluated).
SAFE_KEYS = ("total_steps", "log_every", "eval_every", "checkpoint_every", "keep_checkpoints",
             "progress_bar", "nonfinite", "max_skipped_steps", "mesh.*", "param_sharding",
             "data.worker_count", "data.prefetch", "eval.*", "model.cpu_tuning", "model.remat",
             "model.attention_impl", "model.remat_policy", "model.init_from", "*.loss_impl",
             "profile_steps", "logging.*")
# Keys that steer the resume itself; never compared.
CONTROL_KEYS = ("restart_from_scratch", "allow_config_change")
# What `restart_from_scratch` moves aside: everything a run writes about its history.
RUN_FILES = ("checkpoints", "checkpoints_damaged", "metrics.jsonl", "eval.json", "random_init.json",
             "tensorboard", "plots")


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
  """{'a.b': value} for a nested dict / ConfigDict (leaves as their JSON form)."""
  if isinstance(tree, ml_collections.ConfigDict):
    tree = json.loads(tree.to_json_best_effort())
  out = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      out.update(flatten(value, f"{prefix}{key}."))
    else:
      out[f"{prefix}{key}"] = value
  return out


def is_safe(key: str) -> bool:
  return any(fnmatch.fnmatchcase(key, pattern) for pattern in SAFE_KEYS)


def config_changes(saved: dict[str, Any], config: ml_collections.ConfigDict,
                   defaults: ml_collections.ConfigDict | None = None
                   ) -> tuple[list[str], list[str]]:
  """(safe, other) changes from `saved` (config.json's dict) to `config`, as 'key old -> new'.

  A key the saved config lacks (added to ssljax since) counts as changed only when `config`'s
  value differs from its default in `defaults`; a key `config` lacks (removed since) is ignored.
  """
  old, new = flatten(saved), flatten(config)
  base = flatten(defaults) if defaults is not None else {}
  safe, other = [], []
  for key in sorted(new):
    if key in CONTROL_KEYS:
      continue
    if key in old:
      before = old[key]
    elif key in base:
      before = base[key]
    else:
      continue
    if _same(before, new[key]):
      continue
    (safe if is_safe(key) else other).append(f"{key} {_short(before)} -> {_short(new[key])}")
  return safe, other


def check_config(workdir: str, config: ml_collections.ConfigDict) -> list[str]:
  """The safe changes from the run's config.json to `config` (to be applied and reported).

  Raises ConfigError (one line) listing the other changes, unless config.allow_config_change.
  Returns [] when the workdir has no config.json.
  """
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    return []
  try:
    with open(path) as f:
      saved = json.load(f)
  except (OSError, json.JSONDecodeError) as e:
    raise ConfigError(f"{path} cannot be read ({e}); it holds the config the run's checkpoints "
                      f"were trained with: restore it, or set --config.allow_config_change=True"
                      ) from e
  from ssljax import config as config_lib  # pylint: disable=g-import-not-at-top  (import cycle)
  try:
    defaults = config_lib.base_config(config.method, config.model.name)
  except Exception:  # pylint: disable=broad-except  (validation reports a bad method / model)
    defaults = None
  safe, other = config_changes(saved, config, defaults)
  if other and not config.get("allow_config_change", False):
    raise ConfigError(
        f"the config differs from the one the run in {workdir} was trained with (config.json) in "
        f"{len(other)} key(s) that change the training: {'; '.join(other)}; set "
        f"--config.allow_config_change=True to resume with them, or use a new --workdir")
  return safe + other


def has_run(workdir: str) -> list[int]:
  """The checkpoint steps (intact or damaged) in `workdir`: a run not to restart silently."""
  steps = []
  path = os.path.join(workdir, "checkpoints")
  if os.path.isdir(path):   # complete steps only: 'N.orbax-checkpoint-tmp-*' is a save cut short
    steps += [int(n) for n in os.listdir(path) if n.isdigit()]
  path = os.path.join(workdir, "checkpoints_damaged")
  if os.path.isdir(path):   # 'N' or, damaged twice, 'N.k'
    steps += [int(n.split(".")[0]) for n in os.listdir(path) if n.split(".")[0].isdigit()]
  return sorted(set(steps))


def set_aside(workdir: str, names=RUN_FILES) -> str | None:
  """Moves the run history in `workdir` to `workdir/previous/<UTC time>/`; returns that path.

  The checkpoint directory keeps existing (its steps are moved), since a CheckpointManager may
  already be watching it. Returns None when there was nothing to move.
  """
  present = [n for n in names if os.path.exists(os.path.join(workdir, n))]
  if not present:
    return None
  dest = os.path.join(workdir, "previous", time.strftime("%Y%m%d-%H%M%S", time.gmtime()))
  while os.path.exists(dest):
    dest += "_"
  os.makedirs(dest)
  for name in present:
    src = os.path.join(workdir, name)
    if name == "checkpoints" and os.path.isdir(src):
      os.makedirs(os.path.join(dest, name))
      for entry in os.listdir(src):
        os.replace(os.path.join(src, entry), os.path.join(dest, name, entry))
    else:
      os.replace(src, os.path.join(dest, name))
  return dest


def _same(a: Any, b: Any) -> bool:
  if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
    return float(a) == float(b)
  return a == b


def _short(value: Any) -> str:
  text = json.dumps(value) if not isinstance(value, str) else repr(value)
  return text if len(text) <= 40 else text[:37] + "..."
