"""VICReg: the method's contract with the trainer, and that it learns on digits."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import learn_on_digits
from conftest import load_config
from ssljax import losses
from ssljax import methods


def _config(tiny_config):
  cfg = tiny_config("vicreg")
  cfg.vicreg.expander_hidden_dims = (32, 32)
  cfg.vicreg.expander_dim = 16
  return cfg


def _batch(n=16):
  rng = np.random.default_rng(0)
  return {"global": rng.normal(size=(n, 2, 8, 8, 1)).astype(np.float32),
          "label": np.zeros(n, np.int32)}


def test_registered_two_views(tiny_config):
  assert "vicreg" in methods.available()
  spec = methods.get("vicreg")(_config(tiny_config)).view_spec()
  assert spec.global_crops == 2 and spec.local_crops == 0


def test_loss_is_vicreg_of_per_view_expansions_with_config_coefficients(tiny_config):
  cfg = _config(tiny_config)
  cfg.vicreg.sim_coeff, cfg.vicreg.std_coeff, cfg.vicreg.cov_coeff = 3.0, 7.0, 2.0
  method = methods.get("vicreg")(cfg)
  batch = _batch()
  params, state = method.init(jax.random.key(0), batch)
  loss, (metrics, new_state) = method.loss(params, state, batch, jax.random.key(1), 0)
  r1, r2 = jax.random.split(jax.random.key(1), 2)
  z1, s = method._expand(params, state, batch["global"][:, 0], r1, True)
  z2, s = method._expand(params, s, batch["global"][:, 1], r2, True)
  expected = losses.vicreg(z1, z2, sim_coeff=3.0, std_coeff=7.0, cov_coeff=2.0)
  np.testing.assert_allclose(loss, expected, rtol=1e-5)
  assert abs(float(expected) - float(losses.vicreg(z1, z2))) > 1e-3  # the coefficients matter
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), new_state, s)
  np.testing.assert_allclose(metrics["invariance_mse"], jnp.mean((z1 - z2) ** 2), rtol=1e-5)
  assert method.features(params, state, batch["global"][:, 0]).shape == (16, method.backbone.num_features)
  assert method.embeddings(params, state, batch["global"][:, 0]).shape == (16, 16)


def test_gradients_reach_backbone_and_expander(tiny_config):
  method = methods.get("vicreg")(_config(tiny_config))
  batch = _batch()
  params, state = method.init(jax.random.key(0), batch)
  grads = jax.grad(lambda p: method.loss(p, state, batch, jax.random.key(1), 0)[0])(params)
  for part in ("backbone", "expander"):
    norm = jnp.sqrt(sum(jnp.sum(g ** 2) for g in jax.tree_util.tree_leaves(grads[part])))
    assert float(norm) > 0, part


@pytest.mark.slow
def test_digits_learns(tmp_path):
  """configs/vicreg_digits.py (300 steps; 150 learned at seed 0 only) beats the random-init backbone
  on held-out kNN."""
  config = load_config("vicreg_digits")
  config.eval.linear_epochs = 20
  learn_on_digits(config, tmp_path, margin=0.03)
