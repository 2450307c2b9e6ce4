"""Memory-free contrastive similarity: tiled q k^T with an online logsumexp.

The N x M logit matrix `logits = scale * q k^T + bias` of a contrastive loss is never held in
memory. It is visited tile by tile ([block_q, block_k]); for every row (and, on request, every
column) a running max and a running sum of exponentials are kept (the online logsumexp of
FlashAttention, used for contrastive losses by "Breaking the Memory Barrier: Near Infinite Batch
Size Scaling for Contrastive Loss", Inf-CL). Only O(N + M) values are written. The backward
(`jax.custom_vjp`) recomputes each tile from q, k and the saved logsumexps.

Conventions:
  * q: [N, D], k: [M, D], already L2-normalised by the caller (any dtype; logits in float32).
  * scale, bias: float32 scalars with gradients (scale = 1/T or exp(log_t); bias is SigLIP's b).
  * The "diagonal" is the set of pairs (i, j) with j == i + diag_offset. It is the positive pair
    of InfoNCE/CLIP/SigLIP, the self-similarity excluded by NT-Xent, and is shifted by
    `diag_offset` when q is a row block of a larger (sharded) batch. diag_offset may be traced.
  * Padded rows/columns (N, M not multiples of the tile) are masked out.

Three implementations, picked with `impl=` ('auto' | 'pallas' | 'xla' | 'reference'):
  'reference'  plain jnp over the full matrix: the spec.
  'xla'        the tiled algorithm with lax.scan / fori_loop over tiles; the fast path on CPU.
  'pallas'     the same algorithm as Pallas kernels (Triton on GPU, interpret=True on CPU).
  'auto'       'pallas' on GPU, 'xla' elsewhere.

Public API:
  similarity_lse(q, k, scale, ...)        -> row logsumexp [N] (and column logsumexp [M])
  sigmoid_pair_sums(q, k, scale, bias)    -> per-row sum_j log_sigmoid(label_ij * logits_ij) [N]
  positive_logits(q, k, scale, bias)      -> scale * <q_i, k_i> + bias [N]
  info_nce_loss / nt_xent_loss / sigmoid_loss: the losses on normalised inputs.
"""
from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

from ssljax.kernels._common import (IMPLS, default_interpret, match_vma, next_pow2, out_struct,
                                    pad_axis, pallas_compiler_params, resolve_impl, round_up)

__all__ = [
    "IMPLS", "similarity_lse", "sigmoid_pair_sums", "positive_logits", "info_nce_loss",
    "nt_xent_loss", "sigmoid_loss", "similarity_lse_reference", "sigmoid_pair_sums_reference",
]

# Default tiles. XLA on CPU wants big tiles (few loop iterations, large matmuls); Pallas on GPU
# wants tiles that fit in registers/shared memory.
XLA_BLOCK_Q = 512
XLA_BLOCK_K = 2048
PALLAS_BLOCK_Q = 64
PALLAS_BLOCK_K = 64


# ----------------------------------------------------------------------------------------------
# Reference (the spec).
# ----------------------------------------------------------------------------------------------
def _full_logits(q, k, scale, bias):
  raw = jnp.dot(q.astype(jnp.float32), k.astype(jnp.float32).T, precision=lax.Precision.HIGHEST)
  return scale * raw + bias


def _diag_mask(n, m, diag_offset):
  return jnp.arange(m)[None, :] == jnp.arange(n)[:, None] + diag_offset


def similarity_lse_reference(q, k, scale=1.0, *, diag_offset=0, exclude_diagonal=False,
                             with_col=False):
  """Full-matrix spec of `similarity_lse` (holds the N x M logits)."""
  logits = _full_logits(q, k, jnp.asarray(scale, jnp.float32), 0.0)
  if exclude_diagonal:
    logits = jnp.where(_diag_mask(q.shape[0], k.shape[0], diag_offset), -jnp.inf, logits)
  row = jax.nn.logsumexp(logits, axis=1)
  if not with_col:
    return row
  return row, jax.nn.logsumexp(logits, axis=0)


def sigmoid_pair_sums_reference(q, k, scale, bias, *, diag_offset=0):
  """Full-matrix spec of `sigmoid_pair_sums`."""
  logits = _full_logits(q, k, jnp.asarray(scale, jnp.float32), jnp.asarray(bias, jnp.float32))
  labels = jnp.where(_diag_mask(q.shape[0], k.shape[0], diag_offset), 1.0, -1.0)
  return jnp.sum(jax.nn.log_sigmoid(labels * logits), axis=1)


# ----------------------------------------------------------------------------------------------
# Tile math shared by the XLA and Pallas paths (plain jnp on [bq, D] x [bk, D] tiles).
# ----------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _Config:
  """Static description of one tiled computation."""
  mode: str              # 'softmax' (logsumexp) or 'sigmoid' (sum of log_sigmoid)
  exclude_diagonal: bool  # softmax only: drop the pairs j == i + diag_offset
  with_col: bool          # softmax only: also return the column logsumexp
  block_q: int
  block_k: int
  backend: str            # 'xla' or 'pallas'
  interpret: bool = False


def _tile_logits(a, b, scale, bias):
  """raw = a b^T in float32 ([bq, bk]) and logits = scale * raw + bias."""
  raw = lax.dot_general(a, b, (((1,), (1,)), ((), ())), preferred_element_type=jnp.float32)
  return raw, raw * scale + bias


def _tile_masks(r0, c0, bq, bk, n, m, off, mode, exclude_diagonal):
  """(valid, diag) boolean [bq, bk] masks of the tile whose top-left element is (r0, c0)."""
  rows = r0 + jnp.arange(bq, dtype=jnp.int32)[:, None]
  cols = c0 + jnp.arange(bk, dtype=jnp.int32)[None, :]
  valid = (rows < n) & (cols < m)
  diag = cols == rows + off
  if mode == "softmax" and exclude_diagonal:
    valid = valid & jnp.logical_not(diag)
  return valid, diag


def _online_update(m_prev, s_prev, lm):
  """Merges the rows of masked logits lm [r, c] (-inf = absent) into a running (max, sum)."""
  m_new = jnp.maximum(m_prev, jnp.max(lm, axis=1))
  m_safe = jnp.where(m_new == -jnp.inf, 0.0, m_new)
  s_new = s_prev * jnp.exp(m_prev - m_safe) + jnp.sum(jnp.exp(lm - m_safe[:, None]), axis=1)
  return m_new, s_new


def _finish_lse(m, s):
  return jnp.where(s > 0, m + jnp.log(jnp.where(s > 0, s, 1.0)), -jnp.inf)


def _log_sigmoid(x):
  return jnp.minimum(x, 0.0) - jnp.log1p(jnp.exp(-jnp.abs(x)))


def _sigmoid(x):
  return 1.0 / (1.0 + jnp.exp(-x))


def _tile_sigmoid_rowsum(l, valid, diag):
  signed = jnp.where(diag, l, -l)
  return jnp.sum(jnp.where(valid, _log_sigmoid(signed), 0.0), axis=1)


def _tile_dlogits(mode, l, valid, diag, lse_a, g_a, lse_b, g_b, use_a, use_b):
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
  return jnp.where(valid, g * label * _sigmoid(-label * l), 0.0)


# ----------------------------------------------------------------------------------------------
# Blockwise XLA path.
# ----------------------------------------------------------------------------------------------
def _xla_forward(cfg, q, k, scale, bias, off):
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
      _, l = _tile_logits(qb, kb, scale, bias)
      valid, diag = _tile_masks(i * bq, j * bk, bq, bk, n, m, off, cfg.mode,
                                cfg.exclude_diagonal)
      if softmax:
        lm = jnp.where(valid, l, -jnp.inf)
        row_m, row_s = _online_update(row_m, row_s, lm)
        if cfg.with_col:
          cm, cs = _online_update(col_m[j], col_s[j], lm.T)
          col_m, col_s = col_m.at[j].set(cm), col_s.at[j].set(cs)
      else:
        row_s = row_s + _tile_sigmoid_rowsum(l, valid, diag)
      return row_m, row_s, col_m, col_s

    init = match_vma((jnp.full((bq,), -jnp.inf, jnp.float32), jnp.zeros((bq,), jnp.float32)),
                     *refs) + col_state
    row_m, row_s, col_m, col_s = lax.fori_loop(0, nkb, col_step, init)
    row = _finish_lse(row_m, row_s) if softmax else row_s
    return (col_m, col_s), row

  if softmax and cfg.with_col:
    col0 = (jnp.full((nkb, bk), -jnp.inf, jnp.float32), jnp.zeros((nkb, bk), jnp.float32))
  else:
    col0 = (jnp.zeros((0,), jnp.float32), jnp.zeros((0,), jnp.float32))
  (col_m, col_s), rows = lax.scan(row_step, match_vma(col0, *refs), (jnp.arange(nqb), qp))
  row = rows.reshape(-1)[:n]
  col = _finish_lse(col_m, col_s).reshape(-1)[:m] if (softmax and cfg.with_col) else None
  return row, col


def _xla_backward(cfg, q, k, scale, bias, off, row, col, g_row, g_col):
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
      raw, l = _tile_logits(qb, kb, scale, bias)
      valid, diag = _tile_masks(i * bq, j * bk, bq, bk, n, m, off, cfg.mode,
                                cfg.exclude_diagonal)
      dl = _tile_dlogits(cfg.mode, l, valid, diag, lse_ab, g_ab, lse_b[j], g_b[j], True, use_b)
      dq_b = dq_b + lax.dot_general(dl, kb.astype(jnp.float32), (((1,), (0,)), ((), ())))
      dk_t = lax.dot_general(dl, qb.astype(jnp.float32), (((0,), (0,)), ((), ())))
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


# ----------------------------------------------------------------------------------------------
# Pallas path. Two kernels, each with a grid over row blocks of a first operand `a` and a loop
# over column blocks of a second operand `b`; the column direction and dk reuse them with the
# operands swapped (the diagonal j == i + off becomes j == i - off).
# ----------------------------------------------------------------------------------------------
def _pallas_fwd_kernel(scal_ref, off_ref, a_ref, b_ref, out_ref, *, mode, exclude_diagonal,
                       n_a, n_b, block_a, block_b, num_b_blocks):
  i = pl.program_id(0)
  scale, bias, off = scal_ref[0], scal_ref[1], off_ref[0]
  a = a_ref[...]

  def body(j, state):
    m_run, s_run = state
    b = b_ref[pl.ds(j * block_b, block_b), :]
    _, l = _tile_logits(a, b, scale, bias)
    valid, diag = _tile_masks(i * block_a, j * block_b, block_a, block_b, n_a, n_b, off, mode,
                              exclude_diagonal)
    if mode == "softmax":
      return _online_update(m_run, s_run, jnp.where(valid, l, -jnp.inf))
    return m_run, s_run + _tile_sigmoid_rowsum(l, valid, diag)

  init = (jnp.full((block_a,), -jnp.inf, jnp.float32), jnp.zeros((block_a,), jnp.float32))
  m_run, s_run = lax.fori_loop(0, num_b_blocks, body, init)
  out_ref[...] = _finish_lse(m_run, s_run) if mode == "softmax" else s_run


def _pallas_bwd_kernel(scal_ref, off_ref, a_ref, b_ref, lse_a_ref, g_a_ref, lse_b_ref, g_b_ref,
                       da_ref, ds_ref, db_ref, *, mode, exclude_diagonal, n_a, n_b, block_a,
                       block_b, num_b_blocks, use_a, use_b):
  i = pl.program_id(0)
  scale, bias, off = scal_ref[0], scal_ref[1], off_ref[0]
  a = a_ref[...]
  lse_a, g_a = lse_a_ref[...], g_a_ref[...]

  def body(j, state):
    da, ds, db = state
    sl = pl.ds(j * block_b, block_b)
    b = b_ref[sl, :]
    raw, l = _tile_logits(a, b, scale, bias)
    valid, diag = _tile_masks(i * block_a, j * block_b, block_a, block_b, n_a, n_b, off, mode,
                              exclude_diagonal)
    dl = _tile_dlogits(mode, l, valid, diag, lse_a, g_a, lse_b_ref[sl], g_b_ref[sl], use_a,
                       use_b)
    da = da + lax.dot_general(dl.astype(b.dtype), b, (((1,), (0,)), ((), ())),
                              preferred_element_type=jnp.float32)
    return da, ds + jnp.sum(dl * raw, axis=1), db + jnp.sum(dl, axis=1)

  d = a_ref.shape[-1]
  zeros = jnp.zeros((block_a,), jnp.float32)
  da, ds, db = lax.fori_loop(0, num_b_blocks, body,
                             (jnp.zeros((block_a, d), jnp.float32), zeros, zeros))
  da_ref[...] = (da * scale).astype(da_ref.dtype)
  ds_ref[...] = ds
  db_ref[...] = db


def _pallas_operands(cfg, a, b, block_a, block_b):
  """Pads rows to the tiles and the feature dim to a power of two (>= 16, as Triton needs)."""
  d_pad = max(16, next_pow2(a.shape[1]))
  a = pad_axis(pad_axis(a, 1, d_pad), 0, round_up(a.shape[0], block_a))
  b = pad_axis(pad_axis(b, 1, d_pad), 0, round_up(b.shape[0], block_b))
  return a, b


def _pallas_rowwise(cfg, a, b, scal, off, block_a, block_b):
  """Forward kernel: per-row statistic ([Na] float32) of a against all of b."""
  n_a, n_b = a.shape[0], b.shape[0]
  ap, bp = _pallas_operands(cfg, a, b, block_a, block_b)
  scal, off, ap, bp = match_vma((scal, off, ap, bp), scal, off, ap, bp)
  grid = (ap.shape[0] // block_a,)
  kernel = functools.partial(
      _pallas_fwd_kernel, mode=cfg.mode, exclude_diagonal=cfg.exclude_diagonal, n_a=n_a, n_b=n_b,
      block_a=block_a, block_b=block_b, num_b_blocks=bp.shape[0] // block_b)
  full = lambda x: pl.BlockSpec(x.shape, lambda i: (0,) * x.ndim)
  out = pl.pallas_call(
      kernel,
      out_shape=out_struct((ap.shape[0],), jnp.float32, ap),
      grid=grid,
      in_specs=[full(scal), full(off), pl.BlockSpec((block_a, ap.shape[1]), lambda i: (i, 0)),
                full(bp)],
      out_specs=pl.BlockSpec((block_a,), lambda i: (i,)),
      interpret=cfg.interpret,
      compiler_params=pallas_compiler_params(cfg.interpret),
      name="ssljax_contrastive_fwd",
  )(scal, off, ap, bp)
  return out[:n_a]


def _pallas_grad_a(cfg, a, b, scal, off, lse_a, g_a, lse_b, g_b, use_a, use_b, block_a,
                   block_b):
  """Backward kernel: (d objective / d a [Na, D], per-row partial d/dscale, d/dbias)."""
  n_a, n_b, d = a.shape[0], b.shape[0], a.shape[1]
  ap, bp = _pallas_operands(cfg, a, b, block_a, block_b)
  na_p, nb_p = ap.shape[0], bp.shape[0]
  vec = lambda x, size: pad_axis(jnp.where(jnp.isfinite(x), x, 0.0).astype(jnp.float32), 0, size)
  lse_a, g_a = vec(lse_a, na_p), vec(g_a, na_p)
  lse_b, g_b = vec(lse_b, nb_p), vec(g_b, nb_p)
  ops = match_vma((scal, off, ap, bp, lse_a, g_a, lse_b, g_b),
                  scal, off, ap, bp, lse_a, g_a, lse_b, g_b)
  scal, off, ap, bp, lse_a, g_a, lse_b, g_b = ops
  kernel = functools.partial(
      _pallas_bwd_kernel, mode=cfg.mode, exclude_diagonal=cfg.exclude_diagonal, n_a=n_a,
      n_b=n_b, block_a=block_a, block_b=block_b, num_b_blocks=nb_p // block_b, use_a=use_a,
      use_b=use_b)
  full = lambda x: pl.BlockSpec(x.shape, lambda i: (0,) * x.ndim)
  row_vec = pl.BlockSpec((block_a,), lambda i: (i,))
  da, ds, db = pl.pallas_call(
      kernel,
      out_shape=(out_struct(ap.shape, a.dtype, ap), out_struct((na_p,), jnp.float32, ap),
                 out_struct((na_p,), jnp.float32, ap)),
      grid=(na_p // block_a,),
      in_specs=[full(scal), full(off), pl.BlockSpec((block_a, ap.shape[1]), lambda i: (i, 0)),
                full(bp), row_vec, row_vec, full(lse_b), full(g_b)],
      out_specs=(pl.BlockSpec((block_a, ap.shape[1]), lambda i: (i, 0)), row_vec, row_vec),
      interpret=cfg.interpret,
      compiler_params=pallas_compiler_params(cfg.interpret),
      name="ssljax_contrastive_bwd",
  )(scal, off, ap, bp, lse_a, g_a, lse_b, g_b)
  return da[:n_a, :d], jnp.sum(ds), jnp.sum(db)


def _pallas_scalars(scale, bias, off):
  scal = jnp.stack([jnp.asarray(scale, jnp.float32), jnp.asarray(bias, jnp.float32)])
  return scal, jnp.reshape(jnp.asarray(off, jnp.int32), (1,))


def _pallas_forward(cfg, q, k, scale, bias, off):
  scal, off1 = _pallas_scalars(scale, bias, off)
  row = _pallas_rowwise(cfg, q, k, scal, off1, cfg.block_q, cfg.block_k)
  col = None
  if cfg.mode == "softmax" and cfg.with_col:
    col = _pallas_rowwise(cfg, k, q, scal, -off1, cfg.block_k, cfg.block_q)
  return row, col


def _pallas_backward(cfg, q, k, scale, bias, off, row, col, g_row, g_col):
  scal, off1 = _pallas_scalars(scale, bias, off)
  two_sided = cfg.mode == "softmax" and cfg.with_col
  zeros_m = jnp.zeros((k.shape[0],), jnp.float32)
  col_lse, col_g = (col, g_col) if two_sided else (zeros_m, zeros_m)
  dq, ds, db = _pallas_grad_a(cfg, q, k, scal, off1, row, g_row, col_lse, col_g, True, two_sided,
                              cfg.block_q, cfg.block_k)
  dk, _, _ = _pallas_grad_a(cfg, k, q, scal, -off1, col_lse, col_g, row, g_row, two_sided, True,
                            cfg.block_k, cfg.block_q)
  return dq, dk, ds, db


# ----------------------------------------------------------------------------------------------
# custom_vjp glue.
# ----------------------------------------------------------------------------------------------
def _forward(cfg, q, k, scale, bias, off):
  fn = _xla_forward if cfg.backend == "xla" else _pallas_forward
  return fn(cfg, q, k, scale, bias, off)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _tiled(cfg, q, k, scale, bias, off):
  return _forward(cfg, q, k, scale, bias, off)


def _tiled_fwd(cfg, q, k, scale, bias, off):
  row, col = _forward(cfg, q, k, scale, bias, off)
  return (row, col), (q, k, scale, bias, off, row, col)


def _tiled_bwd(cfg, res, cts):
  q, k, scale, bias, off, row, col = res
  g_row, g_col = cts
  if g_col is None and col is not None:
    g_col = jnp.zeros_like(col)
  fn = _xla_backward if cfg.backend == "xla" else _pallas_backward
  dq, dk, ds, db = fn(cfg, q, k, scale, bias, off, row, col, g_row, g_col)
  return dq, dk, ds.astype(scale.dtype), db.astype(bias.dtype), None


_tiled.defvjp(_tiled_fwd, _tiled_bwd)


def _make_config(mode, exclude_diagonal, with_col, impl, n, m, block_q, block_k, interpret):
  if impl == "xla":
    bq = min(block_q or XLA_BLOCK_Q, round_up(n, 8))
    bk = min(block_k or XLA_BLOCK_K, round_up(m, 8))
    return _Config(mode, exclude_diagonal, with_col, bq, bk, "xla")
  bq = block_q or PALLAS_BLOCK_Q
  bk = block_k or PALLAS_BLOCK_K
  if bq != next_pow2(bq) or bk != next_pow2(bk) or min(bq, bk) < 16:
    raise ValueError(f"Pallas tiles must be powers of two >= 16, got {bq}, {bk}")
  bq = min(bq, max(16, next_pow2(n)))
  bk = min(bk, max(16, next_pow2(m)))
  interpret = default_interpret() if interpret is None else interpret
  return _Config(mode, exclude_diagonal, with_col, bq, bk, "pallas", interpret)


def _same_vma(*args):
  """Under shard_map, makes all kernel operands vary over the same axes (so that the custom_vjp's
  cotangents type-check; autodiff of the cast psums the gradients of replicated inputs)."""
  return match_vma(args, *args)


def _scalar(x):
  return jnp.asarray(x, jnp.float32).reshape(())


# ----------------------------------------------------------------------------------------------
# Public primitives.
# ----------------------------------------------------------------------------------------------
def similarity_lse(q, k, scale=1.0, *, diag_offset=0, exclude_diagonal=False, with_col=False,
                   impl="auto", block_q=None, block_k=None, interpret=None):
  """Row (and column) logsumexp of scale * q k^T without holding the N x M matrix.

  Args:
    q: [N, D] (normalised) queries; any float dtype, logits are computed in float32.
    k: [M, D] (normalised) keys.
    scale: scalar (1/T), differentiable.
    diag_offset: pairs (i, j) with j == i + diag_offset form the diagonal (int, may be traced).
    exclude_diagonal: drop the diagonal from both logsumexps (NT-Xent's self-similarity).
    with_col: also return the column logsumexp (the key -> query direction of CLIP).
    impl: 'auto' | 'pallas' | 'xla' | 'reference'.
    block_q, block_k: tile sizes (powers of two >= 16 for Pallas); defaults per impl.
    interpret: Pallas interpret mode; None = automatic (True on CPU).

  Returns:
    row_lse [N] float32, or (row_lse [N], col_lse [M]) when with_col.
  """
  impl = resolve_impl(impl)
  if impl == "reference":
    return similarity_lse_reference(q, k, scale, diag_offset=diag_offset,
                                    exclude_diagonal=exclude_diagonal, with_col=with_col)
  cfg = _make_config("softmax", exclude_diagonal, with_col, impl, q.shape[0], k.shape[0],
                     block_q, block_k, interpret)
  row, col = _tiled(cfg, *_same_vma(q, k, _scalar(scale), jnp.float32(0.0),
                                    jnp.asarray(diag_offset, jnp.int32)))
  return (row, col) if with_col else row


def sigmoid_pair_sums(q, k, scale, bias, *, diag_offset=0, impl="auto", block_q=None,
                      block_k=None, interpret=None):
  """Per-row sum over all keys of log_sigmoid(label_ij * (scale <q_i, k_j> + bias)), tiled.

  Args:
    q: [N, D], k: [M, D] normalised embeddings.
    scale: scalar exp(log_t); bias: scalar b. Both differentiable.
    diag_offset: label_ij = +1 where j == i + diag_offset, -1 elsewhere.
    impl, block_q, block_k, interpret: as in `similarity_lse`.

  Returns:
    [N] float32.
  """
  impl = resolve_impl(impl)
  if impl == "reference":
    return sigmoid_pair_sums_reference(q, k, scale, bias, diag_offset=diag_offset)
  cfg = _make_config("sigmoid", False, False, impl, q.shape[0], k.shape[0], block_q, block_k,
                     interpret)
  row, _ = _tiled(cfg, *_same_vma(q, k, _scalar(scale), _scalar(bias),
                                  jnp.asarray(diag_offset, jnp.int32)))
  return row


def positive_logits(q, k, scale=1.0, bias=0.0):
  """scale * <q_i, k_i> + bias for aligned rows: [N] float32 (O(N D), no tiling needed)."""
  dots = jnp.sum(q.astype(jnp.float32) * k.astype(jnp.float32), axis=-1)
  return _scalar(scale) * dots + _scalar(bias)


# ----------------------------------------------------------------------------------------------
# Losses on normalised inputs (ssljax.losses adds the normalisation and temperature handling).
# ----------------------------------------------------------------------------------------------
def info_nce_loss(q, k, scale, *, bidirectional=False, impl="auto", **tile_kw):
  """InfoNCE with positives on the diagonal; CLIP's symmetric form when bidirectional.

  Args:
    q: [N, D], k: [N, D] normalised; k[i] is the positive of q[i].
    scale: 1/T (or exp(log_t)), differentiable.
    bidirectional: average the q -> k and k -> q cross entropies (CLIP).
    impl: 'auto' | 'pallas' | 'xla' | 'reference'; tile_kw: block_q, block_k, interpret.

  Returns:
    Scalar float32: mean over rows of lse_j(logits_ij) - logits_ii (averaged with the column
    version when bidirectional).
  """
  pos = positive_logits(q, k, scale)
  if not bidirectional:
    return jnp.mean(similarity_lse(q, k, scale, impl=impl, **tile_kw) - pos)
  row, col = similarity_lse(q, k, scale, with_col=True, impl=impl, **tile_kw)
  return 0.5 * (jnp.mean(row - pos) + jnp.mean(col - pos))


def nt_xent_loss(z1, z2, scale, *, impl="auto", **tile_kw):
  """SimCLR NT-Xent on normalised views: the 2N x 2N case with the self-similarity excluded.

  Args:
    z1: [N, D], z2: [N, D] normalised; row i of z1 and row i of z2 are positives.
    scale: 1/T, differentiable.
    impl: 'auto' | 'pallas' | 'xla' | 'reference'; tile_kw: block_q, block_k, interpret.

  Returns:
    Scalar float32: mean over the 2N rows of z = [z1; z2] of
    lse_{j != i}(scale z_i.z_j) - scale z_i.z_{(i + N) mod 2N}.
  """
  z = jnp.concatenate([z1, z2], axis=0)
  partner = jnp.concatenate([z2, z1], axis=0)
  lse = similarity_lse(z, z, scale, exclude_diagonal=True, impl=impl, **tile_kw)
  return jnp.mean(lse - positive_logits(z, partner, scale))


def sigmoid_loss(x, y, scale, bias, *, impl="auto", **tile_kw):
  """SigLIP's sigmoid loss on normalised inputs, tiled over all N x N pairs.

  Args:
    x: [N, D], y: [N, D] normalised; (x_i, y_i) are the positive pairs.
    scale: exp(log_t); bias: b. Both differentiable.
    impl: 'auto' | 'pallas' | 'xla' | 'reference'; tile_kw: block_q, block_k, interpret.

  Returns:
    Scalar float32: -sum_ij log_sigmoid(label_ij (scale x_i.y_j + bias)) / N.
  """
  return -jnp.sum(sigmoid_pair_sums(x, y, scale, bias, impl=impl, **tile_kw)) / x.shape[0]
