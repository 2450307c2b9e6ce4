"""The blockwise XLA path of the tiled contrastive similarity (ssljax/kernels/contrastive.py).

The same algorithm as the Pallas kernels (_contrastive_pallas.py, _contrastive_mosaic.py) with
lax.scan over row tiles and fori_loop over column tiles; the fast path on CPU. `forward` and
`backward` have the signatures the custom_vjp in contrastive.py calls for every backend:

  forward(cfg, q [N, D], k [M, D], scale, bias, off) -> (row [N], col [M] or None)
  backward(cfg, q, k, scale, bias, off, row, col, g_row, g_col) -> (dq, dk, dscale, dbias)
"""
from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from ssljax.kernels import _contrastive_tiles as tiles
from ssljax.kernels._common import match_vma, pad_axis, round_up


def forward(cfg, q, k, scale, bias, off):
  n, d = q.shape
  m = k.shape[0]
  bq, bk = cfg.block_q, cfg.block_k
  qp = pad_axis(q, 0, round_up(n, bq)).reshape(-1, bq, d)
  kp = pad_axis(k, 0, round_up(m, bk)).reshape(-1, bk, d)
  nqb, nkb = qp.shape[0], kp.shape[0]
  softmax = cfg.mode == "softmax"
  refs = (q, k, scale, bias, off)

  def row_step(col_state, xs):
    i, qb = xs

    def col_step(j, state):
      row_m, row_s, col_m, col_s = state
      kb = kp[j]
      _, l = tiles.tile_logits(qb, kb, scale, bias, cfg.precision)
      valid, diag = tiles.tile_masks(i * bq, j * bk, bq, bk, n, m, off, cfg.mode,
                                     cfg.exclude_diagonal)
      if softmax:
        lm = jnp.where(valid, l, -jnp.inf)
        row_m, row_s = tiles.online_update(row_m, row_s, lm)
        if cfg.with_col:
          cm, cs = tiles.online_update(col_m[j], col_s[j], lm.T)
          col_m, col_s = col_m.at[j].set(cm), col_s.at[j].set(cs)
      else:
        row_s = row_s + tiles.tile_sigmoid_rowsum(l, valid, diag)
      return row_m, row_s, col_m, col_s

    init = match_vma((jnp.full((bq,), -jnp.inf, jnp.float32), jnp.zeros((bq,), jnp.float32)),
                     *refs) + col_state
    row_m, row_s, col_m, col_s = lax.fori_loop(0, nkb, col_step, init)
    row = tiles.finish_lse(row_m, row_s) if softmax else row_s
    return (col_m, col_s), row

  if softmax and cfg.with_col:
    col0 = (jnp.full((nkb, bk), -jnp.inf, jnp.float32), jnp.zeros((nkb, bk), jnp.float32))
  else:
    col0 = (jnp.zeros((0,), jnp.float32), jnp.zeros((0,), jnp.float32))
  (col_m, col_s), rows = lax.scan(row_step, match_vma(col0, *refs), (jnp.arange(nqb), qp))
  row = rows.reshape(-1)[:n]
  col = tiles.finish_lse(col_m, col_s).reshape(-1)[:m] if (softmax and cfg.with_col) else None
  return row, col


def backward(cfg, q, k, scale, bias, off, row, col, g_row, g_col):
  n, d = q.shape
  m = k.shape[0]
  bq, bk = cfg.block_q, cfg.block_k
  np_, mp = round_up(n, bq), round_up(m, bk)
  qp = pad_axis(q, 0, np_).reshape(-1, bq, d)
  kp = pad_axis(k, 0, mp).reshape(-1, bk, d)
  nqb, nkb = qp.shape[0], kp.shape[0]
  # Row side always carries a cotangent; the column side only for the two-directional softmax.
  lse_a = pad_axis(jnp.where(jnp.isfinite(row), row, 0.0), 0, np_).reshape(nqb, bq)
  g_a = pad_axis(g_row.astype(jnp.float32), 0, np_).reshape(nqb, bq)
  use_b = cfg.mode == "softmax" and cfg.with_col
  if use_b:
    lse_b = pad_axis(jnp.where(jnp.isfinite(col), col, 0.0), 0, mp).reshape(nkb, bk)
    g_b = pad_axis(g_col.astype(jnp.float32), 0, mp).reshape(nkb, bk)
  else:
    lse_b = g_b = jnp.zeros((nkb, 0), jnp.float32)

  def row_step(carry, xs):
    i, qb, lse_ab, g_ab = xs

    def col_step(j, state):
      dq_b, dk_acc, ds, db = state
      kb = kp[j]
      raw, l = tiles.tile_logits(qb, kb, scale, bias, cfg.precision)
      valid, diag = tiles.tile_masks(i * bq, j * bk, bq, bk, n, m, off, cfg.mode,
                                     cfg.exclude_diagonal)
      dl = tiles.tile_dlogits(cfg.mode, l, valid, diag, lse_ab, g_ab, lse_b[j], g_b[j], True, use_b)
      dq_b = dq_b + lax.dot_general(dl, kb.astype(jnp.float32), (((1,), (0,)), ((), ())),
                                    precision=cfg.precision)
      dk_t = lax.dot_general(dl, qb.astype(jnp.float32), (((0,), (0,)), ((), ())),
                             precision=cfg.precision)
      dk_acc = dk_acc.at[j].add(dk_t)
      return dq_b, dk_acc, ds + jnp.sum(dl * raw), db + jnp.sum(dl)

    dk_acc, ds, db = carry
    dq0 = match_vma(jnp.zeros((bq, d), jnp.float32), *refs, g_ab)
    dq_b, dk_acc, ds, db = lax.fori_loop(0, nkb, col_step, (dq0, dk_acc, ds, db))
    return (dk_acc, ds, db), dq_b

  refs = (q, k, scale, bias, off, lse_a, g_a, lse_b, g_b)
  init = match_vma((jnp.zeros((nkb, bk, d), jnp.float32), jnp.float32(0), jnp.float32(0)), *refs)
  (dk_acc, ds, db), dq = lax.scan(row_step, init, (jnp.arange(nqb), qp, lse_a, g_a))
  dq = (dq.reshape(-1, d)[:n] * scale).astype(q.dtype)
  dk = (dk_acc.reshape(-1, d)[:m] * scale).astype(k.dtype)
  return dq, dk, ds, db
