"""Vision Transformer backbone.

From "An Image is Worth 16x16 Words: Transformers for Image Recognition at Scale"
(Dosovitskiy et al., 2021), with the pieces self-supervised methods need:

- pre-LN blocks (LayerNorm eps 1e-6), GELU MLP, a final LayerNorm;
- fixed 2-D sin-cos positional embeddings as in "Masked Autoencoders Are Scalable
  Vision Learners" (He et al., 2022), or learned ones;
- optional register tokens, "Vision Transformers Need Registers" (Darcet et al., 2024);
- `keep_indices` to encode only a subset of patches (MAE, I-JEPA) and `token_mask`
  to replace patches by a learned mask token (iBOT, SimMIM);
- stochastic depth, "Deep Networks with Stochastic Depth" (Huang et al., 2016),
  with the linear per-layer schedule of DeiT/DINO;
- attention through `ssljax.kernels.attention.dot_product_attention`;
- `patchify` / `unpatchify` in the encoder's token order (MAE pixel targets).

The patch and position embeddings are in `ssljax.models.patches` (re-exported here).

Token order inside the encoder: [cls (if pool == 'cls'), registers..., patches...].
Parameter names (stable, for partition rules): `patch_embed/{kernel,bias}`, `cls`,
`registers`, `mask_token`, `pos_embedding` (learned only), `block{i}/{norm1,attn,norm2,mlp}`,
`attn/{query,key,value,out}/{kernel,bias}`, `mlp/{fc1,fc2}/{kernel,bias}`, `norm`.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ssljax.kernels import attention as attention_lib
# Patch and position embeddings live in patches.py; re-exported here, where they were defined.
from ssljax.models.patches import PatchEmbed, patchify, sincos_2d_posemb, unpatchify  # noqa: F401

# width, depth, num_heads, as in Table 1 of the ViT paper (+ Ti from DeiT).
VARIANTS = {
    "ti": (192, 12, 3),
    "s": (384, 12, 6),
    "b": (768, 12, 12),
    "l": (1024, 24, 16),
    "h": (1280, 32, 16),
}
POOLS = ("cls", "gap")
POSEMBS = ("sincos2d", "learned")

_LN_EPS = 1e-6
_dense_init = nn.initializers.xavier_uniform()
_token_init = nn.initializers.normal(stddev=0.02)


def default_config() -> ml_collections.ConfigDict:
  """Every ViT key with its default (a ViT-S/16 at 224 px when `variant` is '')."""
  return ml_collections.ConfigDict({
      "name": "vit",
      "dtype": "float32",       # compute dtype; params are always float32
      "variant": "",            # '' or one of VARIANTS: overrides width/depth/num_heads
      "patch_size": 16,
      "width": 384,
      "depth": 12,
      "num_heads": 6,
      "mlp_ratio": 4.0,
      "num_registers": 0,
      "pool": "cls",            # 'cls' token or 'gap' (mean of patch tokens, no cls token)
      "posemb": "sincos2d",     # 'sincos2d' (fixed) or 'learned'
      "image_size": 224,        # reference resolution: learned posemb grid, sincos scale
      "attention_impl": "auto",  # 'auto' | 'pallas' | 'xla' | 'reference'
      "drop_path": 0.0,         # stochastic depth rate of the last block
      "remat": False,           # recompute each block's activations in the backward pass
      "remat_policy": "full",   # with remat: what a block keeps, one of REMAT_POLICIES
  })


# model.remat_policy: what each rematerialised block keeps for the backward pass
# (`jax.checkpoint_policies`); the rest is recomputed from the block's input.
REMAT_POLICIES = {
    "full": None,   # nothing but the block's input: everything recomputed (least memory)
    "dots_saveable": jax.checkpoint_policies.dots_saveable,   # matmul outputs kept
    "dots_with_no_batch_dims_saveable":   # weight matmuls kept; attention scores recomputed
        jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


def remat_block(block_cls, remat: bool, policy: str, static_argnums=(2,), full_remat=None):
  """`block_cls` wrapped in `nn.remat` with the named policy (see REMAT_POLICIES), or unchanged.

  `static_argnums` counts `self`: (2,) makes the block's `train` argument static. `full_remat`
  (block_cls, static_argnums) -> module class replaces nn.remat for policy 'full' (on CPU,
  `ssljax.cpu.remat.remat`, which XLA:CPU does not undo).
  """
  if policy not in REMAT_POLICIES:
    raise ValueError(f"model remat_policy={policy!r}; expected one of {tuple(REMAT_POLICIES)}")
  if not remat:
    return block_cls
  if policy == "full" and full_remat is not None:
    return full_remat(block_cls, static_argnums)
  return nn.remat(block_cls, static_argnums=static_argnums, policy=REMAT_POLICIES[policy])


def resolve_variant(variant: str, width: int, depth: int, num_heads: int) -> tuple[int, int, int]:
  """(width, depth, num_heads) of `variant`, or the explicit values when variant is ''."""
  if variant == "":
    return width, depth, num_heads
  if variant not in VARIANTS:
    raise ValueError(f"ViT variant={variant!r}; expected '' or one of {tuple(VARIANTS)}")
  return VARIANTS[variant]


def drop_path(x: jax.Array, rate: float, rng: jax.Array) -> jax.Array:
  """Stochastic depth: zero whole samples of a residual branch, rescale the rest.

  Args:
    x: [N, ...] residual branch output.
    rate: probability of dropping a sample's branch.
    rng: PRNG key.

  Returns:
    [N, ...] x * keep / (1 - rate), keep ~ Bernoulli(1 - rate) per sample.
  """
  keep_prob = 1.0 - rate
  keep = jax.random.bernoulli(rng, keep_prob, (x.shape[0],) + (1,) * (x.ndim - 1))
  return jnp.where(keep, x / keep_prob, jnp.zeros_like(x))


class MultiHeadAttention(nn.Module):
  """Self-attention; the softmax(qk^T)v core is `kernels.attention.dot_product_attention`.

  Attributes:
    num_heads: number of heads H; width must be divisible by it.
    attention_impl: 'auto' | 'pallas' | 'xla' | 'reference'.
    dtype: compute dtype.
    causal: each token attends only to itself and earlier tokens (a causal text tower); runs
      `jax.nn.dot_product_attention(is_causal=True)` (XLA, or cuDNN where it applies).
  """
  num_heads: int
  attention_impl: str = "auto"
  dtype: Any = jnp.float32
  causal: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, key_mask: jax.Array | None = None) -> jax.Array:
    """[B, L, D] (and key_mask [B, L], True where a token may be attended to) -> [B, L, D]."""
    width = x.shape[-1]
    head_dim = width // self.num_heads
    proj = lambda name: nn.DenseGeneral(  # noqa: E731
        (self.num_heads, head_dim), kernel_init=_dense_init, dtype=self.dtype,
        param_dtype=jnp.float32, name=name)
    q, k, v = proj("query")(x), proj("key")(x), proj("value")(x)  # [B, L, H, Dh]
    if self.causal:
      mask = None if key_mask is None else key_mask.astype(bool)[:, None, None, :]
      out = jax.nn.dot_product_attention(q, k, v, mask=mask, is_causal=True)
    else:
      out = attention_lib.dot_product_attention(q, k, v, key_mask, impl=self.attention_impl)
    return nn.DenseGeneral(width, axis=(-2, -1), kernel_init=_dense_init, dtype=self.dtype,
                           param_dtype=jnp.float32, name="out")(out)


def gelu_exact(x: jax.Array) -> jax.Array:
  """The exact (erf) GELU, x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)): the function of
  `jax.nn.gelu(x, approximate=False)` and torch's `nn.GELU()`.

  jax.nn.gelu writes it with erfc, which XLA:CPU evaluates with an exp and a division per element;
  erf is a plain rational approximation. Same values to float32 rounding (~1e-6); a ViT-Tiny/4
  forward + backward at batch 256 ran 1.05x faster with it (2 threads, 9 alternating runs).
  """
  return 0.5 * x * (1.0 + jax.lax.erf(x * np.asarray(0.7071067811865476, x.dtype)))


class MLP(nn.Module):
  """Transformer MLP: Dense(hidden) -> GELU -> Dense(D)."""
  hidden_dim: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """[B, L, D] -> [B, L, D]."""
    width = x.shape[-1]
    x = nn.Dense(self.hidden_dim, kernel_init=_dense_init, dtype=self.dtype,
                 param_dtype=jnp.float32, name="fc1")(x)
    x = gelu_exact(x)
    return nn.Dense(width, kernel_init=_dense_init, dtype=self.dtype,
                    param_dtype=jnp.float32, name="fc2")(x)


class EncoderBlock(nn.Module):
  """Pre-LN transformer block: x + Attn(LN(x)), then x + MLP(LN(x)), with stochastic depth."""
  num_heads: int
  mlp_dim: int
  drop_path: float = 0.0
  attention_impl: str = "auto"
  dtype: Any = jnp.float32
  causal: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False,
               key_mask: jax.Array | None = None) -> jax.Array:
    """[B, L, D] (key_mask [B, L]: True where a token may be attended to) -> [B, L, D]."""
    def residual(x, y):
      if train and self.drop_path > 0.0:
        y = drop_path(y, self.drop_path, self.make_rng("dropout"))
      return x + y

    ln = lambda name: nn.LayerNorm(epsilon=_LN_EPS, dtype=self.dtype,  # noqa: E731
                                   param_dtype=jnp.float32, name=name)
    y = MultiHeadAttention(self.num_heads, self.attention_impl, self.dtype, self.causal,
                           name="attn")(ln("norm1")(x), key_mask)
    x = residual(x, y)
    y = MLP(self.mlp_dim, self.dtype, name="mlp")(ln("norm2")(x))
    return residual(x, y)


class ViT(nn.Module):
  """Vision Transformer encoder returning pooled features (and optionally all tokens).

  Attributes:
    patch_size: side of the square patches; image sides must be multiples of it.
    width: token dimension D.
    depth: number of blocks.
    num_heads: attention heads; D % num_heads == 0.
    mlp_ratio: MLP hidden size / D.
    num_registers: R learned register tokens (no positional embedding), never pooled.
    pool: 'cls' (a cls token is prepended and its final state is the feature) or
      'gap' (no cls token; mean of the final patch tokens).
    posemb: 'sincos2d' (fixed) or 'learned' (a [image_size/patch]^2 grid, bicubically
      resized when the input grid differs).
    image_size: reference image side (see `sincos_2d_posemb`, and the learned grid).
    attention_impl: passed to `dot_product_attention` as impl.
    drop_path: stochastic depth rate of the last block; block i uses rate * i / (depth - 1).
      Needs a 'dropout' rng when train=True and rate > 0.
    remat: wrap each block in `nn.remat` (jax.checkpoint): its activations are recomputed in
      the backward pass instead of stored.
    remat_policy: what a rematerialised block keeps, a key of REMAT_POLICIES.
    full_remat: the transform for remat_policy 'full' instead of nn.remat (`remat_block`); set by
      `ssljax.models.build_backbone` on CPU (`ssljax.cpu.remat.remat`), None elsewhere.
    dtype: compute dtype (params are float32, outputs float32).
  """
  patch_size: int = 16
  width: int = 384
  depth: int = 12
  num_heads: int = 6
  mlp_ratio: float = 4.0
  num_registers: int = 0
  pool: str = "cls"
  posemb: str = "sincos2d"
  image_size: int = 224
  attention_impl: str = "auto"
  drop_path: float = 0.0
  remat: bool = False
  remat_policy: str = "full"
  full_remat: Optional[Callable] = None
  dtype: Any = jnp.float32

  def __post_init__(self):
    if self.remat_policy not in REMAT_POLICIES:
      raise ValueError(f"ViT remat_policy={self.remat_policy!r}; expected one of "
                       f"{tuple(REMAT_POLICIES)}")
    if self.pool not in POOLS:
      raise ValueError(f"ViT pool={self.pool!r}; expected one of {POOLS}")
    if self.posemb not in POSEMBS:
      raise ValueError(f"ViT posemb={self.posemb!r}; expected one of {POSEMBS}")
    if self.attention_impl not in attention_lib.IMPLS:
      raise ValueError(f"ViT attention_impl={self.attention_impl!r}; "
                       f"expected one of {attention_lib.IMPLS}")
    for key in ("patch_size", "width", "depth", "num_heads", "image_size"):
      if int(getattr(self, key)) < 1:
        raise ValueError(f"ViT {key}={getattr(self, key)!r}; expected a positive int")
    if self.width % self.num_heads:
      raise ValueError(f"ViT width={self.width} is not divisible by num_heads={self.num_heads}")
    if self.posemb == "sincos2d" and self.width % 4:
      raise ValueError(f"ViT width={self.width}; posemb='sincos2d' needs a multiple of 4")
    if self.num_registers < 0:
      raise ValueError(f"ViT num_registers={self.num_registers}; expected >= 0")
    if not 0.0 <= self.drop_path < 1.0:
      raise ValueError(f"ViT drop_path={self.drop_path}; expected a rate in [0, 1)")
    super().__post_init__()

  @property
  def num_features(self) -> int:
    """Dimension D of the pooled features."""
    return self.width

  def _posemb(self, grid_h: int, grid_w: int) -> jax.Array:
    """[grid_h * grid_w, D] float32 positional embeddings for a grid of patches."""
    ref = self.image_size // self.patch_size
    if self.posemb == "sincos2d":
      return sincos_2d_posemb(grid_h, grid_w, self.width, ref_grid=ref)
    table = self.param("pos_embedding", _token_init, (ref * ref, self.width), jnp.float32)
    if (grid_h, grid_w) != (ref, ref):
      table = jax.image.resize(table.reshape(ref, ref, self.width),
                               (grid_h, grid_w, self.width), method="bicubic")
    return table.reshape(grid_h * grid_w, self.width)

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False,
               keep_indices: Optional[jax.Array] = None,
               return_tokens: bool = False, token_mask: Optional[jax.Array] = None):
    """Encodes images.

    Args:
      images: [N, H, W, C] float, already normalised; H, W multiples of patch_size.
      train: enables stochastic depth.
      keep_indices: optional [N, K] int in [0, P): only these patch tokens (after positional
        embeddings were added) enter the encoder, in this order. P = (H/p) * (W/p).
      return_tokens: return a dict of final (normed) tokens instead of the pooled array.
      token_mask: optional [N, P] bool, True where a patch embedding is replaced by the
        learned `mask_token` (before positional embeddings are added).

    Returns:
      pooled [N, D] float32, or when return_tokens a dict of float32 arrays:
      {'cls': [N, D] or None (pool='gap'), 'patches': [N, P or K, D],
       'registers': [N, R, D], 'pooled': [N, D]}.
    """
    n, h, w, _ = images.shape
    p = self.patch_size
    if h % p or w % p:
      raise ValueError(f"ViT image size {h}x{w} is not divisible by patch_size={p}")
    grid_h, grid_w = h // p, w // p
    x = PatchEmbed(self.width, p, self.dtype, name="patch_embed")(images)  # [N, P, D]

    mask_token = self.param("mask_token", nn.initializers.zeros, (1, 1, self.width), jnp.float32)
    if token_mask is not None:
      if token_mask.shape != (n, grid_h * grid_w):
        raise ValueError(f"token_mask shape {token_mask.shape}; expected {(n, grid_h * grid_w)}")
      x = jnp.where(token_mask[..., None], mask_token.astype(x.dtype), x)
    x = x + self._posemb(grid_h, grid_w).astype(x.dtype)[None]

    if keep_indices is not None:
      if keep_indices.ndim != 2 or keep_indices.shape[0] != n:
        raise ValueError(f"keep_indices shape {keep_indices.shape}; expected [{n}, K]")
      x = jnp.take_along_axis(x, keep_indices[..., None].astype(jnp.int32), axis=1)  # [N, K, D]

    prefix = []
    if self.pool == "cls":
      cls = self.param("cls", _token_init, (1, 1, self.width), jnp.float32)
      prefix.append(jnp.broadcast_to(cls.astype(x.dtype), (n, 1, self.width)))
    if self.num_registers:
      reg = self.param("registers", _token_init, (1, self.num_registers, self.width), jnp.float32)
      prefix.append(jnp.broadcast_to(reg.astype(x.dtype), (n, self.num_registers, self.width)))
    num_prefix = sum(t.shape[1] for t in prefix)
    x = jnp.concatenate(prefix + [x], axis=1)

    mlp_dim = int(round(self.width * self.mlp_ratio))
    # remat: store each block's input (and what remat_policy keeps); the rest is recomputed.
    block = remat_block(EncoderBlock, self.remat, self.remat_policy, full_remat=self.full_remat)
    for i in range(self.depth):
      rate = self.drop_path * i / max(self.depth - 1, 1)
      x = block(self.num_heads, mlp_dim, rate, self.attention_impl, self.dtype,
                name=f"block{i}")(x, train)
    x = nn.LayerNorm(epsilon=_LN_EPS, dtype=self.dtype, param_dtype=jnp.float32, name="norm")(x)

    patches = x[:, num_prefix:]
    registers = x[:, num_prefix - self.num_registers:num_prefix]
    if self.pool == "cls":
      cls_out = x[:, 0]
      pooled = cls_out
    else:
      cls_out = None
      pooled = jnp.mean(patches.astype(jnp.float32), axis=1)
    pooled = pooled.astype(jnp.float32)
    if not return_tokens:
      return pooled
    return {
        "cls": None if cls_out is None else cls_out.astype(jnp.float32),
        "patches": patches.astype(jnp.float32),
        "registers": registers.astype(jnp.float32),
        "pooled": pooled,
    }
