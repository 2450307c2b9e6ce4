"""Label-free diagnostics of an embedding: collapse, effective rank, alignment, uniformity.

- Per-dimension std of L2-normalised embeddings ("Exploring Simple Siamese Representation
  Learning", SimSiam, Sec. 4.1): 0 when every input maps to one point, about 1/sqrt(D) when
  the normalised embeddings spread like an isotropic Gaussian.
- RankMe ("RankMe: Assessing the Downstream Performance of Pretrained Self-Supervised
  Representations by Their Rank", Garrido et al.): exp of the entropy of the normalised
  singular values, a smooth rank between 1 and min(N, D).
- Alignment and uniformity ("Understanding Contrastive Representation Learning through
  Alignment and Uniformity on the Hypersphere", Wang & Isola).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from ssljax.evaluate.knn import _features, _l2_normalize, _positive_int


def _embeddings(z, name: str = "z", min_rows: int = 2) -> np.ndarray:
  """[N, D] float32 host copy of z with N >= min_rows, or ValueError."""
  z = _features(z, name)
  if z.shape[0] < min_rows:
    raise ValueError(f"{name} has {z.shape[0]} rows; expected at least {min_rows}.")
  return z


@jax.jit
def _embedding_std(z):
  """z [N, D] -> scalar mean over dims of the std over rows of the normalised rows."""
  return jnp.mean(jnp.std(_l2_normalize(z), axis=0))


def embedding_std(z, centre: bool = False) -> float:
  """Mean over dimensions of the per-dimension std of the L2-normalised embeddings.

  Args:
    z: [N, D] embeddings, N >= 2.
    centre: subtract the mean embedding before normalising, so that a vector shared by every
      row (e.g. pooled positional content) does not count as collapse; a real collapse (all
      rows at one point) still gives 0.

  Returns:
    mean_d std_n(z_n / ||z_n||)[d] (population std). 0 for a collapsed embedding,
    about 1/sqrt(D) for a healthy, isotropically spread one.
  """
  z = _embeddings(z)
  if centre:
    z = z - z.mean(0, keepdims=True)
  return float(_embedding_std(jnp.asarray(z)))


@jax.jit
def _rankme(z, eps):
  """z [N, D] -> scalar exp(entropy) of the eps-smoothed normalised singular values."""
  s = jnp.linalg.svd(z, compute_uv=False)
  p = s / jnp.maximum(jnp.sum(s), 1e-30) + eps
  return jnp.exp(-jnp.sum(p * jnp.log(p)))


def rankme(z, eps: float = 1e-7) -> float:
  """RankMe effective rank of the embedding matrix (Garrido et al.).

  With singular values s_k of z (not centred, not normalised, as in the paper),
  p_k = s_k / sum(s) + eps and RankMe = exp(-sum_k p_k log p_k).

  Args:
    z: [N, D] embeddings.
    eps: the paper's smoothing constant.

  Returns:
    A float in [1, min(N, D)] (up to eps): about 1 for a collapsed embedding, about
    min(N, D) for an isotropic Gaussian one with N >> D.
  """
  return float(_rankme(jnp.asarray(_embeddings(z, min_rows=1)), eps))


@jax.jit
def _alignment(z1, z2, alpha):
  """z1, z2 [N, D] -> scalar mean ||normalise(z1) - normalise(z2)||^alpha over rows."""
  d = jnp.linalg.norm(_l2_normalize(z1) - _l2_normalize(z2), axis=-1)
  return jnp.mean(d ** alpha)


def alignment(z1, z2, alpha: float = 2.0) -> float:
  """Wang & Isola's alignment: mean ||f(x) - f(y)||^alpha over positive pairs.

  Args:
    z1: [N, D] embeddings of one view (L2-normalised here).
    z2: [N, D] embeddings of the other view; row n is the positive of z1 row n.
    alpha: exponent (the paper uses 2).

  Returns:
    Mean over rows, in [0, 2^alpha]; 0 when every pair is identical in direction.
  """
  a = _embeddings(z1, "z1", min_rows=1)
  b = _embeddings(z2, "z2", min_rows=1)
  if a.shape != b.shape:
    raise ValueError(f"z1 has shape {a.shape} but z2 has shape {b.shape}; expected equal shapes.")
  if not np.isfinite(alpha) or alpha <= 0:
    raise ValueError(f"alpha must be a finite float > 0, got {alpha!r}.")
  return float(_alignment(jnp.asarray(a), jnp.asarray(b), alpha))


@functools.partial(jax.jit, static_argnames=("chunk",))
def _uniformity_chunk_lse(z, start, n, t, *, chunk):
  """logsumexp of -t ||z_i - z_j||^2 over rows i in [start, start + chunk), all j != i.

  Args:
    z: [N', D] L2-normalised embeddings, padded with rows past n (N' >= n).
    start: first row index of the chunk.
    n: number of real rows; padded rows and columns are masked out.
    t: the uniformity temperature.
    chunk: rows per chunk (static).

  Returns:
    Scalar logsumexp over the chunk's real off-diagonal pairs (-inf if there are none).
  """
  rows = jax.lax.dynamic_slice_in_dim(z, start, chunk)          # [chunk, D]
  sq = jnp.maximum(2.0 - 2.0 * rows @ z.T, 0.0)                  # [chunk, N'] = |x - y|^2 on the sphere
  row_ids = start + jnp.arange(chunk)[:, None]
  col_ids = jnp.arange(z.shape[0])[None, :]
  keep = (row_ids < n) & (col_ids < n) & (row_ids != col_ids)
  return jax.nn.logsumexp(jnp.where(keep, -t * sq, -jnp.inf))


def uniformity(z, t: float = 2.0, batch_size: int = 1024) -> float:
  """Wang & Isola's uniformity: log mean_{i != j} exp(-t ||f(x_i) - f(x_j)||^2).

  Computed over all ordered pairs of distinct rows in chunks of `batch_size` rows, each
  chunk reduced to one logsumexp, so memory is O(batch_size * N) rather than O(N^2).

  Args:
    z: [N, D] embeddings (L2-normalised here), N >= 2.
    t: temperature (the paper uses 2).
    batch_size: rows per chunk.

  Returns:
    A float in [-4t, 0]: 0 when all embeddings coincide, more negative the more evenly
    they spread over the sphere.
  """
  zn = _embeddings(z)
  if not np.isfinite(t) or t <= 0:
    raise ValueError(f"t must be a finite float > 0, got {t!r}.")
  batch_size = _positive_int(batch_size, "batch_size")
  n = zn.shape[0]
  chunk = min(batch_size, n)
  num_chunks = -(-n // chunk)
  padded = jnp.asarray(np.pad(zn / np.maximum(np.linalg.norm(zn, axis=-1, keepdims=True), 1e-12),
                              ((0, num_chunks * chunk - n), (0, 0))))
  lses = [_uniformity_chunk_lse(padded, i * chunk, n, float(t), chunk=chunk) for i in range(num_chunks)]
  return float(jax.nn.logsumexp(jnp.stack(lses)) - np.log(n * (n - 1)))


def collapse_report(z, threshold: float = 0.1, centre: bool = False) -> dict:
  """Collapse diagnostics of an embedding in one JSON-serialisable dict.

  Args:
    z: [N, D] embeddings, N >= 2.
    threshold: the embedding is flagged `collapsed` when embedding_std < threshold / sqrt(D),
      i.e. when the per-dim spread is below this fraction of a healthy isotropic one.
    centre: for embeddings that share a large common vector by construction (mean-pooled patch
      tokens): `embedding_std` is measured on mean-centred embeddings (see `embedding_std`), and
      the embedding is flagged when that is under the threshold OR when the un-centred spread is
      under threshold / 100 (centring is scale-free, so rows that differ only by float jitter
      would otherwise pass; the measurements behind threshold / 100 are in BENCHMARKS.md).
      rankme and uniformity use the embeddings as given.

  Returns:
    {'embedding_std': float, 'embedding_std_ratio': embedding_std * sqrt(D) (about 1 when
    healthy, 0 when collapsed), 'rankme': float, 'uniformity': float, 'num_examples': N,
    'dim': D, 'collapsed': bool}, plus 'embedding_std_uncentred' when centre.
  """
  if not np.isfinite(threshold) or threshold <= 0:
    raise ValueError(f"threshold must be a finite float > 0, got {threshold!r}.")
  zn = _embeddings(z)
  dim = zn.shape[1]
  std = embedding_std(zn, centre=centre)
  collapsed = std < threshold / np.sqrt(dim)
  extra = {}
  if centre:
    extra["embedding_std_uncentred"] = embedding_std(zn)
    collapsed = collapsed or extra["embedding_std_uncentred"] < 0.01 * threshold / np.sqrt(dim)
  return {
      "embedding_std": std,
      "embedding_std_ratio": float(std * np.sqrt(dim)),
      "rankme": rankme(zn),
      "uniformity": uniformity(zn),
      "num_examples": int(zn.shape[0]),
      "dim": int(dim),
      "collapsed": bool(collapsed),
      **extra,
  }
