"""benchmarks/data_pipeline_peer.py and benchmarks/time_to_accuracy.py, mostly without the peer env.

The ssljax sides run; the torch sides are replaced by fakes, except in the tests marked `peer`, which
skip when .venv-peer/ (bash benchmarks/peer_env.sh) is absent.
"""
import json
import math
import os
import subprocess

import numpy as np
import pytest

from benchmarks import data_pipeline_peer as D
from benchmarks import time_to_accuracy as T
from benchmarks import _torch_pipeline_worker as W

pytestmark = pytest.mark.bench   # peer harness: `make test-bench`

peer = pytest.mark.skipif(not os.path.exists(D.PEER_PYTHON),
                          reason="no .venv-peer/: run `bash benchmarks/peer_env.sh`")


# ---------------------------------------------------------------------------------------------
# Data pipeline.
# ---------------------------------------------------------------------------------------------


def test_torch_side_gets_ssljax_default_augmentations():
  from ssljax.data.augment import default_augment_config
  ref = default_augment_config()
  aug = D.torch_aug_params()
  assert set(aug) == set(ref.keys())
  for key in ref.keys():
    want = ref[key]
    if isinstance(want, tuple):
      assert aug[key] == pytest.approx(list(want)), key
    else:
      assert aug[key] == pytest.approx(want), key
  # The values that matter most, spelled out (SimCLR's ImageNet recipe at s = 0.5).
  assert aug["crop_scale"] == [0.08, 1.0] and aug["hflip_prob"] == 0.5
  assert (aug["brightness"], aug["contrast"], aug["saturation"], aug["hue"]) == (0.4, 0.4, 0.4, 0.1)
  assert (aug["color_jitter_prob"], aug["grayscale_prob"], aug["blur_prob"]) == (0.8, 0.2, 0.5)
  assert aug["blur_sigma"] == [0.1, 2.0] and aug["solarize_prob"] == 0.0
  json.dumps(aug)   # what goes over the command line


def test_torch_side_gets_a_changed_config_too():
  aug = D.ssljax_aug_config()
  aug.crop_scale = (0.3, 1.0)
  aug.blur_prob = 0.2
  out = D.torch_aug_params(aug)
  assert out["crop_scale"] == [0.3, 1.0] and out["blur_prob"] == 0.2


@pytest.mark.parametrize("size", [8, 16, 32, 96, 224])
def test_blur_kernel_is_ssljax_kernel(size):
  from ssljax.data import augment
  taps, _ = augment._reflect_taps(size)
  assert W.blur_kernel_size(size) == len(taps)
  assert W.blur_kernel_size(224) == 23 and W.blur_kernel_size(32) == 3


def test_ssljax_pipeline_measures_images(tmp_path):
  from benchmarks.data_loading import make_jpeg_folder
  folder = make_jpeg_folder(str(tmp_path), 32, 24)
  pipe = D.SsljaxPipeline(folder, 32, batch=8, workers=0)
  assert pipe.shape == (8, 2, 32, 32, 3)
  n, seconds = pipe.run(skip=1, seconds=0.05)
  pipe.close()
  assert n > 0 and n % 8 == 0 and seconds >= 0.05


def test_interleave_alternates_and_table_has_ratio():
  calls = []

  def fake(name, rate):
    def run(skip, seconds):
      calls.append((name, skip, seconds))
      return int(rate * seconds), seconds
    return run

  rates = D.interleave({"ssljax": fake("ssljax", 300.0), "torch": fake("torch", 100.0)}, skip=4,
                       rounds=3, seconds=2.0, warmup_s=0.5)
  assert calls[:2] == [("ssljax", 4, 0.5), ("torch", 4, 0.5)]
  assert [c[0] for c in calls[2:]] == ["ssljax", "torch", "torch", "ssljax", "ssljax", "torch"]
  assert rates["ssljax"] == [300.0] * 3 and rates["torch"] == [100.0] * 3
  row = D.summarize(224, 32, 2, {"ssljax": [100.0, 50.0, 80.0], "torch": [200.0, 100.0, 160.0]})
  assert row["ssljax_ips"] == 80.0 and row["torch_ips"] == 160.0 and row["ratio_torch"] == 0.5
  assert "ratio_torch_pil" not in row and row["chunks"] == 3
  both = D.summarize(32, 64, 0, {"ssljax": [300.0], "torch": [100.0], "torch_pil": [150.0]})
  assert both["ratio_torch"] == 3.0 and both["ratio_torch_pil"] == 2.0
  table = D.format_table([row, both])
  lines = table.splitlines()
  cols = lines[0].split("|")
  col, col_pil = cols.index(" ratio ssljax/torch "), cols.index(" ratio ssljax/torch_pil ")
  assert [line.split("|")[col].strip() for line in lines[2:]] == ["0.50x", "3.00x"]
  assert [line.split("|")[col_pil].strip() for line in lines[2:]] == ["-", "2.00x"]
  assert "224x224 JPEG" in lines[2] and "32x32 JPEG" in lines[3]
  assert D.format_chunks([both]) == "- 32x32, 0 workers: ssljax 300; torch 100; torch_pil 150"
  assert D.skip_batches(0) == 1 and D.skip_batches(2) == 3


def test_interleave_rotates_three_sides():
  order = []
  D.interleave({k: (lambda k: lambda skip, s: (order.append(k), (1, 1.0))[1])(k)
                for k in ("a", "b", "c")}, skip=0, rounds=3, seconds=1.0, warmup_s=0.1)
  assert order[3:] == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]


def test_idle_sides_are_stopped_while_one_runs():
  import time
  child = subprocess.Popen(["sleep", "30"])
  states = []

  def ours(skip, seconds):
    states.append(D._state(child.pid))
    return 1, 1.0

  try:
    D.interleave({"ssljax": ours, "torch": lambda skip, seconds: (1, 1.0)}, skip=0, rounds=2,
                 seconds=1.0, warmup_s=0.1, pause={"torch": lambda: [child.pid]})
    assert states == ["T", "T", "T"]           # stopped during each ssljax chunk (warm-up too)
    time.sleep(0.05)
    assert D._state(child.pid) in ("S", "R")    # and running again afterwards
  finally:
    child.kill()
    child.wait()


def test_drain_takes_the_prefetched_batches():
  import time

  def loader(ready):
    i = 0
    while True:
      if i >= ready:
        time.sleep(0.03)
      i += 1
      yield i

  assert W.drain(loader(5), 1) == 6           # 5 ready at once, then the first slow one
  assert W.drain(loader(0), 3) == 3           # at least min_batches
  assert W.drain(loader(10 ** 6), 1, max_batches=7) == 7


def test_write_section_with_fake_peer(tmp_path):
  from benchmarks import report
  row = D.summarize(32, 64, 0, {"ssljax": [120.0], "torch": [100.0], "torch_pil": [60.0]})
  path = tmp_path / "BENCHMARKS.md"
  report.write_section(D.SECTION, D.format_table([row]), {"peer": "fake"}, path=str(path))
  text = path.read_text()
  assert f"## {D.SECTION}" in text and "1.20x" in text and "2.00x" in text and "- peer: fake" in text


@peer
def test_torch_worker_builds_the_same_transform():
  aug = D.torch_aug_params()
  code = ("import json, sys; sys.path.insert(0, '.'); from benchmarks import _torch_pipeline_worker as W; "
          f"t = W.build_transform(224, json.loads({json.dumps(json.dumps(aug))})); "
          "print(json.dumps([repr(x) for x in t.view.transforms]))")
  out = subprocess.run([D.PEER_PYTHON, "-c", code], cwd=D.ROOT, capture_output=True, text=True,
                       timeout=120)
  assert out.returncode == 0, out.stderr
  ops = json.loads(out.stdout.splitlines()[-1])
  text = " ".join(ops)
  assert "RandomResizedCrop(size=(224, 224), scale=(0.08, 1.0)" in ops[0]
  assert "RandomHorizontalFlip(p=0.5)" in text and "p=0.8" in ops[2] and "brightness=(0.6, 1.4)" in ops[2]
  assert "hue=(-0.1, 0.1)" in ops[2] and "RandomGrayscale(p=0.2)" in text
  assert "kernel_size=(23, 23)" in ops[4] and "sigma=(0.1, 2.0)" in ops[4] and "p=0.5" in ops[4]


# ---------------------------------------------------------------------------------------------
# Time to accuracy.
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
  """A 4-step SimCLR digits run of the ssljax side, the inputs it exports to the worker, and its
  step-0 features of the kNN bank and the held-out digits."""
  config = T.load_config(steps=4)
  data = T.eval_data(config)
  run = T.SsljaxRun(config)
  path = str(tmp_path_factory.mktemp("tta") / "digits.npz")
  T.export_peer_inputs(path, config, data, run.initial_torch_state)
  run.step0 = (run.features(data["eval_train_x"]), run.features(data["eval_eval_x"]))
  return config, data, run, path


def test_recipe_is_the_config():
  config = T.load_config()
  r = T.peer_recipe(config)
  assert (r["width"], r["depth"], r["num_heads"], r["patch_size"], r["image_size"]) == \
      (config.model.width, config.model.depth, config.model.num_heads, config.model.patch_size,
       config.data.image_size) == (64, 3, 4, 4, 16)
  assert r["batch_size"] == config.batch_size == 128 and r["total_steps"] == config.total_steps
  assert r["temperature"] == config.simclr.temperature == 0.2
  assert r["proj_hidden_dim"] == 256 and r["proj_dim"] == 64
  assert (r["weight_decay"], r["b1"], r["b2"]) == (config.optimizer.weight_decay, 0.9, 0.999)
  aug = r["augment"]
  assert aug["crop_scale"] == pytest.approx(list(config.data.augment.crop_scale)) == [0.3, 1.0]
  assert aug["hflip_prob"] == 0.0 and aug["blur_prob"] == 0.2 and aug["grayscale_prob"] == 0.0
  assert aug["color_jitter_prob"] == config.data.augment.color_jitter_prob
  assert r["worker_count"] == config.data.worker_count


def test_recipe_refuses_what_the_worker_does_not_implement():
  config = T.load_config()
  config.optimizer.grad_clip = 1.0
  with pytest.raises(ValueError, match="AdamW"):
    T.peer_recipe(config)
  config = T.load_config()
  config.model.pool = "gap"
  with pytest.raises(ValueError, match="ViT"):
    T.peer_recipe(config)


def test_learning_rates_are_ssljax_schedule():
  config = T.load_config()
  lrs = T.learning_rates(config)
  assert len(lrs) == config.total_steps == 300
  peak = config.optimizer.base_lr * config.batch_size / 256
  assert lrs[0] == 0.0 and lrs[config.optimizer.warmup_steps] == pytest.approx(peak, rel=1e-6)
  assert lrs[10] == pytest.approx(peak / 2, rel=1e-6) and lrs[-1] < 1e-3 * peak
  assert np.all(np.diff(lrs[config.optimizer.warmup_steps:]) <= 0)


def test_exported_digits_split_is_ssljax_split(small_run):
  from ssljax.data import pipeline, sources
  config, data, _, path = small_run
  train, val = sources.digits("train"), sources.digits("val")
  with np.load(path) as f:
    np.testing.assert_array_equal(f["train_images"], train.images)
    assert f["train_images"].shape == (1437, 8, 8, 1) and f["train_images"].dtype == np.uint8
    want_tx, want_ty = pipeline.eval_arrays(train, 16, config.data.augment, config.eval.max_examples)
    want_ex, want_ey = pipeline.eval_arrays(val, 16, config.data.augment, config.eval.max_examples)
    np.testing.assert_array_equal(f["eval_train_x"], want_tx)
    np.testing.assert_array_equal(f["eval_eval_x"], want_ex)
    assert f["eval_eval_x"].shape == (360, 16, 16, 1)
    recipe = json.loads(str(f["recipe"]))
    assert recipe == T.peer_recipe(config)
    np.testing.assert_allclose(f["lrs"], T.learning_rates(config))
  np.testing.assert_array_equal(data["eval_train_y"], want_ty)
  np.testing.assert_array_equal(data["eval_eval_y"], want_ey)
  np.testing.assert_array_equal(data["train_labels"], train.labels)
  # The held-out digits are not in the train split (1,797 distinct rows of scikit-learn's data).
  assert len(train) + len(val) == 1797


def test_initial_weights_map_to_torch_layouts(small_run):
  config, _, run, path = small_run
  sd = run.initial_torch_state
  d, m = config.model.width, int(config.model.width * config.model.mlp_ratio)
  assert sd["backbone.patch_embed.weight"].shape == (d, 1, 4, 4)
  assert sd["backbone.cls"].shape == (1, 1, d)
  for i in range(config.model.depth):
    for proj in ("query", "key", "value", "out"):
      assert sd[f"backbone.blocks.{i}.attn.{proj}.weight"].shape == (d, d)
    assert sd[f"backbone.blocks.{i}.mlp.fc1.weight"].shape == (m, d)
  assert sd["head.layers.0.weight"].shape == (256, d) and "head.layers.0.bias" not in sd
  assert sd["head.layers.3.weight"].shape == (64, 256)
  # A torch Linear computes x @ W.T + b: the query projection equals flax's DenseGeneral.
  p = run.state.params["backbone"]["block0"]["attn"]["query"]
  x = np.random.default_rng(0).normal(size=(3, d)).astype(np.float32)
  want = np.einsum("nd,dhk->nhk", x, np.asarray(p["kernel"])) + np.asarray(p["bias"])
  got = x @ sd["backbone.blocks.0.attn.query.weight"].T + sd["backbone.blocks.0.attn.query.bias"]
  np.testing.assert_allclose(got, want.reshape(3, d), rtol=1e-5, atol=1e-5)
  # Every parameter except the (unused) mask token has a torch counterpart, element for element.
  import jax
  n_flax = sum(x.size for x in jax.tree_util.tree_leaves(run.state.params)) - d
  n_torch = sum(v.size for k, v in sd.items() if "running" not in k and "num_batches" not in k)
  assert n_flax == n_torch


def test_ssljax_side_trains_and_evaluates(small_run):
  config, data, run, _ = small_run
  f0 = run.step0[1]
  seconds = run.train(2)
  assert seconds > 0 and run.steps == 2 and math.isfinite(run.loss)
  f1 = run.features(data["eval_eval_x"])
  assert f0.shape == (360, 64) and not np.allclose(f0, f1)   # step 1 has lr > 0: weights moved
  acc = T.knn(config, data, run.features(data["eval_train_x"]), f1)
  assert 0.1 < acc <= 1.0


def test_time_to_target_and_table():
  curves = {"ssljax": [{"step": 0, "seconds": 10.0, "knn": 0.7}, {"step": 50, "seconds": 20.0, "knn": 0.86},
                       {"step": 100, "seconds": 30.0, "knn": 0.9}],
            "lightly": [{"step": 0, "seconds": 0.0, "knn": 0.7}, {"step": 50, "seconds": 30.0, "knn": 0.8},
                        {"step": 100, "seconds": 60.0, "knn": 0.88}]}
  assert T.time_to(curves["ssljax"], 0.85)["step"] == 50
  assert T.time_to(curves["lightly"], 0.85)["seconds"] == 60.0
  assert T.time_to(curves["lightly"], 0.95) is None
  table = T.format_table({"curves": curves, "compile_s": 10.0}, [0.85, 0.95])
  lines = table.splitlines()
  assert lines[2] == "| >= 0.85 | 20.0 (step 50) | 10.0 (step 50) | 60.0 (step 100) | 3.00x | 6.00x |"
  assert lines[3] == "| >= 0.95 | not reached | not reached | not reached | - | - |"
  assert "| ssljax | 0.9000 | 0.9000 | 0.7000 | 100 | 30.0 | 0.200 |" in lines
  assert "| lightly | 0.8800 | 0.8800 | 0.7000 | 100 | 60.0 | 0.600 |" in lines


@peer
def test_lightly_worker_starts_from_ssljax_weights(small_run, tmp_path):
  """The torch ViT with ssljax's initial weights gives ssljax's features; then both train."""
  _, _, run, path = small_run
  want_train, want_eval = run.step0
  worker = T.LightlyRun(path, threads=2)
  try:
    assert worker.info["torch_threads"] in (1, 2) and set(worker.info["thread_calibration"]) == {"1", "2"}
    got_train, got_eval = worker.features(str(tmp_path / "f.npz"))
    np.testing.assert_allclose(got_eval, want_eval, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(got_train, want_train, rtol=1e-3, atol=1e-4)
    assert worker.train(2) > 0 and worker.steps == 2 and math.isfinite(worker.loss)
    moved, _ = worker.features(str(tmp_path / "g.npz"))
    assert not np.allclose(moved, got_train)
  finally:
    worker.close()
