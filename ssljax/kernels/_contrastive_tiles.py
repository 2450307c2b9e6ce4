"""Tile math of the tiled contrastive similarity (ssljax.kernels.contrastive), shared by its XLA
and Pallas paths: plain jnp on one [bq, D] x [bk, D] tile (logits, masks, the online logsumexp
update, the sigmoid row sums and the logits' gradient)."""
from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp
from jax import lax


@dataclasses.dataclass(frozen=True)
class Config:
  """Static description of one tiled computation."""
  mode: str              # 'softmax' (logsumexp) or 'sigmoid' (sum of log_sigmoid)
  exclude_diagonal: bool  # softmax only: drop the pairs j == i + diag_offset
  with_col: bool          # softmax only: also return the column logsumexp
  block_q: int
  block_k: int
  backend: str            # 'xla', 'pallas' (Triton / interpreter) or 'mosaic' (TPU)
  interpret: bool = False
  precision: Any = None   # lax.Precision of the q k^T and gradient dots (None = default)


def tile_logits(a, b, scale, bias, precision=None):
  """raw = a b^T in float32 ([bq, bk]) and logits = scale * raw + bias."""
  raw = lax.dot_general(a, b, (((1,), (1,)), ((), ())), precision=precision,
                        preferred_element_type=jnp.float32)
  return raw, raw * scale + bias


def tile_masks(r0, c0, bq, bk, n, m, off, mode, exclude_diagonal):
  """(valid, diag) boolean [bq, bk] masks of the tile whose top-left element is (r0, c0)."""
  rows = r0 + jnp.arange(bq, dtype=jnp.int32)[:, None]
  cols = c0 + jnp.arange(bk, dtype=jnp.int32)[None, :]
  valid = (rows < n) & (cols < m)
  diag = cols == rows + off
  if mode == "softmax" and exclude_diagonal:
    valid = valid & jnp.logical_not(diag)
  return valid, diag


def online_update(m_prev, s_prev, lm):
  """Merges the rows of masked logits lm [r, c] (-inf = absent) into a running (max, sum)."""
  m_new = jnp.maximum(m_prev, jnp.max(lm, axis=1))
  m_safe = jnp.where(m_new == -jnp.inf, 0.0, m_new)
  s_new = s_prev * jnp.exp(m_prev - m_safe) + jnp.sum(jnp.exp(lm - m_safe[:, None]), axis=1)
  return m_new, s_new


def finish_lse(m, s):
  return jnp.where(s > 0, m + jnp.log(jnp.where(s > 0, s, 1.0)), -jnp.inf)


def log_sigmoid(x):
  return jnp.minimum(x, 0.0) - jnp.log1p(jnp.exp(-jnp.abs(x)))


def sigmoid(x):
  return 1.0 / (1.0 + jnp.exp(-x))


def tile_sigmoid_rowsum(l, valid, diag):
  signed = jnp.where(diag, l, -l)
  return jnp.sum(jnp.where(valid, log_sigmoid(signed), 0.0), axis=1)


def tile_dlogits(mode, l, valid, diag, lse_a, g_a, lse_b, g_b, use_a, use_b):
  """d(objective)/d(logits) on one tile.

  softmax: objective = sum_i g_a[i] lse_a[i] + sum_j g_b[j] lse_b[j] (row and column logsumexps),
  sigmoid: objective = sum_ij (g_a[i] + g_b[j]) log_sigmoid(label_ij logits_ij).
  `use_a` / `use_b` (static) say which side carries a cotangent.
  """
  if mode == "softmax":
    lm = jnp.where(valid, l, -jnp.inf)
    dl = jnp.zeros(l.shape, jnp.float32)
    if use_a:
      dl = dl + jnp.exp(lm - lse_a[:, None]) * g_a[:, None]
    if use_b:
      dl = dl + jnp.exp(lm - lse_b[None, :]) * g_b[None, :]
    return jnp.where(valid, dl, 0.0)
  g = jnp.zeros(l.shape, jnp.float32)
  if use_a:
    g = g + g_a[:, None]
  if use_b:
    g = g + g_b[None, :]
  label = jnp.where(diag, 1.0, -1.0)
  return jnp.where(valid, g * label * sigmoid(-label * l), 0.0)


# ----------------------------------------------------------------------------------------------
# The custom_vjp's forward and backward in terms of two kernels, shared by the Triton and Mosaic
# paths: rowwise(cfg, a, b, scal, off, block_a, block_b) -> [Na] per-row statistic, and
# grad_a(cfg, a, b, scal, off, lse_a, g_a, lse_b, g_b, use_a, use_b, block_a, block_b) ->
# (da, dscale, dbias). The column direction and dk reuse them with the operands swapped (the
# diagonal j == i + off becomes j == i - off).
# ----------------------------------------------------------------------------------------------
def kernel_scalars(scale, bias, off):
  """([scale, bias] float32 [2], [off] int32 [1]): the kernels' scalar operands."""
  scal = jnp.stack([jnp.asarray(scale, jnp.float32), jnp.asarray(bias, jnp.float32)])
  return scal, jnp.reshape(jnp.asarray(off, jnp.int32), (1,))


def forward_with(rowwise, cfg, q, k, scale, bias, off):
  scal, off1 = kernel_scalars(scale, bias, off)
  row = rowwise(cfg, q, k, scal, off1, cfg.block_q, cfg.block_k)
  col = None
  if cfg.mode == "softmax" and cfg.with_col:
    col = rowwise(cfg, k, q, scal, -off1, cfg.block_k, cfg.block_q)
  return row, col


def backward_with(grad_a, cfg, q, k, scale, bias, off, row, col, g_row, g_col):
  scal, off1 = kernel_scalars(scale, bias, off)
  two_sided = cfg.mode == "softmax" and cfg.with_col
  zeros_m = jnp.zeros((k.shape[0],), jnp.float32)
  col_lse, col_g = (col, g_col) if two_sided else (zeros_m, zeros_m)
  dq, ds, db = grad_a(cfg, q, k, scal, off1, row, g_row, col_lse, col_g, True, two_sided,
                      cfg.block_q, cfg.block_k)
  dk, _, _ = grad_a(cfg, k, q, scal, -off1, col_lse, col_g, row, g_row, two_sided, True,
                    cfg.block_k, cfg.block_q)
  return dq, dk, ds, db
