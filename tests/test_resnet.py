"""ssljax.models.resnet: shapes and init, BatchNorm statistics (also sharded), GroupNorm, bf16.

ssljax.cpu's ops for the ResNet: tests/test_cpu_conv.py; the switch: tests/test_cpu_tuning.py.
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
