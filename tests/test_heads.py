"""ssljax.models.heads: MLP heads, the DINO head and its weight-normalised last layer, prototypes.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssljax import models
from model_helpers import _jit, _key, _init, _init_with_output


def test_mlp_head_layouts():
  x = jax.random.normal(_key(3), (16, 8))
  params = jax.eval_shape(models.MLPHead([16], 4).init, _key(0), x)["params"]
  assert set(params) == {"linear0", "bn0", "linear1"}
  assert "bias" not in params["linear0"] and "bias" in params["linear1"]
  no_bn = jax.eval_shape(models.MLPHead([16], 4, use_bn=False).init, _key(0), x)
  assert "batch_stats" not in no_bn and "bias" in no_bn["params"]["linear0"]
  v2 = models.MLPHead([16, 16], 4, last_bn=True)
  out, variables = _init_with_output(v2, x, train=True)
  assert set(variables["params"]["bn2"]) == {"scale"}  # last BN: scale, no shift
  assert out.shape == (16, 4) and out.dtype == jnp.float32
  # Train mode: the last BN (no shift) makes every output column zero-mean over the batch.
  np.testing.assert_allclose(out.mean(axis=0), 0.0, atol=1e-5)
  assert np.all(out.std(axis=0) > 0.5)


def test_dino_head():
  x = jax.random.normal(_key(1), (5, 8))
  head = models.DINOHead(out_dim=64, hidden_dim=16, bottleneck_dim=8, n_layers=3)
  variables = _init(head, x)
  params = variables["params"]
  assert set(params) == {"mlp0", "mlp1", "mlp2", "last_layer"}
  assert set(params["last_layer"]) == {"kernel"}  # no bias, gain fixed to 1
  apply = _jit(head.apply)
  out = apply(variables, x)
  assert out.shape == (5, 64) and out.dtype == jnp.float32
  # L2-normalised bottleneck and unit-norm weight columns: logits are cosines in [-1, 1].
  assert np.all(np.abs(out) <= 1.0 + 1e-5) and np.max(np.abs(out)) > 0.1
  # Weight normalisation: rescaling the last layer's columns leaves the logits unchanged;
  # L2 normalisation: rescaling the bottleneck layer leaves them unchanged too.
  scaled = dict(params)
  scaled["last_layer"] = {"kernel": params["last_layer"]["kernel"] * jnp.linspace(0.5, 3.0, 64)}
  scaled["mlp2"] = jax.tree.map(lambda a: 4.0 * a, params["mlp2"])
  np.testing.assert_allclose(apply({"params": scaled}, x), out, atol=1e-5)
  learn_g = models.DINOHead(out_dim=64, hidden_dim=16, bottleneck_dim=8, norm_last_layer=False)
  assert jax.eval_shape(learn_g.init, _key(0), x)["params"]["last_layer"]["g"].shape == (64,)
  with pytest.raises(ValueError, match="n_layers=0"):
    models.DINOHead(out_dim=4, n_layers=0)


def test_weight_norm_dense_matches_the_normalised_kernel_formula():
  """(x @ V) * g / ||V||_col equals x @ (g V / ||V||_col), values and gradients (NumPy / jnp reference)."""
  from ssljax.models.heads import WeightNormDense
  x = np.asarray(jax.random.normal(_key(3), (6, 8)))
  layer = WeightNormDense(32, learn_gain=True)
  params = _init(layer, x)["params"]
  params = {"kernel": params["kernel"], "g": jnp.linspace(0.5, 2.0, 32)}
  v, g = np.asarray(params["kernel"], np.float64), np.asarray(params["g"], np.float64)
  want = x @ (g * v / np.linalg.norm(v, axis=0, keepdims=True))
  np.testing.assert_allclose(_jit(layer.apply)({"params": params}, x), want, rtol=1e-5, atol=1e-6)

  def naive(p):
    w = p["g"] * p["kernel"] / jnp.linalg.norm(p["kernel"], axis=0, keepdims=True)
    return jnp.sum(jnp.sin(x @ w))
  ours = jax.grad(lambda p: jnp.sum(jnp.sin(layer.apply({"params": p}, x))))(params)
  ref = jax.grad(naive)(params)
  for k in ("kernel", "g"):
    np.testing.assert_allclose(ours[k], ref[k], rtol=1e-3, atol=1e-4)


def test_prototypes_is_bias_free_linear():
  x = jax.random.normal(_key(2), (5, 8))
  out, variables = _init_with_output(models.Prototypes(10), x)
  assert set(variables["params"]) == {"kernel"}
  kernel = variables["params"]["kernel"]
  assert kernel.shape == (8, 10)
  np.testing.assert_allclose(out, x @ kernel, rtol=1e-5, atol=1e-5)
