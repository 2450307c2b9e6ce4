"""Contrastive losses: SimCLR NT-Xent, InfoNCE, CLIP, SigLIP sigmoid loss, SupCon.

All functions are pure, take plain arrays and compute in float32. They operate on the
GLOBAL batch: under `jax.jit` with a sharded batch XLA inserts the collectives.

`nt_xent`, `info_nce`, `clip_loss`, `sigmoid_contrastive` and `supcon` take `impl=`:
  'auto' (default)  the tiled kernels whenever the batch is split over a mesh (global-batch
                    statistics from per-shard kernels under shard_map), or when the logit matrix
                    would exceed FULL_MATRIX_MAX_LOGITS entries; the full matrix otherwise;
  'reference'       the full-matrix code below (holds the N x N logits);
  'xla' | 'pallas'  the tiled kernels of `ssljax.kernels.contrastive`, which never hold the N x N
                    logits (O(N) memory; same value and gradients up to float32 rounding).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from ssljax.kernels import contrastive as _tiled
from ssljax.kernels import sharding as _sharding

# Below this many logits (rows x columns; 8192^2, 256 MiB of float32) 'auto' computes the full
# matrix on one device: faster than the tiled loops there (BENCHMARKS.md, contrastive memory).
FULL_MATRIX_MAX_LOGITS = 2 ** 26


def l2_normalize(x: jax.Array, axis: int = -1, eps: float = 1e-12) -> jax.Array:
  """x / max(||x||, eps) along `axis` (the torch.nn.functional.normalize convention)."""
  norm = jnp.sqrt(jnp.sum(jnp.square(x), axis=axis, keepdims=True))
  return x / jnp.maximum(norm, eps)


def _pick_impl(impl: str, rows: int, cols: int) -> str:
  """'reference' or the tiled `impl` for a rows x cols logit matrix (see the module doc)."""
  if impl not in _tiled.IMPLS:
    raise ValueError(f"impl={impl!r}; expected one of {_tiled.IMPLS}")
  if impl != "auto":
    return impl
  mesh = _sharding.kernel_mesh()
  if mesh is not None and _sharding.batch_axes(mesh, [rows, cols]):
    return "auto"
  return "reference" if rows * cols <= FULL_MATRIX_MAX_LOGITS else "auto"


def nt_xent(z1: jax.Array, z2: jax.Array, temperature: float = 0.5, *,
            impl: str = "auto") -> jax.Array:
  """SimCLR's normalised-temperature cross entropy.

  From "A Simple Framework for Contrastive Learning of Visual Representations".

  Args:
    z1: [N, D] embeddings of the first view.
    z2: [N, D] embeddings of the second view (row i is the positive of z1 row i).
    temperature: softmax temperature T.
    impl: 'auto' | 'reference' (full matrix) | 'xla' | 'pallas' (tiled kernels).

  Returns:
    Scalar: mean over the 2N rows of the cross entropy of the 2N x 2N cosine
    logits / T, with the self-similarity removed (2N - 1 candidates per row).
  """
  impl = _pick_impl(impl, 2 * z1.shape[0], 2 * z1.shape[0])
  if impl != "reference":
    return _tiled.nt_xent_loss(l2_normalize(z1.astype(jnp.float32)),
                               l2_normalize(z2.astype(jnp.float32)), 1.0 / temperature, impl=impl)
  n = z1.shape[0]
  z = l2_normalize(jnp.concatenate([z1, z2], axis=0).astype(jnp.float32))
  logits = (z @ z.T) / temperature
  logits = jnp.where(jnp.eye(2 * n, dtype=bool), -jnp.inf, logits)
  pos_index = jnp.concatenate([jnp.arange(n, 2 * n), jnp.arange(0, n)])
  pos = logits[jnp.arange(2 * n), pos_index]
  return jnp.mean(jax.nn.logsumexp(logits, axis=-1) - pos)


def info_nce(q: jax.Array, k: jax.Array, temperature: float = 0.2, *,
             impl: str = "auto") -> jax.Array:
  """One-directional InfoNCE with positives on the diagonal.

  Args:
    q: [N, D] queries.
    k: [N, D] keys; k[i] is the positive of q[i], all other rows are negatives.
    temperature: softmax temperature T.
    impl: 'auto' | 'reference' (full matrix) | 'xla' | 'pallas' (tiled kernels).

  Returns:
    Scalar mean cross entropy over the N rows of normalise(q) normalise(k)^T / T.
    (MoCo v3 multiplies this by 2T and symmetrises it in the method.)
  """
  impl = _pick_impl(impl, q.shape[0], k.shape[0])
  q = l2_normalize(q.astype(jnp.float32))
  k = l2_normalize(k.astype(jnp.float32))
  if impl != "reference":
    return _tiled.info_nce_loss(q, k, 1.0 / temperature, impl=impl)
  logits = (q @ k.T) / temperature
  return jnp.mean(jax.nn.logsumexp(logits, axis=-1) - jnp.diagonal(logits))


def clip_loss(x: jax.Array, y: jax.Array, log_scale: jax.Array, *,
              impl: str = "auto") -> jax.Array:
  """CLIP's symmetric InfoNCE ("Learning Transferable Visual Models From Natural Language
  Supervision").

  Args:
    x: [N, D] image embeddings, y: [N, D] text embeddings (normalised here); (x_i, y_i) pair.
    log_scale: scalar log of the logit scale (CLIP learns it, init log(1 / 0.07)).
    impl: 'auto' | 'reference' (full matrix) | 'xla' | 'pallas' (tiled kernels).

  Returns:
    The mean of the image->text and text->image cross-entropies of
    logits = exp(log_scale) * x y^T, positives on the diagonal.
  """
  impl = _pick_impl(impl, x.shape[0], y.shape[0])
  x = l2_normalize(x.astype(jnp.float32))
  y = l2_normalize(y.astype(jnp.float32))
  scale = jnp.exp(jnp.asarray(log_scale, jnp.float32))
  if impl != "reference":
    return _tiled.info_nce_loss(x, y, scale, bidirectional=True, impl=impl)
  logits = scale * (x @ y.T)
  pos = jnp.diagonal(logits)
  row = jax.nn.logsumexp(logits, axis=1) - pos
  col = jax.nn.logsumexp(logits, axis=0) - pos
  return 0.5 * (jnp.mean(row) + jnp.mean(col))


def sigmoid_contrastive(x: jax.Array, y: jax.Array, log_t: jax.Array, b: jax.Array, *,
                        impl: str = "auto") -> jax.Array:
  """SigLIP's pairwise sigmoid loss ("Sigmoid Loss for Language Image Pre-Training").

  Args:
    x: [N, D], y: [N, D] paired embeddings (normalised here).
    log_t: scalar log temperature; logits are multiplied by exp(log_t).
    b: scalar bias.
    impl: 'auto' | 'reference' (full matrix) | 'xla' | 'pallas' (tiled kernels).

  Returns:
    -sum(log_sigmoid(label * logits)) / N, label +1 on the diagonal, -1 elsewhere.
  """
  impl = _pick_impl(impl, x.shape[0], y.shape[0])
  x = l2_normalize(x.astype(jnp.float32))
  y = l2_normalize(y.astype(jnp.float32))
  if impl != "reference":
    return _tiled.sigmoid_loss(x, y, jnp.exp(log_t), b, impl=impl)
  n = x.shape[0]
  logits = jnp.exp(log_t) * (x @ y.T) + b
  labels = 2.0 * jnp.eye(n, dtype=jnp.float32) - 1.0
  return -jnp.sum(jax.nn.log_sigmoid(labels * logits)) / n


def supcon(z: jax.Array, labels: jax.Array, temperature: float = 0.1,
           impl: str = "auto") -> jax.Array:
  """Supervised contrastive loss, L_out form ("Supervised Contrastive Learning").

  Args:
    z: [V, N, D] embeddings of V views of N images.
    labels: [N] integer class labels.
    temperature: softmax temperature T.
    impl: 'auto' | 'reference' (full matrix) | 'xla' | 'pallas' (tiled kernels: the softmax
      denominators come from the O(N)-memory row logsumexp with the self-similarity excluded, and
      the positives' logits from per-label feature sums, so no N x N array is formed).

  Returns:
    Scalar: for every anchor (V*N of them), minus the mean over its positives (same label,
    not itself) of log softmax over all other V*N - 1 samples; averaged over anchors.
  """
  v, n, d = z.shape
  impl = _pick_impl(impl, v * n, v * n)
  # Anchors sample-major (row i * V + v): the loss is a mean over anchors, and a batch sharded over
  # devices stays sharded, where a view-major merge reshuffles it.
  feats = l2_normalize(jnp.swapaxes(z, 0, 1).reshape(n * v, d).astype(jnp.float32))
  lab = jnp.repeat(labels, v)
  if impl != "reference":
    return _supcon_tiled(feats, lab, temperature, impl)
  logits = (feats @ feats.T) / temperature
  self_mask = jnp.eye(v * n, dtype=bool)
  logits = jnp.where(self_mask, -jnp.inf, logits)
  log_prob = logits - jax.nn.logsumexp(logits, axis=-1, keepdims=True)
  pos = (lab[:, None] == lab[None, :]) & ~self_mask
  pos_f = pos.astype(jnp.float32)
  mean_log_prob_pos = jnp.sum(jnp.where(pos, log_prob, 0.0), axis=-1) / jnp.maximum(pos_f.sum(-1), 1.0)
  return -jnp.mean(mean_log_prob_pos)


def _supcon_tiled(feats: jax.Array, lab: jax.Array, temperature: float, impl: str) -> jax.Array:
  """`supcon` from the tiled row logsumexp and per-label sums (O(N D) memory).

  For anchor i with positives P(i) (same label, not i): sum_p <f_i, f_p> = <f_i, S[y_i] - f_i>
  with S[y] the sum of the features labelled y. Labels are arbitrary integers: they are ranked by
  sorting, so the per-label sums are a segment sum with a static number of segments.
  """
  m = feats.shape[0]
  order = jnp.argsort(lab)
  sorted_lab = lab[order]
  group_sorted = jnp.cumsum(jnp.concatenate([jnp.zeros((1,), jnp.int32),
                                             (sorted_lab[1:] != sorted_lab[:-1]).astype(jnp.int32)]))
  group = jnp.zeros((m,), jnp.int32).at[order].set(group_sorted)
  sums = jax.ops.segment_sum(feats, group, num_segments=m)
  counts = jax.ops.segment_sum(jnp.ones((m,), jnp.float32), group, num_segments=m)
  n_pos = counts[group] - 1.0
  pos_logit_sum = jnp.sum(feats * (sums[group] - feats), axis=-1) / temperature
  lse = _tiled.similarity_lse(feats, feats, 1.0 / temperature, exclude_diagonal=True, impl=impl)
  has_pos = n_pos > 0
  mean_log_prob_pos = jnp.where(has_pos, pos_logit_sum / jnp.maximum(n_pos, 1.0) - lse, 0.0)
  return -jnp.mean(mean_log_prob_pos)
