"""Text tower: a transformer encoder over token ids, built from the ViT's blocks.

    tower = TextEncoder(vocab_size=V, max_len=L, width=512, depth=12, num_heads=8, out_dim=512)
    emb = tower.apply(variables, tokens, mask)    # tokens int32 [B, L], mask [B, L] -> [B, out_dim]

The blocks are `ssljax.models.vit.EncoderBlock` (pre-LN, the same attention kernels, with the
padding mask passed to them as the key mask), so every kernel and sharding choice of the ViT
applies to the text side too. Positions are learned. The sequence is pooled by 'eos' (the last
real token, CLIP), 'first' (the first token, BERT-style) or 'mean' (the mean of the real tokens,
SigLIP's 'map'-free variant); `causal` makes each token see only earlier ones (CLIP's text tower).
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from ssljax.kernels import attention as attention_lib
from ssljax.models import vit as vit_lib

POOLS = ("eos", "first", "mean")

# name -> (width, depth, num_heads): the text towers of the papers' recipes.
VARIANTS = {
    "tiny": (64, 2, 2),       # the CPU digits configs
    "s": (384, 12, 6),
    "b": (512, 12, 8),        # CLIP ViT-B/32's text tower; SigLIP B/16 uses width 768
    "b768": (768, 12, 12),    # SigLIP B/16
    "so400m": (1152, 27, 16),  # SigLIP So400m's text tower shape
}


def default_config() -> ml_collections.ConfigDict:
  """The text tower's keys (a method's `text` block)."""
  return ml_collections.ConfigDict({
      "variant": "tiny",        # a key of VARIANTS, or '' for width/depth/num_heads below
      "width": 64,
      "depth": 2,
      "num_heads": 2,
      "mlp_ratio": 4.0,
      "max_len": 16,            # tokens per caption, BOS and EOS included (longer ones are cut)
      "pool": "eos",            # 'eos' | 'first' | 'mean'
      "causal": False,          # causal self-attention (CLIP's text tower)
      "attention_impl": "auto",
  })


def resolve(cfg) -> tuple[int, int, int]:
  """(width, depth, num_heads) of a text config."""
  if cfg.variant == "":
    return int(cfg.width), int(cfg.depth), int(cfg.num_heads)
  if cfg.variant not in VARIANTS:
    raise ValueError(f"text variant={cfg.variant!r}; expected one of {tuple(VARIANTS)} or ''")
  return VARIANTS[cfg.variant]


class TextEncoder(nn.Module):
  """Token ids [B, L] and their padding mask [B, L] -> pooled text features [B, out_dim or width].

  Attributes:
    vocab_size: number of token ids (the tokenizer's vocabulary).
    max_len: L, the longest token sequence (the learned position table's length).
    width, depth, num_heads, mlp_ratio: transformer shape.
    pool: 'eos' | 'first' | 'mean' (module doc).
    causal: causal self-attention.
    out_dim: > 0: a bias-free linear projection to this size after the final LayerNorm.
    attention_impl: passed to the attention kernel ('auto' | 'pallas' | 'xla' | 'reference').
    dtype: compute dtype (params float32, output float32).
  """
  vocab_size: int
  max_len: int = 16
  width: int = 64
  depth: int = 2
  num_heads: int = 2
  mlp_ratio: float = 4.0
  pool: str = "eos"
  causal: bool = False
  out_dim: int = 0
  attention_impl: str = "auto"
  dtype: Any = jnp.float32

  def __post_init__(self):
    if self.pool not in POOLS:
      raise ValueError(f"TextEncoder pool={self.pool!r}; expected one of {POOLS}")
    if self.width % self.num_heads:
      raise ValueError(f"TextEncoder width={self.width} is not divisible by "
                       f"num_heads={self.num_heads}")
    if self.attention_impl not in attention_lib.IMPLS:
      raise ValueError(f"TextEncoder attention_impl={self.attention_impl!r}; expected one of "
                       f"{attention_lib.IMPLS}")
    super().__post_init__()

  @property
  def num_features(self) -> int:
    return self.out_dim or self.width

  @nn.compact
  def __call__(self, tokens: jax.Array, mask: jax.Array | None = None,
               train: bool = False) -> jax.Array:
    n, length = tokens.shape
    if length > self.max_len:
      raise ValueError(f"TextEncoder: {length} tokens per caption; the position table holds "
                       f"max_len={self.max_len}")
    mask = jnp.ones((n, length), bool) if mask is None else mask.astype(bool)
    embed = nn.Embed(self.vocab_size, self.width, embedding_init=nn.initializers.normal(0.02),
                     param_dtype=jnp.float32, name="embed")
    pos = self.param("pos_embedding", nn.initializers.normal(0.01), (1, self.max_len, self.width),
                     jnp.float32)
    x = (embed(tokens) + pos[:, :length]).astype(self.dtype)
    mlp_dim = int(round(self.width * self.mlp_ratio))
    for i in range(self.depth):
      x = vit_lib.EncoderBlock(self.num_heads, mlp_dim, 0.0, self.attention_impl, self.dtype,
                               self.causal, name=f"block{i}")(x, train, mask)
    x = nn.LayerNorm(epsilon=1e-6, dtype=self.dtype, param_dtype=jnp.float32, name="norm")(x)
    x = x.astype(jnp.float32)
    if self.pool == "first":
      pooled = x[:, 0]
    elif self.pool == "eos":   # the last real token
      last = jnp.maximum(jnp.sum(mask, axis=1) - 1, 0)
      pooled = jnp.take_along_axis(x, last[:, None, None], axis=1)[:, 0]
    else:
      w = mask.astype(jnp.float32)[..., None]
      pooled = jnp.sum(x * w, axis=1) / jnp.maximum(jnp.sum(w, axis=1), 1.0)
    if self.out_dim:
      pooled = nn.Dense(self.out_dim, use_bias=False, param_dtype=jnp.float32,
                        name="proj")(pooled)
    return pooled.astype(jnp.float32)


def build(cfg, vocab_size: int, out_dim: int, dtype: Any = jnp.float32) -> TextEncoder:
  """The text tower of a method's `text` config block."""
  width, depth, heads = resolve(cfg)
  if cfg.pool not in POOLS:
    raise ValueError(f"text.pool={cfg.pool!r}; expected one of {POOLS}")
  return TextEncoder(vocab_size=vocab_size, max_len=int(cfg.max_len), width=width, depth=depth,
                     num_heads=heads, mlp_ratio=float(cfg.mlp_ratio), pool=cfg.pool,
                     causal=bool(cfg.causal), out_dim=out_dim,
                     attention_impl=cfg.attention_impl, dtype=dtype)
