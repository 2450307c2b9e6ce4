"""Tile math of the tiled attention (ssljax.kernels.attention), shared by its blockwise XLA and
Pallas paths: the static config, float32-accumulating dots, the online-softmax step."""
from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp
from jax import lax


@dataclasses.dataclass(frozen=True)
class Config:
  block_q: int
  block_k: int
  backend: str  # 'xla' or 'pallas'
  interpret: bool = False
  precision: Any = None   # lax.Precision of the dots (None = platform default)


def dot(a, b, contract, precision=None):
  """Batched-free 2-D dot: contract dim contract[0] of a with contract[1] of b, f32 accumulate."""
  return lax.dot_general(a, b, (((contract[0],), (contract[1],)), ((), ())),
                         precision=precision, preferred_element_type=jnp.float32)


def bdot(a, b, contract, precision=None):
  """[B, H, x, y] tiles: batch over (B, H), contract one dim each, float32 accumulate."""
  return lax.dot_general(a, b, (((contract[0],), (contract[1],)), ((0, 1), (0, 1))),
                         precision=precision, preferred_element_type=jnp.float32)


def online_step(acc, m_prev, l_prev, s, v_tile, pv):
  """One online-softmax step: s [.., r, c] masked logits (-inf = absent), v_tile the values."""
  m_new = jnp.maximum(m_prev, jnp.max(s, axis=-1))
  m_safe = jnp.where(m_new == -jnp.inf, 0.0, m_new)
  alpha = jnp.exp(m_prev - m_safe)
  p = jnp.exp(s - m_safe[..., None])
  l_new = l_prev * alpha + jnp.sum(p, axis=-1)
  acc = acc * alpha[..., None] + pv(p.astype(v_tile.dtype), v_tile)
  return acc, m_new, l_new


def finish(acc, m, l):
  ok = l > 0
  out = acc / jnp.where(ok, l, 1.0)[..., None]
  lse = jnp.where(ok, m + jnp.log(jnp.where(ok, l, 1.0)), -jnp.inf)
  return out, lse
