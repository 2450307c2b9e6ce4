"""Run logs: `metrics.jsonl` (one JSON object per logged step), TensorBoard events, PNG plots.

Only process 0 writes. On resume, rows past the restored step are dropped from metrics.jsonl, since
the resumed run logs those steps again.
"""
from __future__ import annotations

import json
import math
import os
from typing import Any

import numpy as np


def _jsonable(v: Any) -> Any:
  if isinstance(v, (np.generic, np.ndarray)):
    v = v.item() if np.ndim(v) == 0 else v.tolist()
  if isinstance(v, float) and not math.isfinite(v):
    return str(v)
  return v


class MetricsWriter:
  """Appends rows to workdir/metrics.jsonl and scalars to TensorBoard (workdir/tensorboard/)."""

  def __init__(self, workdir: str, enabled: bool = True, resume_step: int | None = None):
    self.enabled = enabled
    self.path = os.path.join(workdir, "metrics.jsonl")
    self._tb = None
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

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()

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
