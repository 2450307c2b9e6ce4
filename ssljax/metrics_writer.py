"""Run logs: `metrics.jsonl` (one JSON object per logged step), TensorBoard events, PNG plots,
optionally Weights & Biases (`config.logging.wandb`), and profiler traces (`config.profile_steps`).

Only process 0 writes logs. On resume, rows past the restored step are dropped from metrics.jsonl,
since the resumed run logs those steps again. `wandb` is imported only when logging.wandb is on; its
run id is derived from the workdir, so a resumed run continues the same W&B run.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from typing import Any, Sequence

import numpy as np


def _jsonable(v: Any) -> Any:
  if isinstance(v, (np.generic, np.ndarray)):
    v = v.item() if np.ndim(v) == 0 else v.tolist()
  if isinstance(v, float) and not math.isfinite(v):
    return str(v)
  return v


class MetricsWriter:
  """Appends rows to workdir/metrics.jsonl and scalars to TensorBoard (workdir/tensorboard/)."""

  def __init__(self, workdir: str, enabled: bool = True, resume_step: int | None = None,
               config: Any = None):
    """`config`: the run config; its `logging` block turns on Weights & Biases (`start_wandb`)."""
    self.enabled = enabled
    self.path = os.path.join(workdir, "metrics.jsonl")
    self._tb = None
    self._wandb = None
    if not enabled:
      return
    if resume_step is not None and os.path.exists(self.path):
      rows = [r for r in read_jsonl(self.path) if r.get("step", 0) <= resume_step]
      with open(self.path, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    elif resume_step is None and os.path.exists(self.path):
      os.remove(self.path)  # a fresh run in an old workdir without checkpoints starts a fresh log
    from tensorboardX import SummaryWriter
    self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))
    logging = config.get("logging") if config is not None else None
    if logging is not None and logging.get("wandb", False):
      self._wandb = start_wandb(workdir, config, resume=resume_step is not None)

  def write(self, step: int, metrics: dict[str, Any]) -> None:
    if not self.enabled:
      return
    row = {"step": int(step), **{k: _jsonable(v) for k, v in metrics.items()}}
    with open(self.path, "a") as f:
      f.write(json.dumps(row) + "\n")
    for k, v in row.items():
      if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool):
        self._tb.add_scalar(k, v, step)
    self._tb.flush()
    if self._wandb is not None:
      self._wandb.log({k: v for k, v in row.items() if k != "step" and isinstance(v, (int, float))},
                      step=int(step))

  def write_images(self, step: int, paths: list[str]) -> None:
    """Adds PNG files (e.g. the plots) to TensorBoard as images tagged 'plots/<name>'."""
    if not self.enabled:
      return
    from PIL import Image
    for path in paths:
      with Image.open(path) as im:
        arr = np.asarray(im.convert("RGB"))
      self._tb.add_image(f"plots/{os.path.splitext(os.path.basename(path))[0]}", arr, step,
                         dataformats="HWC")
    self._tb.flush()
    if self._wandb is not None and paths:
      import wandb  # pylint: disable=g-import-not-at-top  (only when logging.wandb is on)
      self._wandb.log({f"plots/{os.path.splitext(os.path.basename(p))[0]}": wandb.Image(p)
                       for p in paths}, step=int(step))

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()
    if self._wandb is not None:
      self._wandb.finish()
      self._wandb = None

  def abandon(self) -> None:
    """Drops the TensorBoard writer without flushing (after a failed write: the disk may be full)."""
    if self._tb is None:
      return
    try:
      self._tb.close()
    except OSError:
      for w in getattr(self._tb, "all_writers", {}).values():
        event_writer = getattr(w, "event_writer", None)
        if event_writer is not None:
          event_writer._closed = True  # pylint: disable=protected-access  (no flush at exit)
    self._tb = None
    self.enabled = False
    if self._wandb is not None:
      try:
        self._wandb.finish(exit_code=1)
      except Exception:  # pylint: disable=broad-except  (the disk may be full; nothing to save)
        pass
      self._wandb = None


def start_wandb(workdir: str, config: Any, resume: bool = False):
  """A `wandb` run for this workdir: project / name / entity / mode from config.logging, the config
  as the run's config, files under workdir/wandb. The id is a hash of the workdir's absolute path,
  so a resumed run (`resume=True`) appends to the same W&B run. `WANDB_MODE=offline` (or
  logging.wandb_mode='offline') writes the run under workdir/wandb for a later `wandb sync`."""
  try:
    import wandb  # pylint: disable=g-import-not-at-top
  except ImportError:
    from ssljax.errors import ConfigError  # pylint: disable=g-import-not-at-top
    raise ConfigError("config.logging.wandb=True but the wandb package is not installed; "
                      "expected `pip install wandb` (or --config.logging.wandb=False)") from None
  log = config.logging
  workdir = os.path.abspath(workdir)
  run_id = "ssljax-" + hashlib.sha1(workdir.encode()).hexdigest()[:12]
  return wandb.init(
      project=log.wandb_project or None, entity=log.wandb_entity or None,
      name=log.wandb_name or os.path.basename(workdir), id=run_id, dir=workdir,
      mode=log.wandb_mode or None, resume="allow" if resume else None,
      config=json.loads(config.to_json_best_effort()))


class StepProfiler:
  """A `jax.profiler` trace of train steps first..last (1-based, inclusive) into `directory`
  (TensorBoard's profile plugin reads `<directory>/plugins/profile/<run>/*.xplane.pb`).

  The loop calls `before(step)` before running step `step` and `after(step, state)` once it
  returned; `after` waits for the step's results so that the trace holds whole steps. A run that
  resumes past `last` traces nothing; one that resumes inside the window traces the rest of it.
  """

  def __init__(self, steps: Sequence[int], directory: str):
    self.first, self.last = (tuple(steps) + (0, 0))[:2] if steps else (0, 0)
    self.directory = directory
    self.active = False

  def before(self, step: int) -> None:
    if self.first and not self.active and self.first <= step <= self.last:
      import jax  # pylint: disable=g-import-not-at-top
      os.makedirs(self.directory, exist_ok=True)
      jax.profiler.start_trace(self.directory)
      self.active = True

  def after(self, step: int, state: Any) -> None:
    if self.active and step >= self.last:
      import jax  # pylint: disable=g-import-not-at-top
      jax.block_until_ready(state)
      self.stop()

  def stop(self) -> None:
    if self.active:
      import jax  # pylint: disable=g-import-not-at-top
      jax.profiler.stop_trace()
      self.active = False


def read_jsonl(path: str) -> list[dict[str, Any]]:
  """All rows of a metrics.jsonl file (a torn last line, from a crash mid-write, is skipped)."""
  rows = []
  with open(path) as f:
    for line in f:
      try:
        rows.append(json.loads(line))
      except json.JSONDecodeError:
        continue
  return rows
