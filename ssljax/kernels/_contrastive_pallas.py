"""Pallas path of the tiled contrastive similarity (ssljax.kernels.contrastive).

Two kernels, each with a grid over row blocks of a first operand `a` and a loop over column blocks
of a second operand `b`; the column direction and dk reuse them with the operands swapped (the
diagonal j == i + off becomes j == i - off). `forward` / `backward` are the entry points that
contrastive.py's custom_vjp calls with backend 'pallas'.
"""
from __future__ import annotations

import functools

import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

from ssljax.kernels import _contrastive_tiles as tiles
from ssljax.kernels._common import (match_vma, next_pow2, out_struct, pad_axis,
                                    pallas_compiler_params, round_up)


def _pallas_fwd_kernel(scal_ref, off_ref, a_ref, b_ref, out_ref, *, mode, exclude_diagonal,
                       n_a, n_b, block_a, block_b, num_b_blocks, precision):
  i = pl.program_id(0)
  scale, bias, off = scal_ref[0], scal_ref[1], off_ref[0]
  a = a_ref[...]

  def body(j, state):
    m_run, s_run = state
    b = b_ref[pl.ds(j * block_b, block_b), :]
    _, l = tiles.tile_logits(a, b, scale, bias, precision)
    valid, diag = tiles.tile_masks(i * block_a, j * block_b, block_a, block_b, n_a, n_b, off, mode,
                                   exclude_diagonal)
    if mode == "softmax":
      return tiles.online_update(m_run, s_run, jnp.where(valid, l, -jnp.inf))
    return m_run, s_run + tiles.tile_sigmoid_rowsum(l, valid, diag)

  init = (jnp.full((block_a,), -jnp.inf, jnp.float32), jnp.zeros((block_a,), jnp.float32))
  m_run, s_run = lax.fori_loop(0, num_b_blocks, body, init)
  out_ref[...] = tiles.finish_lse(m_run, s_run) if mode == "softmax" else s_run


def _pallas_bwd_kernel(scal_ref, off_ref, a_ref, b_ref, lse_a_ref, g_a_ref, lse_b_ref, g_b_ref,
                       da_ref, ds_ref, db_ref, *, mode, exclude_diagonal, n_a, n_b, block_a,
                       block_b, num_b_blocks, use_a, use_b, precision):
  i = pl.program_id(0)
  scale, bias, off = scal_ref[0], scal_ref[1], off_ref[0]
  a = a_ref[...]
  lse_a, g_a = lse_a_ref[...], g_a_ref[...]

  def body(j, state):
    da, ds, db = state
    sl = pl.ds(j * block_b, block_b)
    b = b_ref[sl, :]
    raw, l = tiles.tile_logits(a, b, scale, bias, precision)
    valid, diag = tiles.tile_masks(i * block_a, j * block_b, block_a, block_b, n_a, n_b, off, mode,
                                   exclude_diagonal)
    dl = tiles.tile_dlogits(mode, l, valid, diag, lse_a, g_a, lse_b_ref[sl], g_b_ref[sl], use_a,
                            use_b)
    da = da + lax.dot_general(dl.astype(b.dtype), b, (((1,), (0,)), ((), ())),
                              precision=precision, preferred_element_type=jnp.float32)
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
      block_a=block_a, block_b=block_b, num_b_blocks=bp.shape[0] // block_b,
      precision=cfg.precision)
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
      use_b=use_b, precision=cfg.precision)
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


forward = functools.partial(tiles.forward_with, _pallas_rowwise)
backward = functools.partial(tiles.backward_with, _pallas_grad_a)
