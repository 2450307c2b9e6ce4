"""LeJEPA: multi-crop views, loss = lejepa_loss of the method's projections, gradients everywhere."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import learn_on_digits
from conftest import load_config
from ssljax import losses
from ssljax import methods


def _config(tiny_config):
  cfg = tiny_config("lejepa")
  c = cfg.lejepa
  c.local_crops, c.local_size = 2, 4
  c.proj_hidden_dims, c.proj_dim, c.sigreg_slices = (32,), 16, 64
  return cfg


def _batch(n=8, seed=0):
  rng = np.random.default_rng(seed)
  return {"global": rng.normal(size=(n, 2, 8, 8, 1)).astype(np.float32),
          "local": rng.normal(size=(n, 2, 4, 4, 1)).astype(np.float32),
          "label": np.zeros(n, np.int32)}


def test_view_spec(tiny_config):
  spec = methods.get("lejepa")(_config(tiny_config)).view_spec()
  assert (spec.global_crops, spec.local_crops, spec.local_size, spec.mask) == (2, 2, 4, "")


def test_loss_is_lejepa_loss_with_step_key_directions(tiny_config):
  cfg = _config(tiny_config)
  method = methods.get("lejepa")(cfg)
  batch = _batch()
  params, state = method.init(jax.random.key(0), batch)
  rng = jax.random.key(1)
  loss, (metrics, new_state) = method.loss(params, state, batch, rng, 0)
  fwd_rng, sig_rng = jax.random.split(rng)
  z, _ = method.project(params, state, batch, fwd_rng, train=True)
  assert z.shape == (4, 8, 16)
  ref = losses.lejepa_loss(z[:2], z, lamb=0.05, key=sig_rng, num_slices=64)
  np.testing.assert_allclose(loss, ref, rtol=1e-5)
  # Directions come from the step key: a different key gives a different SIGReg term.
  other = losses.lejepa_loss(z[:2], z, lamb=0.05, key=jax.random.key(7), num_slices=64)
  assert abs(float(other) - float(ref)) > 1e-6
  # BatchNorm statistics of the projector were updated (train mode).
  assert not np.allclose(jax.tree_util.tree_leaves(new_state["projector"])[0],
                         jax.tree_util.tree_leaves(state["projector"])[0])


def test_no_stop_gradient_every_view_gets_gradient(tiny_config):
  method = methods.get("lejepa")(_config(tiny_config))
  batch = _batch()
  params, state = method.init(jax.random.key(0), batch)
  g = jax.grad(lambda b: method.loss(params, state, b, jax.random.key(1), 0)[0],
               allow_int=True)(jax.tree_util.tree_map(jnp.asarray, batch))
  for key in ("global", "local"):
    per_view = jnp.abs(g[key]).sum(axis=(0, 2, 3, 4))
    assert (per_view > 0).all(), (key, per_view)   # no view is a stop-gradient target


@pytest.mark.slow
def test_learns_on_digits(tmp_path):
  learn_on_digits(load_config("lejepa_digits"), tmp_path, margin=0.02)
