"""Multi-head dot-product attention with an `impl=` switch: reference, blockwise XLA, Pallas flash.

Shapes follow `jax.nn.dot_product_attention`: q is [batch, q_length, heads, head_dim], k and v are
[batch, kv_length, heads, head_dim]. No causal mask (ViT encoders); an optional key padding mask
[batch, kv_length] (True = may be attended to) covers register/CLS tokens and padded sequences.

The flash path ("FlashAttention-2") walks the keys tile by tile with an online softmax (running
row max m and sum l), so the [Lq, Lk] probability matrix is never stored; it saves only the output
and the per-row logsumexp. The backward (`jax.custom_vjp`) recomputes the probabilities tile by
tile: dV = P^T dO, dS = P * (dO V^T - rowsum(dO * O)), dQ = dS K / sqrt(Dh), dK = dS^T Q / sqrt(Dh).

  'reference'  plain jnp, float32 softmax: the spec.
  'xla'        the tiled algorithm as lax loops over [block_q, block_k] tiles, same custom_vjp;
               the fast path on CPU and the fallback everywhere.
  'pallas'     Pallas kernels: ssljax's (forward, dQ, dK/dV) with the Triton lowering on GPU and
               in the interpreter on CPU; on TPU JAX's maintained Mosaic splash attention.
  'auto'       CPU 'xla'; GPU cuDNN's fused attention where it applies (bf16 / fp16, no key mask),
               else ssljax's Triton kernel; TPU the Mosaic splash attention, or plain XLA
               attention for sequences of at most 128 tokens without a key mask (`choose_kernel`).

Accumulation is float32 for every dtype; bf16 inputs give bf16 outputs and gradients. Head dims
that are not a power of two are zero-padded on the Pallas path. A query whose keys are all masked
gets a zero output (the reference returns NaN there).

Precision of the dots (`precision=`, passed to every q k^T / p v dot of ssljax's kernels): None
is the platform default, which for float32 operands is TF32 on NVIDIA GPUs (Triton's default and
XLA's) and bf16 passes on TPU; `jax.lax.Precision.HIGHEST` asks for full float32 products
(Triton 'ieee'). bf16 operands are multiplied exactly and accumulated in float32 either way.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from ssljax.kernels import _attention_pallas as pallas_path
from ssljax.kernels import _attention_tiles as tiles
from ssljax.kernels import sharding
from ssljax.kernels._common import (IMPLS, match_vma, next_pow2, pad_axis, resolve_impl,
                                    round_up, target_platform)

__all__ = ["IMPLS", "KERNELS", "attention_reference", "choose_kernel", "dot_product_attention"]

XLA_BLOCK_Q = 256
XLA_BLOCK_K = 256
PALLAS_BLOCK_Q = 64
PALLAS_BLOCK_K = 64
MOSAIC_BLOCK = 128   # JAX's TPU splash attention tiles (Mosaic: multiples of the 128-lane vreg)


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


# ----------------------------------------------------------------------------------------------
# Blockwise XLA path. Internally [B, H, L, D]; masks are [B, Lk] int32 (1 = attend).
# ----------------------------------------------------------------------------------------------
def _xla_forward(cfg, q, k, v, mask, scale):
  b, h, lq, d = q.shape
  bq, bk = cfg.block_q, cfg.block_k
  nqb, nkb = lq // bq, k.shape[2] // bk
  refs = (q, k, v, mask)

  def q_block(_, i):
    qb = lax.dynamic_slice_in_dim(q, i * bq, bq, axis=2)

    def k_step(j, state):
      acc, m, l = state
      kb = lax.dynamic_slice_in_dim(k, j * bk, bk, axis=2)
      vb = lax.dynamic_slice_in_dim(v, j * bk, bk, axis=2)
      valid = lax.dynamic_slice_in_dim(mask, j * bk, bk, axis=1)[:, None, None, :] != 0
      s = jnp.where(valid, tiles.bdot(qb, kb, (3, 3), cfg.precision) * scale, -jnp.inf)
      return tiles.online_step(acc, m, l, s, vb, lambda p, t: tiles.bdot(p, t, (3, 2), cfg.precision))

    init = match_vma((jnp.zeros((b, h, bq, d), jnp.float32),
                      jnp.full((b, h, bq), -jnp.inf, jnp.float32),
                      jnp.zeros((b, h, bq), jnp.float32)), *refs)
    out, lse = tiles.finish(*lax.fori_loop(0, nkb, k_step, init))
    return None, (out.astype(q.dtype), lse)

  _, (out, lse) = lax.scan(q_block, None, jnp.arange(nqb))
  # [nqb, B, H, bq, ...] -> [B, H, Lq, ...]
  out = jnp.moveaxis(out, 0, 2).reshape(b, h, lq, d)
  lse = jnp.moveaxis(lse, 0, 2).reshape(b, h, lq)
  return out, lse


def _xla_backward(cfg, q, k, v, mask, scale, lse, delta, do):
  b, h, lq, d = q.shape
  bq, bk = cfg.block_q, cfg.block_k
  nqb, nkb = lq // bq, k.shape[2] // bk
  lse = jnp.where(jnp.isfinite(lse), lse, jnp.inf)  # rows with no key: p = 0
  refs = (q, k, v, mask, lse, delta, do)

  def k_block(dq_acc, j):
    kb = lax.dynamic_slice_in_dim(k, j * bk, bk, axis=2)
    vb = lax.dynamic_slice_in_dim(v, j * bk, bk, axis=2)
    valid = lax.dynamic_slice_in_dim(mask, j * bk, bk, axis=1)[:, None, None, :] != 0

    def q_step(i, state):
      dk, dv, dq_acc = state
      sl = lambda x: lax.dynamic_slice_in_dim(x, i * bq, bq, axis=2)
      qb, dob, lse_b, delta_b = sl(q), sl(do), sl(lse), sl(delta)
      s = tiles.bdot(qb, kb, (3, 3), cfg.precision) * scale
      p = jnp.where(valid, jnp.exp(s - lse_b[..., None]), 0.0)
      dv = dv + tiles.bdot(p.astype(dob.dtype), dob, (2, 2), cfg.precision)
      dp = tiles.bdot(dob, vb, (3, 3), cfg.precision)
      ds = p * (dp - delta_b[..., None])
      dk = dk + tiles.bdot(ds.astype(qb.dtype), qb, (2, 2), cfg.precision)
      dq_i = sl(dq_acc) + tiles.bdot(ds.astype(kb.dtype), kb, (3, 2), cfg.precision)
      dq_acc = lax.dynamic_update_slice_in_dim(dq_acc, dq_i, i * bq, axis=2)
      return dk, dv, dq_acc

    zeros = match_vma(jnp.zeros((b, h, bk, d), jnp.float32), *refs)
    dk, dv, dq_acc = lax.fori_loop(0, nqb, q_step, (zeros, zeros, dq_acc))
    return dq_acc, ((dk * scale).astype(k.dtype), dv.astype(v.dtype))

  dq0 = match_vma(jnp.zeros((b, h, lq, d), jnp.float32), *refs)
  dq, (dk, dv) = lax.scan(k_block, dq0, jnp.arange(nkb))
  lk = k.shape[2]
  dk = jnp.moveaxis(dk, 0, 2).reshape(b, h, lk, d)
  dv = jnp.moveaxis(dv, 0, 2).reshape(b, h, lk, d)
  return (dq * scale).astype(q.dtype), dk, dv


# ----------------------------------------------------------------------------------------------
# custom_vjp on padded operands. XLA works in [B, H, L, D], Pallas in [B, L, H, D].
# ----------------------------------------------------------------------------------------------
def _run_forward(cfg, q, k, v, mask, scale):
  if cfg.backend == "xla":
    t = lambda x: jnp.swapaxes(x, 1, 2)
    out, lse = _xla_forward(cfg, t(q), t(k), t(v), mask, scale)
    return t(out), lse
  return pallas_path.forward(cfg, q, k, v, mask, scale)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 5))
def _flash(cfg, q, k, v, mask, scale):
  return _run_forward(cfg, q, k, v, mask, scale)[0]


def _flash_fwd(cfg, q, k, v, mask, scale):
  out, lse = _run_forward(cfg, q, k, v, mask, scale)
  return out, (q, k, v, mask, out, lse)


def _flash_bwd(cfg, scale, res, do):
  q, k, v, mask, out, lse = res
  # delta_i = rowsum(dO_i * O_i): [B, H, Lq], O(L) memory.
  delta = jnp.einsum("blhd,blhd->bhl", do.astype(jnp.float32), out.astype(jnp.float32))
  do = do.astype(q.dtype)
  if cfg.backend == "xla":
    t = lambda x: jnp.swapaxes(x, 1, 2)
    dq, dk, dv = _xla_backward(cfg, t(q), t(k), t(v), mask, scale, lse, delta, t(do))
    dq, dk, dv = t(dq), t(dk), t(dv)
  else:
    dq, dk, dv = pallas_path.backward(cfg, q, k, v, mask, scale, lse, delta, do)
  return dq, dk, dv, None


_flash.defvjp(_flash_fwd, _flash_bwd)


def _tiles(impl, lq, lk, block_q, block_k):
  if impl == "xla":
    # A sequence that fits in one tile is its own tile, unpadded (no padded rows to compute).
    return min(lq, block_q or XLA_BLOCK_Q), min(lk, block_k or XLA_BLOCK_K)
  bq, bk = block_q or PALLAS_BLOCK_Q, block_k or PALLAS_BLOCK_K
  if bq != next_pow2(bq) or bk != next_pow2(bk) or min(bq, bk) < 16:
    raise ValueError(f"Pallas tiles must be powers of two >= 16, got {bq}, {bk}")
  return min(bq, max(16, next_pow2(lq))), min(bk, max(16, next_pow2(lk)))


# Which code runs for (impl, platform): see `choose_kernel`.
KERNELS = ("reference", "xla", "triton", "interpret", "mosaic", "cudnn")


def _cudnn_supports(q, key_mask) -> bool:
  """cuDNN's fused attention: fp16 / bf16 operands, head_dim a multiple of 8 up to 128, no mask,
  and this process on a GPU (JAX checks the cuDNN version while tracing, so a step cross-lowered
  for CUDA on another machine gets the Triton kernel)."""
  d = q.shape[-1]
  return (key_mask is None and q.dtype in (jnp.bfloat16, jnp.float16) and d % 8 == 0
          and d <= 128 and jax.default_backend() == "gpu")


def choose_kernel(impl: str, q, key_mask=None, interpret=None, kv_length=None) -> str:
  """The code `dot_product_attention` runs for `impl` on the target platform (one of KERNELS).

    impl         CPU          GPU                                   TPU
    'auto'       xla          cudnn where supported, else triton    mosaic; reference when short
    'pallas'     interpret    triton                                mosaic
    'xla'        xla          xla                                   xla
  'mosaic' is JAX's maintained TPU splash attention (jax.experimental.pallas.ops.tpu); 'cudnn' is
  `jax.nn.dot_product_attention(implementation='cudnn')`. `interpret=True` forces ssljax's Pallas
  kernels in the interpreter on any platform; `interpret=False` on CPU lowers them for GPU.
  Short on TPU: no key mask and q and k (`kv_length`, default q's length) both fit one 128-row
  tile, where the plain XLA attention moves fewer bytes than a kernel padded to 128 rows (MAE's
  50 visible tokens, DINO's 37-token local crops; benchmarks/tpu_attention.py).
  """
  platform = target_platform()
  resolved = resolve_impl(impl)
  if resolved in ("reference", "xla"):
    return resolved
  if interpret is None:
    interpret = platform == "cpu"
  if interpret:
    return "interpret"
  if platform == "tpu":
    lk = q.shape[1] if kv_length is None else kv_length
    short = impl == "auto" and key_mask is None and max(q.shape[1], lk) <= MOSAIC_BLOCK
    return "reference" if short else "mosaic"
  return "cudnn" if impl == "auto" and _cudnn_supports(q, key_mask) else "triton"


def _ssljax_flash(kernel, q, k, v, key_mask, block_q, block_k, precision):
  """ssljax's tiled attention (blockwise XLA or Pallas) on [B, L, H, Dh] operands."""
  b, lq, h, d = q.shape
  lk = k.shape[1]
  impl = "xla" if kernel == "xla" else "pallas"
  bq, bk = _tiles(impl, lq, lk, block_q, block_k)
  mask = jnp.ones((b, lk), jnp.int32) if key_mask is None else key_mask.astype(jnp.int32)
  mask = pad_axis(mask, 1, round_up(lk, bk))  # padded keys are masked out
  q_p = pad_axis(q, 1, round_up(lq, bq))
  k_p = pad_axis(k, 1, round_up(lk, bk))
  v_p = pad_axis(v, 1, round_up(lk, bk))
  if impl == "pallas":
    d_p = max(16, next_pow2(d))
    q_p, k_p, v_p = (pad_axis(x, 3, d_p) for x in (q_p, k_p, v_p))
    cfg = tiles.Config(bq, bk, "pallas", kernel == "interpret", precision)
  else:
    cfg = tiles.Config(bq, bk, "xla", precision=precision)
  out = _flash(cfg, q_p, k_p, v_p, mask, float(d) ** -0.5)
  return out[:, :lq, :, :d]


def _mosaic_splash(q, k, v, key_mask, interpret=False):
  """JAX's TPU splash attention (Mosaic), per example: [H, L, Dh], sequences padded to 128 rows.

  Chosen over JAX's TPU flash attention (`pallas.ops.tpu.flash_attention`) because it keeps one
  logsumexp per row ([H, Lq] float32) for the backward, where flash keeps its row max and sum
  broadcast over 128 lanes (2 x [B, H, Lq, 128] float32, 0.5 GiB per MAE decoder layer at 128
  images per chip); BENCHMARKS.md "Compiled for TPU" has the plans of both. Padded and masked
  keys get segment id 0, every query segment id 1, so no query attends to them.
  """
  from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as sk  # pylint: disable=import-outside-toplevel
  from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_mask as sm  # pylint: disable=import-outside-toplevel
  b, lq, h, d = q.shape
  lk = k.shape[1]
  lq_p, lk_p = round_up(lq, MOSAIC_BLOCK), round_up(lk, MOSAIC_BLOCK)
  t = lambda x, n: jnp.swapaxes(pad_axis(x, 1, n), 1, 2)  # noqa: E731
  kv_ids = jnp.ones((b, lk), jnp.int32) if key_mask is None else key_mask.astype(jnp.int32)
  ids = sk.SegmentIds(q=jnp.ones((b, lq_p), jnp.int32), kv=pad_axis(kv_ids, 1, lk_p))
  blk = MOSAIC_BLOCK
  sizes = sk.BlockSizes(block_q=blk, block_kv=blk, block_kv_compute=blk, block_q_dkv=blk,
                        block_kv_dkv=blk, block_kv_dkv_compute=blk, block_q_dq=blk,
                        block_kv_dq=blk)
  kernel = sk.make_splash_mha(sm.MultiHeadMask([sm.FullMask((lq_p, lk_p))] * h), head_shards=1,
                              q_seq_shards=1, block_sizes=sizes, interpret=interpret)
  scale = jnp.asarray(float(d) ** -0.5, q.dtype)   # splash takes q pre-scaled
  out = jax.vmap(kernel)(t(q, lq_p) * scale, t(k, lk_p), t(v, lk_p), segment_ids=ids)
  return jnp.swapaxes(out, 1, 2)[:, :lq]


# cuDNN's fused attention is given sequence lengths padded to a multiple of this.
CUDNN_SEQ_MULTIPLE = 64


def cudnn_attention(q, k, v):
  """`jax.nn.dot_product_attention(implementation='cudnn')` at any sequence length.

  q is padded to a multiple of CUDNN_SEQ_MULTIPLE rows and k, v likewise, the padded keys masked
  out by cuDNN's padding mask (`key_value_seq_lengths`) and the padded query rows dropped from
  the output. Unpadded, JAX's cuDNN path refuses the gradient at ViT's odd token counts (197,
  257: "Unsupported sequence length", jax 0.11.2 on an H100, BENCHMARKS.md "Device check"). Its
  kernels work in tiles of 64-128 rows, so the padding should add little work; the padded call
  is not yet timed on a GPU.
  """
  b, lq = q.shape[:2]
  lk = k.shape[1]
  scale = float(q.shape[-1]) ** -0.5
  lq_p, lk_p = round_up(lq, CUDNN_SEQ_MULTIPLE), round_up(lk, CUDNN_SEQ_MULTIPLE)
  kv_lengths = None if lk_p == lk else jnp.full((b,), lk, jnp.int32)
  out = jax.nn.dot_product_attention(
      pad_axis(q, 1, lq_p), pad_axis(k, 1, lk_p), pad_axis(v, 1, lk_p), scale=scale,
      key_value_seq_lengths=kv_lengths, implementation="cudnn")
  return out[:, :lq]


_CUDNN_REFUSED: set = set()


def _cudnn_or_triton(q, k, v, block_q, block_k, precision):
  """cuDNN where JAX accepts the shapes (it checks while tracing), else ssljax's Triton kernel,
  with one line saying so per refused shape."""
  try:
    return cudnn_attention(q, k, v)
  except NotImplementedError as e:
    key = (q.shape, k.shape, str(q.dtype))
    if key not in _CUDNN_REFUSED:
      _CUDNN_REFUSED.add(key)
      print(f"ssljax: cuDNN attention refused q {list(q.shape)} {q.dtype} ({e}); "
            "running ssljax's Triton kernel instead", flush=True)
    return _ssljax_flash("triton", q, k, v, None, block_q, block_k, precision)


def _local_attention(kernel, q, k, v, key_mask, block_q, block_k, precision):
  """One device's (or one shard's) attention with the chosen kernel."""
  if kernel == "reference":
    return attention_reference(q, k, v, key_mask)
  if kernel == "mosaic":
    return _mosaic_splash(q, k, v, key_mask)
  if kernel == "cudnn":
    return _cudnn_or_triton(q, k, v, block_q, block_k, precision)
  return _ssljax_flash(kernel, q, k, v, key_mask, block_q, block_k, precision)


def dot_product_attention(q, k, v, key_mask=None, impl: str = "auto", *, block_q=None,
                          block_k=None, interpret=None, precision=None):
  """softmax(q k^T / sqrt(Dh), masked) v with the implementation picked by `impl`.

  Traced under a mesh (`ssljax.parallel.tracing`, as the trainer's step is), the kernel runs
  under `shard_map`: per batch shard, heads split over 'model' when the head count allows
  (`ssljax.kernels.sharding`); the maths is the same.

  Args:
    q: [B, Lq, H, Dh]; k, v: [B, Lk, H, Dh] (float32 or bfloat16; Dh 32-128 on GPU).
    key_mask: optional [B, Lk] bool, True where a key may be attended to.
    impl: 'auto' | 'pallas' | 'xla' | 'reference' (`choose_kernel` says what runs where).
    block_q, block_k: tile sizes of ssljax's kernels (powers of two >= 16 for Pallas).
    interpret: run ssljax's Pallas kernels in the interpreter; None = only on CPU.
    precision: lax.Precision of ssljax's kernels' dots (module doc); None = platform default.

  Returns:
    [B, Lq, H, Dh] in q's dtype. Differentiable in q, k, v.
  """
  kernel = choose_kernel(impl, q, key_mask, interpret, kv_length=k.shape[1])
  body = functools.partial(_local_attention, kernel, block_q=block_q, block_k=block_k,
                           precision=precision)
  mesh = sharding.kernel_mesh()
  if mesh is None or kernel == "reference":
    return body(q, k, v, key_mask)
  bax = sharding.batch_axes(mesh, [q.shape[0]])
  hax = sharding.model_axis(mesh, q.shape[2])
  if not bax and hax is None and kernel == "xla":
    return body(q, k, v, key_mask)   # plain HLO: XLA partitions it as it is
  qs = sharding.batch_spec(bax, 4, {2: hax})
  if key_mask is None:
    fn = sharding.shard_mapped(lambda q, k, v: body(q, k, v, None), mesh, (qs, qs, qs), qs)
    return fn(q, k, v)
  fn = sharding.shard_mapped(body, mesh, (qs, qs, qs, sharding.batch_spec(bax, 2)), qs)
  return fn(q, k, v, key_mask)
