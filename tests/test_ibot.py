"""iBOT: masks, masked-patch distillation wiring (student masked, teacher not), heads, learning."""
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
  cfg = make_tiny_config("ibot")
  cfg.ibot.update(dict(out_dim=64, hidden_dim=32, bottleneck_dim=16, local_crops=L, local_size=4,
                       patch_out_dim=48, mask_ratio=0.5, mask_probability=0.5,
                       freeze_last_layer_steps=3))
  cfg.ibot.update(kw)
  return cfg


def _batch(seed=0):
  rng = np.random.default_rng(seed)
  return {"global": rng.normal(size=(B, 2, 8, 8, 1)).astype(np.float32),
          "local": rng.normal(size=(B, L, 4, 4, 1)).astype(np.float32),
          "mask": np.stack([masks_lib.block_mask(rng, (2, 2), 0.5) for _ in range(B)]),
          "label": np.zeros(B, np.int32)}


@pytest.fixture(scope="module")
def setup():
  method = methods.get("ibot")(_config(shared_head=False))
  batch = _batch()
  params, state = method.init(jax.random.key(0), batch)
  return method, params, state, batch


def test_view_spec_asks_for_block_masks():
  assert "ibot" in methods.available()
  cfg = _config()
  config_lib.validate(cfg)
  spec = methods.get("ibot")(cfg).view_spec()
  assert (spec.mask, spec.mask_ratio, spec.patch_size, spec.grid) == ("block", 0.5, 4, (2, 2))
  assert (spec.global_crops, spec.local_crops) == (2, L)


def test_view_masks_second_crop_and_mask_probability(setup):
  method, _, _, batch = setup
  rng = np.random.default_rng(1)
  big = {"mask": np.stack([masks_lib.block_mask(rng, (4, 4), 0.25) for _ in range(16)])}
  m = np.asarray(method.view_masks(big, jax.random.key(3))).reshape(16, 2, 4, 4)
  kept = m.reshape(32, 16).any(-1)
  assert kept.sum() == 16                                    # exactly half of the 32 crops
  record = big["mask"].reshape(16, 4, 4)
  for i in range(16):
    if kept[2 * i]:
      np.testing.assert_array_equal(m[i, 0], record[i])
    if kept[2 * i + 1]:                                      # crop 1: the record's mask rotated
      np.testing.assert_array_equal(m[i, 1], record[i][::-1, ::-1])
  same = methods.get("ibot")(_config(second_mask="same", mask_probability=1.0))
  m = np.asarray(same.view_masks(batch, jax.random.key(0))).reshape(B, 2, P)
  np.testing.assert_array_equal(m[:, 0], batch["mask"])
  np.testing.assert_array_equal(m[:, 1], batch["mask"])


def test_loss_is_dino_plus_ibot_patch_loss_and_centres(setup):
  method, params, state, batch = setup
  state = dict(state, center=jnp.linspace(-1, 1, 64), patch_center=jnp.linspace(1, -1, 48))
  rng, step = jax.random.key(1), 0
  loss, (metrics, new_state) = jax.jit(method.loss)(params, state, batch, rng, step)
  out = _jit(method.forward)(params, state, batch, rng)
  assert out["student_patches"].shape == (2 * B, P, 48) and out["mask"].shape == (2 * B, P)
  t = tp = 0.07                        # warmup_teacher_temp_steps = 0: the final temperatures
  dino = losses.dino_loss(out["student_cls"], out["teacher_cls"], state["center"], 0.1, t)
  patch = losses.ibot_patch_loss(out["student_patches"], out["teacher_patches"], out["mask"],
                                 state["patch_center"], 0.1, tp)
  np.testing.assert_allclose(metrics["patch_loss"], patch, rtol=1e-5)
  np.testing.assert_allclose(loss, dino + patch, rtol=1e-5)
  assert float(patch) > 0
  # iBOT's patch centre: mean over all teacher patch tokens of both global crops.
  want = 0.9 * state["patch_center"] + 0.1 * np.asarray(out["teacher_patches"]).mean((0, 1))
  np.testing.assert_allclose(new_state["patch_center"], want, rtol=1e-5, atol=1e-6)


def test_student_sees_masked_crops_teacher_sees_them_whole(setup):
  method, params, state, batch = setup
  rng = jax.random.key(1)
  out = _jit(method.forward)(params, state, batch, rng)
  mask = np.asarray(out["mask"]).reshape(B, 2, 2, 2)
  # Change the pixels of the student-masked patches only.
  pix = np.repeat(np.repeat(mask, 4, axis=2), 4, axis=3)[..., None]   # [B, 2, 8, 8, 1]
  other = dict(batch, **{"global": np.where(pix, batch["global"] + 3.0, batch["global"])})
  out2 = _jit(method.forward)(params, state, other, rng)
  np.testing.assert_allclose(out2["student_cls"], out["student_cls"], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(out2["student_patches"], out["student_patches"], rtol=1e-5, atol=1e-5)
  assert not np.allclose(out2["teacher_patches"], out["teacher_patches"], atol=1e-3)
  # The mask token is learned; the teacher and both centres get no gradient.
  g = _jit_grad(lambda p: method.loss(p, state, batch, rng, 5)[0])(params)
  assert float(jnp.abs(g["backbone"]["mask_token"]).max()) > 0
  assert float(jnp.abs(g["patch_head"]["mlp0"]["kernel"]).max()) > 0
  g_state = _jit_grad(lambda s: method.loss(params, s, batch, rng, 0)[0])(state)
  assert all(float(jnp.max(jnp.abs(x))) == 0.0 for x in jax.tree_util.tree_leaves(
      (g_state["teacher"], g_state["center"], g_state["patch_center"])))


def test_separate_patch_head_is_frozen_too(setup):
  method, params, state, _ = setup
  assert set(params) == {"backbone", "head", "patch_head"}
  grads = jax.tree_util.tree_map(jnp.ones_like, params)
  g = method.transform_grads(grads, state, 0)
  assert float(jnp.abs(g["patch_head"]["last_layer"]["kernel"]).max()) == 0.0
  assert float(jnp.abs(g["head"]["last_layer"]["kernel"]).max()) == 0.0
  shared = methods.get("ibot")(_config(shared_head=True))
  p, _ = shared.init(jax.random.key(0), _batch())
  assert set(p) == {"backbone", "head"} and shared.patch_dim == 64


def test_config_errors():
  cfg = _config(second_mask="shifted")
  with pytest.raises(config_lib.ConfigError, match="second_mask"):
    config_lib.validate(cfg)
  cfg = make_tiny_config("ibot", model="resnet")
  with pytest.raises(config_lib.ConfigError, match="vit"):
    config_lib.validate(cfg)
  ibot, dino = load_config("ibot_digits"), load_config("dino_digits")
  config_lib.validate(ibot)
  for key in ("model", "data", "batch_size", "total_steps", "optimizer"):
    assert ibot[key] == dino[key], key
  real = load_config("ibot_vit_s16_imagenet")
  real.data.source = "synthetic"            # the schema and values, without the ImageNet folder
  config_lib.validate(real)
  assert methods.get("ibot")(real).view_spec().mask == "block"


@pytest.mark.slow
def test_digits_config_learns(tmp_path):
  """configs/ibot_digits.py beats the random-init backbone's held-out kNN."""
  cfg = load_config("ibot_digits")
  cfg.total_steps = 200
  learn_on_digits(cfg, tmp_path, margin=0.05)
