"""Pallas path of the tiled attention (ssljax.kernels.attention): forward, dQ and dK/dV kernels.

Arrays stay [B, L, H, D]; the grid is (B, H, row blocks) and the BlockSpecs squeeze the batch and
head dims, so each program sees [block, D] tiles. Triton lowering on GPU, the interpreter on CPU.
`forward` / `backward` are what attention.py's custom_vjp calls with backend 'pallas'.
"""
from __future__ import annotations

import functools

import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

from ssljax.kernels._attention_tiles import dot as _dot
from ssljax.kernels._attention_tiles import finish as _finish
from ssljax.kernels._attention_tiles import online_step as _online_step
from ssljax.kernels._common import match_vma, out_struct, pallas_compiler_params


def _fwd_kernel(q_ref, k_ref, v_ref, mask_ref, o_ref, lse_ref, *, scale, block_k, num_k_blocks,
                precision):
  q = q_ref[...]
  bq, d = q.shape

  def body(j, state):
    acc, m, l = state
    sl = pl.ds(j * block_k, block_k)
    kt, vt = k_ref[sl, :], v_ref[sl, :]
    valid = mask_ref[sl] != 0
    s = jnp.where(valid[None, :], _dot(q, kt, (1, 1), precision) * scale, -jnp.inf)
    return _online_step(acc, m, l, s, vt, lambda p, t: _dot(p, t, (1, 0), precision))

  init = (jnp.zeros((bq, d), jnp.float32), jnp.full((bq,), -jnp.inf, jnp.float32),
          jnp.zeros((bq,), jnp.float32))
  out, lse = _finish(*lax.fori_loop(0, num_k_blocks, body, init))
  o_ref[...] = out.astype(o_ref.dtype)
  lse_ref[...] = lse


def _dq_kernel(q_ref, k_ref, v_ref, mask_ref, do_ref, lse_ref, delta_ref, dq_ref, *, scale,
               block_k, num_k_blocks, precision):
  q, do = q_ref[...], do_ref[...]
  lse, delta = lse_ref[...], delta_ref[...]

  def body(j, dq):
    sl = pl.ds(j * block_k, block_k)
    kt, vt = k_ref[sl, :], v_ref[sl, :]
    valid = mask_ref[sl] != 0
    s = _dot(q, kt, (1, 1), precision) * scale
    p = jnp.where(valid[None, :], jnp.exp(s - lse[:, None]), 0.0)
    ds = p * (_dot(do, vt, (1, 1), precision) - delta[:, None])
    return dq + _dot(ds.astype(kt.dtype), kt, (1, 0), precision)

  dq = lax.fori_loop(0, num_k_blocks, body, jnp.zeros(q.shape, jnp.float32))
  dq_ref[...] = (dq * scale).astype(dq_ref.dtype)


def _dkv_kernel(q_ref, k_ref, v_ref, mask_ref, do_ref, lse_ref, delta_ref, dk_ref, dv_ref, *,
                scale, block_q, num_q_blocks, precision):
  kt, vt = k_ref[...], v_ref[...]
  valid = mask_ref[...] != 0

  def body(i, state):
    dk, dv = state
    sl = pl.ds(i * block_q, block_q)
    q, do = q_ref[sl, :], do_ref[sl, :]
    lse, delta = lse_ref[sl], delta_ref[sl]
    s = _dot(q, kt, (1, 1), precision) * scale
    p = jnp.where(valid[None, :], jnp.exp(s - lse[:, None]), 0.0)
    dv = dv + _dot(p.astype(do.dtype), do, (0, 0), precision)
    ds = p * (_dot(do, vt, (1, 1), precision) - delta[:, None])
    dk = dk + _dot(ds.astype(q.dtype), q, (0, 0), precision)
    return dk, dv

  zeros = jnp.zeros(kt.shape, jnp.float32)
  dk, dv = lax.fori_loop(0, num_q_blocks, body, (zeros, zeros))
  dk_ref[...] = (dk * scale).astype(dk_ref.dtype)
  dv_ref[...] = dv.astype(dv_ref.dtype)


def _specs(block, d):
  """BlockSpecs for [B, L, H, D] tensors tiled along L, for [B, H, L] vectors, [B, L] masks."""
  tile = pl.BlockSpec((None, block, None, d), lambda b, h, i: (b, i, h, 0))
  vec = pl.BlockSpec((None, None, block), lambda b, h, i: (b, h, i))
  mask = pl.BlockSpec((None, block), lambda b, h, i: (b, i))
  return tile, vec, mask


def _whole_specs(length, d):
  tile = pl.BlockSpec((None, length, None, d), lambda b, h, i: (b, 0, h, 0))
  vec = pl.BlockSpec((None, None, length), lambda b, h, i: (b, h, 0))
  mask = pl.BlockSpec((None, length), lambda b, h, i: (b, 0))
  return tile, vec, mask


def forward(cfg, q, k, v, mask, scale):
  b, lq, h, d = q.shape
  lk = k.shape[1]
  bq, bk = cfg.block_q, cfg.block_k
  q, k, v, mask = match_vma((q, k, v, mask), q, k, v, mask)
  tile_q, vec_q, _ = _specs(bq, d)
  tile_k, _, mask_k = _whole_specs(lk, d)
  kernel = functools.partial(_fwd_kernel, scale=scale, block_k=bk, num_k_blocks=lk // bk,
                             precision=cfg.precision)
  return pl.pallas_call(
      kernel,
      out_shape=(out_struct(q.shape, q.dtype, q), out_struct((b, h, lq), jnp.float32, q)),
      grid=(b, h, lq // bq),
      in_specs=[tile_q, tile_k, tile_k, mask_k],
      out_specs=(tile_q, vec_q),
      interpret=cfg.interpret,
      compiler_params=pallas_compiler_params(cfg.interpret),
      name="ssljax_flash_attention_fwd",
  )(q, k, v, mask)


def backward(cfg, q, k, v, mask, scale, lse, delta, do):
  b, lq, h, d = q.shape
  lk = k.shape[1]
  bq, bk = cfg.block_q, cfg.block_k
  lse = jnp.where(jnp.isfinite(lse), lse, jnp.inf)
  q, k, v, mask, lse, delta, do = match_vma((q, k, v, mask, lse, delta, do),
                                            q, k, v, mask, lse, delta, do)
  params = pallas_compiler_params(cfg.interpret)
  tile_q, vec_q, _ = _specs(bq, d)
  whole_k, _, whole_mask = _whole_specs(lk, d)
  dq = pl.pallas_call(
      functools.partial(_dq_kernel, scale=scale, block_k=bk, num_k_blocks=lk // bk,
                        precision=cfg.precision),
      out_shape=out_struct(q.shape, q.dtype, q),
      grid=(b, h, lq // bq),
      in_specs=[tile_q, whole_k, whole_k, whole_mask, tile_q, vec_q, vec_q],
      out_specs=tile_q,
      interpret=cfg.interpret, compiler_params=params, name="ssljax_flash_attention_dq",
  )(q, k, v, mask, do, lse, delta)
  tile_k, _, mask_k = _specs(bk, d)
  whole_q, whole_vec, _ = _whole_specs(lq, d)
  dk, dv = pl.pallas_call(
      functools.partial(_dkv_kernel, scale=scale, block_q=bq, num_q_blocks=lq // bq,
                        precision=cfg.precision),
      out_shape=(out_struct(k.shape, k.dtype, k), out_struct(v.shape, v.dtype, v)),
      grid=(b, h, lk // bk),
      in_specs=[whole_q, tile_k, tile_k, mask_k, whole_q, whole_vec, whole_vec],
      out_specs=(tile_k, tile_k),
      interpret=cfg.interpret, compiler_params=params, name="ssljax_flash_attention_dkv",
  )(q, k, v, mask, do, lse, delta)
  return dq, dk, dv
