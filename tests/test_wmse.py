"""W-MSE: config validation, the method's contract with the trainer, and that it learns on digits."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import learn_on_digits
from conftest import load_config
from ssljax import config as config_lib
from ssljax import losses
from ssljax import methods


def _config(tiny_config, **kw):
  cfg = tiny_config("wmse")
  cfg.wmse.update(dict(w_size=8, proj_hidden_dims=(32,), proj_dim=4))
  cfg.wmse.update(kw)
  return cfg


def _batch(n=16, v=2):
  rng = np.random.default_rng(0)
  return {"global": rng.normal(size=(n, v, 8, 8, 1)).astype(np.float32),
          "label": np.zeros(n, np.int32)}


def test_validate_config_names_bad_w_size(tiny_config):
  config_lib.validate(_config(tiny_config))  # batch 16, w_size 8, proj_dim 4: fine
  with pytest.raises(config_lib.ConfigError, match=r"w_size=6 does not divide config.batch_size=16"):
    config_lib.validate(_config(tiny_config, w_size=6))
  with pytest.raises(config_lib.ConfigError, match=r"w_size=8 <= config.wmse.proj_dim=8"):
    config_lib.validate(_config(tiny_config, proj_dim=8))
  config_lib.validate(_config(tiny_config, proj_dim=8, eps=0.1))  # shrinkage makes it invertible
  config_lib.validate(load_config("wmse_digits"))


def test_view_spec_follows_num_views(tiny_config):
  assert "wmse" in methods.available()
  assert methods.get("wmse")(_config(tiny_config)).view_spec().global_crops == 2
  assert methods.get("wmse")(_config(tiny_config, num_views=4)).view_spec().global_crops == 4


def test_loss_is_wmse_of_shuffled_embeddings(tiny_config):
  cfg = _config(tiny_config, num_views=3, w_iter=2)
  method = methods.get("wmse")(cfg)
  batch = _batch(v=3)
  params, state = method.init(jax.random.key(0), batch)
  loss, (_, new_state) = method.loss(params, state, batch, jax.random.key(1), 0)
  f_rng, p_rng = jax.random.split(jax.random.key(1))
  z, s = method.embed_views(params, state, batch["global"], f_rng)
  assert z.shape == (3, 16, 4)
  expected = np.mean([losses.wmse(z[:, jax.random.permutation(k, 16)], 8)
                      for k in jax.random.split(p_rng, 2)])
  np.testing.assert_allclose(loss, expected, rtol=1e-5)
  # The shuffle matters with 2 sub-batches (different sub-batches are whitened together) ...
  assert abs(float(losses.wmse(z, 8)) - float(expected)) > 1e-5
  # ... but not with one sub-batch: whitening the whole batch is permutation-invariant.
  cfg1 = _config(tiny_config, w_size=16)
  m1 = methods.get("wmse")(cfg1)
  p1, s1 = m1.init(jax.random.key(0), _batch())
  l1, _ = m1.loss(p1, s1, _batch(), jax.random.key(1), 0)
  z1, _ = m1.embed_views(p1, s1, _batch()["global"], jax.random.split(jax.random.key(1))[0])
  np.testing.assert_allclose(l1, losses.wmse(z1, 16), rtol=1e-4)
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), new_state, s)


def test_gradients_reach_backbone_and_projector(tiny_config):
  method = methods.get("wmse")(_config(tiny_config))
  batch = _batch()
  params, state = method.init(jax.random.key(0), batch)
  grads = jax.grad(lambda p: method.loss(p, state, batch, jax.random.key(1), 0)[0])(params)
  for part in ("backbone", "projector"):
    leaves = jax.tree_util.tree_leaves(grads[part])
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
    assert float(jnp.sqrt(sum(jnp.sum(g ** 2) for g in leaves))) > 0, part


@pytest.mark.slow
def test_digits_learns(tmp_path):
  """configs/wmse_digits.py, shortened: beats the random-init backbone on held-out kNN."""
  config = load_config("wmse_digits")
  config.total_steps = 150
  config.eval_every = 150
  config.eval.linear_epochs = 20
  learn_on_digits(config, tmp_path, margin=0.03)
