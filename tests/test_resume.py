"""Elastic resume and its rules: another device count, config changes, no silent restarts.

In-process, on the 8 simulated CPU devices of conftest: a run checkpointed on 1 device resumes on
8 (and the losses after the resume match an uninterrupted 8-device run), a changed
optimizer.base_lr stops with one line, a changed total_steps is applied and said, a workdir whose
checkpoints are all damaged stops instead of training from step 0, and checkpoints of the former
format (a grain iterator state per process) are still read.
"""
import json
import os

import jax
import numpy as np
import pytest

from ssljax import checkpoint as ckpt_lib
from ssljax import resume
from ssljax import train
from ssljax.config import ConfigError
from ssljax.metrics_writer import read_jsonl


def _losses(workdir):
  return {r["step"]: r["loss"] for r in read_jsonl(os.path.join(str(workdir), "metrics.jsonl"))
          if "loss" in r}


def _corrupt_arrays(step_dir, truncate=False):
  """Damages every array file of a checkpoint step: truncated to half, or overwritten."""
  n = 0
  for root, _, files in os.walk(os.path.join(step_dir, "state")):
    for name in files:
      if name.startswith("_"):
        continue
      path = os.path.join(root, name)
      if truncate:
        with open(path, "r+b") as f:
          f.truncate(os.path.getsize(path) // 2)
      else:
        with open(path, "wb") as f:
          f.write(b"garbage")
      n += 1
  assert n > 0


def test_one_device_checkpoint_resumes_on_eight(tiny_config, tmp_path, capsys):
  devices = jax.devices()
  assert len(devices) == 8
  out = train.Trainer(tiny_config(), str(tmp_path / "elastic"), devices=devices[:1]).run(until_step=3)
  assert out["stopped_at"] == 3
  resumed = train.Trainer(tiny_config(), str(tmp_path / "elastic"), devices=devices)
  resumed.run()
  said = capsys.readouterr().out
  assert "resumed from checkpoint at step 3" in said
  assert "(written on 1 process(es) x 1 devices, now 1 process(es) x 8 devices)" in said
  assert int(resumed.state.step) == 6
  train.Trainer(tiny_config(), str(tmp_path / "ref"), devices=devices).run()
  got, want = _losses(tmp_path / "elastic"), _losses(tmp_path / "ref")
  assert sorted(got) == sorted(want) == [1, 2, 3, 4, 5, 6]   # every step logged once
  for step in (4, 5, 6):
    assert got[step] == pytest.approx(want[step], rel=1e-4)
  assert len({round(got[s], 6) for s in got}) > 1   # the loss moves: the check is not vacuous


def test_changed_base_lr_stops_with_one_line_and_keeps_config_json(tiny_config, tmp_path):
  train.Trainer(tiny_config(), str(tmp_path)).run(until_step=3)
  before = (tmp_path / "config.json").read_text()
  cfg = tiny_config()
  cfg.optimizer.base_lr = 2e-3
  with pytest.raises(ConfigError) as e:
    train.Trainer(cfg, str(tmp_path))
  message = str(e.value)
  assert "\n" not in message
  assert "optimizer.base_lr 0.001 -> 0.002" in message
  assert "--config.allow_config_change=True" in message
  assert (tmp_path / "config.json").read_text() == before   # the run's config is not rewritten
  cfg.allow_config_change = True
  trainer = train.Trainer(cfg, str(tmp_path))
  trainer.run()
  assert int(trainer.state.step) == 6


def test_changed_total_steps_is_applied_and_said(tiny_config, tmp_path, capsys):
  train.Trainer(tiny_config(), str(tmp_path)).run(until_step=3)
  cfg = tiny_config()
  cfg.total_steps, cfg.log_every = 8, 2
  trainer = train.Trainer(cfg, str(tmp_path))
  result = trainer.run()
  lines = [l for l in capsys.readouterr().out.splitlines() if "resumed from checkpoint" in l]
  assert len(lines) == 1
  assert "config changes applied: log_every 1 -> 2, total_steps 6 -> 8" in lines[0]
  assert result["step"] == 8 and int(trainer.state.step) == 8
  assert json.loads((tmp_path / "config.json").read_text())["total_steps"] == 8


def test_config_changes_safe_and_other():
  old = {"total_steps": 10, "mesh": {"data": -1}, "optimizer": {"base_lr": 1e-3},
         "eval": {"knn_k": 20}, "restart_from_scratch": True}
  import ml_collections
  new = ml_collections.ConfigDict({"total_steps": 20, "mesh": {"data": 4},
                                   "optimizer": {"base_lr": 1e-3, "b2": 0.95},
                                   "eval": {"knn_k": 10}, "restart_from_scratch": False})
  defaults = ml_collections.ConfigDict({"optimizer": {"b2": 0.999}})
  safe, other = resume.config_changes(old, new, defaults)
  assert safe == ["eval.knn_k 20 -> 10", "mesh.data -1 -> 4", "total_steps 10 -> 20"]
  assert other == ["optimizer.b2 0.999 -> 0.95"]   # a key added since: compared with its default


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_all_checkpoints_damaged_stops_instead_of_training_from_zero(tiny_config, tmp_path, capsys):
  train.Trainer(tiny_config(), str(tmp_path)).run(until_step=6)   # checkpoints 3 and 6
  rows_before = read_jsonl(str(tmp_path / "metrics.jsonl"))
  _corrupt_arrays(str(tmp_path / "checkpoints" / "6"), truncate=True)
  _corrupt_arrays(str(tmp_path / "checkpoints" / "3"))
  with pytest.raises(ckpt_lib.ResumeError) as e:
    train.Trainer(tiny_config(), str(tmp_path)).run()
  message = str(e.value)
  assert "\n" not in message
  assert "no checkpoint in" in message and "step 6 (" in message and "step 3 (" in message
  assert "--config.restart_from_scratch=True" in message
  assert "checkpoint at step 6" in capsys.readouterr().out   # the fallback was said
  assert sorted(os.listdir(tmp_path / "checkpoints_damaged")) == ["3", "6"]
  assert read_jsonl(str(tmp_path / "metrics.jsonl")) == rows_before   # history untouched
  # The next attempt still refuses: damaged checkpoints are a run too.
  with pytest.raises(ckpt_lib.ResumeError, match=r"steps 3, 6 in .*checkpoints_damaged"):
    train.Trainer(tiny_config(), str(tmp_path)).run()
  # Only the explicit option trains from step 0, and it keeps the old run under previous/.
  cfg = tiny_config()
  cfg.restart_from_scratch = True
  trainer = train.Trainer(cfg, str(tmp_path))
  trainer.run(until_step=2)
  said = capsys.readouterr().out
  assert "restart_from_scratch=True" in said and "training from step 0" in said
  (previous,) = os.listdir(tmp_path / "previous")
  kept = tmp_path / "previous" / previous
  assert read_jsonl(str(kept / "metrics.jsonl")) == rows_before
  assert sorted(os.listdir(kept / "checkpoints_damaged")) == ["3", "6"]
  assert [r["step"] for r in read_jsonl(str(tmp_path / "metrics.jsonl")) if "loss" in r] == [1, 2]


def test_checkpoint_of_the_former_format_is_read(tiny_config, tmp_path):
  """A step written with a grain iterator state per process (no position): resumed at its step."""
  import grain
  import orbax.checkpoint as ocp
  trainer = train.Trainer(tiny_config(), str(tmp_path / "old"))
  trainer.run(until_step=3)
  state = trainer.state
  directory = str(tmp_path / "old" / "checkpoints")
  for name in os.listdir(directory):
    os.rename(os.path.join(directory, name), str(tmp_path / f"new_format_{name}"))
  data = trainer._data_iterator()
  for _ in range(3):
    next(data)
  manager = ocp.CheckpointManager(directory, item_handlers={
      "state": ocp.StandardCheckpointHandler(), "data": grain.checkpoint.CheckpointHandler()})
  manager.save(3, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                          data=grain.checkpoint.CheckpointSave(data)), force=True)
  manager.wait_until_finished()
  manager.close()
  assert os.path.exists(os.path.join(directory, "3", "data", "process_0-of-1.json"))
  resumed = train.Trainer(tiny_config(), str(tmp_path / "old"))
  resumed.run()
  train.Trainer(tiny_config(), str(tmp_path / "ref")).run()
  got, want = _losses(tmp_path / "old"), _losses(tmp_path / "ref")
  assert [got[s] for s in (4, 5, 6)] == [want[s] for s in (4, 5, 6)]   # same mesh: bitwise


def test_is_damage_tells_damage_from_other_failures():
  assert ckpt_lib.is_damage(FileNotFoundError("x"))
  assert ckpt_lib.is_damage(ValueError("DATA_LOSS: Error reading chunk"))
  assert not ckpt_lib.is_damage(RuntimeError("RESOURCE_EXHAUSTED: out of memory"))
  assert not ckpt_lib.is_damage(ConnectionError("coordination service unavailable"))
  wrapped = RuntimeError("restore failed")
  wrapped.__cause__ = FileNotFoundError("missing")
  assert ckpt_lib.is_damage(wrapped)


def test_data_position_is_the_step_and_records(tiny_config, tmp_path):
  cfg = tiny_config()
  train.Trainer(cfg, str(tmp_path)).run(until_step=3)
  ckpt = ckpt_lib.Checkpointer(str(tmp_path / "checkpoints"), keep=2)
  trainer = train.Trainer(cfg, str(tmp_path))
  _, position = ckpt.restore(3, trainer.abstract_state)
  assert position == {"step": 3, "records": 3 * cfg.batch_size, "seed": cfg.seed,
                      "batch_size": cfg.batch_size, "processes": 1, "devices": 8}
  assert not any(f.startswith("process_") for f in os.listdir(tmp_path / "checkpoints" / "3"))
  ckpt.close()
  # The first batch after a resume is batch 4 of an uninterrupted stream.
  trainer.initial_state()
  fresh = trainer._data_iterator()
  for _ in range(3):
    next(fresh)
  a, b = next(trainer.data), next(fresh)
  for key in a:
    np.testing.assert_array_equal(a[key], b[key])


def test_resume_with_grain_workers_is_bit_exact(tiny_config, tmp_path):
  """worker_count > 0 (mp_prefetch): the resumed stream is the uninterrupted one, bit for bit;
  the worker count is a safe change (0 -> 2 here)."""
  cfg = tiny_config()
  cfg.data.worker_count = 1
  train.Trainer(cfg, str(tmp_path / "workers")).run(until_step=3)
  cfg.data.worker_count = 2
  resumed = train.Trainer(cfg, str(tmp_path / "workers"))
  resumed.run()
  assert resumed.config_changes == ["data.worker_count 1 -> 2"]
  train.Trainer(tiny_config(), str(tmp_path / "ref")).run()
  got, want = _losses(tmp_path / "workers"), _losses(tmp_path / "ref")
  assert [got[s] for s in range(1, 7)] == [want[s] for s in range(1, 7)]


def test_a_save_cut_short_is_not_a_run(tiny_config, tmp_path):
  """Killed during the first save: only a temporary directory; the next start trains from 0."""
  os.makedirs(tmp_path / "checkpoints" / "3.orbax-checkpoint-tmp-1733")
  assert resume.has_run(str(tmp_path)) == []
  os.makedirs(tmp_path / "checkpoints_damaged" / "5.1")
  assert resume.has_run(str(tmp_path)) == [5]


def test_cli_config_change_on_resume_one_line_or_applied(tmp_path):
  """Through `python -m ssljax.main`: a changed base_lr exits 2 with one line and no traceback;
  a changed total_steps resumes and says so."""
  from tests.test_reliability import _cli
  base = ("--config.checkpoint_every=2", "--config.eval_every=1000", "--config.eval.linear_epochs=1")
  proc = _cli(tmp_path, "--config.total_steps=2", *base)
  out, _ = proc.communicate(timeout=600)
  assert proc.returncode == 0, out[-2000:]
  proc = _cli(tmp_path, "--config.total_steps=2", "--config.optimizer.base_lr=0.005", *base)
  out, _ = proc.communicate(timeout=600)
  assert proc.returncode == 2 and "Traceback" not in out, out[-3000:]
  last = out.strip().splitlines()[-1]
  assert last.startswith("ssljax") and "optimizer.base_lr 0.002 -> 0.005" in last
  assert "--config.allow_config_change=True" in last
  proc = _cli(tmp_path, "--config.total_steps=4", *base)
  out, _ = proc.communicate(timeout=600)
  assert proc.returncode == 0, out[-3000:]
  assert "resumed from checkpoint at step 2" in out
  assert "config changes applied: total_steps 2 -> 4" in out


def test_a_restore_failure_that_is_not_damage_moves_nothing(tiny_config, tmp_path):
  """Out of memory while restoring says so in one line; the checkpoint stays where it is."""
  train.Trainer(tiny_config(), str(tmp_path)).run(until_step=3)
  trainer = train.Trainer(tiny_config(), str(tmp_path))

  def oom(*args, **kwargs):
    raise RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 1.2GiB")

  trainer.checkpointer._manager.restore = oom
  with pytest.raises(ckpt_lib.ResumeError) as e:
    trainer.initial_state()
  message = str(e.value)
  assert "\n" not in message and "checkpoint at step 3" in message
  assert "RESOURCE_EXHAUSTED" in message and "nothing was moved" in message
  assert "--config.restart_from_scratch=True" in message
  assert os.listdir(tmp_path / "checkpoints") == ["3"]
  assert not os.path.exists(tmp_path / "checkpoints_damaged")


def test_a_log_without_checkpoints_is_moved_aside_not_deleted(tiny_config, tmp_path, capsys):
  """A run killed before its first checkpoint: the next one starts at 0 and keeps the old log."""
  rows = '{"step": 1, "loss": 4.0}\n{"step": 2, "loss": 3.9}\n'
  (tmp_path / "metrics.jsonl").write_text(rows)
  train.Trainer(tiny_config(), str(tmp_path)).run(until_step=1)
  said = capsys.readouterr().out
  assert "training from step 0; the previous metrics.jsonl was moved to" in said
  (previous,) = os.listdir(tmp_path / "previous")
  assert (tmp_path / "previous" / previous / "metrics.jsonl").read_text() == rows
  assert [r["step"] for r in read_jsonl(str(tmp_path / "metrics.jsonl"))] == [1]
