"""Clustering losses: Sinkhorn-Knopp codes, SwAV swapped prediction, MSN.

All functions are pure, take plain arrays and compute in float32. They operate on the
GLOBAL batch: under `jax.jit` with a sharded batch XLA inserts the collectives.
"""
from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp

from ssljax.losses.contrastive import l2_normalize


def _sinkhorn_log(log_q: jax.Array, n_iters: int) -> jax.Array:
  """Sinkhorn-Knopp normalisation of Q = exp(log_q), done in the log domain.

  Mathematically the reference loop of SwAV / MSN's `distributed_sinkhorn` on the
  [N, K] matrix Q (there written on Q^T): Q /= sum(Q); n_iters times { each prototype's
  total mass -> 1/K; each sample's total mass -> 1/N }; return N * Q. Working with logs
  (logsumexp instead of sums) gives the same numbers without overflow or underflow.

  Args:
    log_q: [N, K] log of the unnormalised transport matrix.
    n_iters: number of (prototype, sample) normalisation rounds.

  Returns:
    [N, K]: rows sum to 1 when n_iters >= 1; column sums are approximately N / K.
  """
  n, k = log_q.shape

  def one_round(_, log_q):
    log_q = log_q - jax.nn.logsumexp(log_q, axis=0, keepdims=True) - math.log(k)
    return log_q - jax.nn.logsumexp(log_q, axis=1, keepdims=True) - math.log(n)

  log_q = jax.lax.fori_loop(0, n_iters, one_round, log_q - jax.nn.logsumexp(log_q))
  return jnp.exp(log_q + math.log(n))


def sinkhorn_knopp(scores: jax.Array, epsilon: float = 0.05, n_iters: int = 3) -> jax.Array:
  """SwAV's equipartitioned soft cluster assignments (codes), without gradient.

  From "Unsupervised Learning of Visual Features by Contrasting Cluster Assignments".
  Q = exp(scores / epsilon)^T / sum; n_iters rounds of (rows of Q, one per prototype, sum
  to 1/K; columns, one per sample, sum to 1/N), over the GLOBAL batch; returns N * Q^T.

  Args:
    scores: [N, K] prototype scores (cosine similarities of normalised features and
      normalised prototypes), N = global batch.
    epsilon: entropic regularisation strength.
    n_iters: Sinkhorn iterations (>= 1 for rows to sum to 1).

  Returns:
    [N, K] float32 codes: each row sums to 1 and each prototype receives about N / K of the
    total mass. Wrapped in stop_gradient.
  """
  if scores.ndim != 2:
    raise ValueError(f"sinkhorn_knopp: expected scores [N, K], got shape {scores.shape}")
  scores = jax.lax.stop_gradient(scores.astype(jnp.float32))
  return jax.lax.stop_gradient(_sinkhorn_log(scores / epsilon, n_iters))


def swav_loss(
    scores: jax.Array,
    assign_views: Sequence[int] = (0, 1),
    temperature: float = 0.1,
    epsilon: float = 0.05,
    n_iters: int = 3,
) -> jax.Array:
  """SwAV's swapped-prediction loss.

  From "Unsupervised Learning of Visual Features by Contrasting Cluster Assignments".

  Args:
    scores: [V, N, K] prototype scores of V views (global crops first, then local crops).
    assign_views: static indices of the views whose Sinkhorn codes are used as targets
      (SwAV's `crops_for_assign`, usually the two global crops).
    temperature: softmax temperature of the predictions.
    epsilon: Sinkhorn entropic regularisation.
    n_iters: Sinkhorn iterations.

  Returns:
    Scalar: for every a in assign_views, codes q_a = sinkhorn_knopp(scores[a]) (no
    gradient), loss_a = mean over the V - 1 views v != a of
    mean_n sum_k -q_a log_softmax(scores[v] / temperature); then the mean over assign_views.
  """
  v, n, k = scores.shape
  assign_views = tuple(int(a) for a in assign_views)
  if v < 2 or not assign_views or any(not 0 <= a < v for a in assign_views):
    raise ValueError(f"swav_loss: need V >= 2 views and assign_views in [0, {v}), "
                     f"got V={v}, assign_views={assign_views}")
  scores = scores.astype(jnp.float32)
  log_p = jax.nn.log_softmax(scores / temperature, axis=-1)  # [V, N, K]
  total = 0.0
  for a in assign_views:
    q = sinkhorn_knopp(scores[a], epsilon, n_iters)
    ce = -jnp.einsum("nk,vnk->v", q, log_p) / n  # [V] mean CE of every view against q
    total = total + (jnp.sum(ce) - ce[a]) / (v - 1)
  return total / len(assign_views)


def msn_loss(
    anchor: jax.Array,
    target: jax.Array,
    prototypes: jax.Array,
    temperature: float = 0.1,
    sharpen_temperature: float = 0.25,
    me_max_weight: float = 1.0,
    n_sinkhorn: int = 0,
) -> jax.Array:
  """Masked Siamese Networks loss: prototype cross entropy plus the me-max regulariser.

  From "Masked Siamese Networks for Label-Efficient Learning", following its reference
  code: p = softmax(cos(x, prototypes) / temperature); the target is sharpened,
  p_t^(1/sharpen_temperature) renormalised, optionally Sinkhorn-balanced, and carries no
  gradient; the me-max term is log K - H(mean anchor prediction).

  Args:
    anchor: [Va, N, D] anchor-view representations (anchor[v, i] is view v of image i), or the
      same view-major as [Va * N, D] (row v * N + i). With N sharded over devices, [Va, N, D]
      keeps each device's rows its own.
    target: [N, D] target-view representations (no gradient flows to them).
    prototypes: [K, D] prototypes (normalised here).
    temperature: temperature of both the anchor and the target prototype softmax.
    sharpen_temperature: target sharpening temperature T (p ** (1 / T), renormalised).
    me_max_weight: weight of the mean-entropy-maximisation regulariser.
    n_sinkhorn: if > 0, that many Sinkhorn-Knopp rounds balance the sharpened targets
      over the GLOBAL batch (MSN's `use_sinkhorn`, applied to probabilities, no epsilon).

  Returns:
    Scalar: mean over the Va * N anchors of sum_k -target_k log p_k, plus
    me_max_weight * (sum_k pbar_k log pbar_k + log K) where pbar is the mean anchor
    prediction over all anchors.
  """
  n = target.shape[0]
  k = prototypes.shape[0]
  flat = anchor.reshape((-1,) + anchor.shape[2:]) if anchor.ndim == 3 else anchor
  if (flat.shape[0] % n or (anchor.ndim == 3 and anchor.shape[1] != n)
      or flat.shape[1:] != target.shape[1:] or prototypes.shape[1:] != target.shape[1:]):
    raise ValueError(f"msn_loss: expected anchor [Va, {n}, D] or [Va*{n}, D], target [{n}, D], "
                     f"prototypes [K, D] with the same D, got {anchor.shape}, {target.shape}, "
                     f"{prototypes.shape}")
  if anchor.ndim == 2:
    anchor = anchor.reshape(anchor.shape[0] // n, n, anchor.shape[1])
  protos = l2_normalize(prototypes.astype(jnp.float32))
  log_p = jax.nn.log_softmax(l2_normalize(anchor.astype(jnp.float32)) @ protos.T / temperature, axis=-1)

  target_logits = l2_normalize(target.astype(jnp.float32)) @ protos.T / temperature
  # (softmax(l))^(1/T) renormalised == softmax(log_softmax(l) / T).
  log_t = jax.nn.log_softmax(jax.nn.log_softmax(target_logits, axis=-1) / sharpen_temperature, axis=-1)
  if n_sinkhorn > 0:
    targets = _sinkhorn_log(log_t, n_sinkhorn)
  else:
    targets = jnp.exp(log_t)
  targets = jax.lax.stop_gradient(targets)

  ce = -jnp.mean(jnp.sum(targets[None] * log_p, axis=-1))          # every view against its image
  avg_probs = jnp.mean(jnp.exp(log_p), axis=(0, 1))
  # sum p log p with 0 log 0 = 0 (a prototype no anchor uses), NaN-free in value and gradient.
  positive = avg_probs > 0
  p_log_p = jnp.where(positive, avg_probs * jnp.log(jnp.where(positive, avg_probs, 1.0)), 0.0)
  me_max = jnp.sum(p_log_p) + math.log(k)
  return ce + me_max_weight * me_max
