"""`python -m ssljax.evaluate` on short digits runs: every protocol, eval.json, errors, plots."""
import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from conftest import make_tiny_config
from ssljax import train
from ssljax.evaluate import cli


def _digits_config(steps, image_size):
  c = make_tiny_config()
  c.total_steps, c.batch_size, c.checkpoint_every, c.log_every = steps, 32, steps, 10
  c.data.image_size = c.model.image_size = image_size
  c.data.augment.update(dict(crop_scale=(0.3, 1.0), hflip_prob=0.0, blur_prob=0.0, grayscale_prob=0.0))
  c.optimizer.base_lr = 1.6e-2
  c.simclr.temperature = 0.2
  c.eval.max_examples = 400
  c.eval.linear_epochs = 30
  return c


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
  """A 6-step tiny SimCLR run (checkpoints at 3 and 6) with its eval.json."""
  wd = str(tmp_path_factory.mktemp("short"))
  c = make_tiny_config()
  c.eval.max_examples = 200
  train.Trainer(c, wd).run()
  return wd


def _rows(wd):
  with open(os.path.join(wd, "eval.json")) as f:
    return json.load(f)


def test_knn_linear_fewshot_rows_and_eval_json(short_run, capsys):
  before = _rows(short_run)
  rows = cli.main(["--workdir", short_run, "--protocol", "knn,linear,fewshot", "--k", "10",
                   "--temperature", "0.1", "--epochs", "20", "--shots", "1,5", "--seeds", "0,1,2"])
  assert [r["protocol"] for r in rows] == ["knn", "linear", "fewshot"]
  assert all(r["step"] == 6 and r["random_init"] is False for r in rows)
  knn, lin, few = rows
  assert (knn["k"], knn["temperature"], lin["epochs"]) == (10, 0.1, 20)
  # 10 classes: chance is 0.1; even 6 steps of a tiny ViT are far above it on digits.
  assert knn["knn_top1"] > 0.3 and lin["linear_top1"] > 0.3
  assert few["5shot_top1_mean"] > few["1shot_top1_mean"] > 0.15
  assert few["1shot_top1_std"] > 0.0 and few["5shot_top1_std"] >= 0.0
  out = capsys.readouterr().out
  assert "knn_top1" in out and "5shot_top1_std" in out and "protocol" in out.splitlines()[0]

  data = _rows(short_run)
  for key, value in before.items():   # the trainer's keys are kept
    if key != "evaluations":
      assert data[key] == value
  assert [r["protocol"] for r in data["evaluations"]][-3:] == ["knn", "linear", "fewshot"]
  # Features are cached per run; the kNN here agrees with the online evaluator's at the same k/T.
  assert abs(data["knn_top1"] - cli.main(["--workdir", short_run, "--protocol", "knn",
                                          "--no-write"])[0]["knn_top1"]) < 1e-9

  # The same protocol and settings replace their row; other settings add one.
  n = len(data["evaluations"])
  cli.main(["--workdir", short_run, "--protocol", "knn", "--k", "10", "--temperature", "0.1"])
  assert len(_rows(short_run)["evaluations"]) == n
  cli.main(["--workdir", short_run, "--protocol", "knn", "--k", "5", "--step", "3"])
  rows3 = _rows(short_run)["evaluations"]
  assert len(rows3) == n + 1 and rows3[-1]["step"] == 3 and rows3[-1]["k"] == 5


def test_features_are_computed_once(short_run):
  with cli.PretrainedRun(short_run, max_examples=64) as run:
    a = run.features()
    assert run.features() is a
    assert a[0].shape == (64, 32) and a[1].shape == (64, 32)
    np.testing.assert_allclose(
        a[1][:4], run.method.features(run.params, run.method_state, run.eval_x[:4]), rtol=1e-5,
        atol=1e-6)


def test_diagnostics_flags_a_collapsed_embedding_and_writes_plots(short_run, tmp_path):
  # An artificially collapsed checkpoint: the projection head's kernels zeroed, so every image
  # maps to the same embedding; saved as step 7 next to the healthy step 6 (in a copy of the run).
  from ssljax import checkpoint as ckpt_lib
  short_run = shutil.copytree(short_run, str(tmp_path / "run"))
  with cli.PretrainedRun(short_run, max_examples=64) as run:
    head = jax.tree_util.tree_map_with_path(
        lambda p, x: x * 0 if "kernel" in jax.tree_util.keystr(p) else x, run.params["head"])
    state = run.state.replace(params=dict(run.params, head=head))
    checkpointer = ckpt_lib.Checkpointer(os.path.join(short_run, "checkpoints"), keep=3)
    c = run.config
    checkpointer.save(7, state, ckpt_lib.data_position(7, 7 * c.batch_size, c.seed, c.batch_size),
                      force=True)
    checkpointer.wait()
    checkpointer.close()
  healthy = cli.main(["--workdir", short_run, "--protocol", "diagnostics", "--step", "6",
                      "--no-tsne", "--max-examples", "64"])[0]
  collapsed = cli.main(["--workdir", short_run, "--protocol", "diagnostics", "--step", "7",
                        "--no-tsne", "--max-examples", "64", "--no-write"])[0]
  assert healthy["collapsed"] is False and collapsed["collapsed"] is True
  assert collapsed["embedding_std"] < 1e-4 < healthy["embedding_std"]
  assert collapsed["rankme"] < 1.5 < healthy["rankme"]
  assert 0.0 <= healthy["alignment"] < 4.0 and healthy["uniformity"] < collapsed["uniformity"]
  assert sorted(healthy["plots"]) == ["plots/attention.png", "plots/embedding_pca.png",
                                      "plots/spectrum.png"]
  for p in healthy["plots"]:
    with Image.open(os.path.join(short_run, p)) as im:
      assert im.format == "PNG" and im.size[0] >= 300
      assert np.asarray(im.convert("L")).std() > 5.0


def test_errors_name_the_problem(short_run, tmp_path):
  before = sorted(os.listdir(short_run))
  with pytest.raises(SystemExit, match=r"no checkpoint at step 4 .*available steps: \[3, 6\]"):
    cli.main(["--workdir", short_run, "--step", "4"])
  with pytest.raises(SystemExit, match="config.json does not exist"):
    cli.main(["--workdir", str(tmp_path)])
  with pytest.raises(SystemExit, match=r"--protocol 'bogus'; expected one of"):
    cli.main(["--workdir", short_run, "--protocol", "knn,bogus"])
  with pytest.raises(SystemExit, match=r"Unknown command line flag 'bogus'"):
    cli.main(["--workdir", short_run, "--bogus"])
  with pytest.raises(SystemExit, match=r"--shots=1,x: expected comma-separated integers"):
    cli.main(["--workdir", short_run, "--shots", "1,x"])
  with pytest.raises(SystemExit, match=r"random_init with step=3"):
    cli.main(["--workdir", short_run, "--random-init", "--step", "3"])
  assert sorted(os.listdir(short_run)) == before   # opening a run writes nothing


def test_opening_a_run_leaves_its_files_alone(short_run):
  """`PretrainedRun` restores through `ssljax.workdir.open_run` (no Trainer): config.json and
  the checkpoints are byte-for-byte as the run left them, and the state is the checkpoint's."""
  def snapshot():
    out = {}
    for root, _, files in os.walk(short_run):
      for name in files:
        path = os.path.join(root, name)
        with open(path, "rb") as f:
          out[os.path.relpath(path, short_run)] = f.read()
    return out
  before = snapshot()
  with cli.PretrainedRun(short_run, step=3, max_examples=64) as run:
    assert run.step == 3 and int(run.state.step) == 3 and not run.random_init
  with cli.PretrainedRun(short_run, random_init=True, max_examples=64) as init:
    assert init.step == 0 and int(init.state.step) == 0
  after = snapshot()
  assert after == before


def test_python_dash_m_entry_point(short_run):
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_backend_optimization_level=0")
  proc = subprocess.run([sys.executable, "-m", "ssljax.evaluate", "--workdir", short_run,
                         "--protocol", "knn", "--random-init", "--max-examples", "64", "--no-write"],
                        capture_output=True, text=True, env=env, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "knn (random init)" in proc.stdout and "knn_top1" in proc.stdout


@pytest.mark.slow
def test_trained_beats_random_init_on_knn_and_linear(tmp_path):
  """A 120-step SimCLR run on 16x16 digits: kNN and linear above the same backbone at init."""
  wd = str(tmp_path)
  train.Trainer(_digits_config(120, 16), wd).run()
  trained = cli.main(["--workdir", wd, "--protocol", "knn,linear"])
  random = cli.main(["--workdir", wd, "--protocol", "knn,linear", "--random-init"])
  assert trained[0]["knn_top1"] > random[0]["knn_top1"] + 0.05, (trained, random)
  assert trained[1]["linear_top1"] > random[1]["linear_top1"] + 0.03, (trained, random)
  assert random[0]["knn_top1"] > 0.3 and random[0]["step"] == 0


def test_open_run_refits_the_mesh_to_the_devices_at_hand(short_run):
  """A run trained on 8 devices opens on 3: the mesh becomes data parallel over the most devices
  that divide its batch (2 of 16), and the restored parameters are the 8-device run's."""
  from ssljax import workdir
  full = workdir.open_run(short_run)
  small = workdir.open_run(short_run, devices=jax.devices()[:3])
  assert full.mesh.devices.size == 8 and small.mesh.devices.size == 2
  assert dict(small.mesh.shape) == {"data": 2, "fsdp": 1, "model": 1}
  assert small.step == full.step == 6
  for a, b in zip(jax.tree_util.tree_leaves(full.params), jax.tree_util.tree_leaves(small.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert small.input_shape() == (8, 8, 1)
