"""Redundancy-reduction losses: Barlow Twins, VICReg, W-MSE.

All functions are pure, take plain arrays and compute in float32. They use statistics of the
GLOBAL batch: under `jax.jit` with a sharded batch XLA inserts the collectives.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from ssljax.losses.contrastive import l2_normalize


def _off_diagonal_sq_sum(c: jax.Array) -> jax.Array:
  """Sum of the squared off-diagonal entries of the square matrix c."""
  return jnp.sum(jnp.square(c)) - jnp.sum(jnp.square(jnp.diagonal(c)))


def barlow_twins(z1: jax.Array, z2: jax.Array, lambd: float = 5e-3) -> jax.Array:
  """Barlow Twins cross-correlation loss.

  From "Barlow Twins: Self-Supervised Learning via Redundancy Reduction".

  Args:
    z1: [N, D] embeddings of the first view (N = global batch).
    z2: [N, D] embeddings of the second view.
    lambd: weight of the off-diagonal (redundancy) term.

  Returns:
    Scalar sum_i (1 - C_ii)^2 + lambd * sum_{i != j} C_ij^2, with C = z1n^T z2n / N and zkn
    each dimension standardised over the batch: (z - mean) / sqrt(biased var + 1e-5), as an
    affine-free BatchNorm in training mode.
  """
  def standardise(z):
    z = z.astype(jnp.float32)
    mean = jnp.mean(z, axis=0)
    var = jnp.mean(jnp.square(z - mean), axis=0)
    return (z - mean) / jnp.sqrt(var + 1e-5)

  n = z1.shape[0]
  c = standardise(z1).T @ standardise(z2) / n
  on_diag = jnp.sum(jnp.square(1.0 - jnp.diagonal(c)))
  return on_diag + lambd * _off_diagonal_sq_sum(c)


def vicreg(
    z1: jax.Array,
    z2: jax.Array,
    sim_coeff: float = 25.0,
    std_coeff: float = 25.0,
    cov_coeff: float = 1.0,
    eps: float = 1e-4,
) -> jax.Array:
  """VICReg loss, as in the paper's reference code.

  From "VICReg: Variance-Invariance-Covariance Regularization for Self-Supervised Learning".

  Args:
    z1: [N, D] embeddings of the first view (N = global batch, N >= 2).
    z2: [N, D] embeddings of the second view.
    sim_coeff: weight of the invariance (MSE) term.
    std_coeff: weight of the variance (hinge on the std) term.
    cov_coeff: weight of the covariance term.
    eps: added to the variance inside the square root.

  Returns:
    Scalar sim_coeff * mean((z1 - z2)^2)
      + std_coeff * sum_b mean_d(relu(1 - sqrt(var_b[d] + eps))) / 2
      + cov_coeff * sum_b sum_{i != j} cov_b[i, j]^2 / D,
    with b over the two branches and var / cov the unbiased (N - 1) batch estimates.
  """
  z1 = z1.astype(jnp.float32)
  z2 = z2.astype(jnp.float32)
  n, d = z1.shape
  repr_loss = jnp.mean(jnp.square(z1 - z2))

  def std_and_cov(z):
    zc = z - jnp.mean(z, axis=0)
    var = jnp.sum(jnp.square(zc), axis=0) / (n - 1)
    std_term = jnp.mean(jax.nn.relu(1.0 - jnp.sqrt(var + eps))) / 2.0
    cov = zc.T @ zc / (n - 1)
    return std_term, _off_diagonal_sq_sum(cov) / d

  std1, cov1 = std_and_cov(z1)
  std2, cov2 = std_and_cov(z2)
  return sim_coeff * repr_loss + std_coeff * (std1 + std2) + cov_coeff * (cov1 + cov2)


def whiten(x: jax.Array, eps: float = 0.0) -> jax.Array:
  """W-MSE whitening of one (or a batch of) sub-batch(es) by the Cholesky factor.

  Args:
    x: [..., M, D] samples; each [M, D] slice is whitened on its own (M > D unless eps > 0).
    eps: shrinkage of the covariance towards the identity: (1 - eps) * cov + eps * I.

  Returns:
    [..., M, D]: (x - mean) W^T with W = L^{-1}, L the lower Cholesky factor of the
    shrunk unbiased (M - 1) covariance, so the output has identity covariance.
  """
  x = x.astype(jnp.float32)
  m, d = x.shape[-2:]
  xc = x - jnp.mean(x, axis=-2, keepdims=True)
  cov = jnp.swapaxes(xc, -1, -2) @ xc / (m - 1)
  cov = (1.0 - eps) * cov + eps * jnp.eye(d, dtype=jnp.float32)
  chol = jnp.linalg.cholesky(cov)
  # L^{-1} xc^T, i.e. (xc W^T)^T.
  white_t = jax.scipy.linalg.solve_triangular(chol, jnp.swapaxes(xc, -1, -2), lower=True)
  return jnp.swapaxes(white_t, -1, -2)


def wmse(z: jax.Array, w_size: int, eps: float = 0.0) -> jax.Array:
  """W-MSE loss: whiten each sub-batch of each view, then the normalised MSE of positives.

  From "Whitening for Self-Supervised Representation Learning". Sub-batches are the
  consecutive chunks of w_size samples (shuffle the batch beforehand, and repeat with new
  shuffles, for the paper's random sub-batches and w_iter); each view is whitened on its own.

  Args:
    z: [V, N, D] embeddings of V >= 2 views of N images; N divisible by w_size.
    w_size: whitening sub-batch size; must exceed D unless eps > 0.
    eps: covariance shrinkage (see `whiten`).

  Returns:
    Scalar: the mean over view pairs i < j of 2 - 2 * mean_n cos(w_i[n], w_j[n]), where w
    are the whitened embeddings.
  """
  v, n, d = z.shape
  if v < 2 or n % w_size or w_size < 2:
    raise ValueError(f"wmse: need V >= 2 views and N divisible by w_size >= 2, got "
                     f"z of shape {z.shape} and w_size={w_size}")
  w = whiten(z.reshape(v, n // w_size, w_size, d), eps).reshape(v, n, d)
  w = l2_normalize(w)
  total = 0.0
  for i in range(v - 1):
    for j in range(i + 1, v):
      total = total + 2.0 - 2.0 * jnp.mean(jnp.sum(w[i] * w[j], axis=-1))
  return total / (v * (v - 1) // 2)
