"""ssljax.reductions: leading-axis sums as matvecs compute the plain reductions (values, grads)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssljax import reductions


@pytest.mark.parametrize("shape,num_axes", [((5, 7), 1), ((2, 3, 11), 2), ((4, 3, 2), 1),
                                            ((6,), 1)])
def test_leading_sum_and_mean_match_numpy(shape, num_axes):
  x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
  axes = tuple(range(num_axes))
  np.testing.assert_allclose(reductions.leading_sum(jnp.asarray(x), num_axes), x.sum(axes),
                             rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(reductions.leading_mean(jnp.asarray(x), num_axes), x.mean(axes),
                             rtol=1e-5, atol=1e-6)


def test_leading_sum_rejects_bad_axes():
  with pytest.raises(ValueError, match="num_axes=3"):
    reductions.leading_sum(jnp.ones((2, 3)), 3)


def test_leading_sum_is_a_dot_not_a_reduce():
  jaxpr = str(jax.make_jaxpr(lambda x: reductions.leading_sum(x, 2))(jnp.ones((2, 4, 8))))
  assert "dot_general" in jaxpr and "reduce_sum" not in jaxpr


def test_scale_columns_value_and_gradients_match_autodiff():
  rng = np.random.default_rng(1)
  z = jnp.asarray(rng.normal(size=(6, 9)), jnp.float32)
  s = jnp.asarray(rng.uniform(0.5, 2.0, size=(9,)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(6, 9)), jnp.float32)   # a non-uniform cotangent

  def ours(z, s):
    return jnp.sum(jnp.tanh(reductions.scale_columns(z, s)) * w)

  def plain(z, s):
    return jnp.sum(jnp.tanh(z * s[None, :]) * w)

  np.testing.assert_allclose(reductions.scale_columns(z, s), np.asarray(z) * np.asarray(s),
                             rtol=1e-6)
  g_ours = jax.grad(ours, argnums=(0, 1))(z, s)
  g_plain = jax.grad(plain, argnums=(0, 1))(z, s)
  for a, b in zip(g_ours, g_plain):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  # The gradient for `s` is a matvec: no axis-0 reduce_sum in the backward pass (autodiff of the
  # plain product has one).
  assert "reduce_sum[axes=(0,)" in str(jax.make_jaxpr(jax.grad(plain, argnums=1))(z, s))
  assert "reduce_sum[axes=(0,)" not in str(jax.make_jaxpr(jax.grad(ours, argnums=1))(z, s))
