"""Self-distillation losses: BYOL/SimSiam cosine, DINO, iBOT patch loss, DINOv2 KoLeo.

All functions are pure, take plain arrays and compute in float32. Those that use batch
statistics (`update_center`, `koleo`) operate on the GLOBAL batch: under `jax.jit` with a
sharded batch XLA inserts the collectives.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from ssljax import reductions
from ssljax.losses.contrastive import l2_normalize


def negative_cosine(p: jax.Array, z: jax.Array) -> jax.Array:
  """Minus the mean cosine similarity between predictions and targets.

  From "Bootstrap your own latent" (BYOL) and "Exploring Simple Siamese Representation
  Learning" (SimSiam). The caller applies `jax.lax.stop_gradient` to the target `z`, and
  symmetrises over the two views in the method. (BYOL's 2 - 2 cos is 2 + 2 * this.)

  Args:
    p: [N, D] predictions.
    z: [N, D] targets.

  Returns:
    Scalar -mean_i cos(p_i, z_i), each vector L2-normalised with eps 1e-12.
  """
  p = l2_normalize(p.astype(jnp.float32))
  z = l2_normalize(z.astype(jnp.float32))
  return -jnp.mean(jnp.sum(p * z, axis=-1))


def _teacher_probs(teacher: jax.Array, center: jax.Array, teacher_temp: float) -> jax.Array:
  """Centred, sharpened teacher probabilities softmax((t - c) / T_t), without gradient."""
  t = teacher.astype(jnp.float32) - center.astype(jnp.float32)
  return jax.lax.stop_gradient(jax.nn.softmax(t / teacher_temp, axis=-1))


def dino_loss(
    student: jax.Array,
    teacher: jax.Array,
    center: jax.Array,
    student_temp: float = 0.1,
    teacher_temp: float = 0.04,
) -> jax.Array:
  """DINO's multi-crop cross entropy between teacher and student distributions.

  From "Emerging Properties in Self-Supervised Vision Transformers". As in the reference
  code, the teacher distribution carries no gradient (stop_gradient is applied here).

  Args:
    student: [Vs, N, K] student head outputs (logits) for Vs views; views 0..Vt-1 are the
      same (global) crops as the teacher's views, the rest are extra (local) crops.
    teacher: [Vt, N, K] teacher head outputs for the Vt global views, Vt <= Vs.
    center: [K] running center of the teacher outputs (see `update_center`).
    student_temp: student softmax temperature.
    teacher_temp: teacher softmax temperature.

  Returns:
    Scalar: with t_i = softmax((teacher_i - center) / teacher_temp) and
    s_j = log_softmax(student_j / student_temp), the mean over all pairs (i, j), i != j,
    of mean_n sum_k -t_i[n, k] s_j[n, k]. There are Vt * (Vs - 1) pairs.
  """
  vs, n, k = student.shape
  vt = teacher.shape[0]
  if teacher.shape[1:] != (n, k) or center.shape != (k,):
    raise ValueError(f"dino_loss: expected teacher [Vt, {n}, {k}] and center [{k}], "
                     f"got {teacher.shape} and {center.shape}")
  if vt > vs or vt * (vs - 1) == 0:
    raise ValueError(f"dino_loss: need 1 <= Vt <= Vs and Vs >= 2, got Vt={vt}, Vs={vs}")
  t = _teacher_probs(teacher, center, teacher_temp)
  log_s = jax.nn.log_softmax(student.astype(jnp.float32) / student_temp, axis=-1)
  # The sum over pairs i != j of <t_i, log_s_j> is linear in log_s, so it equals
  # sum_i <t_i, S - log_s_i> with S = sum_j log_s_j: Vt multiply-and-sum passes over [N, K]
  # instead of a [Vt, N*K] x [N*K, Vs] contraction (which XLA:CPU lays out with a transposing
  # copy of both [V, N, K] arrays, ~0.2 s of a ViT-Tiny DINO step at batch 128).
  s_all = sum(log_s[j] for j in range(vs))   # elementwise adds, not a leading-axis reduce
  total = sum(jnp.sum(t[i] * (s_all - log_s[i])) for i in range(vt))
  return -total / (n * vt * (vs - 1))


def update_center(center: jax.Array, teacher: jax.Array, momentum: float = 0.9,
                  cpu_tuning: bool = False) -> jax.Array:
  """DINO's centering: EMA of the mean teacher output over views and the GLOBAL batch.

  From "Emerging Properties in Self-Supervised Vision Transformers". No gradient flows.

  Args:
    center: [K] current center.
    teacher: [Vt, N, K] teacher head outputs (N = global batch).
    momentum: EMA momentum m.
    cpu_tuning: the batch mean in its XLA:CPU form (`ssljax.reductions`, `ssljax.cpu.enabled`).

  Returns:
    [K] float32: m * center + (1 - m) * mean_{v, n} teacher[v, n] (a float32 sum).
  """
  teacher = jax.lax.stop_gradient(teacher.astype(jnp.float32))
  batch_center = reductions.leading_mean(teacher, 2, cpu_tuning)   # mean over axes (0, 1)
  return jax.lax.stop_gradient(center.astype(jnp.float32)) * momentum + batch_center * (1.0 - momentum)


def ibot_patch_loss(
    student: jax.Array,
    teacher: jax.Array,
    mask: jax.Array,
    center: jax.Array,
    student_temp: float = 0.1,
    teacher_temp: float = 0.07,
) -> jax.Array:
  """iBOT's masked-patch self-distillation loss (one teacher/student view pair).

  From "iBOT: Image BERT Pre-Training with Online Tokenizer" (also used by "DINOv2: Learning
  Robust Visual Features without Supervision"). The teacher carries no gradient.

  Args:
    student: [N, P, K] student patch-head outputs on the masked view.
    teacher: [N, P, K] teacher patch-head outputs on the unmasked view.
    mask: [N, P] bool or 0/1, true where the student's patch was masked.
    center: [K] teacher patch center.
    student_temp: student softmax temperature.
    teacher_temp: teacher softmax temperature (iBOT's teacher_patch_temp).

  Returns:
    Scalar: per patch, CE = sum_k -softmax((t - c)/T_t) log_softmax(s/T_s); per image the
    mean over its masked patches (divided by max(#masked, 1), so an image without masked
    patches contributes 0); then the mean over all N images.
  """
  t = _teacher_probs(teacher, center, teacher_temp)
  log_s = jax.nn.log_softmax(student.astype(jnp.float32) / student_temp, axis=-1)
  ce = -jnp.sum(t * log_s, axis=-1)  # [N, P]
  m = mask.astype(jnp.float32)
  per_image = jnp.sum(ce * m, axis=-1) / jnp.maximum(jnp.sum(m, axis=-1), 1.0)
  return jnp.mean(per_image)


def koleo(x: jax.Array, eps: float = 1e-8) -> jax.Array:
  """DINOv2's KoLeo regulariser (Kozachenko-Leonenko entropy estimator).

  From "DINOv2: Learning Robust Visual Features without Supervision". Uses the GLOBAL batch.

  Args:
    x: [N, D] features, N >= 2.
    eps: added to each distance inside the log.

  Returns:
    Scalar -mean_i log(||x_i - x_nn(i)|| + eps) on L2-normalised x, where nn(i) is the
    nearest other sample (largest dot product, self excluded). The neighbour index is
    chosen without gradient; the distance is differentiated w.r.t. both points (the
    square root is floored at 1e-24 so duplicates give a zero, not NaN, gradient).
  """
  n = x.shape[0]
  if n < 2:
    raise ValueError(f"koleo: need at least 2 samples, got x of shape {x.shape}")
  x = l2_normalize(x.astype(jnp.float32))
  dots = jax.lax.stop_gradient(x @ x.T)
  dots = jnp.where(jnp.eye(n, dtype=bool), -jnp.inf, dots)
  nn = jnp.argmax(dots, axis=-1)
  sq = jnp.sum(jnp.square(x - x[nn]), axis=-1)
  dist = jnp.sqrt(jnp.maximum(sq, 1e-24))
  return -jnp.mean(jnp.log(dist + eps))
