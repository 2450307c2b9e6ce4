"""Multi-head dot-product attention with an `impl=` switch.

Shapes follow `jax.nn.dot_product_attention`: q, k, v are [batch, length, heads, head_dim].
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

IMPLS = ("auto", "pallas", "xla", "reference")


def attention_reference(q, k, v, key_mask=None):
  """The spec: softmax(q k^T / sqrt(head_dim) + mask) v, computed in float32.

  Args:
    q: [B, Lq, H, Dh]; k, v: [B, Lk, H, Dh].
    key_mask: optional [B, Lk] bool, True where a key may be attended to.

  Returns:
    [B, Lq, H, Dh] in q's dtype.
  """
  scale = q.shape[-1] ** -0.5
  logits = jnp.einsum("bqhd,bkhd->bhqk", q.astype(jnp.float32), k.astype(jnp.float32)) * scale
  if key_mask is not None:
    logits = jnp.where(key_mask[:, None, None, :], logits, -jnp.inf)
  probs = jax.nn.softmax(logits, axis=-1)
  out = jnp.einsum("bhqk,bkhd->bqhd", probs, v.astype(jnp.float32))
  return out.astype(q.dtype)


def dot_product_attention(q, k, v, key_mask=None, impl: str = "auto"):
  """Attention dispatch. Only the reference path exists so far; every impl routes to it."""
  if impl not in IMPLS:
    raise ValueError(f"attention impl={impl!r}; expected one of {IMPLS}")
  return attention_reference(q, k, v, key_mask)
