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


def last_block_attention(vit: models.ViT, variables, images) -> np.ndarray:
  """Attention of the last block from the pooled query to every patch token.

  Args:
    vit: an unbound `ssljax.models.ViT`.
    variables: its variables ({'params': ...}).
    images: [N, H, W, C] normalised images; H, W multiples of the patch size.

  Returns:
    [N, heads, H / patch, W / patch] float32 attention weights. With pool='cls' the row of
    the CLS query (DINO); with pool='gap' the mean over the patch queries. The weights on
    the CLS and register tokens are dropped, so a map sums to at most 1.
  """
  if not isinstance(vit, models.ViT):
    raise ValueError(f"attention maps need a ViT backbone, got {type(vit).__name__}")
  images = jnp.asarray(images)
  n, h, w, _ = images.shape
  last = f"block{vit.depth - 1}"

  def wanted(mdl, method_name):
    return method_name == "__call__" and tuple(mdl.scope.path[-3:]) in (
        (last, "attn", "query"), (last, "attn", "key"))

  @jax.jit
  def qk(variables, images):
    _, inter = vit.apply(variables, images, train=False, capture_intermediates=wanted,
                         mutable=["intermediates"])
    attn = inter["intermediates"][last]["attn"]
    return attn["query"]["__call__"][0], attn["key"]["__call__"][0]

  q, k = qk(variables, images)          # [N, L, heads, Dh] each
  q, k = q.astype(jnp.float32), k.astype(jnp.float32)
  logits = jnp.einsum("nqhd,nkhd->nhqk", q, k) / np.sqrt(q.shape[-1])
  weights = jax.nn.softmax(logits, axis=-1)                 # [N, heads, L, L]
  num_prefix = (1 if vit.pool == "cls" else 0) + vit.num_registers
  gh, gw = h // vit.patch_size, w // vit.patch_size
  if vit.pool == "cls":
    rows = weights[:, :, 0, num_prefix:]
  else:
    rows = jnp.mean(weights[:, :, num_prefix:, num_prefix:], axis=2)
  return np.asarray(rows.reshape(n, weights.shape[1], gh, gw))
