"""DINOv2: DINO + iBOT + KoLeo, registers, Sinkhorn-Knopp targets over the global batch, learning."""
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
from ssljax.data import masks as masks_lib

B, L, P = 8, 2, 4       # 8x8 crops, 4x4 patches -> P = 4


@functools.lru_cache(maxsize=None)
def _jit(fn):
  """One compiled program per bound method (op-by-op dispatch makes eager tests slow)."""
  return jax.jit(fn)


def _jit_grad(fn):
  return jax.jit(jax.grad(fn))


def _config(**kw):
  cfg = make_tiny_config("dinov2")
  cfg.model.num_registers = 2
  cfg.dinov2.update(dict(out_dim=64, hidden_dim=32, bottleneck_dim=16, local_crops=L, local_size=4,
                         mask_ratio=0.5, mask_probability=0.5, koleo_weight=0.1))
  cfg.dinov2.update(kw)
  return cfg


def _batch(seed=0):
  rng = np.random.default_rng(seed)
  return {"global": rng.normal(size=(B, 2, 8, 8, 1)).astype(np.float32),
          "local": rng.normal(size=(B, L, 4, 4, 1)).astype(np.float32),
          "mask": np.stack([masks_lib.block_mask(rng, (2, 2), 0.5) for _ in range(B)]),
          "label": np.zeros(B, np.int32)}


def _ce(t_probs, s_logits, temp=0.1):
  """[..., K] cross entropy -sum_k t log softmax(s / temp), in NumPy float64."""
  s = np.asarray(s_logits, np.float64) / temp
  s = s - s.max(-1, keepdims=True)
  log_s = s - np.log(np.sum(np.exp(s), -1, keepdims=True))
  return -np.sum(np.asarray(t_probs, np.float64) * log_s, -1)


@pytest.fixture(scope="module")
def setup():
  method = methods.get("dinov2")(_config())
  sk = methods.get("dinov2")(_config(centering="sinkhorn_knopp"))
  batch = _batch()
  params, state = method.init(jax.random.key(0), batch)
  return method, sk, params, state, batch


def test_registers_and_spec(setup):
  method, _, params, _, _ = setup
  assert "dinov2" in methods.available()
  assert params["backbone"]["registers"].shape == (1, 2, 32)
  spec = method.view_spec()
  assert spec.mask == "block" and spec.local_crops == L
  assert load_config("dinov2_digits").model.num_registers == 4


def test_loss_is_dino_plus_ibot_plus_koleo(setup):
  method, _, params, state, batch = setup
  rng = jax.random.key(1)
  loss, (metrics, new_state) = jax.jit(method.loss)(params, state, batch, rng, 0)
  out = _jit(method.forward)(params, state, batch, rng)
  t = 0.07
  dino = losses.dino_loss(out["student_cls"], out["teacher_cls"], state["center"], 0.1, t)
  patch = losses.ibot_patch_loss(out["student_patches"], out["teacher_patches"], out["mask"],
                                 state["patch_center"], 0.1, t)
  feats = out["student_feats"]                               # backbone [CLS] of the 2 global crops
  assert feats.shape == (2, B, 32)
  koleo = losses.koleo(feats[0]) + losses.koleo(feats[1])
  np.testing.assert_allclose(metrics["koleo_loss"], koleo, rtol=1e-5)
  np.testing.assert_allclose(loss, dino + patch + 0.1 * koleo, rtol=1e-5)
  # DINOv2 centres the patch logits over the masked teacher tokens only.
  tp, m = np.asarray(out["teacher_patches"]), np.asarray(out["mask"])
  want = 0.9 * state["patch_center"] + 0.1 * tp[m].mean(0)
  np.testing.assert_allclose(new_state["patch_center"], want, rtol=1e-5, atol=1e-6)
  # KoLeo's gradient reaches the student backbone.
  g = _jit_grad(lambda p: method.loss(p, state, batch, rng, 0)[0])(params)
  assert float(jnp.abs(g["backbone"]["registers"]).max()) > 0


def test_sinkhorn_knopp_targets(setup):
  """The SK path: targets from sinkhorn_knopp(teacher, eps = teacher temp) on the [CLS] of both
  global crops together and on the masked patch tokens only; the centres do not move."""
  _, sk, params, state, batch = setup
  rng = jax.random.key(1)
  loss, (metrics, new_state) = jax.jit(sk.loss)(params, state, batch, rng, 0)
  out = _jit(sk.forward)(params, state, batch, rng)
  t = 0.07
  tc = np.asarray(out["teacher_cls"])                         # [2, B, K]
  q = np.asarray(losses.sinkhorn_knopp(jnp.asarray(tc.reshape(2 * B, -1)), t, 3)).reshape(2, B, -1)
  s = np.asarray(out["student_cls"])                          # [2 + L, B, K]
  pairs = [(i, j) for i in range(2) for j in range(2 + L) if i != j]
  dino = np.mean([_ce(q[i], s[j]).mean() for i, j in pairs])
  np.testing.assert_allclose(metrics["dino_loss"], dino, rtol=1e-4)
  m = np.asarray(out["mask"])
  tp, sp = np.asarray(out["teacher_patches"]), np.asarray(out["student_patches"])
  qp = np.asarray(losses.sinkhorn_knopp(jnp.asarray(tp[m]), t, 3))   # masked tokens only
  ce = np.zeros(m.shape)
  ce[m] = _ce(qp, sp[m])
  patch = np.mean(ce.sum(-1) / np.maximum(m.sum(-1), 1))
  np.testing.assert_allclose(metrics["patch_loss"], patch, rtol=1e-4)
  np.testing.assert_array_equal(new_state["center"], state["center"])
  np.testing.assert_array_equal(new_state["patch_center"], state["patch_center"])
  assert np.isfinite(float(loss))


def test_sinkhorn_and_koleo_over_the_global_batch_when_sharded(setup):
  _, sk, params, state, batch = setup
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:8]), ("data",))
  sh = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
  sharded = {k: jax.device_put(v, sh) for k, v in batch.items()}
  fn, rng = jax.jit(sk.loss), jax.random.key(2)
  l1, (m1, _) = fn(params, state, batch, rng, 0)
  l8, (m8, _) = fn(params, state, sharded, rng, 0)
  for k in ("dino_loss", "patch_loss", "koleo_loss"):
    np.testing.assert_allclose(m8[k], m1[k], rtol=1e-5, err_msg=k)
  np.testing.assert_allclose(l8, l1, rtol=1e-5)


def test_layer_wise_lr_decay_on_the_backbone_only(setup):
  """optimizer.layer_decay (DINOv2's layerwise_decay): block i's updates are scaled by
  decay ** (depth - i), the tokens (registers, mask token, patch embedding) by decay ** (depth + 1),
  the heads not at all."""
  from ssljax import optim
  method, _, params, _, _ = setup
  cfg = _config()
  cfg.optimizer.update(dict(layer_decay=0.5, weight_decay=0.0, grad_clip=0.0, warmup_steps=0))
  depth = cfg.model.depth
  tx, _ = optim.build(cfg)
  grads = jax.tree_util.tree_map(jnp.ones_like, params)
  updates, _ = jax.jit(tx.update)(grads, tx.init(params), params)
  size = lambda u: float(jnp.max(jnp.abs(u)))  # noqa: E731  (Adam's first step: lr * sign)
  head = size(updates["head"]["last_layer"]["kernel"])
  assert head > 0
  np.testing.assert_allclose(size(updates["head"]["mlp0"]["kernel"]), head, rtol=1e-5)
  np.testing.assert_allclose(size(updates["backbone"]["block0"]["attn"]["query"]["kernel"]),
                             head * 0.5 ** depth, rtol=1e-5)
  for token in ("registers", "mask_token", "cls"):
    np.testing.assert_allclose(size(updates["backbone"][token]), head * 0.5 ** (depth + 1),
                               rtol=1e-5, err_msg=token)


def test_config_errors_and_real_config():
  cfg = _config(centering="softmax")
  with pytest.raises(config_lib.ConfigError, match="centering"):
    config_lib.validate(cfg)
  v2, dino = load_config("dinov2_digits"), load_config("dino_digits")
  config_lib.validate(v2)
  for key in ("data", "batch_size", "total_steps", "optimizer"):
    assert v2[key] == dino[key], key
  real = load_config("dinov2_vit_s14_imagenet")
  real.data.source = "synthetic"            # the schema and values, without the ImageNet folder
  config_lib.validate(real)
  assert real.optimizer.layer_decay < 1.0 and real.dinov2.centering == "sinkhorn_knopp"
  assert real.model.num_registers == 4
  spec = methods.get("dinov2")(real).view_spec()
  assert (spec.grid, spec.local_size) == ((16, 16), 98)


@pytest.mark.slow
def test_digits_config_learns(tmp_path):
  """configs/dinov2_digits.py beats the random-init backbone's held-out kNN."""
  cfg = load_config("dinov2_digits")
  cfg.total_steps = 200
  learn_on_digits(cfg, tmp_path, margin=0.05)
