"""Checkpoints: the train state and the grain iterator state, saved together by orbax.

One orbax `CheckpointManager` under `workdir/checkpoints/` with two items per step: 'state' (the
train-state pytree, sharded arrays restored with their shardings) and 'data' (the grain iterator
position of every process). Orbax writes each step to a temporary directory and renames it when
complete, so an interrupted save is never read as a valid checkpoint.
"""
from __future__ import annotations

import glob
import os
import shutil
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp


class IncompatibleCheckpointError(ValueError):
  """The checkpoint was written for a different model / config (shapes or structure differ)."""


class WorkdirWriteError(RuntimeError):
  """Writing to the workdir failed mid-run (disk full, quota, storage gone); one-line message."""


class Checkpointer:
  """Saves and restores (train state, data iterator) pairs in `directory`."""

  def __init__(self, directory: str, keep: int):
    self.directory = os.path.abspath(directory)
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                           enable_async_checkpointing=True)
    self._manager = ocp.CheckpointManager(
        self.directory, options=options,
        item_handlers={"state": ocp.StandardCheckpointHandler(),
                       "data": grain.checkpoint.CheckpointHandler()})

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def save(self, step: int, state: Any, data_iterator: Any, force: bool = False) -> bool:
    """Starts an (asynchronous) save of step `step`; returns whether a save was started."""
    return self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        data=grain.checkpoint.CheckpointSave(data_iterator)), force=force)

  def restore(self, step: int, abstract_state: Any, data_iterator: Any) -> Any:
    """The train state of `step` (placed like `abstract_state`); `data_iterator` is rewound in place.

    `abstract_state` is a pytree of jax.ShapeDtypeStruct with shardings, e.g. from jax.eval_shape.
    Raises IncompatibleCheckpointError (naming the first differing parameter) when the checkpoint
    holds another model; a damaged checkpoint raises whatever orbax raises, after it is moved aside
    to `checkpoints_damaged/` so that the run can fall back to an older step and save anew.
    """
    self._check_compatible(step, abstract_state)
    try:
      restored = self._manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract_state),
          data=grain.checkpoint.CheckpointRestore(data_iterator)))
    except Exception as e:
      if "not compatible with the stored shape" in str(e):
        raise IncompatibleCheckpointError(
            f"checkpoint at step {step} in {self.directory} was written by a different model: "
            f"{str(e).split('. ')[0]}; use a new --workdir or the original config") from e
      self._move_aside(step)
      raise
    return restored["state"]

  def _check_compatible(self, step: int, abstract_state: Any) -> None:
    try:
      stored = self._manager.item_metadata(step)["state"]
    except Exception:  # unreadable metadata: let restore report (and move aside) the damage
      return
    if stored is None:
      return
    want = {_path(p): tuple(x.shape) for p, x in jax.tree_util.tree_leaves_with_path(abstract_state)}
    have = {_path(p): tuple(getattr(x, "shape", ()) or ())
            for p, x in jax.tree_util.tree_leaves_with_path(
                stored, is_leaf=lambda x: hasattr(x, "shape"))}
    where = f"checkpoint at step {step} in {self.directory}"
    missing, extra = sorted(set(want) - set(have)), sorted(set(have) - set(want))
    if missing or extra:
      what = (f"this config has {missing[0]!r}, which the checkpoint lacks" if missing else
              f"the checkpoint has {extra[0]!r}, which this config lacks")
      raise IncompatibleCheckpointError(
          f"{where} was written by a different model or method: {what} ({len(missing)} missing, "
          f"{len(extra)} unexpected entries); use a new --workdir or the original config")
    for key, shape in want.items():
      if have[key] != shape:
        raise IncompatibleCheckpointError(
            f"{where} was written by a different model: {key!r} has shape {have[key]} in the "
            f"checkpoint but {shape} in this config; use a new --workdir or the original config")

  def _move_aside(self, step: int) -> None:
    src = os.path.join(self.directory, str(step))
    if os.path.isdir(src):
      dst_dir = self.directory.rstrip("/") + "_damaged"
      os.makedirs(dst_dir, exist_ok=True)
      os.replace(src, os.path.join(dst_dir, str(step)))
      self._manager.reload()

  def discard_partial(self) -> list[str]:
    """Removes the temporary directories of saves that never completed (frees their space).

    Orbax writes step N to `N.orbax-checkpoint-tmp*` and renames it only when complete, so these
    are never read as checkpoints; removing them after a failed save gives the space back at once.
    """
    removed = []
    for path in glob.glob(os.path.join(self.directory, "*.orbax-checkpoint-tmp*")):
      shutil.rmtree(path, ignore_errors=True)
      removed.append(path)
    try:
      self._manager.reload()
    except Exception:  # the manager may be unusable after a failed save; the disk is what counts
      pass
    return removed

  def complete_steps(self) -> list[int]:
    """Steps with a complete checkpoint on disk (read from the directory, not the manager's cache)."""
    if not os.path.isdir(self.directory):
      return []
    return sorted(int(n) for n in os.listdir(self.directory) if n.isdigit())

  def wait(self) -> None:
    """Blocks until pending asynchronous saves are on disk."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()


def _path(path) -> str:
  return "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


def abstract_like(state: Any, shardings: Any) -> Any:
  """ShapeDtypeStructs of `state` (arrays or ShapeDtypeStructs) with the given shardings."""
  return jax.tree_util.tree_map(
      lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state, shardings)
