"""Tests for ssljax.models: ViT, ResNet, heads, config validation, sharded BatchNorm.

Tiny configs only (ViT width 32 depth 2 on 16x16, ResNet-18 x0.25 on 16x16). Keys use the
'rbg' PRNG: XLA:CPU compiles threefry initialisers very slowly, and the suite must stay fast.
Everything that runs is jitted; shape-only checks use jax.eval_shape (trace, no compile).
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from ssljax import models
from ssljax.models import vit as vit_lib


def _jit(fn, **kwargs):
  """jax.jit with XLA's cheapest backend optimisation: these tests are compile-bound."""
  return jax.jit(fn, compiler_options={"xla_backend_optimization_level": 0}, **kwargs)


def _key(seed):
  return jax.random.key(seed, impl="rbg")


def _images(n, size=16, seed=0):
  return jax.random.normal(jax.random.key(seed, impl="rbg"), (n, size, size, 3), jnp.float32)


def _vit_cfg(**overrides):
  cfg = models.default_model_config("vit")
  cfg.update(width=32, depth=2, num_heads=2, patch_size=4, image_size=16)
  cfg.update(overrides)
  return cfg


def _resnet_cfg(**overrides):
  cfg = models.default_model_config("resnet")
  cfg.update(depth=18, width_multiplier=0.25)
  cfg.update(overrides)
  return cfg


def _init(model, x, **kwargs):
  return _jit(lambda k, x: model.init(k, x, **kwargs))(_key(0), x)


def _init_with_output(model, x, **kwargs):
  return _jit(lambda k, x: model.init_with_output(k, x, **kwargs))(_key(0), x)


# ----------------------------------------------------------------------------- config


def test_default_configs_have_all_keys():
  vit = models.default_model_config("vit")
  assert set(vit.keys()) >= {"name", "dtype", "patch_size", "width", "depth", "num_heads",
                             "mlp_ratio", "num_registers", "pool", "attention_impl", "drop_path",
                             "variant", "posemb"}
  assert (vit.name, vit.dtype, vit.variant, vit.pool, vit.posemb) == (
      "vit", "float32", "", "cls", "sincos2d")
  res = models.default_model_config("resnet")
  assert set(res.keys()) >= {"name", "dtype", "depth", "width_multiplier", "cifar_stem", "norm"}
  assert (res.name, res.depth, res.norm, res.cifar_stem) == ("resnet", 50, "batch", False)
  # Each call returns a fresh config (no shared mutable defaults).
  vit.width = 1
  assert models.default_model_config("vit").width == 384


@pytest.mark.parametrize("name,key,value", [
    ("vit", "variant", "xl"),
    ("vit", "pool", "max"),
    ("vit", "posemb", "rope"),
    ("vit", "attention_impl", "cudnn"),
    ("vit", "dtype", "float16"),
    ("resnet", "depth", 34),
    ("resnet", "norm", "layer"),
    ("resnet", "dtype", "int8"),
])
def test_bad_config_value_raises_naming_value(name, key, value):
  cfg = models.default_model_config(name)
  cfg[key] = value
  with pytest.raises(ValueError, match=repr(value) if isinstance(value, str) else str(value)):
    models.build_backbone(cfg)


def test_bad_name_and_unknown_key_raise():
  with pytest.raises(ValueError, match="'convnext'.*'vit'"):
    models.default_model_config("convnext")
  cfg = models.default_model_config("vit")
  cfg.name = "convnext"
  with pytest.raises(ValueError, match="convnext"):
    models.build_backbone(cfg)
  cfg = _resnet_cfg()
  cfg.patch_size = 4  # a ViT key on a ResNet config: a typo-like mistake
  with pytest.raises(ValueError, match="patch_size"):
    models.build_backbone(cfg)
  with pytest.raises(ValueError, match="num_heads=3"):
    models.build_backbone(_vit_cfg(num_heads=3))


def test_partial_config_takes_defaults():
  model = models.build_backbone({"name": "resnet", "depth": 18})
  assert (model.depth, model.width_multiplier, model.norm) == (18, 1.0, "batch")
  assert model.num_features == 512


@pytest.mark.parametrize("variant,expected", [
    ("ti", (192, 12, 3)), ("s", (384, 12, 6)), ("b", (768, 12, 12)),
    ("l", (1024, 24, 16)), ("h", (1280, 32, 16)), ("", (48, 3, 4)),
])
def test_vit_variant_presets(variant, expected):
  model = models.build_backbone(_vit_cfg(variant=variant, width=48, depth=3, num_heads=4))
  assert (model.width, model.depth, model.num_heads) == expected
  assert model.num_features == expected[0]


def test_vit_variant_shapes_from_trace():
  model = models.build_backbone(_vit_cfg(variant="ti"))
  shapes = jax.eval_shape(model.init, _key(0), jnp.zeros((1, 16, 16, 3)))["params"]
  assert sum(k.startswith("block") for k in shapes) == 12
  assert shapes["block0"]["attn"]["query"]["kernel"].shape == (192, 3, 64)
  assert shapes["block0"]["mlp"]["fc1"]["kernel"].shape == (192, 768)


# ----------------------------------------------------------------------------- ViT


@pytest.fixture(scope="module")
def vit_reg():
  """A tiny ViT with 2 registers and a cls token, its variables, a jitted token apply."""
  model = models.build_backbone(_vit_cfg(num_registers=2))
  x = _images(3)
  variables = _init(model, x)
  tokens = _jit(lambda v, x, **kw: model.apply(v, x, return_tokens=True, **kw))
  return model, variables, tokens, x


def test_vit_shapes_and_num_features(vit_reg):
  model, variables, tokens, x = vit_reg
  out = tokens(variables, x)
  assert model.num_features == 32
  assert out["pooled"].shape == (3, 32) and out["pooled"].dtype == jnp.float32
  assert out["cls"].shape == (3, 32)
  assert out["patches"].shape == (3, 16, 32)   # (16 / 4)^2 patches
  assert out["registers"].shape == (3, 2, 32)
  np.testing.assert_array_equal(out["cls"], out["pooled"])  # pool='cls': not a register
  assert np.all(np.isfinite(out["pooled"])) and np.std(out["pooled"]) > 0
  pooled = jax.eval_shape(model.apply, variables, x)  # return_tokens=False: the array only
  assert pooled.shape == (3, 32) and pooled.dtype == jnp.float32


def test_vit_keep_all_indices_equals_full_forward(vit_reg):
  _, variables, tokens, x = vit_reg
  full = tokens(variables, x)
  kept = tokens(variables, x, keep_indices=jnp.tile(jnp.arange(16)[None], (3, 1)))
  np.testing.assert_allclose(kept["patches"], full["patches"], atol=1e-5)
  np.testing.assert_allclose(kept["pooled"], full["pooled"], atol=1e-5)


def test_vit_keep_indices_gathers_after_posemb(vit_reg):
  """Attention is permutation-equivariant, so a permuted subset of patches must come out
  as the same permutation of the sorted subset's outputs (per sample): this holds only if
  positional embeddings are added before the gather and each row uses its own indices."""
  _, variables, tokens, x = vit_reg
  rng = np.random.default_rng(0)
  subsets = np.stack([np.sort(rng.choice(16, size=6, replace=False)) for _ in range(3)])
  perms = np.stack([rng.permutation(6) for _ in range(3)])
  shuffled = np.take_along_axis(subsets, perms, axis=1)
  out_sorted = tokens(variables, x, keep_indices=jnp.asarray(subsets))
  out_shuf = tokens(variables, x, keep_indices=jnp.asarray(shuffled))
  assert out_shuf["patches"].shape == (3, 6, 32)
  expected = np.take_along_axis(np.asarray(out_sorted["patches"]), perms[..., None], axis=1)
  np.testing.assert_allclose(out_shuf["patches"], expected, atol=1e-5)
  np.testing.assert_allclose(out_shuf["pooled"], out_sorted["pooled"], atol=1e-5)
  # A subset is a different input than the whole image.
  assert not np.allclose(out_sorted["pooled"], tokens(variables, x)["pooled"], atol=1e-3)


def test_vit_token_mask_replaces_patches(vit_reg):
  _, variables, tokens, x = vit_reg
  mask = jnp.zeros((3, 16), bool).at[:, :5].set(True)
  x2 = x.at[:, :4, :4].set(7.0)  # only patch 0 changes, and it is masked
  masked = tokens(variables, x, token_mask=mask)
  masked2 = tokens(variables, x2, token_mask=mask)
  np.testing.assert_allclose(masked["patches"], masked2["patches"], atol=1e-5)
  assert not np.allclose(tokens(variables, x2)["patches"], masked2["patches"], atol=1e-3)


def test_vit_gap_pool_excludes_registers(vit_reg):
  _, variables, _, x = vit_reg
  model = models.build_backbone(_vit_cfg(pool="gap", num_registers=2))
  # Same parameters as the cls-pooled model, minus the cls token.
  shapes = jax.eval_shape(model.init, _key(0), x)
  params = {k: v for k, v in variables["params"].items() if k != "cls"}
  assert jax.tree.structure(shapes["params"]) == jax.tree.structure(params)
  out = _jit(lambda v, x: model.apply(v, x, return_tokens=True))({"params": params}, x)
  assert out["cls"] is None
  assert out["registers"].shape == (3, 2, 32)
  assert out["pooled"].shape == (3, model.num_features)
  np.testing.assert_allclose(out["pooled"], out["patches"].mean(axis=1), atol=1e-5)
  with_regs = np.concatenate([out["registers"], out["patches"]], axis=1).mean(axis=1)
  assert not np.allclose(out["pooled"], with_regs, atol=1e-3)


def test_sincos_posemb_matches_mae_grid():
  emb = np.asarray(vit_lib.sincos_2d_posemb(3, 5, 8))
  assert emb.shape == (15, 8)
  # width 8 -> 2 frequencies per half: omega = [1, 1e-2]. Row half = [sin, sin, cos, cos].
  row, col = 2, 4
  e = emb[row * 5 + col]
  np.testing.assert_allclose(e[:4], [np.sin(row), np.sin(row * 1e-2), np.cos(row),
                                     np.cos(row * 1e-2)], atol=1e-6)
  np.testing.assert_allclose(e[4:], [np.sin(col), np.sin(col * 1e-2), np.cos(col),
                                     np.cos(col * 1e-2)], atol=1e-6)
  # A coarser grid is placed on the reference grid: 2 patches over a 4-patch reference
  # sit at reference positions 0.5 and 2.5.
  half = np.asarray(vit_lib.sincos_2d_posemb(2, 2, 8, ref_grid=4))
  np.testing.assert_allclose(half[3, :4], [np.sin(2.5), np.sin(2.5e-2), np.cos(2.5),
                                           np.cos(2.5e-2)], atol=1e-6)


def test_vit_learned_posemb_is_a_param_and_resizes():
  model = models.build_backbone(_vit_cfg(posemb="learned"))
  shapes = jax.eval_shape(model.init, _key(0), jnp.zeros((1, 16, 16, 3)))
  assert shapes["params"]["pos_embedding"].shape == (16, 32)
  # A smaller crop (2x2 patches) interpolates the 4x4 table.
  out = jax.eval_shape(lambda v, x: model.apply(v, x, return_tokens=True), shapes,
                       jnp.zeros((2, 8, 8, 3)))
  assert out["patches"].shape == (2, 4, 32)
  sincos = models.build_backbone(_vit_cfg())
  params = jax.eval_shape(sincos.init, _key(0), jnp.zeros((1, 16, 16, 3)))["params"]
  assert "pos_embedding" not in params


def test_patchify_matches_patch_embedding_order(vit_reg):
  _, variables, _, x = vit_reg
  patches = vit_lib.patchify(x, 4)                                     # [3, 16, 48]
  assert patches.shape == (3, 16, 48)
  np.testing.assert_array_equal(patches[1, 6].reshape(4, 4, 3), x[1, 4:8, 8:12])  # row 1, col 2
  np.testing.assert_array_equal(vit_lib.unpatchify(patches, 4, 4, 4), x)
  # Token i of the encoder is patch i: the patch embedding is a matmul over patchify's rows.
  model = models.build_backbone(_vit_cfg(num_registers=2))
  _, state = _jit(lambda v, x: model.apply(
      v, x, capture_intermediates=lambda mdl, _: mdl.name == "patch_embed",
      mutable=["intermediates"]))(variables, x)
  conv = state["intermediates"]["patch_embed"]["__call__"][0].reshape(3, 16, 32)
  pe = variables["params"]["patch_embed"]
  np.testing.assert_allclose(conv, patches @ pe["kernel"].reshape(48, 32) + pe["bias"],
                             atol=1e-4)


def test_patch_embed_is_the_stride_p_convolution_without_a_convolution(vit_reg):
  """PatchEmbed keeps nn.Conv's parameters and function (old checkpoints load), computed as a matmul:
  the compiled ViT has no convolution (XLA:CPU's convolutions were its slowest op, ssljax/xla_flags.py)."""
  model, variables, _, x = vit_reg
  pe = variables["params"]["patch_embed"]
  assert pe["kernel"].shape == (4, 4, 3, 32) and pe["bias"].shape == (32,)
  conv = jax.lax.conv_general_dilated(x, pe["kernel"], (4, 4), "VALID",
                                      dimension_numbers=("NHWC", "HWIO", "NHWC")) + pe["bias"]
  ours = vit_lib.PatchEmbed(32, 4).apply({"params": pe}, x)
  np.testing.assert_allclose(ours, conv.reshape(3, 16, 32), atol=1e-5)
  hlo = _jit(lambda v, x: model.apply(v, x)).lower(variables, x).as_text()
  assert "convolution" not in hlo


def test_vit_attention_goes_through_kernels(monkeypatch):
  from ssljax.kernels import attention as attention_lib
  calls = []
  real = attention_lib.dot_product_attention

  def spy(q, k, v, key_mask=None, impl="auto"):
    calls.append((q.shape, impl))
    return real(q, k, v, key_mask=key_mask, impl=impl)

  monkeypatch.setattr(attention_lib, "dot_product_attention", spy)
  model = models.build_backbone(_vit_cfg(attention_impl="xla", num_registers=2))
  jax.eval_shape(model.init, _key(0), jnp.zeros((2, 16, 16, 3)))
  # depth 2; [B, 1 cls + 2 registers + 16 patches, H=2, Dh=16]
  assert calls == [((2, 19, 2, 16), "xla")] * 2


def test_vit_rejects_image_not_divisible_by_patch():
  model = models.build_backbone(_vit_cfg(patch_size=5))
  with pytest.raises(ValueError, match="16x16.*patch_size=5"):
    jax.eval_shape(model.init, _key(0), jnp.zeros((1, 16, 16, 3)))


def test_vit_drop_path_only_in_train(vit_reg):
  _, variables, tokens, x = vit_reg
  model = models.build_backbone(_vit_cfg(num_registers=2, drop_path=0.5))
  train = _jit(lambda v, x, k: model.apply(v, x, train=True, rngs={"dropout": k}))
  train_a = train(variables, x, _key(1))
  train_b = train(variables, x, _key(2))
  assert not np.allclose(train_a, train_b)
  # Eval ignores drop_path: equal to the drop_path=0 model.
  np.testing.assert_allclose(_jit(model.apply)(variables, x), tokens(variables, x)["pooled"],
                             atol=1e-5)


def test_vit_bf16_activations_f32_params(vit_reg):
  _, variables, _, x = vit_reg
  model = models.build_backbone(_vit_cfg(dtype="bfloat16", num_registers=2))
  params = jax.eval_shape(model.init, _key(0), x)
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params))
  out, state = _jit(lambda v, x: model.apply(v, x, capture_intermediates=True,
                                             mutable=["intermediates"]))(variables, x)
  assert out.dtype == jnp.float32 and out.shape == (3, 32)
  inter = state["intermediates"]
  assert inter["block0"]["__call__"][0].dtype == jnp.bfloat16
  assert inter["block1"]["attn"]["query"]["__call__"][0].dtype == jnp.bfloat16


# ----------------------------------------------------------------------------- ResNet


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


# ----------------------------------------------------------------------------- heads


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


def test_vit_on_visible_patches_costs_a_quarter_at_mask_ratio_075():
  """MAE's encoder path (keep_indices) really drops tokens: XLA's FLOP count of the compiled forward
  pass of ViT-Ti/16 on 25% of the 14x14 grid is about a quarter of the full one (compile only;
  benchmarks/mae_flops.py). A narrow, shallow ViT would not show it: its patch embedding, computed
  for every patch, dominates."""
  from benchmarks.mae_flops import encoder_flops
  full = encoder_flops("ti", 16, 224, 0.0)
  for ratio in (0.5, 0.75):
    share = encoder_flops("ti", 16, 224, ratio) / full
    assert abs(share - (1.0 - ratio)) < 0.03, (ratio, share)
