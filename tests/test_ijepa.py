"""I-JEPA: contract with the trainer, predictor wiring, EMA target encoder, stop-gradient, learning."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import learn_on_digits
from conftest import load_config
from conftest import random_mask_batch
from ssljax import methods
from ssljax.data import masks as masks_lib


def _config(tiny_config):
  cfg = tiny_config("ijepa")
  cfg.data.image_size = 16
  cfg.model.image_size = 16          # 4x4 grid: Kc = 5, Kt = 2, T = 4
  c = cfg.ijepa
  c.predictor_width, c.predictor_depth, c.predictor_heads = 16, 1, 2
  c.ema_start, c.ema_end = 0.9, 1.0
  return cfg


def _batch(n=4, seed=0):
  rng = np.random.default_rng(seed)
  ms = [masks_lib.multiblock_masks(rng, (4, 4)) for _ in range(n)]
  return {"global": rng.normal(size=(n, 1, 16, 16, 1)).astype(np.float32),
          "context_keep": np.stack([m["context_keep"] for m in ms]),
          "target_indices": np.stack([m["target_indices"] for m in ms]),
          "label": np.zeros(n, np.int32)}


def test_view_spec(tiny_config):
  spec = methods.get("ijepa")(_config(tiny_config)).view_spec()
  assert (spec.global_crops, spec.mask, spec.patch_size) == (1, "multiblock", 4)


def test_loss_is_l2_on_layer_normed_targets(tiny_config):
  method = methods.get("ijepa")(_config(tiny_config))
  batch = _batch()
  params, state = method.init(jax.random.key(0), batch)
  loss, _ = method.loss(params, state, batch, jax.random.key(1), 0)
  x = batch["global"][:, 0]
  pred = method.predict(params, x, batch["context_keep"], batch["target_indices"])
  assert pred.shape == (4, 4, 2, 32)
  tokens = method.backbone.apply({"params": state["target"]}, x, return_tokens=True)["patches"]
  h = (tokens - tokens.mean(-1, keepdims=True)) / np.sqrt(tokens.var(-1, keepdims=True) + 1e-6)
  tgt = np.stack([np.asarray(h)[i][batch["target_indices"][i]] for i in range(4)])
  np.testing.assert_allclose(loss, np.mean((np.asarray(pred) - tgt) ** 2), rtol=1e-5)


def test_prediction_depends_on_context_and_target_positions_only(tiny_config):
  """Pixels outside the context do not change the prediction; target positions do."""
  method = methods.get("ijepa")(_config(tiny_config))
  batch = _batch()
  params, _ = method.init(jax.random.key(0), batch)
  x = batch["global"][:, 0]
  from ssljax.models.vit import patchify, unpatchify
  patches = np.asarray(patchify(x, 4))
  in_ctx = np.zeros((4, 16), bool)
  for i in range(4):
    in_ctx[i, batch["context_keep"][i]] = True
  noisy = np.where(in_ctx[..., None], patches, 5.0)
  a = method.predict(params, x, batch["context_keep"], batch["target_indices"])
  b = method.predict(params, unpatchify(noisy, 4, 4, 4), batch["context_keep"], batch["target_indices"])
  np.testing.assert_allclose(a, b, atol=1e-5)
  other = (batch["target_indices"] + 1) % 16
  c = method.predict(params, x, batch["context_keep"], other)
  assert np.abs(np.asarray(c) - np.asarray(a)).max() > 1e-4


def test_no_gradient_to_target_encoder_and_ema(tiny_config):
  method = methods.get("ijepa")(_config(tiny_config))
  batch = _batch()
  params, state = method.init(jax.random.key(0), batch)
  grads, tgrads = jax.grad(lambda p, s: method.loss(p, s, batch, jax.random.key(1), 0)[0],
                           argnums=(0, 1))(params, state)
  assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree_util.tree_leaves(tgrads))
  assert float(jnp.abs(grads["predictor"]["mask_token"]).max()) > 0
  assert float(jnp.abs(grads["backbone"]["block0"]["mlp"]["fc1"]["kernel"]).max()) > 0
  new = method.after_step(jax.tree_util.tree_map(lambda p: p + 1.0, params), state, 0)
  a = state["target"]["norm"]["scale"]
  np.testing.assert_allclose(new["target"]["norm"]["scale"], 0.9 * a + 0.1 * (a + 1.0), atol=1e-6)
  np.testing.assert_allclose(method.momentum(method.config.total_steps), 1.0)


def test_features_come_from_the_chosen_encoder(tiny_config):
  """feature_encoder='target' (the paper's evaluation) pools the EMA target encoder, 'context' the
  online one; both are the mean of the final patch tokens."""
  cfg = _config(tiny_config)
  method = methods.get("ijepa")(cfg)
  batch = _batch()
  params, state = method.init(jax.random.key(0), batch)
  params = jax.tree_util.tree_map(lambda p: p * 1.5, params)   # online != target from here on
  x = batch["global"][:, 0]
  pool = lambda p: method.backbone.apply({"params": p}, x, return_tokens=True)["patches"].mean(1)  # noqa: E731
  np.testing.assert_allclose(method.features(params, state, x), pool(state["target"]), atol=1e-5)
  cfg.ijepa.feature_encoder = "context"
  online = methods.get("ijepa")(cfg).features(params, state, x)
  np.testing.assert_allclose(online, pool(params["backbone"]), atol=1e-5)
  assert np.abs(np.asarray(online) - np.asarray(pool(state["target"]))).max() > 1e-3
  cfg.ijepa.feature_encoder = "student"
  with pytest.raises(ValueError, match="feature_encoder"):
    methods.get("ijepa").validate_config(cfg)


def test_predictor_ties_positions_to_indices_not_to_slots(tiny_config):
  """Permuting the context tokens together with their indices leaves the predictions unchanged
  (each token carries the positional embedding of its own patch), and so does permuting the
  target indices within a block (predictions permute along)."""
  method = methods.get("ijepa")(_config(tiny_config))
  batch = _batch()
  params, _ = method.init(jax.random.key(0), batch)
  ctx, tgt = batch["context_keep"], batch["target_indices"]
  tokens = jax.random.normal(jax.random.key(3), ctx.shape + (32,))
  run = lambda t, c, g: method.predictor.apply({"params": params["predictor"]}, t, c, g)  # noqa: E731
  base = np.asarray(run(tokens, ctx, tgt))
  perm = np.array([3, 0, 4, 1, 2])
  np.testing.assert_allclose(run(tokens[:, perm], ctx[:, perm], tgt), base, atol=1e-5)
  np.testing.assert_allclose(run(tokens, ctx, tgt[:, :, ::-1]), base[:, :, ::-1], atol=1e-5)
  # The context positions matter: the same tokens at other indices give other predictions.
  assert np.abs(np.asarray(run(tokens, (ctx + 1) % 16, tgt)) - base).max() > 1e-4


def test_targets_come_from_the_full_image_and_context_is_disjoint_from_targets(tiny_config):
  """The target encoder sees every patch (changing a patch outside the context changes the
  targets), and the pipeline's context never contains a target patch."""
  method = methods.get("ijepa")(_config(tiny_config))
  batch = _batch()
  _, state = method.init(jax.random.key(0), batch)
  x = batch["global"][:, 0]
  tgt = batch["target_indices"]
  from ssljax.models.vit import patchify, unpatchify
  patches = np.asarray(patchify(x, 4))
  outside = np.setdiff1d(np.arange(16), batch["context_keep"][0])[0]
  patches[0, outside] += 3.0
  a = method.targets(state["target"], x, tgt)
  b = method.targets(state["target"], unpatchify(patches, 4, 4, 4), tgt)
  assert np.abs(np.asarray(a[0]) - np.asarray(b[0])).max() > 1e-3
  np.testing.assert_allclose(a[1:], b[1:], atol=1e-6)
  # Targets are layer-normed per token.
  np.testing.assert_allclose(np.asarray(a).mean(-1), 0.0, atol=1e-4)
  np.testing.assert_allclose(np.asarray(a).var(-1), 1.0, atol=1e-2)
  rng = np.random.default_rng(0)
  for _ in range(200):
    m = masks_lib.multiblock_masks(rng, (4, 4))
    assert not set(m["context_keep"].tolist()) & set(m["target_indices"].ravel().tolist())


def test_random_masks_with_copies_share_one_target_pass(tiny_config):
  """mask='random': the context is the visible patches and the one target block the rest;
  num_masks copies per image (copy 0 the pipeline's) each predict their own masked patches from
  the same target-encoder tokens."""
  cfg = _config(tiny_config)
  cfg.ijepa.mask, cfg.ijepa.mask_ratio, cfg.ijepa.num_masks = "random", 0.5, 3
  method = methods.get("ijepa")(cfg)
  spec = method.view_spec()
  assert (spec.mask, spec.mask_ratio) == ("random", 0.5)
  batch = random_mask_batch()
  params, state = method.init(jax.random.key(0), batch)
  rng = jax.random.key(1)
  loss, _ = method.loss(params, state, batch, rng, 0)
  ctx, tgt = method.masks(batch, jax.random.fold_in(rng, 1))
  assert ctx.shape == (12, 8) and tgt.shape == (12, 1, 8)
  ctx3, tgt3 = np.asarray(ctx).reshape(4, 3, 8), np.asarray(tgt).reshape(4, 3, 8)
  np.testing.assert_array_equal(ctx3[:, 0], batch["keep_indices"])
  np.testing.assert_array_equal(tgt3[:, 0], batch["masked_indices"])
  assert not np.array_equal(ctx3[:, 1], ctx3[:, 0])
  for c, t in zip(ctx.reshape(12, 8), tgt.reshape(12, 8)):   # a partition of the 16 patches
    np.testing.assert_array_equal(np.sort(np.concatenate([c, t])), np.arange(16))
  x = batch["global"][:, 0]
  tokens = method.backbone.apply({"params": state["target"]}, x, return_tokens=True)["patches"]
  h = np.asarray(tokens)
  h = (h - h.mean(-1, keepdims=True)) / np.sqrt(h.var(-1, keepdims=True) + 1e-6)
  want = np.stack([h[i // 3][np.asarray(tgt)[i, 0]] for i in range(12)])
  pred = np.asarray(method.predict(params, np.repeat(x, 3, 0), ctx, tgt))[:, 0]
  np.testing.assert_allclose(loss, np.mean((pred - want) ** 2), rtol=1e-5)


def test_data2vec_targets(tiny_config):
  """targets='data2vec': the last target_top_k blocks' feed-forward outputs, each
  instance-normalised over the patches (per image and channel), averaged, layer-normalised."""
  cfg = _config(tiny_config)
  cfg.ijepa.targets, cfg.ijepa.target_top_k = "data2vec", 5        # capped at the depth (2)
  cfg.model.depth = 2
  method = methods.get("ijepa")(cfg)
  batch = _batch()
  _, state = method.init(jax.random.key(0), batch)
  x = batch["global"][:, 0]
  ffn = []
  capture = lambda mdl, name: name == "mlp" or type(mdl).__name__ == "MLP"  # noqa: E731
  _, inter = method.backbone.apply({"params": state["target"]}, x, return_tokens=True,
                                   capture_intermediates=capture, mutable=["intermediates"])
  for i in range(2):
    ffn.append(np.asarray(inter["intermediates"][f"block{i}"]["mlp"]["__call__"][0])[:, 1:])
  norm = [(f - f.mean(1, keepdims=True)) / np.sqrt(f.var(1, keepdims=True) + 1e-5) for f in ffn]
  y = np.mean(norm, axis=0)
  y = (y - y.mean(-1, keepdims=True)) / np.sqrt(y.var(-1, keepdims=True) + 1e-5)
  tgt = batch["target_indices"]
  want = np.stack([y[i][tgt[i]] for i in range(4)])
  np.testing.assert_allclose(method.targets(state["target"], x, tgt), want, atol=1e-4)


@pytest.mark.parametrize("field,value,match", [
    ("targets", "ffn", "targets"), ("mask", "block", "mask"), ("mask_ratio", 1.0, "mask_ratio"),
    ("num_masks", 2, "num_masks"), ("num_targets", 0, "num_targets"),
    ("target_scale", (0.3, 0.2), "target_scale"), ("context_scale", (0.0, 1.0), "context_scale")])
def test_config_errors_name_the_field(tiny_config, field, value, match):
  cfg = _config(tiny_config)
  if field == "mask_ratio":
    cfg.ijepa.mask = "random"
  cfg.ijepa[field] = value        # num_masks 2 with the default multiblock masks
  with pytest.raises(ValueError, match=f"config.ijepa.{match}"):
    methods.get("ijepa").validate_config(cfg)


def test_digits_config_targets_carry_image_content_at_init():
  """The targets of configs/ijepa_digits.py are not a position-only code from step 0.

  With the fixed sin-cos positional table (92% a constant vector at width 64 on a 4x4 grid) and
  16-pixel patches, 98% of the energy of the layer-normed final tokens (the paper's targets) was
  one vector shared by every image and position and 0.75% was image content (what varies across
  images at a fixed position): the predictor reached loss ~0.01 by predicting positions. Learned
  positional embeddings (init std 0.02) leave about half of it to content, and the config's
  data2vec targets (instance-normalised over the patches) more.
  """
  from ssljax.data import pipeline, sources
  from ssljax.methods.ijepa import _layer_norm
  cfg = load_config("ijepa_digits")
  method = methods.get("ijepa")(cfg)
  src = sources.build_source(cfg.data, cfg.data.train_split)
  batch = next(iter(pipeline.train_dataset(src, method.view_spec(), cfg.data.augment, seed=0,
                                           local_batch_size=128)))
  _, state = method.init(jax.random.key(0), batch)
  x = batch["global"][:, 0]

  def content(h):                                            # h [B, P, D], sum of squares D per token
    h = np.asarray(h)
    return ((h - h.mean(0)) ** 2).sum(-1).mean() / h.shape[-1]

  tokens = method.backbone.apply({"params": state["target"]}, x, return_tokens=True)["patches"]
  assert content(_layer_norm(tokens)) > 0.25                 # sin-cos: 0.0075; learned: 0.50
  assert cfg.ijepa.targets == "data2vec"
  assert content(method.target_tokens(state["target"], x)) > 0.5


@pytest.mark.slow
def test_learns_on_digits(tmp_path):
  """The config's recipe (random masks x4, data2vec targets, context-encoder features, 600 steps;
  measured +0.12 to +0.26 kNN over the random init at seeds 0-4; the paper's multi-block masks
  and final targets did not learn here, see configs/ijepa_digits.py)."""
  learn_on_digits(load_config("ijepa_digits"), tmp_path, margin=0.05)
