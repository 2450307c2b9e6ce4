"""ssljax.models.resnet: shapes and init, BatchNorm statistics (also sharded), GroupNorm, bf16.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from ssljax import models
from model_helpers import _jit, _key, _images, _resnet_cfg, _init


@pytest.fixture(scope="module")
def resnet18():
  """Tiny ResNet-18 (BatchNorm), its variables, jitted train/eval applies (batch stats out)."""
  model = models.build_backbone(_resnet_cfg())
  variables = _init(model, _images(16))

  def apply(variables, x, train):
    return model.apply(variables, x, train=train, mutable=["batch_stats", "intermediates"],
                       capture_intermediates=lambda mdl, _: mdl.name == "stem_conv")

  train_apply = _jit(lambda v, x: apply(v, x, True))
  eval_apply = _jit(lambda v, x: apply(v, x, False))
  return model, variables, train_apply, eval_apply


def test_resnet18_shapes_and_init(resnet18):
  model, variables, _, eval_apply = resnet18
  out, _ = eval_apply(variables, _images(16))
  assert out.shape == (16, model.num_features) == (16, 128)
  assert out.dtype == jnp.float32 and np.std(out) > 0
  params = variables["params"]
  # Zero-initialised last BN scale in every residual block; others start at 1.
  blocks = [k for k in params if k.startswith("stage")]
  assert len(blocks) == 8
  for b in blocks:
    assert np.all(params[b]["norm2"]["bn"]["scale"] == 0), b
    assert np.all(params[b]["norm1"]["bn"]["scale"] == 1), b
  # He-normal fan_out: std = sqrt(2 / (3 * 3 * out_channels)).
  kernel = np.asarray(params["stage4_block1"]["conv1"]["kernel"])  # [3, 3, 128, 128]
  np.testing.assert_allclose(kernel.std(), np.sqrt(2.0 / (9 * 128)), rtol=0.05)
  assert "bias" not in params["stem_conv"]
  assert params["stem_conv"]["kernel"].shape == (7, 7, 3, 16)
  assert "proj_conv" in params["stage2_block0"] and "proj_conv" not in params["stage1_block0"]


def test_resnet_batch_stats_update_only_in_train(resnet18):
  _, variables, train_apply, eval_apply = resnet18
  x = _images(16, seed=3)
  _, state = train_apply(variables, x)
  stats = state["batch_stats"]["stem_norm"]["bn"]
  # Momentum 0.9 from (mean 0, var 1): new = 0.9 * old + 0.1 * batch statistic.
  stem = state["intermediates"]["stem_conv"]["__call__"][0]
  np.testing.assert_allclose(stats["mean"], 0.1 * stem.mean(axis=(0, 1, 2)), atol=1e-5)
  np.testing.assert_allclose(stats["var"], 0.9 + 0.1 * stem.var(axis=(0, 1, 2)), rtol=1e-4)
  changed = jax.tree.map(lambda a, b: not np.allclose(a, b), variables["batch_stats"],
                         state["batch_stats"])
  assert all(jax.tree.leaves(changed))
  _, eval_state = eval_apply(variables, x)
  jax.tree.map(np.testing.assert_array_equal, eval_state["batch_stats"], variables["batch_stats"])


def test_resnet_train_mode_sharded_matches_single_device(resnet18):
  """BatchNorm statistics over a batch sharded across 8 devices are global-batch statistics."""
  _, variables, train_apply, _ = resnet18
  assert jax.device_count() == 8
  x = _images(16, seed=5)
  single, single_state = train_apply(variables, x)
  mesh = Mesh(np.array(jax.devices()), ("data",))
  x_sharded = jax.device_put(x, NamedSharding(mesh, P("data")))
  assert len(x_sharded.sharding.device_set) == 8
  variables_rep = jax.device_put(variables, NamedSharding(mesh, P()))
  sharded, sharded_state = train_apply(variables_rep, x_sharded)
  assert len(sharded.sharding.device_set) == 8
  np.testing.assert_allclose(sharded, single, rtol=1e-4, atol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
               sharded_state["batch_stats"], single_state["batch_stats"])
  # Statistics of one shard (2 images) would give another running mean: the match above is
  # not vacuous.
  stem = np.asarray(single_state["intermediates"]["stem_conv"]["__call__"][0])
  assert not np.allclose(0.1 * stem[:2].mean(axis=(0, 1, 2)),
                         sharded_state["batch_stats"]["stem_norm"]["bn"]["mean"], atol=1e-4)


def test_resnet50_and_cifar_stem_shapes():
  model = models.build_backbone(_resnet_cfg(depth=50, cifar_stem=True))
  assert model.num_features == 512  # 2048 * 0.25
  x = jnp.zeros((2, 16, 16, 3))
  variables = jax.eval_shape(model.init, _key(0), x)
  params = variables["params"]
  assert params["stem_conv"]["kernel"].shape == (3, 3, 3, 16)
  assert sum(k.startswith("stage") for k in params) == 3 + 4 + 6 + 3
  assert params["stage1_block0"]["conv3"]["kernel"].shape == (1, 1, 16, 64)
  assert "norm3" in params["stage4_block2"]
  out = jax.eval_shape(model.apply, variables, x)
  assert out.shape == (2, 512) and out.dtype == jnp.float32
  # Full-resolution stem: 7x7 conv, same feature width.
  std = models.build_backbone(_resnet_cfg(depth=50))
  assert jax.eval_shape(std.init, _key(0), x)["params"]["stem_conv"]["kernel"].shape == (
      7, 7, 3, 16)


def test_resnet_group_norm(resnet18):
  _, bn_variables, _, _ = resnet18
  model = models.build_backbone(_resnet_cfg(norm="group"))
  x = _images(16)
  shapes = jax.eval_shape(model.init, _key(0), x)
  assert set(shapes) == {"params"}  # no batch_stats
  assert set(shapes["params"]["stem_norm"]) == {"gn"}
  # The GroupNorm net has the BatchNorm net's params with 'bn' renamed to 'gn'.
  params = _rename(bn_variables["params"], "bn", "gn")
  assert jax.tree.structure(params) == jax.tree.structure(shapes["params"])
  out, state = _jit(lambda v, x: model.apply(v, x, train=True, capture_intermediates=True,
                                             mutable=["intermediates"]))({"params": params}, x)
  assert out.shape == (16, 128) and np.all(np.isfinite(out))
  # 16 stem channels -> 16 groups of one channel: per-sample, per-channel zero mean, unit var.
  stem = state["intermediates"]["stem_norm"]["__call__"][0]  # [16, 8, 8, 16]
  np.testing.assert_allclose(stem.mean(axis=(1, 2)), 0.0, atol=1e-4)
  np.testing.assert_allclose(stem.var(axis=(1, 2)), 1.0, rtol=1e-2)


def _rename(tree, old, new):
  if not isinstance(tree, dict):
    return tree
  return {(new if k == old else k): _rename(v, old, new) for k, v in tree.items()}


def test_resnet_bf16_activations_f32_params(resnet18):
  _, variables, _, _ = resnet18
  model = models.build_backbone(_resnet_cfg(dtype="bfloat16"))
  shapes = jax.eval_shape(model.init, _key(0), jnp.zeros((2, 16, 16, 3)))
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(shapes))
  out, state = _jit(lambda v, x: model.apply(
      v, x, train=True, mutable=["batch_stats", "intermediates"],
      capture_intermediates=True))(variables, _images(16))
  assert out.dtype == jnp.float32
  assert state["intermediates"]["stage1_block0"]["__call__"][0].dtype == jnp.bfloat16
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(state["batch_stats"]))


def test_computed_once_is_the_identity_in_value_and_gradient():
  from ssljax.models.resnet import computed_once
  x = jax.random.normal(_key(3), (2, 4, 4, 3))
  np.testing.assert_array_equal(np.asarray(_jit(computed_once)(x)), np.asarray(x))
  grad = jax.grad(lambda v: jnp.sum(jnp.sin(computed_once(v))))(x)
  np.testing.assert_allclose(np.asarray(grad), np.cos(np.asarray(x)), rtol=1e-6)
  batched = jax.random.normal(_key(4), (3, 2, 4))
  np.testing.assert_array_equal(np.asarray(jax.vmap(computed_once)(batched)), np.asarray(batched))
  # A NaN where the predicate looks gives a non-finite result, as the identity would.
  assert not np.isfinite(np.asarray(computed_once(x.at[0, 0, 0, 0].set(jnp.nan)))).any()


def test_computed_once_is_a_conditional_only_on_cpu():
  from ssljax.models.resnet import computed_once
  traced = jax.jit(computed_once).trace(jnp.ones((2, 3)))
  per_platform = {p: traced.lower(lowering_platforms=(p,)).as_text() for p in ("cpu", "cuda", "tpu")}
  assert "stablehlo.compare" in per_platform["cpu"]   # the NaN check that XLA cannot fold
  assert "stablehlo.compare" not in per_platform["cuda"]
  assert "stablehlo.compare" not in per_platform["tpu"]


def _train_mode_loss(model, x):
  """(params -> sum of squared train-mode features, the model's variables) for gradient tests."""
  variables = _init(model, x)

  def loss(params):
    out, _ = model.apply({**variables, "params": params}, x, train=True, mutable=["batch_stats"])
    return jnp.sum(out ** 2)
  return loss, variables


@pytest.mark.parametrize("depth", [18, 50])
def test_weight_gradient_transposes_read_stored_activations_on_cpu(depth, monkeypatch):
  """XLA:CPU must not recompute norm + ReLU chains inside the weight-gradient transposes
  (computed_once's docstring): with it no such fusion is left; without it there are many."""
  from ssljax.models import resnet
  loss, variables = _train_mode_loss(
      models.build_backbone(_resnet_cfg(depth=depth, cifar_stem=True)), _images(4))

  def compiled_grad_hlo():   # traced anew: computed_once is looked up while tracing
    return jax.jit(jax.grad(loss)).lower(variables["params"]).compile().as_text()

  from benchmarks._xla_costs import transposes_with
  assert transposes_with(compiled_grad_hlo(), "maximum") == []
  monkeypatch.setattr(resnet, "computed_once", lambda v: v)
  assert len(transposes_with(compiled_grad_hlo(), "maximum")) >= 4


@pytest.mark.parametrize("kernel,size", [(3, 16), (3, 7), (1, 16), (1, 7)])
def test_stride2_conv_matches_lax_in_value_and_both_gradients(kernel, size):
  """ResNet's routed stride-2 conv (custom input gradient on CPU) computes what lax does."""
  from jax import lax
  from ssljax.models import resnet
  x = jax.random.normal(_key(5), (3, size, size, 6))
  w = jax.random.normal(_key(6), (kernel, kernel, 6, 5))
  pad = kernel // 2
  args = ((2, 2), ((pad, pad), (pad, pad)))
  dn = lax.conv_dimension_numbers(x.shape, w.shape, ("NHWC", "HWIO", "NHWC"))
  ours = lambda x, w: resnet.conv_general_dilated(x, w, *args, dimension_numbers=dn)  # noqa: E731
  ref = lambda x, w: lax.conv_general_dilated(x, w, *args, dimension_numbers=dn)     # noqa: E731
  g = jax.random.normal(_key(7), ref(x, w).shape)
  np.testing.assert_allclose(ours(x, w), ref(x, w), rtol=1e-6, atol=1e-6)
  grad = lambda f: _jit(jax.grad(lambda x, w: jnp.sum(f(x, w) * g), argnums=(0, 1)))(x, w)  # noqa: E731
  for got, want in zip(grad(ours), grad(ref)):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_stride2_input_gradient_is_undilated_only_on_cpu():
  """On CPU no convolution of the ResNet's gradient runs over a dilated input; lowered for GPU the
  stride-2 convs keep XLA's own (dilated) input gradient."""
  from benchmarks._xla_costs import dilated_convolutions
  loss, variables = _train_mode_loss(models.build_backbone(_resnet_cfg(cifar_stem=True)),
                                     _images(4))
  traced = jax.jit(jax.grad(loss)).trace(variables["params"])
  assert dilated_convolutions(traced.lower(lowering_platforms=("cpu",)).as_text()) == 0
  assert dilated_convolutions(traced.lower(lowering_platforms=("cuda",)).as_text()) == 6


def test_forward_mode_through_resnet_after_opting_out_of_the_stride2_gradient(monkeypatch):
  """The documented opt-out: with lax's conv back in place, jax.jvp goes through the ResNet."""
  from jax import lax
  from ssljax.models import resnet
  model = models.build_backbone(_resnet_cfg(cifar_stem=True))
  x = _images(2)
  variables = _init(model, x)
  f = lambda v: model.apply(variables, v, train=False)  # noqa: E731
  with pytest.raises(TypeError, match="custom_vjp"):
    jax.jvp(f, (x,), (x,))
  monkeypatch.setattr(resnet, "conv_general_dilated", lax.conv_general_dilated)
  out, tangent = jax.jvp(f, (x,), (x,))
  assert out.shape == tangent.shape == (2, model.num_features)
  assert np.isfinite(np.asarray(tangent)).all() and np.abs(np.asarray(tangent)).max() > 0


@pytest.mark.parametrize("tile,tol", [(2, 2e-6), (4, 2e-5)])
@pytest.mark.parametrize("shape", [(2, 8, 8, 5), (3, 7, 5, 4), (1, 1, 1, 3), (2, 4, 6, 16)])
def test_winograd_conv3x3_matches_lax_in_value_and_both_gradients(shape, tile, tol):
  """F(2x2, 3x3) and F(4x4, 3x3) compute lax's 3x3 'SAME' conv, also at sizes that are not a
  multiple of the tile (zero rows / columns more, cropped) and at 1x1 (every tap but the centre in
  the padding); F(4x4)'s larger coefficients round more."""
  from jax import lax
  from ssljax.models import winograd
  x = jax.random.normal(_key(8), shape)
  w = jax.random.normal(_key(9), (3, 3, shape[-1], 6))
  ref = lambda x, w: lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)),  # noqa: E731
                                              dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                              precision=lax.Precision.HIGHEST)
  want = ref(x, w)
  ours = lambda x, w: winograd.conv3x3(x, w, tile)  # noqa: E731
  got = _jit(ours)(x, w)
  assert got.shape == want.shape == shape[:3] + (6,) and got.dtype == jnp.float32
  scale = float(jnp.max(jnp.abs(want)))
  np.testing.assert_allclose(got, want, rtol=0, atol=tol * scale)
  g = jax.random.normal(_key(10), want.shape)
  grad = lambda f: _jit(jax.grad(lambda x, w: jnp.sum(f(x, w) * g), argnums=(0, 1)))(x, w)  # noqa: E731
  for got, want in zip(grad(ours), grad(ref)):
    np.testing.assert_allclose(got, want, rtol=0, atol=tol * float(jnp.max(jnp.abs(want))))


def test_winograd_conv3x3_names_bad_shapes():
  from ssljax.models import winograd
  with pytest.raises(ValueError, match=r"got x \(2, 4, 4, 3\) and w \(5, 5, 3, 4\)"):
    winograd.conv3x3(jnp.zeros((2, 4, 4, 3)), jnp.zeros((5, 5, 3, 4)))
  with pytest.raises(ValueError, match=r"got x \(2, 4, 4, 3\) and w \(3, 3, 8, 4\)"):
    winograd.conv3x3(jnp.zeros((2, 4, 4, 3)), jnp.zeros((3, 3, 8, 4)))
  with pytest.raises(ValueError, match=r"tile=3; expected one of \(2, 4\)"):
    winograd.conv3x3(jnp.zeros((2, 4, 4, 3)), jnp.zeros((3, 3, 3, 4)), tile=3)


def _lowered_convs(model, x, platform):
  loss, variables = _train_mode_loss(model, x)
  text = jax.jit(jax.grad(loss)).trace(variables["params"]).lower(
      lowering_platforms=(platform,)).as_text()
  return text.count("stablehlo.convolution")


@pytest.mark.parametrize("depth", [18, 50])
def test_wide_stride1_convs_run_as_winograd_only_on_cpu(depth, monkeypatch):
  """From CPU_WINOGRAD_MIN_CHANNELS channels on, the 3x3 stride-1 convs (forward and both
  gradients) leave the CPU lowering; the GPU lowering keeps every convolution; narrower convs
  stay convolutions."""
  from ssljax.models import resnet
  model = models.build_backbone(_resnet_cfg(depth=depth, cifar_stem=True))
  x = _images(2, size=8)
  monkeypatch.setattr(resnet, "CPU_WINOGRAD_MIN_CHANNELS", None)
  plain = {p: _lowered_convs(model, x, p) for p in ("cpu", "cuda")}
  monkeypatch.setattr(resnet, "CPU_WINOGRAD_MIN_CHANNELS", 1024)     # wider than any conv here
  assert _lowered_convs(model, x, "cpu") == plain["cpu"]
  # x0.25: the 3x3 convs have 16 / 32 / 64 / 128 channels in stages 1-4 (both depths), so from 32
  # on the stride-1 ones of stages 2-4: ResNet-18 3 + 3 + 3, ResNet-50 3 + 5 + 2 (4 / 6 / 3 blocks,
  # the first strided).
  monkeypatch.setattr(resnet, "CPU_WINOGRAD_MIN_CHANNELS", 32)
  routed = 9 if depth == 18 else 10
  assert _lowered_convs(model, x, "cpu") == plain["cpu"] - 3 * routed   # forward, dx, dw each
  assert _lowered_convs(model, x, "cuda") == plain["cuda"]


def test_winograd_tile_follows_the_channels(monkeypatch):
  """Below CPU_WINOGRAD_F2_CHANNELS the routed convs are F(4x4, 3x3) (36 products), from there on
  F(2x2, 3x3) (16)."""
  import re
  from ssljax.models import resnet
  loss, variables = _train_mode_loss(models.build_backbone(_resnet_cfg(cifar_stem=True)),
                                     _images(2, size=8))

  def products():   # batch sizes of the forward's batched dot_generals: [products, tiles, C_out]
    fresh = jax.jit(lambda p: loss(p))   # noqa: E731  (a new function: jax caches traces per function)
    text = fresh.trace(variables["params"]).lower(lowering_platforms=("cpu",)).as_text()
    return sorted({int(m) for m in re.findall(
        r"stablehlo.dot_general %\S+, %\S+, batching_dims = \[0\] x \[0\].*-> tensor<(\d+)x", text)})
  monkeypatch.setattr(resnet, "CPU_WINOGRAD_MIN_CHANNELS", 32)     # stages 2-4: 32 / 64 / 128
  assert products() == [36]
  monkeypatch.setattr(resnet, "CPU_WINOGRAD_F2_CHANNELS", 64)      # stages 3-4 F(2x2)
  assert products() == [16, 36]
  monkeypatch.setattr(resnet, "CPU_WINOGRAD_F2_CHANNELS", 32)
  assert products() == [16]


def test_resnet_with_winograd_computes_what_it_computes_without(monkeypatch):
  """Train-mode loss and parameter gradients of a ResNet-18 with every stride-1 3x3 conv past the
  stem as Winograd (both tiles) agree with the plain convs (float32 rounding only), also with the batch
  sharded over 8 devices (the tiles of all images form one matrix-product axis)."""
  from ssljax.models import resnet
  model = models.build_backbone(_resnet_cfg(cifar_stem=True))
  x = _images(8, size=8)
  variables = _init(model, x)

  def loss(params, x):
    out, _ = model.apply({**variables, "params": params}, x, train=True, mutable=["batch_stats"])
    return jnp.sum(out ** 2)

  def value_and_grad(x, params):   # traced anew: the threshold is read while tracing
    return _jit(jax.value_and_grad(loss))(params, x)
  monkeypatch.setattr(resnet, "CPU_WINOGRAD_MIN_CHANNELS", None)
  want_loss, want = value_and_grad(x, variables["params"])
  monkeypatch.setattr(resnet, "CPU_WINOGRAD_MIN_CHANNELS", 16)
  monkeypatch.setattr(resnet, "CPU_WINOGRAD_F2_CHANNELS", 64)   # F(4x4) in stages 1-2, F(2x2) after
  mesh = Mesh(np.array(jax.devices()), ("data",))
  sharded = (jax.device_put(x, NamedSharding(mesh, P("data"))),
             jax.device_put(variables["params"], NamedSharding(mesh, P())))
  for got_loss, got in (value_and_grad(x, variables["params"]), value_and_grad(*sharded)):
    np.testing.assert_allclose(got_loss, want_loss, rtol=1e-5)
    for path, (a, b) in zip(jax.tree_util.tree_leaves_with_path(want),
                            zip(jax.tree.leaves(got), jax.tree.leaves(want))):
      np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4 * float(jnp.max(jnp.abs(b))) + 1e-7,
                                 err_msg=jax.tree_util.keystr(path[0]))
