"""Pieces shared by the masked-input methods (MAE, data2vec 2.0, I-JEPA): per-block ViT outputs,
in-graph random masks, token gather/scatter and a small transformer stack for decoders/predictors.

Everything here is shape-static under jit: the number of visible / masked patches is fixed per
configuration.
"""
from __future__ import annotations

from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from ssljax.errors import ConfigError
from ssljax.methods import common
from ssljax.models import vit as vit_lib


def vit_backbone(config: ml_collections.ConfigDict, method: str) -> vit_lib.ViT:
  """The run's backbone, which must be a ViT (masked methods drop patches)."""
  if config.model.name != "vit":
    raise ConfigError(f"config.model.name={config.model.name!r}; method {method!r} needs 'vit' "
                      "(it encodes a subset of the patch tokens)")
  backbone = common.backbone_from_config(config)
  return backbone


def num_prefix(vit: vit_lib.ViT) -> int:
  """Number of tokens before the patches inside the ViT: cls (pool='cls') + registers."""
  return (1 if vit.pool == "cls" else 0) + vit.num_registers


def grid_size(config: ml_collections.ConfigDict) -> int:
  """Patches per side of a global crop."""
  return config.data.image_size // config.model.patch_size


def block_outputs(vit: vit_lib.ViT, params: Any, images: jax.Array, *,
                  keep_indices: Optional[jax.Array] = None, train: bool = False,
                  rng: Optional[jax.Array] = None, source: str = "block") -> tuple[dict, jax.Array]:
  """Runs the ViT and also returns a per-block output (data2vec targets).

  Uses Flax's `capture_intermediates` on the ViT's `EncoderBlock`s (or their MLPs), so the ViT
  itself needs no extra output.

  Args:
    vit: the ViT module.
    params: its params.
    images: [N, H, W, C].
    keep_indices: optional [N, K] visible patch indices.
    train: stochastic depth on (needs rng).
    rng: dropout key.
    source: 'block' (the residual stream after each block) or 'ffn' (each block's feed-forward
      output before it is added to the residual stream, data2vec's choice of target).

  Returns:
    (tokens dict of `ViT(..., return_tokens=True)`, layers [L, N, P or K, D] float32: the chosen
    output of each block at the patch positions (before the final LayerNorm)).
  """
  if source not in ("block", "ffn"):
    raise ValueError(f"block_outputs: source={source!r}; expected 'block' or 'ffn'")
  kind = vit_lib.EncoderBlock if source == "block" else vit_lib.MLP
  rngs = {"dropout": rng} if (train and rng is not None) else None
  tokens, inter = vit.apply(
      {"params": params}, images, train=train, keep_indices=keep_indices, return_tokens=True,
      rngs=rngs, capture_intermediates=lambda mdl, name: isinstance(mdl, kind),
      mutable=["intermediates"])
  inter = inter["intermediates"]
  start = num_prefix(vit)
  if source == "block":
    layers = [inter[f"block{i}"]["__call__"][0][:, start:] for i in range(vit.depth)]
  else:
    layers = [inter[f"block{i}"]["mlp"]["__call__"][0][:, start:] for i in range(vit.depth)]
  return tokens, jnp.stack(layers).astype(jnp.float32)


def random_masks(rng: jax.Array, batch: int, num_patches: int, num_keep: int):
  """Uniform random masks drawn in the graph (MAE's argsort-of-noise), one per row.

  Args:
    rng: PRNG key.
    batch: N rows.
    num_patches: P.
    num_keep: K visible patches per row (static).

  Returns:
    keep [N, K] int32 sorted, masked [N, P - K] int32 sorted, mask [N, P] bool (True = masked).
  """
  noise = jax.random.uniform(rng, (batch, num_patches))
  order = jnp.argsort(noise, axis=1).astype(jnp.int32)
  keep = jnp.sort(order[:, :num_keep], axis=1)
  masked = jnp.sort(order[:, num_keep:], axis=1)
  mask = jnp.ones((batch, num_patches), bool).at[jnp.arange(batch)[:, None], keep].set(False)
  return keep, masked, mask


def mask_copies(rng: jax.Array, keep: jax.Array, masked: jax.Array, mask: jax.Array,
                copies: int, num_patches: int) -> tuple[jax.Array, jax.Array, jax.Array]:
  """The pipeline's random masks plus `copies - 1` more per image drawn from `rng` (data2vec 2.0's
  multi-mask; I-JEPA's mask='random' copies).

  Args:
    rng: PRNG key for the extra copies.
    keep, masked, mask: the pipeline's keep [B, K], masked [B, P - K] indices and mask [B, P].
    copies: M >= 1 masked copies per image.
    num_patches: P.

  Returns:
    keep [B*M, K], masked [B*M, P - K], mask [B*M, P] bool, copy-major within each image: copy 0
    is the pipeline's, copies 1..M-1 are `random_masks` with the same static K.
  """
  mask = mask.astype(bool)
  if copies == 1:
    return keep, masked, mask
  b = keep.shape[0]
  extra = random_masks(rng, b * (copies - 1), num_patches, keep.shape[1])

  def stack(first, more):
    return jnp.concatenate([first[:, None], more.reshape(b, copies - 1, -1)], 1).reshape(
        b * copies, -1)

  return tuple(stack(first, more) for first, more in zip((keep, masked, mask), extra))


def gather(x: jax.Array, idx: jax.Array) -> jax.Array:
  """x [N, P, D], idx [N, K] -> [N, K, D]."""
  return jnp.take_along_axis(x, idx[..., None].astype(jnp.int32), axis=1)


def scatter(visible: jax.Array, keep: jax.Array, fill: jax.Array, num_patches: int) -> jax.Array:
  """Puts visible tokens back on the full grid, `fill` elsewhere.

  Args:
    visible: [N, K, D] tokens of the kept patches.
    keep: [N, K] their patch indices.
    fill: [D] (or broadcastable to [N, P, D]) value of the removed positions (a mask token).
    num_patches: P.

  Returns:
    [N, P, D].
  """
  n, _, d = visible.shape
  full = jnp.broadcast_to(fill.astype(visible.dtype), (n, num_patches, d))
  return full.at[jnp.arange(n)[:, None], keep].set(visible)


class TransformerStack(nn.Module):
  """`depth` pre-LN ViT blocks (ssljax.models.vit.EncoderBlock) and a final LayerNorm.

  The light MAE decoder and the I-JEPA predictor are built on it. [N, L, D] -> [N, L, D].
  """
  depth: int
  num_heads: int
  mlp_ratio: float = 4.0
  attention_impl: str = "auto"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    mlp_dim = int(round(x.shape[-1] * self.mlp_ratio))
    for i in range(self.depth):
      x = vit_lib.EncoderBlock(self.num_heads, mlp_dim, 0.0, self.attention_impl, self.dtype,
                               name=f"layer{i}")(x, train=train)
    return nn.LayerNorm(epsilon=1e-6, dtype=self.dtype, param_dtype=jnp.float32, name="norm")(x)

