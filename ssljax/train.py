"""The method-agnostic trainer: the run around the build (ssljax/build.py).

`Trainer(config, workdir)` builds (mesh, method, state shapes, jitted step: `build.build`), then
adds the workdir, the data iterator, checkpoints and evaluation; `run()` is the loop. Sections:
  1. Set-up and resume: workdir, data position, the latest restorable checkpoint.
  2. The loop: log, evaluate, checkpoint, stop cleanly (and together) on SIGTERM / SIGUSR1.
  3. Evaluation helpers (online kNN on the held-out split, final linear probe).

The build's names (`TrainState`, `Built`, `build`, `make_train_step`, ...) are re-exported here.
"""
from __future__ import annotations

import errno
import json
import os
import time
from typing import Any

import jax
import ml_collections
import numpy as np

from ssljax import checkpoint as ckpt_lib
from ssljax import config as config_lib
from ssljax import methods as methods_lib
from ssljax import parallel
from ssljax import guards
from ssljax import plots
from ssljax import resume as resume_lib
from ssljax import workdir as workdir_lib
from ssljax.data import pipeline
from ssljax.data import sources
from ssljax.evaluate import online
from ssljax.metrics_writer import MetricsWriter, StepProfiler
# The build, re-exported: `train.build(...)`, `train.TrainState`, ... keep working.
from ssljax.build import AUTO_AUGMENT_ON, Built, TrainState  # noqa: F401
from ssljax.build import augment_on, build, make_init_fn, make_train_step, view_overrides  # noqa: F401

class Trainer:
  """Builds everything a run needs from `config`; `run()` trains to `config.total_steps`."""

  def __init__(self, config: ml_collections.ConfigDict, workdir: str,
               devices: list[jax.Device] | None = None):
    """`devices`: the devices of the mesh (default: all of them)."""
    devices = list(jax.devices() if devices is None else devices)
    config_lib.validate(config, device_count=len(devices), process_count=jax.process_count())
    self.train_source = sources.build_source(config.data, config.data.train_split)
    built = build(config, devices, self.train_source[0], jax.process_count())
    self.config, self.workdir = config, os.path.abspath(workdir)
    self.is_main = jax.process_index() == 0
    # Before config.json is rewritten: what changed since the run this workdir holds (if any).
    restart = config.get("restart_from_scratch", False)
    self.config_changes = (resume_lib.check_config(self.workdir, config)
                           if resume_lib.has_run(self.workdir) and not restart else [])
    workdir_lib.prepare(self.workdir, config, self.is_main)
    if self.is_main:   # a recipe pointed at images of another size class: say which config to use
      from ssljax import recipes  # pylint: disable=g-import-not-at-top
      hint = recipes.check_recipe(config)
      if hint:
        _log(True, hint)
    if self.is_main:   # files the model needs beside its weights (an image-text tokenizer)
      for name, data in built.method.artifacts().items():
        with open(os.path.join(self.workdir, name + ".tmp"), "wb") as f:
          f.write(data)
        os.replace(os.path.join(self.workdir, name + ".tmp"), os.path.join(self.workdir, name))

    self.mesh, self.method, self.spec = built.mesh, built.method, built.spec
    self.batch_sharding = built.batch_sharding
    self.tx, self.lr_fn = built.tx, built.lr_fn
    self.state_shardings, self.abstract_state = built.state_shardings, built.abstract_state
    self._init, self.train_step = built.init, built.train_step
    self.data = self._data_iterator()
    self.checkpointer = ckpt_lib.Checkpointer(os.path.join(self.workdir, "checkpoints"),
                                              keep=config.keep_checkpoints)
    self.evaluator = online.Evaluator(self.method, config, self.mesh)

  def _data_iterator(self, records: int = 0):
    """This process's batches from stream position `records` (step * batch_size), for any P."""
    c = self.config
    return iter(pipeline.train_dataset(
        self.train_source, self.spec, c.data.augment, seed=c.seed,
        local_batch_size=c.batch_size // jax.process_count(), process_index=jax.process_index(),
        process_count=jax.process_count(), worker_count=c.data.worker_count,
        prefetch=c.data.prefetch, start=records))

  def _close_data(self) -> None:
    """Stops the data iterator's grain worker processes and prefetch threads (if any)."""
    close = getattr(getattr(self, "data", None), "close", None)
    if close is not None:
      close()

  def _set_data_position(self, step: int, records: int) -> None:
    """Replaces `self.data` with an iterator at stream position `records` (after `step` steps)."""
    self._close_data()
    self.data = self._data_iterator(records)
    self._data_step, self._data_records = step, records

  def _data_position(self, step: int) -> dict[str, int]:
    """The checkpoint's description of the data stream after `step` (process-count independent)."""
    records = self._data_records + (step - self._data_step) * self.config.batch_size
    return ckpt_lib.data_position(step, records, self.config.seed, self.config.batch_size,
                                  devices=self.mesh.size)

  def initial_state(self) -> tuple[TrainState, int | None]:
    """(state, restored step): the latest restorable checkpoint, else a fresh init; data positioned.

    The state is restored into this run's shardings and the data stream continues from the
    checkpoint's position, whatever mesh and process count wrote it. A damaged checkpoint (files
    unreadable or truncated) is moved to checkpoints_damaged/ and the one before is tried; a
    workdir whose checkpoints (intact or damaged) cannot be restored stops with a ResumeError
    naming the step and the reason, unless config.restart_from_scratch moves the old run aside
    (to previous/<time>/) to train from step 0.
    """
    c, ckpt = self.config, self.checkpointer
    history = resume_lib.has_run(self.workdir)
    if history and c.get("restart_from_scratch", False) and not getattr(self, "_restarted", False):
      from jax.experimental import multihost_utils
      if jax.process_count() > 1:   # every process has looked at the workdir before it changes
        multihost_utils.sync_global_devices("ssljax_restart_from_scratch_begin")
      moved = resume_lib.set_aside(self.workdir) if self.is_main else None
      if jax.process_count() > 1:
        multihost_utils.sync_global_devices("ssljax_restart_from_scratch_end")
      ckpt.reload()
      _log(self.is_main, f"restart_from_scratch=True: the previous run in {self.workdir} "
                         f"(checkpoints at steps {_steps(history)}) was moved to {moved}; "
                         f"training from step 0")
      history = []
    self._restarted = True   # once per Trainer: a later run() continues this run
    steps = sorted(ckpt.all_steps(), reverse=True)
    damaged = []
    for i, step in enumerate(steps):
      try:
        state, position = ckpt.restore(step, self.abstract_state)
      except ckpt_lib.DamagedCheckpointError as e:
        damaged.append(f"step {step} ({e})")
        older = f"trying step {steps[i + 1]}" if i + 1 < len(steps) else "no older checkpoint"
        _log(self.is_main, f"warning: checkpoint at step {step} in {ckpt.directory} is damaged "
                           f"({e}); moved to {ckpt.damaged_directory}; {older}")
        continue
      except ckpt_lib.IncompatibleCheckpointError:
        raise
      except Exception as e:  # not damage (memory, storage, ...): stop, and move nothing
        raise ckpt_lib.ResumeError(
            f"checkpoint at step {step} in {ckpt.directory} cannot be restored "
            f"({type(e).__name__}: {ckpt_lib._one_line(e)}); nothing was moved or changed: fix "
            f"the cause and run the same command, or set --config.restart_from_scratch=True to "
            f"train from step 0") from e
      if position is None:   # a checkpoint from before positions were stored
        position = ckpt_lib.data_position(step, step * c.batch_size, c.seed, c.batch_size)
      self._set_data_position(step, int(position["records"]))
      self.restored_from = position
      return state, step
    if history:
      what = ("; ".join(damaged) if damaged else
              f"steps {_steps(history)} in {ckpt.damaged_directory}")
      raise ckpt_lib.ResumeError(
          f"no checkpoint in {ckpt.directory} can be restored: {what}, damaged; set "
          f"--config.restart_from_scratch=True to move the old run to previous/ and train from "
          f"step 0")
    self._set_data_position(0, 0)
    self.restored_from = None
    from ssljax import interop  # pylint: disable=g-import-not-at-top
    state = interop.init_from(c.model, self._init())
    if c.model.get("init_from") and state.ema_params is not None:   # EMA from the imported weights
      state = state.replace(ema_params=jax.tree_util.tree_map(lambda p: p.copy(), state.params))
    return state, None

  def _resume_message(self, step: int) -> str:
    """One line: the step, the topology change, and the config changes applied."""
    pos = self.restored_from or {}
    was = (f"{pos['processes']} process(es) x {pos['devices'] // max(1, pos['processes'])} devices"
           if "processes" in pos else "")
    now = f"{jax.process_count()} process(es) x {self.mesh.size // jax.process_count()} devices"
    line = f"resumed from checkpoint at step {step} in {self.workdir}"
    if was and was != now:
      line += f" (written on {was}, now {now})"
    if self.config_changes:
      line += "; config changes applied: " + ", ".join(self.config_changes)
    return line

  def _metrics_log_for(self, restored: int | None) -> None:
    """Never drops logged history silently: says what the metrics writer will drop, or keeps it.

    On resume the rows after the restored step are logged again (so each step is logged once);
    a fresh start in a workdir that holds a log but no checkpoint moves the log to previous/.
    """
    path = os.path.join(self.workdir, "metrics.jsonl")
    if not self.is_main or not os.path.exists(path):
      return
    from ssljax.metrics_writer import read_jsonl
    if restored is None:
      moved = resume_lib.set_aside(self.workdir, ("metrics.jsonl",))
      _log(True, f"no checkpoint in {self.workdir}: training from step 0; the previous "
                 f"metrics.jsonl was moved to {moved}")
      return
    later = [r for r in read_jsonl(path) if r.get("step", 0) > restored]
    if later:
      _log(True, f"metrics.jsonl: {len(later)} row(s) logged after step {restored} (up to step "
                 f"{max(r.get('step', 0) for r in later)}) are dropped and logged again")

  # -------------------------------------------------------------------------------------------
  # 2. The loop.
  # -------------------------------------------------------------------------------------------

  def run(self, until_step: int | None = None) -> dict[str, Any]:
    """Trains from the latest checkpoint (or from scratch) to total_steps; returns eval.json's dict.

    `until_step` stops early at that step (checkpointed, no final eval; returns {'stopped_at'}),
    to train in chunks from a notebook; a later `run()` continues exactly where it stopped.
    The final train state is kept in `self.state`.
    """
    c = self.config
    last = c.total_steps if until_step is None else min(until_step, c.total_steps)
    # From here a stop signal is caught: one during the restore or the first compile stops the run
    # at its first step boundaries (saved), rather than killing it.
    stopper = guards.StopOnSignal()
    try:
      state, restored = self.initial_state()
      start = int(restored or 0)
      self._metrics_log_for(restored)
      writer = MetricsWriter(self.workdir, enabled=self.is_main, resume_step=restored, config=c)
      if restored is not None:
        _log(self.is_main, self._resume_message(start))
      else:
        self._evaluate_random_init(state, writer)
    except BaseException:
      stopper.restore()
      raise

    guard = guards.Guard(c, self.is_main)
    bar = _progress(c, start, self.is_main)
    t_last, n_last = time.perf_counter(), start
    step, stop_reason = start, ""   # (a resume at or past `last` runs no step)
    profiler = StepProfiler(c.get("profile_steps", ()), os.path.join(self.workdir, "profile"))
    try:
      while step < last:
        profiler.before(step + 1)
        batch = parallel.global_batch(next(self.data), self.batch_sharding)
        state, metrics = self.train_step(state, batch)
        step += 1
        profiler.after(step, state)
        stop_reason = guard.check_step(step, metrics, state)
        if step % c.log_every == 0 or step == c.total_steps:
          metrics = jax.device_get(metrics)
          now = time.perf_counter()
          metrics["images_per_sec"] = (step - n_last) * c.batch_size / max(now - t_last, 1e-9)
          t_last, n_last = now, step
          writer.write(step, metrics)
          guard.check_log(step, metrics, bar)
          stop_reason = stop_reason or guard.check_skipped(step, int(state.skipped))
          bar.set_postfix(loss=f"{float(metrics['loss']):.4f}",
                          img_s=f"{metrics['images_per_sec']:.0f}", refresh=False)
        if step % c.eval_every == 0 or step == c.total_steps:
          row = self.evaluator.knn(state.eval_params, state.method_state)
          writer.write(step, row)
          guard.check_eval(step, row, bar)
          if self.is_main:
            bar.write(f"step {step}: kNN top-1 {row['knn_top1']:.4f}, "
                      f"embedding std {row['embedding_std']:.4f}")
          self._visualize(state, step, writer)
          t_last = time.perf_counter()  # do not count eval time as training throughput
        if stopper.should_stop(step) and not stop_reason:   # the same step on every process
          stop_reason = stopper.reason(step)
        if step % c.checkpoint_every == 0 or step == last or stop_reason:
          self.checkpointer.save(step, state, self._data_position(step), force=True)
        bar.update(1)
        if stop_reason and step < last:
          break
      self.checkpointer.wait()
    except OSError as e:  # disk full, quota, storage gone: one line, and what is safe on disk
      raise self._write_error(e, step, writer) from e
    finally:
      profiler.stop()
      stopper.restore()
      bar.close()
    self.state = state
    if stop_reason:
      _log(self.is_main, f"{stop_reason} (checkpoints in {self.checkpointer.directory})")
    if step < c.total_steps:
      writer.close()
      self._close_data()   # a later run() positions a new iterator
      return {"stopped_at": step, "reason": stop_reason or f"until_step={until_step}"}

    result = self._final_eval(state)
    writer.write(step, {k: v for k, v in result.items() if k != "step"})
    if self.is_main:
      workdir_lib.merge_json(os.path.join(self.workdir, "eval.json"), result)
      writer.write_images(step, plots.plot_run(self.workdir))
    writer.close()
    self.checkpointer.close()
    self._close_data()
    return result

  def _visualize(self, state: TrainState, step: int, writer: MetricsWriter) -> list[str]:
    """The method's own pictures (e.g. MAE reconstructions) as plots/<name>_step<N>.png + TensorBoard.

    `Method.visualize(params, state, images, rng) -> {name: uint8 [H, W, 3]}` (declared by the
    protocol, {} by default) is given a few held-out images in model-input form. With several
    processes the parameters are gathered to every host first (every process computes, process 0
    writes); methods that keep the default skip all of it.
    """
    visualize = self.method.visualize
    if getattr(visualize, "__func__", None) is methods_lib.Method.visualize:
      return []
    params, method_state = state.params, state.method_state
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils
      params, method_state = multihost_utils.process_allgather((params, method_state), tiled=True)
    pictures = visualize(params, method_state, self.evaluator.eval_bank.local_inputs(8),
                         jax.random.fold_in(jax.random.PRNGKey(self.config.seed), step))
    if not self.is_main:
      return []
    from PIL import Image
    out_dir = os.path.join(self.workdir, "plots")
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for name, picture in pictures.items():
      picture = np.asarray(picture)
      if picture.dtype != np.uint8 or picture.ndim != 3 or picture.shape[-1] != 3:
        raise ValueError(f"{type(self.method).__name__}.visualize returned {name!r} with shape "
                         f"{picture.shape} and dtype {picture.dtype}; expected uint8 [H, W, 3]")
      path = os.path.join(out_dir, f"{name}_step{step:06d}.png")
      Image.fromarray(picture).save(path)
      paths.append(path)
    writer.write_images(step, paths)
    return paths

  def _write_error(self, e: OSError, step: int, writer: MetricsWriter) -> ckpt_lib.WorkdirWriteError:
    """The one-line error for a failed write mid-run; partial checkpoint directories are removed."""
    try:
      self.checkpointer.wait()
    except Exception:  # the failed save itself re-raises here; it is already being reported
      pass
    self.checkpointer.discard_partial()
    writer.abandon()
    done = self.checkpointer.complete_steps()
    kept = (f"the last complete checkpoint (step {done[-1]}) is intact" if done else
            "no checkpoint was completed yet")
    full = e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
    hint = "free some space" if full else "fix the storage"
    return ckpt_lib.WorkdirWriteError(
        f"writing {e.filename or self.workdir} failed at step {step}: {e.strerror or e}; {kept} in "
        f"{self.checkpointer.directory}; {hint} and run the same command to resume")

  # -------------------------------------------------------------------------------------------
  # 3. Evaluation.
  # -------------------------------------------------------------------------------------------

  def _random_init_path(self) -> str:
    return os.path.join(self.workdir, "random_init.json")

  def _evaluate_random_init(self, state: TrainState, writer: MetricsWriter) -> None:
    """kNN and linear probe of the untrained backbone (the same init), stored for eval.json."""
    if not self.config.eval.random_init:
      return
    row = self.evaluator.knn(state.eval_params, state.method_state)
    lin = self.evaluator.linear(state.eval_params, state.method_state)
    result = {"knn_top1_random_init": row["knn_top1"], "linear_top1_random_init": lin["top1"]}
    result.update({f"{k}_random_init": row[k] for k in self.evaluator.extra_keys})
    writer.write(0, {"knn_top1_random_init": row["knn_top1"]})
    if self.is_main:
      with open(self._random_init_path(), "w") as f:
        json.dump(result, f)

  def _final_eval(self, state: TrainState) -> dict[str, Any]:
    """kNN and linear probe of the final state (of its weights EMA with config.eval_ema)."""
    row = self.evaluator.knn(state.eval_params, state.method_state)
    lin = self.evaluator.linear(state.eval_params, state.method_state)
    result = {"step": int(state.step), "knn_top1": row["knn_top1"], "linear_top1": lin["top1"],
              "embedding_std": row["embedding_std"], "rankme": row["rankme"],
              **{k: row[k] for k in self.evaluator.extra_keys}}
    if os.path.exists(self._random_init_path()):
      with open(self._random_init_path()) as f:
        result.update(json.load(f))
    return result


def _progress(config, start: int, enabled: bool):
  from tqdm import tqdm
  return tqdm(total=config.total_steps, initial=start, desc=f"{config.method}", unit="step",
              disable=not (enabled and config.progress_bar), dynamic_ncols=True, mininterval=0.5)


def _steps(steps: list[int]) -> str:
  return ", ".join(map(str, steps)) if len(steps) <= 4 else f"{steps[0]}, ..., {steps[-1]}"


def _log(enabled: bool, message: str) -> None:
  if enabled:
    print(message, flush=True)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains `config` in `workdir` (resuming if it holds checkpoints); returns the final eval dict."""
  return Trainer(config, workdir).run()
