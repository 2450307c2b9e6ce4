"""Run logs beyond metrics.jsonl / TensorBoard: Weights & Biases (offline) and profiler traces.

- logging.wandb=True with WANDB_MODE=offline writes an offline W&B run under workdir/wandb holding
  the logged scalars; with it off, `wandb` is never imported.
- profile_steps=(2, 3) writes a jax.profiler trace (xplane.pb, TensorBoard's profile plugin) under
  workdir/profile; bad values are one-line errors.
"""
import glob
import os
import subprocess
import sys

import pytest

from ssljax import train
from ssljax.config import ConfigError, validate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_profile_steps_write_a_trace(tiny_config, tmp_path):
  c = tiny_config()
  c.total_steps, c.checkpoint_every = 4, 4
  c.profile_steps = (2, 3)
  train.Trainer(c, str(tmp_path / "run")).run()
  traces = glob.glob(str(tmp_path / "run" / "profile" / "plugins" / "profile" / "*" / "*.xplane.pb"))
  assert traces and all(os.path.getsize(t) > 0 for t in traces), traces


@pytest.mark.parametrize("steps", [(3, 2), (0, 2), (5,), (1, 2, 3)])
def test_bad_profile_steps(tiny_config, steps):
  c = tiny_config()
  c.profile_steps = steps
  with pytest.raises(ConfigError, match=r"config.profile_steps=.*; expected \(\) \(off\) or "
                                        r"\(first, last\)"):
    validate(c)


def test_wandb_offline_run_logs_the_scalars(tiny_config, tmp_path, monkeypatch):
  wandb = pytest.importorskip("wandb", reason="wandb is in the [test] extra: pip install -e '.[test]'")
  monkeypatch.setenv("WANDB_MODE", "offline")
  monkeypatch.setenv("WANDB_SILENT", "true")
  monkeypatch.setenv("WANDB_DISABLE_GIT", "true")
  c = tiny_config()
  c.total_steps = 3
  c.logging.wandb = True
  c.logging.wandb_project = "ssljax-test"
  train.Trainer(c, str(tmp_path / "run")).run()
  runs = glob.glob(str(tmp_path / "run" / "wandb" / "offline-run-*"))
  assert len(runs) == 1, os.listdir(tmp_path / "run")
  files = glob.glob(os.path.join(runs[0], "*.wandb"))
  assert files and os.path.getsize(files[0]) > 0
  summary = os.path.join(runs[0], "files", "wandb-summary.json")
  if os.path.exists(summary):   # written at finish
    import json
    with open(summary) as f:
      assert "loss" in json.load(f)
  assert wandb.run is None   # finished with the run


def test_wandb_is_not_imported_when_off(tmp_path):
  code = f"""
import sys
sys.path.insert(0, {ROOT!r}); sys.path.insert(0, {os.path.join(ROOT, 'tests')!r})
from conftest import make_tiny_config
from ssljax import train
c = make_tiny_config(); c.total_steps = 1
train.Trainer(c, {str(tmp_path / 'run')!r}).run()
assert 'wandb' not in sys.modules, 'wandb was imported'
print('ok')
"""
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       cwd=ROOT, timeout=600)
  assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-2000:]


def test_wandb_mode_is_checked(tiny_config):
  c = tiny_config()
  c.logging.wandb_mode = "sometimes"
  with pytest.raises(ConfigError, match=r"config.logging.wandb_mode='sometimes'; expected one of"):
    validate(c)
