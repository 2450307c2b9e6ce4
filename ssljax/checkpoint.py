"""Checkpoints: the train state and the grain iterator state, saved together by orbax.

One orbax `CheckpointManager` under `workdir/checkpoints/` with two items per step: 'state' (the
train-state pytree, sharded arrays restored with their shardings) and 'data' (the grain iterator
position of every process). Orbax writes each step to a temporary directory and renames it when
complete, so an interrupted save is never read as a valid checkpoint.
"""
from __future__ import annotations

import os
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp


class Checkpointer:
  """Saves and restores (train state, data iterator) pairs in `directory`."""

  def __init__(self, directory: str, keep: int):
    self.directory = os.path.abspath(directory)
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                           enable_async_checkpointing=True)
    self._manager = ocp.CheckpointManager(self.directory, options=options,
                                          item_names=("state", "data"))

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
    """
    restored = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state),
        data=grain.checkpoint.CheckpointRestore(data_iterator)))
    return restored["state"]

  def wait(self) -> None:
    """Blocks until pending asynchronous saves are on disk."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()


def abstract_like(state: Any, shardings: Any) -> Any:
  """ShapeDtypeStructs of `state` (arrays or ShapeDtypeStructs) with the given shardings."""
  return jax.tree_util.tree_map(
      lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state, shardings)
