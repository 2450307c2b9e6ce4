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
  'pallas'     the same algorithm as Pallas kernels (Triton on GPU, Mosaic on TPU,
               interpreted on CPU).
  'auto'       'pallas' on GPU and TPU, 'xla' on CPU.
The per-tile math the tiled paths share is in _contrastive_tiles.py, the XLA path in
_contrastive_xla.py, the Pallas kernels in _contrastive_pallas.py (Triton) and
_contrastive_mosaic.py (TPU); this module holds the reference, the dispatch and the custom_vjp.

Public API:
  similarity_lse(q, k, scale, ...)        -> row logsumexp [N] (and column logsumexp [M])
  sigmoid_pair_sums(q, k, scale, bias)    -> per-row sum_j log_sigmoid(label_ij * logits_ij) [N]
  positive_logits(q, k, scale, bias)      -> scale * <q_i, k_i> + bias [N]
  info_nce_loss / nt_xent_loss / sigmoid_loss: the losses on normalised inputs.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from jax.sharding import PartitionSpec as P

from ssljax.kernels import _contrastive_mosaic as mosaic_path
from ssljax.kernels import _contrastive_pallas as pallas_path
from ssljax.kernels import _contrastive_tiles as tiles
from ssljax.kernels import _contrastive_xla as xla_path
from ssljax.kernels import sharding
from ssljax.kernels._common import (IMPLS, default_interpret, match_vma, next_pow2,
                                    resolve_impl, round_up, target_platform)

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
MOSAIC_BLOCK_Q = 256
MOSAIC_BLOCK_K = 512
# Platforms where impl='auto' runs the Pallas kernels (elsewhere the blockwise XLA path).
PALLAS_ON = ("gpu", "tpu")


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
# custom_vjp glue.
# ----------------------------------------------------------------------------------------------
_BACKENDS = {"xla": xla_path, "pallas": pallas_path, "mosaic": mosaic_path}


def _forward(cfg, q, k, scale, bias, off):
  return _BACKENDS[cfg.backend].forward(cfg, q, k, scale, bias, off)


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
  dq, dk, ds, db = _BACKENDS[cfg.backend].backward(cfg, q, k, scale, bias, off, row, col, g_row,
                                                   g_col)
  return dq, dk, ds.astype(scale.dtype), db.astype(bias.dtype), None


_tiled.defvjp(_tiled_fwd, _tiled_bwd)


def _make_config(mode, exclude_diagonal, with_col, impl, n, m, block_q, block_k, interpret,
                 precision):
  if impl == "xla":
    bq = min(block_q or XLA_BLOCK_Q, round_up(n, 8))
    bk = min(block_k or XLA_BLOCK_K, round_up(m, 8))
    return tiles.Config(mode, exclude_diagonal, with_col, bq, bk, "xla", precision=precision)
  interpret = default_interpret() if interpret is None else interpret
  if target_platform() == "tpu":
    # Mosaic: both operands take both roles (rows, then columns), so both tiles are multiples of
    # the 128-lane vreg width.
    bq, bk = block_q or MOSAIC_BLOCK_Q, block_k or MOSAIC_BLOCK_K
    if bq % 128 or bk % 128:
      raise ValueError(f"Mosaic tiles must be multiples of 128, got {bq}, {bk}")
    bq, bk = min(bq, round_up(n, 128)), min(bk, round_up(m, 128))
    return tiles.Config(mode, exclude_diagonal, with_col, bq, bk, "mosaic", interpret, precision)
  bq = block_q or PALLAS_BLOCK_Q
  bk = block_k or PALLAS_BLOCK_K
  if bq != next_pow2(bq) or bk != next_pow2(bk) or min(bq, bk) < 16:
    raise ValueError(f"Pallas tiles must be powers of two >= 16, got {bq}, {bk}")
  bq = min(bq, max(16, next_pow2(n)))
  bk = min(bk, max(16, next_pow2(m)))
  return tiles.Config(mode, exclude_diagonal, with_col, bq, bk, "pallas", interpret, precision)


def _same_vma(*args):
  """Under shard_map, makes all kernel operands vary over the same axes (so that the custom_vjp's
  cotangents type-check; autodiff of the cast psums the gradients of replicated inputs)."""
  return match_vma(args, *args)


def _sharded_rows(impl, q, k):
  """(mesh, data-like axes) to split the rows of q and k over, or (mesh, ()) to run unsharded."""
  mesh = sharding.kernel_mesh()
  if mesh is None or impl == "reference":
    return mesh, ()
  return mesh, sharding.batch_axes(mesh, [q.shape[0], k.shape[0]])


def _scalar(x):
  return jnp.asarray(x, jnp.float32).reshape(())


# ----------------------------------------------------------------------------------------------
# Public primitives.
# ----------------------------------------------------------------------------------------------
def similarity_lse(q, k, scale=1.0, *, diag_offset=0, exclude_diagonal=False, with_col=False,
                   impl="auto", block_q=None, block_k=None, interpret=None,
                   sharded="all_gather", precision=None):
  """Row (and column) logsumexp of scale * q k^T without holding the N x M matrix.

  Traced under a mesh that splits the batch (`ssljax.parallel.tracing`, as the trainer's step
  is), the rows of q and k are split over the data-like axes and each device scores its rows
  against the keys of all devices under `shard_map` (`ssljax.kernels.distributed`), so the
  logsumexps are over the global batch.

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
    sharded: how a sharded batch sees all keys: 'all_gather' or 'ring' (see distributed.py).
    precision: lax.Precision of the tile dots; None = the platform default (TF32 for float32
      on NVIDIA GPUs, bf16 passes on TPU); lax.Precision.HIGHEST = full float32.

  Returns:
    row_lse [N] float32, or (row_lse [N], col_lse [M]) when with_col.
  """
  impl = resolve_impl(impl, PALLAS_ON)
  tile_kw = dict(block_q=block_q, block_k=block_k, interpret=interpret, precision=precision)
  mesh, bax = _sharded_rows(impl, q, k)
  if bax:
    from ssljax.kernels import distributed  # pylint: disable=import-outside-toplevel

    def body(q, k, scale, off):
      kw = dict(method=sharded, exclude_diagonal=exclude_diagonal, impl=impl, **tile_kw)
      row = distributed.sharded_similarity_lse(q, k, scale, bax, diag_offset=off, **kw)
      if not with_col:
        return row
      return row, distributed.sharded_similarity_lse(k, q, scale, bax, diag_offset=-off, **kw)

    rows = sharding.batch_spec(bax, 1)
    fn = sharding.shard_mapped(body, mesh, (sharding.batch_spec(bax, 2),) * 2 + (P(), P()),
                               (rows, rows) if with_col else rows)
    return fn(q, k, _scalar(scale), jnp.asarray(diag_offset, jnp.int32))
  return _local_similarity_lse(q, k, scale, diag_offset, exclude_diagonal, with_col, impl,
                               **tile_kw)


def _local_similarity_lse(q, k, scale, diag_offset, exclude_diagonal, with_col, impl, *,
                          block_q, block_k, interpret, precision):
  """`similarity_lse` on one device (or one shard, inside shard_map)."""
  if impl == "reference":
    return similarity_lse_reference(q, k, scale, diag_offset=diag_offset,
                                    exclude_diagonal=exclude_diagonal, with_col=with_col)
  cfg = _make_config("softmax", exclude_diagonal, with_col, impl, q.shape[0], k.shape[0],
                     block_q, block_k, interpret, precision)
  row, col = _tiled(cfg, *_same_vma(q, k, _scalar(scale), jnp.float32(0.0),
                                    jnp.asarray(diag_offset, jnp.int32)))
  return (row, col) if with_col else row


def sigmoid_pair_sums(q, k, scale, bias, *, diag_offset=0, impl="auto", block_q=None,
                      block_k=None, interpret=None, sharded="all_gather", precision=None):
  """Per-row sum over all keys of log_sigmoid(label_ij * (scale <q_i, k_j> + bias)), tiled.

  Under a mesh that splits the batch, over the global batch as in `similarity_lse`.

  Args:
    q: [N, D], k: [M, D] normalised embeddings.
    scale: scalar exp(log_t); bias: scalar b. Both differentiable.
    diag_offset: label_ij = +1 where j == i + diag_offset, -1 elsewhere.
    impl, block_q, block_k, interpret, sharded: as in `similarity_lse`.

  Returns:
    [N] float32.
  """
  impl = resolve_impl(impl, PALLAS_ON)
  tile_kw = dict(block_q=block_q, block_k=block_k, interpret=interpret, precision=precision)
  mesh, bax = _sharded_rows(impl, q, k)
  if bax:
    from ssljax.kernels import distributed  # pylint: disable=import-outside-toplevel

    def body(q, k, scale, bias, off):
      return distributed.sharded_sigmoid_pair_sums(q, k, scale, bias, bax, diag_offset=off,
                                                   method=sharded, impl=impl, **tile_kw)

    spec = sharding.batch_spec(bax, 2)
    fn = sharding.shard_mapped(body, mesh, (spec, spec, P(), P(), P()),
                               sharding.batch_spec(bax, 1))
    return fn(q, k, _scalar(scale), _scalar(bias), jnp.asarray(diag_offset, jnp.int32))
  return _local_sigmoid_pair_sums(q, k, scale, bias, diag_offset, impl, **tile_kw)


def _local_sigmoid_pair_sums(q, k, scale, bias, diag_offset, impl, *, block_q, block_k,
                             interpret, precision):
  """`sigmoid_pair_sums` on one device (or one shard, inside shard_map)."""
  if impl == "reference":
    return sigmoid_pair_sums_reference(q, k, scale, bias, diag_offset=diag_offset)
  cfg = _make_config("sigmoid", False, False, impl, q.shape[0], k.shape[0], block_q, block_k,
                     interpret, precision)
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
    Scalar float32: mean over the 2N rows z_i of z1 and z2 of
    lse_{j != i}(scale z_i.z_j) - scale z_i.(its other view).
  """
  # Rows sample-major (z1[0], z2[0], z1[1], ...): the same 2N rows as [z1; z2], but a batch
  # sharded over devices stays sharded, where the view-major concatenation reshuffles it.
  n, d = z1.shape
  z = jnp.stack([z1, z2], axis=1).reshape(2 * n, d)
  partner = jnp.stack([z2, z1], axis=1).reshape(2 * n, d)
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
