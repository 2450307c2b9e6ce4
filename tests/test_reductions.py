"""ssljax.reductions: float32 sums over leading axes, plain by default, as matvecs (ssljax.cpu's
form) only with cpu_tuning=True; both compute the plain reductions (values, grads)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssljax import reductions


@pytest.mark.parametrize("cpu_tuning", [False, True])
@pytest.mark.parametrize("shape,num_axes", [((5, 7), 1), ((2, 3, 11), 2), ((4, 3, 2), 1),
                                            ((6,), 1)])
def test_leading_sum_and_mean_match_numpy(shape, num_axes, cpu_tuning):
  x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
  axes = tuple(range(num_axes))
  got = reductions.leading_sum(jnp.asarray(x), num_axes, cpu_tuning)
  assert got.dtype == jnp.float32 and got.shape == shape[num_axes:]
  np.testing.assert_allclose(got, x.sum(axes), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(reductions.leading_mean(jnp.asarray(x), num_axes, cpu_tuning),
                             x.mean(axes), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cpu_tuning", [False, True])
def test_bfloat16_input_is_summed_in_float32(cpu_tuning):
  """4096 ones of bfloat16 (8 mantissa bits) sum to 4096 only when accumulated in float32."""
  x = jnp.ones((4096, 3), jnp.bfloat16)
  got = reductions.leading_sum(x, 1, cpu_tuning)
  assert got.dtype == jnp.float32
  np.testing.assert_array_equal(np.asarray(got), np.full(3, 4096.0, np.float32))
  x = jnp.full((3000, 2), 1.0 + 2 ** -7, jnp.bfloat16)   # not representable after ~2^8 adds
  np.testing.assert_allclose(reductions.leading_sum(x, 1, cpu_tuning), 3000 * (1 + 2 ** -7),
                             rtol=1e-6)


def test_leading_sum_rejects_bad_axes():
  for cpu_tuning in (False, True):
    with pytest.raises(ValueError, match="num_axes=3"):
      reductions.leading_sum(jnp.ones((2, 3)), 3, cpu_tuning)


def test_the_matvec_form_only_with_cpu_tuning():
  plain = str(jax.make_jaxpr(lambda x: reductions.leading_sum(x, 2))(jnp.ones((2, 4, 8))))
  assert "reduce_sum" in plain and "dot_general" not in plain
  tuned = str(jax.make_jaxpr(lambda x: reductions.leading_sum(x, 2, True))(jnp.ones((2, 4, 8))))
  assert "dot_general" in tuned and "reduce_sum" not in tuned and "Precision.HIGHEST" in tuned


@pytest.mark.parametrize("cpu_tuning", [False, True])
def test_scale_columns_value_and_gradients_match_autodiff(cpu_tuning):
  rng = np.random.default_rng(1)
  z = jnp.asarray(rng.normal(size=(6, 9)), jnp.float32)
  s = jnp.asarray(rng.uniform(0.5, 2.0, size=(9,)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(6, 9)), jnp.float32)   # a non-uniform cotangent

  def ours(z, s):
    return jnp.sum(jnp.tanh(reductions.scale_columns(z, s, cpu_tuning)) * w)

  def plain(z, s):
    return jnp.sum(jnp.tanh(z * s[None, :]) * w)

  np.testing.assert_allclose(reductions.scale_columns(z, s, cpu_tuning),
                             np.asarray(z) * np.asarray(s), rtol=1e-6)
  g_ours = jax.grad(ours, argnums=(0, 1))(z, s)
  g_plain = jax.grad(plain, argnums=(0, 1))(z, s)
  for a, b in zip(g_ours, g_plain):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  # With cpu_tuning the gradient for `s` is a matvec: no axis-0 reduce_sum in the backward pass
  # (autodiff of the plain product, the default, has one; and only the default has a jvp).
  reduces = "reduce_sum[axes=(0,)" in str(jax.make_jaxpr(jax.grad(ours, argnums=1))(z, s))
  assert reduces == (not cpu_tuning)
  if not cpu_tuning:
    jax.jvp(lambda s: reductions.scale_columns(z, s), (s,), (s,))


def test_heads_and_centre_compute_the_same_with_and_without_cpu_tuning():
  """WeightNormDense (via DINOHead) and update_center: the switch changes the form, not the value
  or the gradient; off, the program has no custom_vjp (forward mode works)."""
  from ssljax import losses
  from ssljax.models import DINOHead
  x = jax.random.normal(jax.random.key(0), (5, 12))
  heads = {t: DINOHead(out_dim=40, hidden_dim=16, bottleneck_dim=8, norm_last_layer=False,
                       cpu_tuning=t) for t in (False, True)}
  params = heads[False].init(jax.random.key(1), x)
  outs, grads = {}, {}
  for t, head in heads.items():
    loss = lambda p: jnp.sum(jnp.sin(head.apply(p, x)))   # noqa: E731,B023
    outs[t], grads[t] = jax.value_and_grad(loss)(params)
    assert ("custom_vjp" in str(jax.make_jaxpr(loss)(params))) == t
  np.testing.assert_allclose(outs[True], outs[False], rtol=1e-5)
  for a, b in zip(jax.tree.leaves(grads[True]), jax.tree.leaves(grads[False])):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
  g = grads[False]["params"]["last_layer"]["g"]
  assert float(jnp.max(jnp.abs(g))) > 0     # the gain's gradient (the reduction) is exercised
  jax.jvp(lambda v: heads[False].apply(params, v), (x,), (x,))
  teacher = jax.random.normal(jax.random.key(2), (2, 5, 40))
  center = jnp.zeros((40,))
  plain = losses.update_center(center, teacher, 0.9)
  np.testing.assert_allclose(losses.update_center(center, teacher, 0.9, cpu_tuning=True), plain,
                             rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(plain, 0.1 * np.asarray(teacher).mean((0, 1)), rtol=1e-5, atol=1e-7)
