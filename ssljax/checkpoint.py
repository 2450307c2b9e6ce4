"""Checkpoints: the train state and the data position, saved together by orbax.

One orbax `CheckpointManager` under `workdir/checkpoints/` with two items per step: 'state' (the
train-state pytree; restored into whatever shardings the resuming run asks for, so a checkpoint
written on P processes x D devices resumes on any other mesh) and 'position' (a small JSON
object that says where the data stream is, independently of the process count: the step, the
stream records consumed, the seed and batch size; see `data_position`). Orbax writes each step to
a temporary directory and renames it when complete, so an interrupted save is never read as a
valid checkpoint. Checkpoints of earlier versions (a grain iterator state per process under
'data/') are read too: their position is derived from the step.
"""
from __future__ import annotations

import glob
import itertools
import json
import logging
import os
import shutil
import sys
import time
from typing import Any

import jax
import orbax.checkpoint as ocp

from ssljax.errors import ConfigError


class IncompatibleCheckpointError(ValueError):
  """The checkpoint was written for a different model / config (shapes or structure differ)."""


class WorkdirWriteError(RuntimeError):
  """Writing to the workdir failed mid-run (disk full, quota, storage gone); one-line message."""


class ResumeError(ConfigError):
  """A workdir's checkpoints cannot be resumed and nothing was restarted; one-line message that
  names the step, the reason and the option that overrides it."""


class DamagedCheckpointError(RuntimeError):
  """A checkpoint step whose files are unreadable or truncated (it was moved aside)."""


def data_position(step: int, records: int, seed: int, batch_size: int,
                  devices: int | None = None) -> dict[str, int]:
  """Where the data stream of a run stands after `step` steps, whatever the process count.

  `records` is the number of stream records consumed (step * batch_size when the batch size never
  changed); `ssljax.data.pipeline.train_dataset(start=records)` rebuilds every process's iterator
  from it. Also stored: the seed and batch size that define the stream, and the topology that wrote
  it (`processes`, and `devices` in the mesh, default all; for the resume message only).
  """
  return {"step": int(step), "records": int(records), "seed": int(seed),
          "batch_size": int(batch_size), "processes": jax.process_count(),
          "devices": int(jax.device_count() if devices is None else devices)}


_BARRIERS = itertools.count()


def _meet_other_processes(name: str, timeout_s: int = 600) -> None:
  """Multi-process runs: waits until every process gets here, on the coordination service.

  The CheckpointManager's first act is a cross-process collective, and gloo (the CPU collectives)
  gives every process 30 s to arrive at the first one; processes that start up unevenly (a loaded
  host building its data pipeline) meet here first, with `timeout_s` to arrive. No-op for one
  process.
  """
  if jax.process_count() == 1:
    return
  from orbax.checkpoint import multihost  # pylint: disable=g-import-not-at-top
  multihost.get_jax_distributed_client().wait_at_barrier(
      f"ssljax_{name}_{next(_BARRIERS)}", timeout_s * 1000)


class Checkpointer:
  """Saves and restores (train state, data iterator) pairs in `directory`."""

  def __init__(self, directory: str, keep: int):
    self.directory = os.path.abspath(directory)
    _quiet_orbax_echoes()
    _meet_other_processes("checkpointer")
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                           enable_async_checkpointing=True)
    self._manager = ocp.CheckpointManager(
        self.directory, options=options,
        item_handlers={"state": ocp.StandardCheckpointHandler(),
                       "position": ocp.JsonCheckpointHandler()})

  def reload(self) -> None:
    """Re-reads the steps on disk (after another process or `resume.set_aside` changed them)."""
    self._manager.reload()

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def save(self, step: int, state: Any, position: dict[str, Any] | None = None,
           force: bool = False) -> bool:
    """Starts an (asynchronous) save of step `step`; returns whether a save was started.

    `position`: the data position after `step` (`data_position(...)`), or None for a state saved
    outside a run's data stream (a resume then derives the position from the step).
    """
    items = dict(state=ocp.args.StandardSave(state))
    if position is not None:
      items["position"] = ocp.args.JsonSave(dict(position))
    return self._manager.save(step, args=ocp.args.Composite(**items), force=force)

  def restore(self, step: int, abstract_state: Any) -> tuple[Any, dict[str, Any] | None]:
    """(train state of `step` placed like `abstract_state`, its data position or None).

    `abstract_state` is a pytree of jax.ShapeDtypeStruct with the shardings of the resuming run
    (any mesh: orbax reads each device's part of every array). The position is None for a
    checkpoint written before positions were stored (the caller derives it from the step).

    Raises IncompatibleCheckpointError (naming the first differing parameter) when the checkpoint
    holds another model, and DamagedCheckpointError when its files are unreadable or truncated;
    only then is the step moved aside to `checkpoints_damaged/` (by process 0, all processes
    agreeing), so that the run can fall back to an older step and save anew. Any other failure
    (out of memory, a storage outage, an interrupt) is raised as it is, and nothing is moved.
    """
    self._check_compatible(step, abstract_state)
    has_position = os.path.isdir(os.path.join(self.directory, str(step), "position"))
    items = dict(state=ocp.args.StandardRestore(abstract_state))
    if has_position:
      items["position"] = ocp.args.JsonRestore()
    error = None
    try:
      restored = self._manager.restore(step, args=ocp.args.Composite(**items))
    except Exception as e:  # pylint: disable=broad-except
      error = e
      _note_failed_read()
    if error is not None and "not compatible with the stored shape" in str(error):
      raise IncompatibleCheckpointError(
          f"checkpoint at step {step} in {self.directory} was written by a different model: "
          f"{str(error).split('. ')[0]}; use a new --workdir or the original config") from error
    # Every process reads its own part of the arrays: all agree before anything is moved aside.
    outcome = _max_over_processes(0 if error is None else 2 if is_damage(error) else 1)
    if outcome == 2:
      reason = (f"{type(error).__name__}: {_one_line(error)}" if error is not None else
                "another process could not read its part")
      self._move_aside(step)
      raise DamagedCheckpointError(reason) from error
    if error is not None:
      raise error
    if outcome:
      raise RuntimeError(f"checkpoint at step {step} in {self.directory}: another process failed "
                         f"to restore it (see that process's output)")
    position = restored["position"] if has_position else None
    return restored["state"], (dict(position) if position is not None else None)

  def _check_compatible(self, step: int, abstract_state: Any) -> None:
    try:
      stored = self._manager.item_metadata(step)["state"]
    except Exception:  # unreadable metadata: let restore report (and move aside) the damage
      _note_failed_read()
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

  @property
  def damaged_directory(self) -> str:
    return self.directory.rstrip("/") + "_damaged"

  def _move_aside(self, step: int) -> None:
    """Moves step `step` to `checkpoints_damaged/` (process 0; the others wait for it)."""
    src = os.path.join(self.directory, str(step))
    if jax.process_index() == 0 and os.path.isdir(src):
      dst_dir = self.damaged_directory
      os.makedirs(dst_dir, exist_ok=True)
      dst = os.path.join(dst_dir, str(step))
      if os.path.exists(dst):   # damaged twice at the same step: keep both
        dst = f"{dst}.{len(os.listdir(dst_dir))}"
      os.replace(src, dst)
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils
      multihost_utils.sync_global_devices(f"ssljax_checkpoint_moved_aside_{step}")
    self._manager.reload()

  def discard_partial(self) -> list[str]:
    """Removes the temporary directories of saves that never completed (frees their space).

    Orbax writes step N to `N.orbax-checkpoint-tmp*` and renames it only when complete, so these
    are never read as checkpoints; removing them after a failed save gives the space back at once.
    """
    removed = []
    # A failed save can leave writes in flight (tensorstore's threads outlive the Python error)
    # that re-create the directory just removed: remove until it stays away (at most ~2 s).
    for _ in range(20):
      paths = glob.glob(os.path.join(self.directory, "*.orbax-checkpoint-tmp*"))
      if not paths:
        break
      for path in paths:
        shutil.rmtree(path, ignore_errors=True)
      removed += [p for p in paths if p not in removed]
      time.sleep(0.1)
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


# Reading a damaged checkpoint (its metadata in `_check_compatible`, its arrays in `restore`) fails
# in one of orbax's concurrent reads, and the others are left in flight: tensorstore completes them
# into the asyncio loop orbax has already closed, each printing a bare "RuntimeError: Event loop is
# closed" traceback through sys.unraisablehook, and asyncio logs "... exception was never retrieved"
# for every sibling read that failed too (measured: 0 to 216 tracebacks for three damaged steps,
# by timing). `restore` reports the damage in one line; these echoes of it are dropped, nothing
# else (other unraisable exceptions and log records reach the hooks that were there before).
_READ_FAILED = False
_QUIETED = False


def _quiet_orbax_echoes() -> None:
  """Installs (once per process) the two filters described above."""
  global _QUIETED
  if _QUIETED:
    return
  _QUIETED = True
  previous = sys.unraisablehook

  def hook(unraisable):
    if not _is_closed_loop_echo(unraisable.exc_value, unraisable.exc_traceback):
      previous(unraisable)

  sys.unraisablehook = hook
  logging.getLogger("asyncio").addFilter(_drop_orbax_sibling_failures)


def _note_failed_read() -> None:
  global _READ_FAILED
  _READ_FAILED = True


def _is_closed_loop_echo(error: BaseException | None, traceback) -> bool:
  """A callback posted into a closed asyncio loop (raised by asyncio itself, nothing else)."""
  if not (isinstance(error, RuntimeError) and str(error) == "Event loop is closed"):
    return False
  last = None
  while traceback is not None:
    last, traceback = traceback, traceback.tb_next
  return last is not None and os.sep + "asyncio" + os.sep in last.tb_frame.f_code.co_filename


def _drop_orbax_sibling_failures(record: logging.LogRecord) -> bool:
  """False for asyncio's "... exception was never retrieved" about damaged checkpoint files, once a
  read of a checkpoint in this process has failed (the reads that failed beside the one raised)."""
  if not _READ_FAILED or "exception was never retrieved" not in record.getMessage():
    return True
  return not (record.exc_info and record.exc_info[1] is not None and is_damage(record.exc_info[1]))


# What a damaged (unreadable, truncated, partly deleted) checkpoint makes orbax / tensorstore raise.
_DAMAGE_TYPES = (FileNotFoundError, json.JSONDecodeError, EOFError, UnicodeDecodeError)
_DAMAGE_WORDS = ("DATA_LOSS", "NOT_FOUND", "not found", "No such file", "does not exist",
                 "Error reading", "Error decoding", "Failed to decode", "corrupt", "truncated",
                 "Unexpected end", "unexpected end", "Expecting value", "Not a directory",
                 "checksum", "Checksum", "magic", "unexpected EOF")


def is_damage(error: BaseException) -> bool:
  """Whether `error`, raised while restoring, says the checkpoint's files are damaged.

  Errors that say something else went wrong (out of memory, a lost connection, an interrupt) are
  not damage: the checkpoint may be fine, and it must not be moved aside for them.
  """
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if isinstance(error, _DAMAGE_TYPES):
      return True
    text = str(error)
    if "RESOURCE_EXHAUSTED" in text or isinstance(error, (MemoryError, KeyboardInterrupt)):
      return False
    if any(w in text for w in _DAMAGE_WORDS):
      return True
    error = error.__cause__ or error.__context__
  return False


def _one_line(error: BaseException, limit: int = 200) -> str:
  return " ".join(str(error).split())[:limit]


def _max_over_processes(value: int) -> int:
  """The largest `value` over processes (a collective when there are several; all must call)."""
  if jax.process_count() == 1:
    return int(value)
  import numpy as np  # pylint: disable=g-import-not-at-top
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  return int(np.asarray(multihost_utils.process_allgather(np.int32(value))).max())


def _path(path) -> str:
  return "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


def abstract_like(state: Any, shardings: Any) -> Any:
  """ShapeDtypeStructs of `state` (arrays or ShapeDtypeStructs) with the given shardings."""
  return jax.tree_util.tree_map(
      lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state, shardings)
