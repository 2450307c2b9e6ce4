"""Barlow Twins: the method's contract with the trainer, and that it learns on digits."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import learn_on_digits
from conftest import load_config
from ssljax import losses
from ssljax import methods


def _config(tiny_config):
  cfg = tiny_config("barlow_twins")
  cfg.barlow_twins.proj_hidden_dims = (32, 32)
  cfg.barlow_twins.proj_dim = 16
  return cfg


def _batch(n=16):
  rng = np.random.default_rng(0)
  return {"global": rng.normal(size=(n, 2, 8, 8, 1)).astype(np.float32),
          "label": np.zeros(n, np.int32)}


def test_registered_two_views(tiny_config):
  assert "barlow_twins" in methods.available()
  spec = methods.get("barlow_twins")(_config(tiny_config)).view_spec()
  assert spec.global_crops == 2 and spec.local_crops == 0 and spec.mask == ""


def test_loss_is_barlow_twins_of_per_view_projections(tiny_config):
  cfg = _config(tiny_config)
  cfg.barlow_twins.lambd = 0.02
  method = methods.get("barlow_twins")(cfg)
  batch = _batch()
  params, state = method.init(jax.random.key(0), batch)
  loss, (metrics, new_state) = method.loss(params, state, batch, jax.random.key(1), 0)
  # The reference projects each view in its own pass (BatchNorm statistics per view).
  r1, r2 = jax.random.split(jax.random.key(1), 2)
  z1, s = method._project(params, state, batch["global"][:, 0], r1, True)
  z2, s = method._project(params, s, batch["global"][:, 1], r2, True)
  np.testing.assert_allclose(loss, losses.barlow_twins(z1, z2, 0.02), rtol=1e-5)
  # Both passes updated the running statistics, in order.
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), new_state, s)
  assert new_state["projector"]["batch_stats"]["bn0"]["mean"].shape == (32,)
  assert set(metrics) >= {"embedding_std", "positive_cosine"}
  feats = method.features(params, state, batch["global"][:, 0])
  assert feats.shape == (16, method.backbone.num_features)
  assert method.embeddings(params, state, batch["global"][:, 0]).shape == (16, 16)


def test_identical_views_zero_on_diagonal_term(tiny_config):
  """With the two views equal, C's diagonal is 1 (up to eps): only the lambda term remains."""
  cfg = _config(tiny_config)
  method = methods.get("barlow_twins")(cfg)
  batch = _batch()
  batch["global"][:, 1] = batch["global"][:, 0]
  params, state = method.init(jax.random.key(0), batch)
  loss_small, _ = method.loss(params, state, batch, jax.random.key(1), 0)
  cfg.barlow_twins.lambd = 0.0
  loss_zero, _ = methods.get("barlow_twins")(cfg).loss(params, state, batch, jax.random.key(1), 0)
  assert float(loss_zero) < 1e-3 * 16 and float(loss_small) > float(loss_zero)


def test_gradients_reach_backbone_and_projector(tiny_config):
  method = methods.get("barlow_twins")(_config(tiny_config))
  batch = _batch()
  params, state = method.init(jax.random.key(0), batch)
  grads = jax.grad(lambda p: method.loss(p, state, batch, jax.random.key(1), 0)[0])(params)
  for part in ("backbone", "projector"):
    norm = jnp.sqrt(sum(jnp.sum(g ** 2) for g in jax.tree_util.tree_leaves(grads[part])))
    assert float(norm) > 0, part


@pytest.mark.slow
def test_digits_learns(tmp_path):
  """configs/barlow_twins_digits.py (300 steps; 150 learned at seed 0 only) beats the random-init
  backbone on held-out kNN."""
  config = load_config("barlow_twins_digits")
  config.eval.linear_epochs = 20
  learn_on_digits(config, tmp_path, margin=0.03)
