"""The trainer end to end on tiny configs: sharding equivalence, bit-exact resume, workdir layout."""
import json
import os

import jax
import numpy as np
import pytest

from ssljax import train
from ssljax.metrics_writer import read_jsonl


def _losses(workdir):
  return [r["loss"] for r in read_jsonl(os.path.join(workdir, "metrics.jsonl")) if "loss" in r]


def _run(config, workdir, devices=None, until_step=None):
  trainer = train.Trainer(config, str(workdir), devices=devices)
  result = trainer.run(until_step=until_step)
  return trainer, result


def test_one_vs_eight_devices_same_loss_curve(tiny_config, tmp_path):
  assert jax.device_count() == 8
  _run(tiny_config(), tmp_path / "one", devices=jax.devices()[:1])
  _run(tiny_config(), tmp_path / "eight")
  one, eight = _losses(tmp_path / "one"), _losses(tmp_path / "eight")
  assert len(one) == len(eight) == 6
  np.testing.assert_allclose(one, eight, rtol=2e-5, atol=2e-5)
  assert one[0] != one[-1]  # the curve moves: equal losses are not trivially constant


def test_fsdp_matches_replicated(tiny_config, tmp_path):
  rep = tiny_config()
  fsdp = tiny_config()
  fsdp.mesh.update(dict(data=2, fsdp=4, model=1))
  fsdp.param_sharding = "fsdp"
  t_rep, _ = _run(rep, tmp_path / "rep")
  t_fsdp, _ = _run(fsdp, tmp_path / "fsdp")
  np.testing.assert_allclose(_losses(tmp_path / "rep"), _losses(tmp_path / "fsdp"), rtol=2e-5, atol=2e-5)
  # FSDP really shards: some parameter lives in pieces, and per-device bytes shrink.
  specs = [s.spec for s in jax.tree.leaves(t_fsdp.state_shardings.params)]
  assert any("fsdp" in tuple(s) for s in specs)

  def per_device_bytes(state):
    return sum(x.addressable_shards[0].data.nbytes for x in jax.tree.leaves(state.params))

  assert per_device_bytes(t_fsdp.state) < 0.6 * per_device_bytes(t_rep.state)


def test_tensor_parallel_vit_matches_data_parallel(tiny_config, tmp_path):
  dp = tiny_config()
  tp = tiny_config()
  tp.mesh.update(dict(data=2, fsdp=2, model=2))
  tp.param_sharding = "fsdp_tp"
  _run(dp, tmp_path / "dp")
  t_tp, _ = _run(tp, tmp_path / "tp")
  np.testing.assert_allclose(_losses(tmp_path / "dp"), _losses(tmp_path / "tp"), rtol=2e-5, atol=2e-5)
  block = t_tp.state_shardings.params["backbone"]["block0"]
  assert tuple(block["attn"]["query"]["kernel"].spec) == (None, "model", None)
  assert tuple(block["mlp"]["fc2"]["kernel"].spec) == ("model", None)
  q = t_tp.state.params["backbone"]["block0"]["attn"]["query"]["kernel"]
  assert q.addressable_shards[0].data.shape[1] == q.shape[1] // 2   # heads really split


def test_resume_is_bit_exact(tiny_config, tmp_path):
  cfg = tiny_config()
  straight, _ = _run(cfg, tmp_path / "straight")
  first, stopped = _run(tiny_config(), tmp_path / "resumed", until_step=3)
  assert stopped["stopped_at"] == 3 and stopped["reason"] == "until_step=3"
  second, result = _run(tiny_config(), tmp_path / "resumed")
  assert result["step"] == 6
  for a, b in zip(jax.tree.leaves(straight.state), jax.tree.leaves(second.state)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  # The log of the resumed run has every step once, with the same losses.
  assert _losses(tmp_path / "resumed") == _losses(tmp_path / "straight")


def test_workdir_layout(tiny_config, tmp_path):
  cfg = tiny_config()
  cfg.eval_every = 3
  cfg.eval.random_init = True
  _, result = _run(cfg, tmp_path)
  for name in ("config.json", "metrics.jsonl", "eval.json", "plots/loss.png", "plots/knn.png"):
    assert os.path.exists(tmp_path / name), name
  events = b"".join(open(os.path.join(tmp_path, "tensorboard", f), "rb").read()
                    for f in os.listdir(tmp_path / "tensorboard"))
  assert b"knn_top1" in events and b"plots/loss" in events   # scalars and the plots as images
  assert sorted(int(s) for s in os.listdir(tmp_path / "checkpoints") if s.isdigit()) == [3, 6]
  with open(tmp_path / "eval.json") as f:
    ev = json.load(f)
  assert set(ev) >= {"knn_top1", "knn_top1_random_init", "linear_top1"}
  assert all(0.0 <= ev[k] <= 1.0 for k in ("knn_top1", "knn_top1_random_init", "linear_top1"))
  rows = read_jsonl(tmp_path / "metrics.jsonl")
  train_rows = [r for r in rows if "loss" in r]
  assert [r["step"] for r in train_rows] == [1, 2, 3, 4, 5, 6]
  assert all({"lr", "images_per_sec"} <= set(r) for r in train_rows)
  assert [r["step"] for r in rows if "knn_top1" in r and "linear_top1" not in r] == [3, 6]
  with open(tmp_path / "config.json") as f:
    assert json.load(f)["batch_size"] == cfg.batch_size


def test_resnet_cifar10_config_compiles_on_synthetic(tmp_path):
  import importlib.util
  spec = importlib.util.spec_from_file_location(
      "cfg", os.path.join(os.path.dirname(__file__), "..", "configs", "simclr_resnet18_cifar10.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  cfg = module.get_config()
  cfg.data.source = "synthetic"
  cfg.data.synthetic_examples = 64
  cfg.data.eval_split = "val"
  cfg.batch_size = 16
  cfg.eval.max_examples = 32
  trainer = train.Trainer(cfg, str(tmp_path))
  state = trainer._init()
  batch = train.parallel.global_batch(next(trainer.data), trainer.batch_sharding)
  assert batch["global"].shape == (16, 2, 32, 32, 3)
  state, metrics = trainer.train_step(state, batch)
  assert int(state.step) == 1 and np.isfinite(float(metrics["loss"]))


def test_method_visualize_hook_writes_pngs_at_eval(tiny_config, tmp_path):
  """A method with `visualize` gets held-out images at every eval; its pictures land in plots/."""
  from PIL import Image
  cfg = tiny_config()
  cfg.total_steps, cfg.eval_every = 4, 2
  trainer = train.Trainer(cfg, str(tmp_path))
  seen = []

  def visualize(params, state, images, rng):
    seen.append(np.asarray(images))
    gray = (np.clip(np.asarray(images)[0], 0, 1) * 255).astype(np.uint8)  # any picture will do
    return {"demo": np.repeat(gray.mean(-1, keepdims=True).astype(np.uint8), 3, axis=-1)}

  trainer.method.visualize = visualize
  trainer.run()
  assert len(seen) == 2 and seen[0].shape[0] == 8            # steps 2 and 4, eight images each
  np.testing.assert_array_equal(seen[0], trainer.evaluator.eval_x[:8])
  for step in (2, 4):
    with Image.open(tmp_path / "plots" / f"demo_step{step:06d}.png") as im:
      assert im.size == (cfg.data.image_size, cfg.data.image_size) and im.mode == "RGB"

  trainer = train.Trainer(cfg, str(tmp_path / "bad"))
  trainer.method.visualize = lambda *a: {"bad": np.zeros((4, 4), np.float32)}
  with pytest.raises(ValueError, match=r"returned 'bad' with shape \(4, 4\) and dtype float32; "
                                       r"expected uint8 \[H, W, 3\]"):
    trainer.run()
