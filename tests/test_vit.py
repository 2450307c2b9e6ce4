"""ssljax.models.vit: shapes, masked / kept tokens, position embeddings, patch embedding, attention,
drop path, bf16, and the MAE encoder's FLOPs on visible patches.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssljax import models
from ssljax.models import vit as vit_lib
from model_helpers import _jit, _key, _images, _vit_cfg, _init


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


def test_vit_on_visible_patches_costs_a_quarter_at_mask_ratio_075():
  """MAE's encoder path (keep_indices) really drops tokens: XLA's FLOP count of the compiled forward
  pass of ViT-Ti/16 on 25% of the 14x14 grid is about a quarter of the full one (compile only).
  A narrow, shallow ViT would not show it: its patch embedding, computed for every patch,
  dominates."""
  width, depth, heads = vit_lib.VARIANTS["ti"]
  model = vit_lib.ViT(patch_size=16, width=width, depth=depth, num_heads=heads, image_size=224,
                      attention_impl="reference")
  images = jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32)
  params = jax.eval_shape(lambda: model.init(_key(0), jnp.zeros(images.shape)))

  def flops(keep):   # XLA's FLOP count of the compiled forward pass keeping `keep` of 196 patches
    if keep == 196:
      lowered = jax.jit(model.apply).lower(params, images)
    else:
      indices = jax.ShapeDtypeStruct((1, keep), jnp.int32)
      lowered = jax.jit(lambda p, x, k: model.apply(p, x, keep_indices=k)).lower(
          params, images, indices)
    cost = lowered.compile().cost_analysis()
    return float((cost[0] if isinstance(cost, (list, tuple)) else cost)["flops"])

  full = flops(196)
  for ratio in (0.5, 0.75):
    share = flops(int(round(196 * (1.0 - ratio)))) / full
    assert abs(share - (1.0 - ratio)) < 0.03, (ratio, share)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_gelu_exact_is_the_erf_gelu(dtype):
  """gelu_exact = x * Phi(x): against a float64 NumPy erf, jax.nn.gelu(approximate=False), and its
  gradient (Phi(x) + x phi(x)) against jax.nn.gelu's."""
  import math
  x = np.linspace(-8.0, 8.0, 1001)
  want = np.array([0.5 * v * (1.0 + math.erf(v / math.sqrt(2.0))) for v in x])
  got = _jit(vit_lib.gelu_exact)(jnp.asarray(x, dtype))
  assert got.dtype == dtype
  tol = 1e-6 if dtype == jnp.float32 else 2e-2
  np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=tol, atol=tol)
  if dtype == jnp.float32:
    xs = jnp.asarray(x, jnp.float32)
    np.testing.assert_allclose(got, jax.nn.gelu(xs, approximate=False), rtol=1e-6, atol=1e-6)
    g = _jit(jax.vmap(jax.grad(vit_lib.gelu_exact)))(xs)
    g_ref = jax.vmap(jax.grad(lambda v: jax.nn.gelu(v, approximate=False)))(xs)
    np.testing.assert_allclose(g, g_ref, rtol=1e-5, atol=1e-6)


def test_remat_recomputes_blocks_with_the_same_values_and_gradients():
  """model.remat wraps each block in jax.checkpoint: same loss and gradients, rematerialised."""
  x = jax.random.normal(_key(0), (4, 8, 8, 3))
  plain = vit_lib.ViT(patch_size=4, width=32, depth=2, num_heads=2, image_size=8)
  remat = vit_lib.ViT(patch_size=4, width=32, depth=2, num_heads=2, image_size=8, remat=True)
  params = plain.init(_key(1), x)
  assert jax.tree.structure(params) == jax.tree.structure(remat.init(_key(1), x))

  def loss(module):
    return lambda p: jnp.sum(module.apply(p, x, train=True) ** 2)

  want, g_want = jax.value_and_grad(loss(plain))(params)
  got, g_got = jax.value_and_grad(loss(remat))(params)
  np.testing.assert_allclose(got, want, rtol=1e-6)
  for a, b in zip(jax.tree.leaves(g_want), jax.tree.leaves(g_got)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  jaxpr = str(jax.make_jaxpr(jax.grad(loss(remat)))(params))
  assert "checkpoint" in jaxpr or "remat" in jaxpr
  assert "checkpoint" not in str(jax.make_jaxpr(jax.grad(loss(plain)))(params))
  cfg = models.default_model_config("vit")
  assert cfg.remat is False
