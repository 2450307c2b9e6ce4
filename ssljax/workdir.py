"""A run's working directory: creating and probing it, its JSON files, and opening a finished run.

    run = workdir.open_run("workdirs/simclr_digits")          # the latest checkpoint (or step=N)
    feats = run.method.features(run.params, run.method_state, images)

`open_run` is how evaluation, fine-tuning and export read a pretraining workdir: the config the
run saved, the method and mesh built by `ssljax.build.build` (no side effects), and the train
state restored from its checkpoint. It writes nothing into the workdir.
"""
from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from typing import Any, Callable

import jax
import ml_collections

from ssljax.errors import ConfigError


# ---------------------------------------------------------------------------------------------
# JSON files, written atomically.
# ---------------------------------------------------------------------------------------------


def update_json(path: str, update: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
  """Replaces the JSON object in `path` by `update(old)` ({} when there is none); returns it.

  Written to a temporary file in the same folder and renamed over `path`, so that a crash never
  leaves a torn file and a reader sees the old or the new object, never a mix.
  """
  data: dict[str, Any] = {}
  if os.path.exists(path):
    try:
      with open(path) as f:
        data = json.load(f)
    except (OSError, json.JSONDecodeError):
      data = {}
  data = update(data)
  fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)),
                             prefix=os.path.basename(path) + ".", suffix=".tmp")
  try:
    with os.fdopen(fd, "w") as f:
      json.dump(data, f, indent=2)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
  return data


def merge_json(path: str, values: dict[str, Any]) -> dict[str, Any]:
  """Updates the JSON object in `path` with `values`, keeping its other keys (e.g. the evaluate
  CLI's rows); atomic (`update_json`). Returns the merged object."""
  return update_json(path, lambda data: {**data, **values})


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
    raise ConfigError(f"workdir {workdir!r} is not writable: {e.strerror}") from e
  if is_main:
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json_best_effort(indent=2, sort_keys=True))


# ---------------------------------------------------------------------------------------------
# Opening a finished (or running) pretraining workdir.
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class OpenedRun:
  """A pretraining workdir opened for reading (`open_run`).

  Attributes:
    workdir: its absolute path.
    config: the run's config (config.json over the current schema; mesh fitted to this machine).
    built: `ssljax.build.Built` of that config: mesh, method, view spec, shardings, jitted steps.
    state: the restored `ssljax.build.TrainState` (a fresh init with random_init).
    step: the checkpoint step (0 with random_init).
    random_init: whether `state` is the untrained initialisation of the run's seed.
    record: the first record of the train split (what the example batch was built from).
  """
  workdir: str
  config: ml_collections.ConfigDict
  built: Any
  state: Any
  step: int
  random_init: bool
  record: dict[str, Any]

  @property
  def method(self):
    return self.built.method

  @property
  def mesh(self):
    return self.built.mesh

  @property
  def params(self):
    """The params evaluation and export use: the weights EMA with config.eval_ema, else params."""
    return self.state.eval_params

  @property
  def method_state(self):
    return self.state.method_state

  def input_shape(self) -> tuple[int, ...]:
    """Shape of one model input that `features` is applied to (the view spec's evaluation input,
    e.g. [H, W, C] of an image's centre view), without the batch axis."""
    import numpy as np  # pylint: disable=g-import-not-at-top
    return tuple(int(d) for d in np.shape(self.built.spec.eval_input(self.record,
                                                                     self.config.data.augment)))


def _fit_devices(config: ml_collections.ConfigDict, devices: list[Any]) -> list[Any]:
  """The devices to open a run on, re-targeting a mesh written for another machine.

  A mesh that does not fit these devices (or whose data-parallel size does not divide the batch)
  becomes plain data parallelism over the most devices that divide the batch size.
  """
  from ssljax import parallel  # pylint: disable=g-import-not-at-top
  try:
    shape = parallel.mesh_shape(config.mesh, len(devices))
    if config.batch_size % (shape.get("data", 1) * shape.get("fsdp", 1)) == 0:
      return devices
  except ConfigError:
    pass
  config.mesh = ml_collections.ConfigDict({name: (-1 if i == 0 else 1)
                                           for i, name in enumerate(config.mesh.keys())})
  if jax.process_count() > 1:
    return devices
  n = max(d for d in range(1, len(devices) + 1) if config.batch_size % d == 0)
  return devices[:n]


def open_run(workdir: str, step: int | None = None, random_init: bool = False,
             devices: list[Any] | None = None) -> OpenedRun:
  """Opens the pretraining run in `workdir` at checkpoint `step` (default: the latest).

  Rebuilds the run from its config.json with `ssljax.build.build` (mesh, method, state shapes;
  no data iterator, no workdir writes) on `devices` (default: all), and restores the train state
  of the checkpoint, or with `random_init` initialises it from the run's seed instead.

  Raises:
    FileNotFoundError: no config.json, or no checkpoint (without random_init).
    ValueError: `step` has no checkpoint (the message lists the steps there are).
    ConfigError: the saved config cannot be rebuilt here.
    ssljax.checkpoint.IncompatibleCheckpointError: the checkpoint holds another model.
  """
  from ssljax import checkpoint as ckpt_lib  # pylint: disable=g-import-not-at-top
  from ssljax import config_files  # pylint: disable=g-import-not-at-top
  from ssljax import build as build_lib  # pylint: disable=g-import-not-at-top
  from ssljax.data import sources  # pylint: disable=g-import-not-at-top
  workdir = os.path.abspath(workdir)
  config = config_files.load_run(workdir)
  config.progress_bar = False
  devices = _fit_devices(config, list(jax.devices() if devices is None else devices))
  record = sources.build_source(config.data, config.data.train_split)[0]
  built = build_lib.build(config, devices, record, jax.process_count())
  if random_init:
    if step not in (None, 0):
      raise ValueError(f"random_init with step={step}; a random init is step 0")
    return OpenedRun(workdir, config, built, built.init(), 0, True, record)
  directory = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(directory) or not any(n.isdigit() for n in os.listdir(directory)):
    raise FileNotFoundError(f"no checkpoint in {directory}; train first (python -m ssljax.main "
                            f"--workdir {workdir} ...)")
  checkpointer = ckpt_lib.Checkpointer(directory, keep=config.keep_checkpoints)
  try:
    steps = sorted(checkpointer.all_steps())
    if not steps:
      raise FileNotFoundError(f"no complete checkpoint in {directory}; train first")
    step = steps[-1] if step is None else int(step)
    if step not in steps:
      raise ValueError(f"no checkpoint at step {step} in {directory}; available steps: {steps}")
    state, _ = checkpointer.restore(step, built.abstract_state)
  finally:
    checkpointer.close()
  return OpenedRun(workdir, config, built, state, step, False, record)
