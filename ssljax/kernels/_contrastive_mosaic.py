"""Mosaic (TPU) path of the tiled contrastive similarity (ssljax.kernels.contrastive).

The same two kernels as the Triton path (_contrastive_pallas.py), shaped for Mosaic's rules:
  * a 2-D grid (row blocks of `a` 'parallel', column blocks of `b` 'arbitrary'): each step holds
    one [block_a, D] and one [block_b, D] tile in VMEM, so VMEM use does not grow with N; the
    running statistics live in VMEM scratch, initialised at the first column block and written
    out at the last;
  * blocks are multiples of the (8, 128) vreg tile: rows padded to the block, the feature dim
    padded to a multiple of 128 lanes; per-row vectors are [N, 128] (the value repeated across
    lanes, as JAX's TPU flash attention keeps its statistics), per-column vectors [1, M];
  * scale, bias and the diagonal offset are scalars in SMEM; masks are built from 2-D iotas.
`forward` / `backward` have the signatures of _contrastive_pallas.forward / backward.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu

from ssljax.kernels import _contrastive_tiles as tiles
from ssljax.kernels._common import pad_axis, round_up

LANES = 128


def _masks(i, j, block_a, block_b, n_a, n_b, off, mode, exclude_diagonal):
  rows = i * block_a + lax.broadcasted_iota(jnp.int32, (block_a, block_b), 0)
  cols = j * block_b + lax.broadcasted_iota(jnp.int32, (block_a, block_b), 1)
  valid = (rows < n_a) & (cols < n_b)
  diag = cols == rows + off
  if mode == "softmax" and exclude_diagonal:
    valid = valid & jnp.logical_not(diag)
  return valid, diag


def _logits(a, b, scale, bias, precision):
  raw = lax.dot_general(a, b, (((1,), (1,)), ((), ())), precision=precision,
                        preferred_element_type=jnp.float32)
  return raw, raw * scale + bias


def _fwd_kernel(scal_ref, off_ref, a_ref, b_ref, out_ref, m_scr, s_scr, *, mode,
                exclude_diagonal, n_a, n_b, precision):
  i, j = pl.program_id(0), pl.program_id(1)
  block_a, block_b = a_ref.shape[0], b_ref.shape[0]

  @pl.when(j == 0)
  def _():
    m_scr[...] = jnp.full(m_scr.shape, -jnp.inf, jnp.float32)
    s_scr[...] = jnp.zeros(s_scr.shape, jnp.float32)

  _, l = _logits(a_ref[...], b_ref[...], scal_ref[0], scal_ref[1], precision)
  valid, diag = _masks(i, j, block_a, block_b, n_a, n_b, off_ref[0], mode, exclude_diagonal)
  m_prev, s_prev = m_scr[:, :1], s_scr[:, :1]
  if mode == "softmax":
    lm = jnp.where(valid, l, -jnp.inf)
    m_new = jnp.maximum(m_prev, jnp.max(lm, axis=1, keepdims=True))
    m_safe = jnp.where(m_new == -jnp.inf, 0.0, m_new)
    s_new = s_prev * jnp.exp(m_prev - m_safe) + jnp.sum(jnp.exp(lm - m_safe), axis=1,
                                                         keepdims=True)
    m_scr[...] = jnp.broadcast_to(m_new, m_scr.shape)
  else:
    signed = jnp.where(diag, l, -l)
    s_new = s_prev + jnp.sum(jnp.where(valid, tiles.log_sigmoid(signed), 0.0), axis=1,
                             keepdims=True)
  s_scr[...] = jnp.broadcast_to(s_new, s_scr.shape)

  @pl.when(j == pl.num_programs(1) - 1)
  def _():
    m, s = m_scr[...], s_scr[...]
    out_ref[...] = tiles.finish_lse(m, s) if mode == "softmax" else s


def _bwd_kernel(scal_ref, off_ref, a_ref, b_ref, lse_a_ref, g_a_ref, lse_b_ref, g_b_ref,
                da_ref, ds_ref, db_ref, da_scr, ds_scr, db_scr, *, mode, exclude_diagonal, n_a,
                n_b, use_a, use_b, precision):
  i, j = pl.program_id(0), pl.program_id(1)
  block_a, block_b = a_ref.shape[0], b_ref.shape[0]
  scale = scal_ref[0]

  @pl.when(j == 0)
  def _():
    da_scr[...] = jnp.zeros(da_scr.shape, jnp.float32)
    ds_scr[...] = jnp.zeros(ds_scr.shape, jnp.float32)
    db_scr[...] = jnp.zeros(db_scr.shape, jnp.float32)

  b = b_ref[...]
  raw, l = _logits(a_ref[...], b, scale, scal_ref[1], precision)
  valid, diag = _masks(i, j, block_a, block_b, n_a, n_b, off_ref[0], mode, exclude_diagonal)
  lse_a, g_a = lse_a_ref[:, :1], g_a_ref[:, :1]        # [block_a, 1]
  lse_b, g_b = lse_b_ref[...], g_b_ref[...]            # [1, block_b]
  if mode == "softmax":
    lm = jnp.where(valid, l, -jnp.inf)
    dl = jnp.zeros(l.shape, jnp.float32)
    if use_a:
      dl = dl + jnp.exp(lm - lse_a) * g_a
    if use_b:
      dl = dl + jnp.exp(lm - lse_b) * g_b
    dl = jnp.where(valid, dl, 0.0)
  else:
    g = jnp.zeros(l.shape, jnp.float32)
    if use_a:
      g = g + g_a
    if use_b:
      g = g + g_b
    label = jnp.where(diag, 1.0, -1.0)
    dl = jnp.where(valid, g * label * tiles.sigmoid(-label * l), 0.0)
  da_scr[...] += lax.dot_general(dl.astype(b.dtype), b, (((1,), (0,)), ((), ())),
                                 precision=precision, preferred_element_type=jnp.float32)
  ds_scr[...] += jnp.broadcast_to(jnp.sum(dl * raw, axis=1, keepdims=True), ds_scr.shape)
  db_scr[...] += jnp.broadcast_to(jnp.sum(dl, axis=1, keepdims=True), db_scr.shape)

  @pl.when(j == pl.num_programs(1) - 1)
  def _():
    da_ref[...] = (da_scr[...] * scale).astype(da_ref.dtype)
    ds_ref[...] = ds_scr[...]
    db_ref[...] = db_scr[...]


def _operands(a, b, block_a, block_b):
  d = round_up(a.shape[1], LANES)
  a = pad_axis(pad_axis(a, 1, d), 0, round_up(a.shape[0], block_a))
  b = pad_axis(pad_axis(b, 1, d), 0, round_up(b.shape[0], block_b))
  return a, b


def _params(cfg):
  if cfg.interpret:
    return dict(interpret=pltpu.InterpretParams())
  return dict(compiler_params=pltpu.CompilerParams(
      dimension_semantics=("parallel", "arbitrary")))


def _cost(ap, bp, block_a: int, matmuls: int, outputs: int) -> pl.CostEstimate:
  """What a kernel call computes, for XLA's cost analysis (`ssljax.plan`'s FLOPs and roofline): a
  Mosaic call declares no cost unless told. Each tile pair does `matmuls` [block_a, D] x [D,
  block_b] products and one exp per logit; `a` is read once, `b` once per row block."""
  na, nb, d = ap.shape[0], bp.shape[0], ap.shape[1]
  return pl.CostEstimate(flops=2 * matmuls * na * nb * d, transcendentals=na * nb,
                         bytes_accessed=ap.size * ap.dtype.itemsize + outputs
                         + bp.size * bp.dtype.itemsize * (na // block_a))


def _smem():
  return pl.BlockSpec(memory_space=pltpu.SMEM)


def _rowwise(cfg, a, b, scal, off, block_a, block_b):
  """Forward kernel: per-row statistic ([Na] float32) of a against all of b."""
  n_a, n_b = a.shape[0], b.shape[0]
  ap, bp = _operands(a, b, block_a, block_b)
  d = ap.shape[1]
  kernel = functools.partial(_fwd_kernel, mode=cfg.mode, exclude_diagonal=cfg.exclude_diagonal,
                             n_a=n_a, n_b=n_b, precision=cfg.precision)
  out = pl.pallas_call(
      kernel,
      out_shape=jax.ShapeDtypeStruct((ap.shape[0], LANES), jnp.float32),
      grid=(ap.shape[0] // block_a, bp.shape[0] // block_b),
      in_specs=[_smem(), _smem(), pl.BlockSpec((block_a, d), lambda i, j: (i, 0)),
                pl.BlockSpec((block_b, d), lambda i, j: (j, 0))],
      out_specs=pl.BlockSpec((block_a, LANES), lambda i, j: (i, 0)),
      scratch_shapes=[pltpu.VMEM((block_a, LANES), jnp.float32)] * 2,
      name="ssljax_contrastive_fwd_mosaic",
      cost_estimate=_cost(ap, bp, block_a, matmuls=1, outputs=ap.shape[0] * LANES * 4),
      **_params(cfg),
  )(scal, off, ap, bp)
  return out[:n_a, 0]


def _grad_a(cfg, a, b, scal, off, lse_a, g_a, lse_b, g_b, use_a, use_b, block_a, block_b):
  """Backward kernel: (d objective / d a [Na, D], summed d/dscale, summed d/dbias)."""
  n_a, n_b, d0 = a.shape[0], b.shape[0], a.shape[1]
  ap, bp = _operands(a, b, block_a, block_b)
  na_p, nb_p, d = ap.shape[0], bp.shape[0], ap.shape[1]
  vec = lambda x, size: pad_axis(jnp.where(jnp.isfinite(x), x, 0.0).astype(jnp.float32), 0, size)  # noqa: E731
  rows = lambda x: jnp.broadcast_to(vec(x, na_p)[:, None], (na_p, LANES))  # noqa: E731
  cols = lambda x: vec(x, nb_p)[None, :]  # noqa: E731
  kernel = functools.partial(_bwd_kernel, mode=cfg.mode, exclude_diagonal=cfg.exclude_diagonal,
                             n_a=n_a, n_b=n_b, use_a=use_a, use_b=use_b, precision=cfg.precision)
  row_vec = pl.BlockSpec((block_a, LANES), lambda i, j: (i, 0))
  col_vec = pl.BlockSpec((1, block_b), lambda i, j: (0, j))
  da, ds, db = pl.pallas_call(
      kernel,
      out_shape=(jax.ShapeDtypeStruct(ap.shape, a.dtype),
                 jax.ShapeDtypeStruct((na_p, LANES), jnp.float32),
                 jax.ShapeDtypeStruct((na_p, LANES), jnp.float32)),
      grid=(na_p // block_a, nb_p // block_b),
      in_specs=[_smem(), _smem(), pl.BlockSpec((block_a, d), lambda i, j: (i, 0)),
                pl.BlockSpec((block_b, d), lambda i, j: (j, 0)), row_vec, row_vec, col_vec,
                col_vec],
      out_specs=(pl.BlockSpec((block_a, d), lambda i, j: (i, 0)), row_vec, row_vec),
      scratch_shapes=[pltpu.VMEM((block_a, d), jnp.float32),
                      pltpu.VMEM((block_a, LANES), jnp.float32),
                      pltpu.VMEM((block_a, LANES), jnp.float32)],
      name="ssljax_contrastive_bwd_mosaic",
      cost_estimate=_cost(ap, bp, block_a, matmuls=2, outputs=ap.size * ap.dtype.itemsize),
      **_params(cfg),
  )(scal, off, ap, bp, rows(lse_a), rows(g_a), cols(lse_b), cols(g_b))
  return da[:n_a, :d0], jnp.sum(ds[:, 0]), jnp.sum(db[:, 0])


forward = functools.partial(tiles.forward_with, _rowwise)
backward = functools.partial(tiles.backward_with, _grad_a)
