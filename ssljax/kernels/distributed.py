"""Cross-device contrastive losses: each device scores its row block against all keys.

Every function here runs INSIDE `jax.shard_map` over a 1-D device axis `axis_name` of size P.
Each device holds a row block of the global batch: local q [n, D] are global rows
idx * n ... idx * n + n - 1 (idx = lax.axis_index(axis_name)), local keys likewise. The global
diagonal (positives; NT-Xent's self-similarity) is where the global row index equals the global
key index.

Two ways to see all keys, picked by `method=`:
  'all_gather'  gather the keys (P * m x D, cheap next to the N x N logits) and run the tiled
                kernel once; autodiff of all_gather is a reduce-scatter, so dk goes back to the
                owning device.
  'ring'        P steps; at each step the device scores its rows against the key block it holds,
                merges the running logsumexp (logaddexp) and passes the block to its neighbour with
                `ppermute`. Peak key memory is one block. The transpose of each ppermute sends the
                key gradients back around the ring to their owners.

The per-block work is `ssljax.kernels.contrastive` with `impl=` ('auto' | 'pallas' | 'xla' |
'reference'). Losses are means over the GLOBAL batch and come back replicated on every device.
Replicated scalars (scale, bias) get their gradient summed over devices by autodiff.

Pallas in interpret mode (CPU) needs `check_vma=False` on the enclosing shard_map in jax 0.10.2:
its interpreter slices per-device buffers with replicated grid indices, which the vma checker
rejects. The 'xla' path and the compiled GPU kernels work with check_vma=True.

Example:
  loss_fn = jax.shard_map(
      functools.partial(sharded_info_nce_loss, axis_name="data", method="ring"),
      mesh=mesh, in_specs=(P("data"), P("data"), P()), out_specs=P())
  loss, grads = jax.value_and_grad(loss_fn, argnums=(0, 1, 2))(q, k, scale)
"""
from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from ssljax.kernels import contrastive as _c

METHODS = ("all_gather", "ring")


def _check_method(method):
  if method not in METHODS:
    raise ValueError(f"method={method!r}; expected one of {METHODS}")


def _ring_blocks(k, axis_name):
  """Yields (step, key block, index of the device that owns it) around the ring, statically."""
  p = lax.axis_size(axis_name)
  idx = lax.axis_index(axis_name)
  perm = [(i, (i + 1) % p) for i in range(p)]
  block = k
  for t in range(p):
    yield t, block, (idx - t) % p
    if t + 1 < p:
      block = lax.ppermute(block, axis_name, perm)


def sharded_similarity_lse(q, k, scale, axis_name, *, method="all_gather",
                           exclude_diagonal=False, diag_offset=0, impl="auto", **tile_kw):
  """Row logsumexp of the local rows of scale * q k^T against the keys of ALL devices.

  Args:
    q: [n, D] local rows (global rows idx*n ... idx*n+n-1); k: [m, D] local keys.
    scale: scalar, differentiable.
    axis_name: the shard_map axis the batch is split over.
    method: 'all_gather' or 'ring'.
    exclude_diagonal: drop the global diagonal (global key index == global row index + offset).
    diag_offset: that global offset (0: positives / self-pairs on the diagonal; may be traced).
    impl: kernel implementation for each block; tile_kw: block_q, block_k, interpret.

  Returns:
    [n] float32 logsumexp over the P * m keys (minus the excluded diagonal).
  """
  _check_method(method)
  n, m = q.shape[0], k.shape[0]
  idx = lax.axis_index(axis_name)
  if method == "all_gather":
    k_all = lax.all_gather(k, axis_name, tiled=True)
    return _c.similarity_lse(q, k_all, scale, diag_offset=idx * n + diag_offset,
                             exclude_diagonal=exclude_diagonal, impl=impl, **tile_kw)
  lse = None
  for _, block, src in _ring_blocks(k, axis_name):
    step = _c.similarity_lse(q, block, scale, diag_offset=idx * n - src * m + diag_offset,
                             exclude_diagonal=exclude_diagonal, impl=impl, **tile_kw)
    lse = step if lse is None else jnp.logaddexp(lse, step)
  return lse


def sharded_sigmoid_pair_sums(q, k, scale, bias, axis_name, *, method="all_gather",
                              diag_offset=0, impl="auto", **tile_kw):
  """Per-local-row sum over ALL keys of log_sigmoid(label * (scale q.k + bias)).

  Args:
    q: [n, D] local rows; k: [m, D] local keys; label +1 on the global diagonal, -1 elsewhere.
    scale, bias: scalars, differentiable.
    axis_name, method, diag_offset, impl, tile_kw: as in `sharded_similarity_lse`.

  Returns:
    [n] float32.
  """
  _check_method(method)
  n, m = q.shape[0], k.shape[0]
  idx = lax.axis_index(axis_name)
  if method == "all_gather":
    k_all = lax.all_gather(k, axis_name, tiled=True)
    return _c.sigmoid_pair_sums(q, k_all, scale, bias, diag_offset=idx * n + diag_offset,
                                impl=impl, **tile_kw)
  total = None
  for _, block, src in _ring_blocks(k, axis_name):
    step = _c.sigmoid_pair_sums(q, block, scale, bias, diag_offset=idx * n - src * m + diag_offset,
                                impl=impl, **tile_kw)
    total = step if total is None else total + step
  return total


def _global_mean(x, axis_name):
  return lax.psum(jnp.sum(x), axis_name) / (x.shape[0] * lax.axis_size(axis_name))


def sharded_info_nce_loss(q, k, scale, axis_name, *, bidirectional=False, method="all_gather",
                          impl="auto", **tile_kw):
  """`contrastive.info_nce_loss` over the global batch, from local shards.

  Args:
    q: [n, D], k: [n, D] local normalised rows; global k[i] is the positive of global q[i].
    scale: 1/T, differentiable. bidirectional: CLIP's average of both directions.
    axis_name, method, impl, tile_kw: as in `sharded_similarity_lse`.

  Returns:
    Scalar float32, the same on every device.
  """
  pos = _c.positive_logits(q, k, scale)
  kw = dict(method=method, impl=impl, **tile_kw)
  row = sharded_similarity_lse(q, k, scale, axis_name, **kw)
  loss = _global_mean(row - pos, axis_name)
  if not bidirectional:
    return loss
  col = sharded_similarity_lse(k, q, scale, axis_name, **kw)
  return 0.5 * (loss + _global_mean(col - pos, axis_name))


def sharded_nt_xent_loss(z1, z2, scale, axis_name, *, method="all_gather", impl="auto",
                         **tile_kw):
  """`contrastive.nt_xent_loss` over the global batch, from local shards.

  The 2N candidates are ordered device by device ([z1_0; z2_0; z1_1; z2_1; ...]); the loss is
  invariant to that order, and every positive pair lives on one device.

  Args:
    z1: [n, D], z2: [n, D] local normalised views. scale: 1/T, differentiable.
    axis_name, method, impl, tile_kw: as in `sharded_similarity_lse`.

  Returns:
    Scalar float32, the same on every device.
  """
  z = jnp.concatenate([z1, z2], axis=0)
  partner = jnp.concatenate([z2, z1], axis=0)
  lse = sharded_similarity_lse(z, z, scale, axis_name, method=method, exclude_diagonal=True,
                               impl=impl, **tile_kw)
  return _global_mean(lse - _c.positive_logits(z, partner, scale), axis_name)


def sharded_sigmoid_loss(x, y, scale, bias, axis_name, *, method="all_gather", impl="auto",
                         **tile_kw):
  """`contrastive.sigmoid_loss` (SigLIP) over the global batch, from local shards.

  Args:
    x: [n, D], y: [n, D] local normalised rows. scale: exp(log_t); bias: b. Differentiable.
    axis_name, method, impl, tile_kw: as in `sharded_similarity_lse`.

  Returns:
    Scalar float32, the same on every device.
  """
  sums = sharded_sigmoid_pair_sums(x, y, scale, bias, axis_name, method=method, impl=impl,
                                   **tile_kw)
  return -_global_mean(sums, axis_name)
