"""data2vec 2.0: contract with the trainer, teacher targets, multi-mask, EMA, stop-gradient, learning."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import learn_on_digits
from conftest import load_config
from conftest import random_mask_batch
from ssljax import losses
from ssljax import methods
from ssljax.methods import _masked
from ssljax.methods.data2vec import GroupedConv2d


def _config(tiny_config):
  cfg = tiny_config("data2vec")
  cfg.data.image_size = 16
  cfg.model.image_size = 16          # 4x4 grid, P = 16
  cfg.model.depth = 2
  c = cfg.data2vec
  c.mask_ratio, c.num_masks, c.top_k = 0.5, 3, 2
  c.decoder_width, c.decoder_layers, c.decoder_groups = 16, 2, 4
  c.ema_start, c.ema_end = 0.9, 0.99
  return cfg


def test_grouped_conv_equals_flax_conv():
  x = jax.random.normal(jax.random.key(0), (2, 4, 4, 8))
  m = GroupedConv2d(8, 3, 4)
  p = m.init(jax.random.key(1), x)["params"]
  k = p["kernel"].reshape(3, 3, 4, 2, 2).transpose(0, 1, 3, 2, 4).reshape(3, 3, 2, 8)
  ref = nn.Conv(8, (3, 3), padding="SAME", feature_group_count=4).apply(
      {"params": {"kernel": k, "bias": p["bias"]}}, x)
  np.testing.assert_allclose(m.apply({"params": p}, x), ref, atol=1e-5)


def test_block_outputs_match_vit_tokens(tiny_config):
  """The captured last block, after the ViT's final norm, is the ViT's patch output."""
  method = methods.get("data2vec")(_config(tiny_config))
  batch = random_mask_batch()
  params, _ = method.init(jax.random.key(0), batch)
  x = batch["global"][:, 0]
  tokens, layers = _masked.block_outputs(method.backbone, params["backbone"], x)
  assert layers.shape == (2, 4, 16, 32)
  norm = params["backbone"]["norm"]
  last = layers[-1]
  mu, var = last.mean(-1, keepdims=True), last.var(-1, keepdims=True)
  np.testing.assert_allclose((last - mu) / np.sqrt(var + 1e-6) * norm["scale"] + norm["bias"],
                             tokens["patches"], atol=1e-4)


def test_ffn_targets_are_the_feed_forward_outputs(tiny_config):
  """source='ffn' captures each block's MLP output (data2vec's targets), not the residual stream:
  with block 1's last MLP layer set to a constant map, its FFN output is that constant."""
  method = methods.get("data2vec")(_config(tiny_config))
  batch = random_mask_batch()
  params, _ = method.init(jax.random.key(0), batch)
  x = batch["global"][:, 0]
  p = jax.tree_util.tree_map(lambda a: a, params["backbone"])
  fc2 = p["block1"]["mlp"]["fc2"]
  p["block1"]["mlp"]["fc2"] = {"kernel": jnp.zeros_like(fc2["kernel"]),
                               "bias": jnp.arange(fc2["bias"].shape[0], dtype=jnp.float32)}
  _, ffn = _masked.block_outputs(method.backbone, p, x, source="ffn")
  _, blocks = _masked.block_outputs(method.backbone, p, x, source="block")
  assert ffn.shape == blocks.shape == (2, 4, 16, 32)
  np.testing.assert_allclose(ffn[1], np.broadcast_to(np.arange(32.0), (4, 16, 32)), atol=1e-6)
  assert np.abs(np.asarray(ffn[0]) - np.asarray(blocks[0])).max() > 1e-2
  # The residual stream of block 1 is its input plus attention plus that constant FFN output.
  assert np.abs(np.asarray(blocks[1]) - np.arange(32.0)).max() > 1e-2
  with pytest.raises(ValueError, match="source"):
    _masked.block_outputs(method.backbone, p, x, source="attn")


def test_loss_shares_one_teacher_pass_over_masks(tiny_config):
  cfg = _config(tiny_config)
  method = methods.get("data2vec")(cfg)
  batch = random_mask_batch()
  params, state = method.init(jax.random.key(0), batch)
  rng = jax.random.key(1)
  loss, (metrics, new_state) = method.loss(params, state, batch, rng, 0)
  mask_rng, _ = jax.random.split(rng)
  keep, mask = method.masks(batch, mask_rng)
  assert keep.shape == (12, 8) and mask.shape == (12, 16)
  # Copy 0 of every image is the pipeline's mask; the others are new, with the same count.
  np.testing.assert_array_equal(np.asarray(keep).reshape(4, 3, 8)[:, 0], batch["keep_indices"])
  assert not np.array_equal(np.asarray(keep).reshape(4, 3, 8)[:, 1], batch["keep_indices"])
  assert (np.asarray(mask).sum(1) == 8).all()
  x = batch["global"][:, 0]
  target = method.targets(state["teacher"], x)
  _, layers = _masked.block_outputs(method.backbone, state["teacher"], x, source="ffn")
  np.testing.assert_allclose(target, losses.data2vec_targets(layers, 2, layer_norm_targets=True),
                             atol=1e-5)
  pred = method.predict(params, jnp.repeat(x, 3, 0), keep)    # eval mode = train mode (no drop path)
  ref = losses.smooth_l1_regression(pred, jnp.repeat(target, 3, 0), mask, beta=0.0)
  np.testing.assert_allclose(loss, ref, rtol=1e-5)
  assert new_state is state


def test_no_gradient_to_teacher_and_ema_update(tiny_config):
  method = methods.get("data2vec")(_config(tiny_config))
  batch = random_mask_batch()
  params, state = method.init(jax.random.key(0), batch)
  grads, tgrads = jax.grad(lambda p, s: method.loss(p, s, batch, jax.random.key(1), 0)[0],
                           argnums=(0, 1))(params, state)
  leaves = lambda t: jax.tree_util.tree_leaves(t)  # noqa: E731
  assert all(float(jnp.abs(g).max()) == 0.0 for g in leaves(tgrads))
  assert float(jnp.abs(grads["mask_embed"]).max()) > 0
  assert float(jnp.abs(grads["decoder"]["conv0"]["kernel"]).max()) > 0
  new_params = jax.tree_util.tree_map(lambda p: p + 1.0, params)
  new_state = method.after_step(new_params, state, 0)
  m = 0.9   # ema_start at step 0
  a = state["teacher"]["patch_embed"]["kernel"]
  np.testing.assert_allclose(new_state["teacher"]["patch_embed"]["kernel"], m * a + (1 - m) * (a + 1.0),
                             atol=1e-6)
  np.testing.assert_allclose(method.momentum(method.config.total_steps), 0.99, rtol=1e-6)


def test_features_come_from_the_chosen_encoder(tiny_config):
  cfg = _config(tiny_config)
  method = methods.get("data2vec")(cfg)
  batch = random_mask_batch()
  params, state = method.init(jax.random.key(0), batch)
  params = jax.tree_util.tree_map(lambda p: p * 1.5, params)   # student != teacher from here on
  x = batch["global"][:, 0]
  pool = lambda p: method.backbone.apply({"params": p}, x, return_tokens=True)["patches"].mean(1)  # noqa: E731
  cfg.data2vec.feature_encoder = "student"
  np.testing.assert_allclose(methods.get("data2vec")(cfg).features(params, state, x),
                             pool(params["backbone"]), atol=1e-5)
  cfg.data2vec.feature_encoder = "teacher"
  np.testing.assert_allclose(methods.get("data2vec")(cfg).features(params, state, x),
                             pool(state["teacher"]), atol=1e-5)
  assert np.abs(np.asarray(pool(params["backbone"])) - np.asarray(pool(state["teacher"]))).max() > 1e-3
  cfg.data2vec.feature_encoder = "target"
  with pytest.raises(ValueError, match="feature_encoder"):
    methods.get("data2vec").validate_config(cfg)


@pytest.mark.slow
def test_learns_on_digits(tmp_path):
  """Masked-modelling features give weaker kNN than joint-embedding ones (He et al., 2022;
  Baevski et al., 2023 report linear probes well under contrastive methods'), hence the 0.05
  margin rather than a larger one (gains per seed: configs/data2vec_digits.py)."""
  learn_on_digits(load_config("data2vec_digits"), tmp_path, margin=0.05)
