"""DINO: the method's contract with the trainer, its teacher/centre/schedule wiring, and learning."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import learn_on_digits
from conftest import load_config
from conftest import make_tiny_config
from ssljax import config as config_lib
from ssljax import losses
from ssljax import methods
from ssljax import schedules

B, L = 8, 2


@functools.lru_cache(maxsize=None)
def _jit(fn):
  """One compiled program per bound method (op-by-op dispatch makes eager tests slow)."""
  return jax.jit(fn)


def _jit_grad(fn):
  return jax.jit(jax.grad(fn))


def _config():
  cfg = make_tiny_config("dino")
  cfg.dino.update(dict(out_dim=64, hidden_dim=32, bottleneck_dim=16, local_crops=L, local_size=4,
                       warmup_teacher_temp=0.04, teacher_temp=0.07, warmup_teacher_temp_steps=10,
                       freeze_last_layer_steps=3))
  return cfg


def _batch(seed=0):
  rng = np.random.default_rng(seed)
  return {"global": rng.normal(size=(B, 2, 8, 8, 1)).astype(np.float32),
          "local": rng.normal(size=(B, L, 4, 4, 1)).astype(np.float32),
          "label": np.zeros(B, np.int32)}


@pytest.fixture(scope="module")
def setup():
  method = methods.get("dino")(_config())
  batch = _batch()
  params, state = method.init(jax.random.key(0), batch)
  loss_fn = jax.jit(method.loss)
  return method, params, state, batch, loss_fn


def test_registered_and_view_spec():
  assert "dino" in methods.available() and "_distill" not in methods.available()
  cfg = _config()
  config_lib.validate(cfg)
  spec = methods.get("dino")(cfg).view_spec()
  assert (spec.global_crops, spec.local_crops, spec.local_size) == (2, L, 4)
  assert spec.global_scale == tuple(cfg.dino.global_crops_scale) and spec.mask == ""
  assert spec.local_scale == tuple(cfg.dino.local_crops_scale)


def test_loss_is_dino_loss_of_own_outputs_and_center_update(setup):
  method, params, state, batch, loss_fn = setup
  state = dict(state, center=jnp.linspace(-1.0, 1.0, 64))     # a non-trivial centre
  step, rng = 4, jax.random.key(1)
  loss, (metrics, new_state) = loss_fn(params, state, batch, rng, step)
  out = _jit(method.forward)(params, state, batch, rng)
  assert out["student_cls"].shape == (2 + L, B, 64) and out["teacher_cls"].shape == (2, B, 64)
  temp = 0.04 + (0.07 - 0.04) * step / 10                     # linear warm-up at step 4
  np.testing.assert_allclose(metrics["teacher_temp"], temp, rtol=1e-6)
  want = losses.dino_loss(out["student_cls"], out["teacher_cls"], state["center"], 0.1, temp)
  np.testing.assert_allclose(loss, want, rtol=1e-5)
  np.testing.assert_allclose(metrics["dino_loss"], want, rtol=1e-5)
  # The centre moves to the mean teacher logit of this (global) batch with momentum 0.9.
  want_c = 0.9 * state["center"] + 0.1 * np.mean(np.asarray(out["teacher_cls"]), axis=(0, 1))
  np.testing.assert_allclose(new_state["center"], want_c, rtol=1e-5, atol=1e-6)


def test_teacher_sees_global_crops_only_and_gets_no_gradient(setup):
  method, params, state, batch, _ = setup
  rng = jax.random.key(1)
  other = dict(batch, local=batch["local"] + 1.0)
  a, b = _jit(method.forward)(params, state, batch, rng), _jit(method.forward)(params, state, other, rng)
  np.testing.assert_array_equal(a["teacher_cls"], b["teacher_cls"])
  assert not np.allclose(a["student_cls"][2:], b["student_cls"][2:])
  np.testing.assert_allclose(a["student_cls"][:2], b["student_cls"][:2], rtol=1e-6)
  # Stop-gradient on the targets: nothing flows into the teacher or the centre...
  g_state = _jit_grad(lambda s: method.loss(params, s, batch, rng, 0)[0])(state)
  assert all(float(jnp.max(jnp.abs(g))) == 0.0
             for g in jax.tree_util.tree_leaves((g_state["teacher"], g_state["center"])))
  # ...while the student's backbone and head do get gradients.
  g = _jit_grad(lambda p: method.loss(p, state, batch, rng, 5)[0])(params)
  assert float(jnp.abs(g["backbone"]["block0"]["attn"]["query"]["kernel"]).max()) > 0
  assert float(jnp.abs(g["head"]["last_layer"]["kernel"]).max()) > 0


def test_ema_teacher_with_cosine_momentum(setup):
  method, params, state, _, _ = setup
  shifted = jax.tree_util.tree_map(lambda p: p + 1.0, params)
  total = method.config.total_steps
  for step in (0, total // 2, total):
    m = float(schedules.cosine_increase(step, total, 0.996, 1.0))
    new = jax.jit(method.after_step)(shifted, state, step)["teacher"]
    leaf = ("backbone", "patch_embed", "kernel")
    t, p = state["teacher"], shifted
    for k in leaf:
      t, p, new = t[k], p[k], new[k]
    np.testing.assert_allclose(new, m * t + (1 - m) * p, rtol=1e-5, atol=1e-6)
  assert m == 1.0  # at the end of the run the teacher no longer moves
  np.testing.assert_allclose(method.teacher_momentum(0), 0.996, rtol=1e-6)


def test_last_layer_frozen_for_first_steps(setup):
  method, params, state, _, _ = setup
  grads = jax.tree_util.tree_map(jnp.ones_like, params)
  tg = jax.jit(method.transform_grads)
  frozen, free = tg(grads, state, 2), tg(grads, state, 3)    # freeze_last_layer_steps = 3
  assert float(jnp.abs(frozen["head"]["last_layer"]["kernel"]).max()) == 0.0
  assert float(frozen["head"]["mlp0"]["kernel"].min()) == 1.0
  assert float(frozen["backbone"]["cls"].min()) == 1.0
  assert float(free["head"]["last_layer"]["kernel"].min()) == 1.0


def test_features_are_the_teachers(setup):
  method, params, state, batch, _ = setup
  x = batch["global"][:, 0]
  moved = jax.tree_util.tree_map(lambda p: p * 1.5, params)
  feats = _jit(method.features)
  np.testing.assert_allclose(feats(moved, state, x), feats(params, state, x), rtol=1e-6)
  student = functools.partial(method.backbone.apply, train=False)
  np.testing.assert_allclose(_jit(method.features)(params, state, x),
                             student({"params": state["teacher"]["backbone"]}, x), rtol=1e-4, atol=1e-5)
  assert _jit(method.embeddings)(params, state, x).shape == (B, 16)


def test_center_is_over_the_global_batch_when_sharded(setup):
  """The loss and the new centre on a batch sharded over 8 devices equal the 1-device ones."""
  method, params, state, batch, loss_fn = setup
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:8]), ("data",))
  sh = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
  sharded = {k: jax.device_put(v, sh) for k, v in batch.items()}
  rng = jax.random.key(2)
  l1, (_, s1) = loss_fn(params, state, batch, rng, 0)
  l8, (_, s8) = loss_fn(params, state, sharded, rng, 0)
  np.testing.assert_allclose(l8, l1, rtol=1e-5)
  np.testing.assert_allclose(s8["center"], s1["center"], rtol=1e-5, atol=1e-7)


def test_batchnorm_in_head():
  """use_bn_in_head: BN between the head's hidden Linears and GELUs, batch statistics for the
  student AND the teacher (the reference never puts its teacher in eval mode), each network
  keeping its own running statistics, which the EMA leaves alone."""
  cfg = _config()
  cfg.dino.use_bn_in_head = True
  method = methods.get("dino")(cfg)
  batch = _batch()
  params, state = method.init(jax.random.key(0), batch)
  assert {"bn0", "bn1"} <= set(params["head"]) and "bn2" not in params["head"]
  assert set(state["head_stats"]) == {"student", "teacher"}
  rng = jax.random.key(1)
  out = _jit(method.forward)(params, state, batch, rng)
  # The teacher's logits: its head in train mode (batch statistics) on its global-crop features.
  g = batch["global"].reshape((B * 2,) + batch["global"].shape[2:])
  t_feats = method.backbone.apply({"params": state["teacher"]["backbone"]}, g, train=False)
  want, _ = method.head.apply({"params": state["teacher"]["head"],
                               **state["head_stats"]["teacher"]["head"]},
                              t_feats, train=True, mutable=["batch_stats"])
  np.testing.assert_allclose(out["teacher_cls"], np.swapaxes(
      np.asarray(want).reshape(B, 2, -1), 0, 1), rtol=1e-4, atol=1e-5)
  # Eval-mode (running statistics) logits differ: batch statistics are really used.
  running = method.head.apply({"params": state["teacher"]["head"],
                               **state["head_stats"]["teacher"]["head"]}, t_feats, train=False)
  assert not np.allclose(running, want, atol=1e-3)
  loss, (_, new_state) = jax.jit(method.loss)(params, state, batch, rng, 0)
  assert np.isfinite(float(loss))
  for who in ("student", "teacher"):
    old = state["head_stats"][who]["head"]["batch_stats"]["bn0"]["mean"]
    new = new_state["head_stats"][who]["head"]["batch_stats"]["bn0"]["mean"]
    assert not np.allclose(old, new), who
  stepped = jax.jit(method.after_step)(params, new_state, 1)
  for a, b in zip(jax.tree_util.tree_leaves(stepped["head_stats"]),
                  jax.tree_util.tree_leaves(new_state["head_stats"])):
    np.testing.assert_array_equal(a, b)
  g_bn = _jit_grad(lambda p: method.loss(p, state, batch, rng, 5)[0])(params)
  assert float(jnp.abs(g_bn["head"]["bn0"]["scale"]).max()) > 0
  assert _jit(method.embeddings)(params, new_state, batch["global"][:, 0]).shape == (B, 16)


def test_config_errors_and_one_line_switch():
  cfg = _config()
  cfg.dino.eval_backbone = "ema"
  with pytest.raises(config_lib.ConfigError, match="eval_backbone"):
    config_lib.validate(cfg)
  cfg = _config()
  cfg.dino.local_size = 6                                     # not a multiple of patch 4
  with pytest.raises(config_lib.ConfigError, match="local_size"):
    config_lib.validate(cfg)
  dino, simclr = load_config("dino_digits"), load_config("simclr_digits")
  config_lib.validate(dino)
  for key in ("model", "data", "batch_size", "total_steps", "seed"):
    assert dino[key] == simclr[key], key
  real = load_config("dino_vit_s16_imagenet")
  real.data.source = "synthetic"            # the schema and values, without the ImageNet folder
  config_lib.validate(real)
  spec = methods.get("dino")(real).view_spec()
  assert (spec.local_crops, spec.local_size, spec.global_size) == (8, 96, 224)


@pytest.mark.slow
def test_digits_config_learns(tmp_path):
  """configs/dino_digits.py beats the random-init backbone's held-out kNN."""
  cfg = load_config("dino_digits")
  cfg.total_steps = 200
  learn_on_digits(cfg, tmp_path, margin=0.05)
