"""Multi-host on one machine: 2 CPU processes x 2 devices (gloo collectives) vs 1 process x 4 devices.

For SimCLR (negatives over the global batch) and DINO (multi-crop, EMA teacher, a center updated
over the global batch), the 2-process run trains a tiny config to step 3 with the Trainer (distributed set up from
the JAX_* environment), stops, and is resumed to step 6 in fresh processes by `python -m ssljax.main`
(distributed set up from its flags). The reference is a plain run of one process on 4 devices: the
pipeline gives every process count the same global batches. Same losses, one metrics log
(process 0's), and a data position in each checkpoint that does not depend on the process count.

Elastic resume: 2 processes x 2 devices train to step 10 and stop; 1 process x 4 devices resumes
the same workdir at step 10 (never 0) and its steps 11-20 match an uninterrupted 1 x 4 run.
Agreed preemption: SIGTERM to one of 2 processes makes both save the same step and exit 0.

This file is also the worker script: `python tests/test_multiprocess.py <mode> <config.py> <workdir>`.
"""
import json
import os
import socket
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

CONFIG_FILE = """
import sys
sys.path.insert(0, {HERE!r})
from conftest import make_tiny_config


def get_config():
  c = make_tiny_config({method!r})   # batch 16, 6 steps, checkpoints at 3 and 6
  c.eval.max_examples = 32
  c.eval.batch_size = 16
  c.eval.linear_epochs = 1
  if {method!r} == "dino":     # a small head: the paper's 65536 x 2048 last layer is 134M parameters
    c.dino.update(dict(out_dim=256, hidden_dim=64, bottleneck_dim=32))
  return c
"""


def _load_config(path):
  import importlib.util
  spec = importlib.util.spec_from_file_location("mp_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


ELASTIC_CONFIG_FILE = """
import sys
sys.path.insert(0, {HERE!r})
from conftest import make_tiny_config


def get_config():
  c = make_tiny_config("simclr")   # batch 16, log every step
  c.total_steps = 20
  c.checkpoint_every = 10
  c.eval.max_examples = 32
  c.eval.batch_size = 16
  c.eval.linear_epochs = 1
  return c
"""


def _worker(mode: str, config_path: str, workdir: str) -> None:
  config = _load_config(config_path)
  if mode.startswith("trainer_until_"):
    until = int(mode[len("trainer_until_"):])
    from ssljax import distributed
    assert distributed.initialize(), "expected the JAX_* environment to ask for a multi-host run"
    from ssljax import train
    import jax
    assert jax.process_count() == 2 and len(jax.devices()) == 4, (jax.process_count(), jax.devices())
    out = train.Trainer(config, workdir).run(until_step=until)
    assert out["stopped_at"] == until, out
  elif mode == "reference":
    import jax
    from ssljax import train
    assert jax.process_count() == 1 and len(jax.devices()) == 4
    train.Trainer(config, workdir).run()
  else:
    raise ValueError(f"mode={mode!r}")


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _env(devices: int, **extra) -> dict:
  env = dict(os.environ)
  for k in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID", "SSLJAX_DISTRIBUTED"):
    env.pop(k, None)
  env.update(XLA_FLAGS=f"--xla_force_host_platform_device_count={devices} "
                       "--xla_backend_optimization_level=0",
             JAX_PLATFORMS="cpu", PYTHONHASHSEED="0", **extra)
  return env


def _run_all(commands_envs, timeout=400):
  """Starts all commands at once, waits for all; fails with the output of any that failed."""
  procs = [subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True) for cmd, env in commands_envs]
  outs = []
  try:
    for p in procs:
      outs.append(p.communicate(timeout=timeout)[0])
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
  for p, out in zip(procs, outs):
    assert p.returncode == 0, f"{p.args} exited {p.returncode}:\n{out[-4000:]}"
  return outs


def _position(step_dir):
  """The data position of one checkpoint step (one file, whatever the process count)."""
  assert not os.path.exists(os.path.join(step_dir, "data"))   # no per-process iterator states
  with open(os.path.join(step_dir, "position", "metadata")) as f:
    return json.load(f)


def _losses(workdir):
  from ssljax.metrics_writer import read_jsonl
  rows = [r for r in read_jsonl(os.path.join(workdir, "metrics.jsonl")) if "loss" in r]
  return [r["step"] for r in rows], [r["loss"] for r in rows]


def test_distributed_settings_from_flags_env_or_cluster_detection():
  from ssljax.distributed import resolve
  env = {"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234", "JAX_NUM_PROCESSES": "4", "JAX_PROCESS_ID": "3"}
  assert resolve(environ={}) is None                        # nothing given: a single process
  assert resolve(environ={"SLURM_PROCID": "0"}) is None      # a cluster alone does not opt in
  # --distributed alone: everything is left to JAX's Cloud TPU / SLURM detection.
  assert resolve(enable=True, environ={}) == {
      "coordinator_address": None, "num_processes": None, "process_id": None}
  assert resolve(environ={"SSLJAX_DISTRIBUTED": "1"})["num_processes"] is None
  assert resolve(environ=env) == {"coordinator_address": "10.0.0.1:1234", "num_processes": 4,
                                  "process_id": 3}
  assert resolve("h:1", 2, 0, environ=env) == {"coordinator_address": "h:1", "num_processes": 2,
                                               "process_id": 0}   # flags win over the environment
  with pytest.raises(ValueError, match=r"process_id=2; expected 0 <= process_id < num_processes=2"):
    resolve("h:1", 2, 2, environ={})
  with pytest.raises(ValueError, match="JAX_NUM_PROCESSES='four'"):
    resolve(environ={"JAX_NUM_PROCESSES": "four"})


def _run_two_processes(script, mode, config_path, workdir):
  """Runs `script mode config workdir` as 2 processes x 2 devices, distributed from the environment."""
  address = f"localhost:{_free_port()}"
  return _run_all([([sys.executable, script, mode, str(config_path), workdir],
                    _env(2, JAX_COORDINATOR_ADDRESS=address, JAX_NUM_PROCESSES="2",
                         JAX_PROCESS_ID=str(i)))
                   for i in range(2)])


@pytest.mark.slow
@pytest.mark.multiprocess
@pytest.mark.parametrize("method", ["simclr", "dino"])
def test_two_processes_match_one_process_and_resume(tmp_path, method):
  config_path = tmp_path / f"tiny_{method}.py"
  config_path.write_text(CONFIG_FILE.format(HERE=HERE, method=method))
  multi, ref = str(tmp_path / "multi"), str(tmp_path / "ref")
  me = os.path.abspath(__file__)

  # Phase 1: 2 processes, Trainer.run(until_step=3), distributed from the environment.
  _run_two_processes(me, "trainer_until_3", config_path, multi)
  ckpt3 = os.path.join(multi, "checkpoints", "3")
  assert _position(ckpt3) == {"step": 3, "records": 48, "seed": 0, "batch_size": 16,
                              "processes": 2, "devices": 4}
  assert not os.path.exists(os.path.join(multi, "eval.json"))

  # Phase 2: fresh processes resume at 3 and finish at 6 through the CLI, distributed from flags.
  address = f"localhost:{_free_port()}"
  outs = _run_all([([sys.executable, "-m", "ssljax.main", "--config", str(config_path),
                     "--workdir", multi, "--coordinator_address", address, "--num_processes", "2",
                     "--process_id", str(i)], _env(2)) for i in range(2)])
  assert "resumed from checkpoint at step 3" in outs[0]
  assert "resumed from checkpoint" not in outs[1]   # only process 0 prints and logs
  assert '"knn_top1"' in outs[0] and '"knn_top1"' not in outs[1]

  # Reference: one process, 4 devices, uninterrupted.
  _run_all([([sys.executable, me, "reference", str(config_path), ref], _env(4))])

  steps, losses = _losses(multi)
  ref_steps, ref_losses = _losses(ref)
  assert steps == ref_steps == [1, 2, 3, 4, 5, 6]   # one row per step: process 1 wrote none
  assert losses == pytest.approx(ref_losses, rel=1e-5, abs=1e-6)
  assert len(set(round(x, 6) for x in losses)) > 1   # the model trains: the loss changes
  with open(os.path.join(multi, "eval.json")) as f, open(os.path.join(ref, "eval.json")) as g:
    got, want = json.load(f), json.load(g)
  assert got["step"] == want["step"] == 6
  assert got["knn_top1"] == pytest.approx(want["knn_top1"], abs=1e-6)
  assert os.path.exists(os.path.join(multi, "plots", "loss.png"))
  assert _position(os.path.join(multi, "checkpoints", "6"))["records"] == 6 * 16


@pytest.mark.slow
@pytest.mark.multiprocess
def test_two_by_two_checkpoint_resumes_on_one_by_four(tmp_path):
  """The issue's check: 2 processes x 2 devices to step 10 (checkpoint at 10), then the same
  workdir on 1 process x 4 devices to step 20 resumes at 10 and matches an uninterrupted run."""
  config_path = tmp_path / "elastic.py"
  config_path.write_text(ELASTIC_CONFIG_FILE.format(HERE=HERE))
  work, ref = str(tmp_path / "work"), str(tmp_path / "ref")
  me = os.path.abspath(__file__)
  _run_two_processes(me, "trainer_until_10", config_path, work)
  assert sorted(os.listdir(os.path.join(work, "checkpoints"))) == ["10"]
  (out,) = _run_all([([sys.executable, "-m", "ssljax.main", "--config", str(config_path),
                       "--workdir", work], _env(4))])
  assert "resumed from checkpoint at step 10" in out, out[-3000:]
  assert "written on 2 process(es) x 2 devices, now 1 process(es) x 4 devices" in out
  assert "starting from scratch" not in out and not os.path.exists(
      os.path.join(work, "checkpoints_damaged"))
  _run_all([([sys.executable, me, "reference", str(config_path), ref], _env(4))])
  steps, losses = _losses(work)
  ref_steps, ref_losses = _losses(ref)
  assert steps == ref_steps == list(range(1, 21))   # every step logged once
  assert losses[10:] == pytest.approx(ref_losses[10:], rel=1e-4)
  assert len(set(round(x, 6) for x in losses[10:])) > 1


@pytest.mark.slow
@pytest.mark.multiprocess
def test_sigterm_to_one_of_two_processes_saves_the_same_step_on_both(tmp_path):
  import signal
  import time
  config_path = tmp_path / "long.py"
  config_path.write_text(ELASTIC_CONFIG_FILE.format(HERE=HERE))
  work = str(tmp_path / "work")
  address = f"localhost:{_free_port()}"
  cmds = [[sys.executable, "-m", "ssljax.main", "--config", str(config_path), "--workdir", work,
           "--coordinator_address", address, "--num_processes", "2", "--process_id", str(i),
           "--config.total_steps=100000", "--config.checkpoint_every=100000",
           "--config.eval_every=100000"] for i in range(2)]
  procs = [subprocess.Popen(cmd, env=_env(2), cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True) for cmd in cmds]
  try:
    from ssljax.metrics_writer import read_jsonl
    path, t0 = os.path.join(work, "metrics.jsonl"), time.time()
    while not (os.path.exists(path) and any(r.get("step", 0) >= 3 for r in read_jsonl(path))):
      assert time.time() - t0 < 300 and all(p.poll() is None for p in procs), "no step 3"
      time.sleep(0.2)
    procs[1].send_signal(signal.SIGTERM)   # the process that does not log
    outs = [p.communicate(timeout=240)[0] for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
  for p, out in zip(procs, outs):
    assert p.returncode == 0, out[-3000:]
  steps = [int(s) for s in os.listdir(os.path.join(work, "checkpoints")) if s.isdigit()]
  assert len(steps) == 1 and 3 <= steps[0] < 100000, steps
  assert f"another process received a stop signal (SIGTERM / SIGUSR1 / SIGINT): all 2 processes " \
         f"saved step {steps[0]}" in outs[0]
  assert _position(os.path.join(work, "checkpoints", str(steps[0])))["step"] == steps[0]
  logged = [r["step"] for r in read_jsonl(path) if "loss" in r]
  assert logged == list(range(1, steps[0] + 1))


if __name__ == "__main__":
  _worker(*sys.argv[1:])
