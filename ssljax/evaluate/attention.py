"""Last-block attention maps of a ViT backbone (what DINO's attention figures show).

The query and key projections of the last encoder block are captured with Flax's
`capture_intermediates` and the attention weights softmax(q k^T / sqrt(d_head)) recomputed from
them, so the maps do not depend on which attention kernel (`attention_impl`) the model runs.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ssljax import models


def last_block_weights(vit: models.ViT, variables, images) -> np.ndarray:
  """Attention weights of every head of the last block: [N, heads, L, L] float32.

  Args:
    vit: an unbound `ssljax.models.ViT`.
    variables: its variables ({'params': ...}).
    images: [N, H, W, C] normalised images; H, W multiples of the patch size.

  Returns:
    softmax(q k^T / sqrt(d_head)) over the keys, tokens in the ViT's order: [CLS] (pool='cls'),
    then the registers, then the (H / patch) * (W / patch) patches in row-major order.
  """
  if not isinstance(vit, models.ViT):
    raise ValueError(f"attention maps need a ViT backbone, got {type(vit).__name__}")
  last = f"block{vit.depth - 1}"

  def wanted(mdl, method_name):
    return method_name == "__call__" and tuple(mdl.scope.path[-3:]) in (
        (last, "attn", "query"), (last, "attn", "key"))

  @jax.jit
  def weights(variables, images):
    _, inter = vit.apply(variables, images, train=False, capture_intermediates=wanted,
                         mutable=["intermediates"])
    attn = inter["intermediates"][last]["attn"]
    q = attn["query"]["__call__"][0].astype(jnp.float32)    # [N, L, heads, Dh]
    k = attn["key"]["__call__"][0].astype(jnp.float32)
    logits = jnp.einsum("nqhd,nkhd->nhqk", q, k) / jnp.sqrt(jnp.float32(q.shape[-1]))
    return jax.nn.softmax(logits, axis=-1)

  return np.asarray(weights(variables, jnp.asarray(images)))


def last_block_attention(vit: models.ViT, variables, images) -> np.ndarray:
  """Attention of the last block from the pooled query to every patch token.

  Args:
    vit, variables, images: as for `last_block_weights`.

  Returns:
    [N, heads, H / patch, W / patch] float32 attention weights. With pool='cls' the row of
    the CLS query (DINO); with pool='gap' the mean over the patch queries. The weights on
    the CLS and register tokens are dropped, so a map sums to at most 1.
  """
  w = last_block_weights(vit, variables, images)
  n, heads = w.shape[:2]
  _, h, wd, _ = np.shape(images)
  num_prefix = (1 if vit.pool == "cls" else 0) + vit.num_registers
  rows = w[:, :, 0, num_prefix:] if vit.pool == "cls" else w[:, :, num_prefix:, num_prefix:].mean(axis=2)
  return rows.reshape(n, heads, h // vit.patch_size, wd // vit.patch_size)
