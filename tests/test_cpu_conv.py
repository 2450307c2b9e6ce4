"""ssljax.cpu.conv and ssljax.cpu.winograd: ResNet's XLA:CPU ops compute what lax computes, and
change the compiled program as their docstrings say."""
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from ssljax import models
from ssljax.cpu import conv as cpu_conv
from ssljax.cpu import winograd
from hlo_helpers import dilated_convolutions, transposes_with
from model_helpers import _jit, _key, _images, _resnet_cfg, _init

_DN = ("NHWC", "HWIO", "NHWC")


def _resnet(**overrides):
  """A tiny plain ResNet-18 (cpu_tuning='off'), for `.clone(**ops)`."""
  return models.build_backbone(_resnet_cfg(cpu_tuning="off", **overrides))


def _train_mode_loss(model, x):
  """(params -> sum of squared train-mode features, the model's variables) for gradient tests."""
  variables = _init(model, x)

  def loss(params):
    out, _ = model.apply({**variables, "params": params}, x, train=True, mutable=["batch_stats"])
    return jnp.sum(out ** 2)
  return loss, variables


def test_computed_once_is_the_identity_in_value_and_gradient():
  computed_once = cpu_conv.computed_once
  x = jax.random.normal(_key(3), (2, 4, 4, 3))
  np.testing.assert_array_equal(np.asarray(_jit(computed_once)(x)), np.asarray(x))
  grad = jax.grad(lambda v: jnp.sum(jnp.sin(computed_once(v))))(x)
  np.testing.assert_allclose(np.asarray(grad), np.cos(np.asarray(x)), rtol=1e-6)
  batched = jax.random.normal(_key(4), (3, 2, 4))
  np.testing.assert_array_equal(np.asarray(jax.vmap(computed_once)(batched)), np.asarray(batched))
  # A NaN where the predicate looks gives a non-finite result, as the identity would.
  assert not np.isfinite(np.asarray(computed_once(x.at[0, 0, 0, 0].set(jnp.nan)))).any()
  assert "cond" in str(jax.make_jaxpr(computed_once)(x))   # the fusion boundary is there


@pytest.mark.parametrize("depth", [18, 50])
def test_weight_gradient_transposes_read_stored_activations(depth):
  """XLA:CPU must not recompute norm + ReLU chains inside the weight-gradient transposes
  (computed_once's docstring): with it no such fusion is left; without it there are many."""
  plain = _resnet(depth=depth, cifar_stem=True)

  def compiled_grad_hlo(model):
    loss, variables = _train_mode_loss(model, _images(4))
    return jax.jit(jax.grad(loss)).lower(variables["params"]).compile().as_text()

  assert transposes_with(compiled_grad_hlo(plain.clone(**cpu_conv.resnet_ops())), "maximum") == []
  without = plain.clone(**{**cpu_conv.resnet_ops(), "store_once": lambda v: v})
  assert len(transposes_with(compiled_grad_hlo(without), "maximum")) >= 4


@pytest.mark.parametrize("kernel,size", [(3, 16), (3, 7), (1, 16), (1, 7)])
def test_stride2_conv_matches_lax_in_value_and_both_gradients(kernel, size):
  """The routed stride-2 conv (phase-split input gradient) computes what lax does."""
  x = jax.random.normal(_key(5), (3, size, size, 6))
  w = jax.random.normal(_key(6), (kernel, kernel, 6, 5))
  pad = kernel // 2
  args = ((2, 2), ((pad, pad), (pad, pad)))
  dn = lax.conv_dimension_numbers(x.shape, w.shape, _DN)
  ours = lambda x, w: cpu_conv.Conv()(x, w, *args, dimension_numbers=dn)  # noqa: E731
  ref = lambda x, w: lax.conv_general_dilated(x, w, *args, dimension_numbers=dn)  # noqa: E731
  assert "custom_vjp" in str(jax.make_jaxpr(ours)(x, w))      # the routed op, not lax's
  g = jax.random.normal(_key(7), ref(x, w).shape)
  np.testing.assert_allclose(ours(x, w), ref(x, w), rtol=1e-6, atol=1e-6)
  def grad(f):
    return _jit(jax.grad(lambda x, w: jnp.sum(f(x, w) * g), argnums=(0, 1)))(x, w)
  for got, want in zip(grad(ours), grad(ref)):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_stride2_input_gradient_is_undilated_with_the_cpu_ops():
  """With the CPU conv no convolution of the ResNet's gradient runs over a dilated input; the
  plain ResNet's 6 stride-2 convs (3 strided 3x3, 3 projections) keep lax's dilated one."""
  plain = _resnet(cifar_stem=True)

  def lowered(model):
    loss, variables = _train_mode_loss(model, _images(4))
    return jax.jit(jax.grad(loss)).trace(variables["params"]).lower().as_text()
  assert dilated_convolutions(lowered(plain)) == 6
  assert dilated_convolutions(lowered(plain.clone(**cpu_conv.resnet_ops()))) == 0
  no_stride2 = plain.clone(**cpu_conv.resnet_ops(stride2_input_grad=False))
  assert dilated_convolutions(lowered(no_stride2)) == 6


@pytest.mark.parametrize("tile,tol", [(2, 2e-6), (4, 2e-5)])
@pytest.mark.parametrize("shape", [(2, 8, 8, 5), (3, 7, 5, 4), (1, 1, 1, 3), (2, 4, 6, 16)])
def test_winograd_conv3x3_matches_lax_in_value_and_both_gradients(shape, tile, tol):
  """F(2x2, 3x3) and F(4x4, 3x3) compute lax's 3x3 'SAME' conv, also at sizes that are not a
  multiple of the tile (zero rows / columns more, cropped) and at 1x1 (every tap but the centre in
  the padding); F(4x4)'s larger coefficients round more."""
  x = jax.random.normal(_key(8), shape)
  w = jax.random.normal(_key(9), (3, 3, shape[-1], 6))
  ref = lambda x, w: lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)),  # noqa: E731
                                              dimension_numbers=_DN,
                                              precision=lax.Precision.HIGHEST)
  want = ref(x, w)
  ours = lambda x, w: winograd.conv3x3(x, w, tile)  # noqa: E731
  got = _jit(ours)(x, w)
  assert got.shape == want.shape == shape[:3] + (6,) and got.dtype == jnp.float32
  scale = float(jnp.max(jnp.abs(want)))
  np.testing.assert_allclose(got, want, rtol=0, atol=tol * scale)
  g = jax.random.normal(_key(10), want.shape)
  def grad(f):
    return _jit(jax.grad(lambda x, w: jnp.sum(f(x, w) * g), argnums=(0, 1)))(x, w)
  for got, want in zip(grad(ours), grad(ref)):
    np.testing.assert_allclose(got, want, rtol=0, atol=tol * float(jnp.max(jnp.abs(want))))


def test_winograd_conv3x3_names_bad_shapes():
  with pytest.raises(ValueError, match=r"got x \(2, 4, 4, 3\) and w \(5, 5, 3, 4\)"):
    winograd.conv3x3(jnp.zeros((2, 4, 4, 3)), jnp.zeros((5, 5, 3, 4)))
  with pytest.raises(ValueError, match=r"got x \(2, 4, 4, 3\) and w \(3, 3, 8, 4\)"):
    winograd.conv3x3(jnp.zeros((2, 4, 4, 3)), jnp.zeros((3, 3, 8, 4)))
  with pytest.raises(ValueError, match=r"tile=3; expected one of \(2, 4\)"):
    winograd.conv3x3(jnp.zeros((2, 4, 4, 3)), jnp.zeros((3, 3, 3, 4)), tile=3)


def _lowered_convs(model, x):
  loss, variables = _train_mode_loss(model, x)
  return jax.jit(jax.grad(loss)).trace(variables["params"]).lower().as_text().count(
      "stablehlo.convolution")


@pytest.mark.parametrize("depth", [18, 50])
def test_wide_stride1_convs_run_as_winograd(depth):
  """From winograd_min_channels on, the 3x3 stride-1 convs (forward and both gradients) leave the
  CPU lowering; narrower convs stay convolutions."""
  plain = _resnet(depth=depth, cifar_stem=True)
  x = _images(2, size=8)
  ops = lambda **kw: plain.clone(**cpu_conv.resnet_ops(**kw))  # noqa: E731
  base = _lowered_convs(ops(winograd_min_channels=None), x)
  assert _lowered_convs(ops(winograd_min_channels=1024), x) == base   # wider than any conv here
  # x0.25: the 3x3 convs have 16 / 32 / 64 / 128 channels in stages 1-4 (both depths), so from 32
  # on the stride-1 ones of stages 2-4: ResNet-18 3 + 3 + 3, ResNet-50 3 + 5 + 2 (4 / 6 / 3 blocks,
  # the first strided).
  routed = 9 if depth == 18 else 10
  assert _lowered_convs(ops(winograd_min_channels=32), x) == base - 3 * routed  # fwd, dx, dw each


def test_winograd_tile_follows_the_channels():
  """Below winograd_f2_channels the routed convs are F(4x4, 3x3) (36 products), from there on
  F(2x2, 3x3) (16)."""
  plain = _resnet(cifar_stem=True)

  def products(**kw):   # batch sizes of the forward's batched dot_generals: [products, tiles, C]
    model = plain.clone(**cpu_conv.resnet_ops(**kw))
    loss, variables = _train_mode_loss(model, _images(2, size=8))
    text = jax.jit(loss).trace(variables["params"]).lower().as_text()
    batched = r"stablehlo.dot_general %\S+, %\S+, batching_dims = \[0\] x \[0\].*-> tensor<(\d+)x"
    return sorted({int(m) for m in re.findall(batched, text)})
  assert products(winograd_min_channels=32) == [36]                  # stages 2-4: 32 / 64 / 128
  assert products(winograd_min_channels=32, winograd_f2_channels=64) == [16, 36]
  assert products(winograd_min_channels=32, winograd_f2_channels=32) == [16]


def test_resnet_with_the_cpu_ops_computes_what_the_plain_one_computes():
  """Train-mode loss and parameter gradients of a ResNet-18 with every CPU op (every stride-1 3x3
  conv past the stem as Winograd, both tiles) agree with the plain ResNet's (float32 rounding
  only), also with the batch sharded over 8 devices (the tiles of all images form one
  matrix-product axis)."""
  plain = _resnet(cifar_stem=True)
  tuned = plain.clone(**cpu_conv.resnet_ops(winograd_min_channels=16, winograd_f2_channels=64))
  x = _images(8, size=8)
  variables = _init(plain, x)

  def value_and_grad(model, x, params):
    def loss(params, x):
      out, _ = model.apply({**variables, "params": params}, x, train=True, mutable=["batch_stats"])
      return jnp.sum(out ** 2)
    return _jit(jax.value_and_grad(loss))(params, x)
  want_loss, want = value_and_grad(plain, x, variables["params"])
  mesh = Mesh(np.array(jax.devices()), ("data",))
  sharded = (jax.device_put(x, NamedSharding(mesh, P("data"))),
             jax.device_put(variables["params"], NamedSharding(mesh, P())))
  for got_loss, got in (value_and_grad(tuned, x, variables["params"]),
                        value_and_grad(tuned, *sharded)):
    np.testing.assert_allclose(got_loss, want_loss, rtol=1e-5)
    for path, (a, b) in zip(jax.tree_util.tree_leaves_with_path(want),
                            zip(jax.tree.leaves(got), jax.tree.leaves(want))):
      np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4 * float(jnp.max(jnp.abs(b))) + 1e-7,
                                 err_msg=jax.tree_util.keystr(path[0]))
