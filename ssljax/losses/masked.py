"""Masked-modelling losses: MAE pixel regression, data2vec 2.0 targets and regression.

All functions are pure, take plain arrays and compute in float32.
"""
from __future__ import annotations

import math
from typing import Optional

import jax
import jax.numpy as jnp


def mae_loss(pred: jax.Array, target: jax.Array, mask: jax.Array, norm_pix: bool = True) -> jax.Array:
  """MAE reconstruction loss on the masked patches.

  From "Masked Autoencoders Are Scalable Vision Learners", as in its reference code.

  Args:
    pred: [N, P, C] decoder predictions, C = patch_size**2 * channels values per patch.
    target: [N, P, C] patchified pixels.
    mask: [N, P] bool or 0/1, true for masked (removed) patches, the ones that are scored.
    norm_pix: normalise each target patch by its own mean and variance: (t - mean) /
      sqrt(var + 1e-6), var the unbiased (C - 1) estimate as torch's `Tensor.var`.

  Returns:
    Scalar sum_{n,p} mask * mean_c (pred - target)^2 / sum mask (the denominator floored
    at 1 so an all-visible batch gives 0).
  """
  pred = pred.astype(jnp.float32)
  target = target.astype(jnp.float32)
  if norm_pix:
    c = target.shape[-1]
    mean = jnp.mean(target, axis=-1, keepdims=True)
    var = jnp.sum(jnp.square(target - mean), axis=-1, keepdims=True) / (c - 1)
    target = (target - mean) / jnp.sqrt(var + 1e-6)
  per_patch = jnp.mean(jnp.square(pred - target), axis=-1)
  m = mask.astype(jnp.float32)
  return jnp.sum(per_patch * m) / jnp.maximum(jnp.sum(m), 1.0)


def smooth_l1_regression(
    pred: jax.Array,
    target: jax.Array,
    mask: jax.Array,
    beta: float,
    loss_scale: Optional[float] = None,
) -> jax.Array:
  """data2vec 2.0's regression of teacher targets at masked positions.

  From "Efficient Self-supervised Learning with Contextualized Target Representations for
  Vision, Speech and Language", following its reference `d2v_loss`: an element-wise loss,
  summed over D, scaled, averaged over the masked positions.

  Args:
    pred: [N, P, D] student decoder outputs.
    target: [N, P, D] teacher targets (see `data2vec_targets`; no gradient expected).
    mask: [N, P] bool or 0/1, true where the position was masked and is regressed.
    beta: smooth-L1 transition point: |e| < beta -> 0.5 e^2 / beta, else |e| - 0.5 beta.
      As in the reference, beta == 0 selects the plain squared error e^2 (NOT L1).
    loss_scale: multiplier of the per-position sum; None -> 1 / sqrt(D) (the reference
      default).

  Returns:
    Scalar sum_{n,p} mask * scale * sum_d l(pred - target) / max(sum mask, 1).
  """
  pred = pred.astype(jnp.float32)
  target = target.astype(jnp.float32)
  err = pred - target
  abs_err = jnp.abs(err)
  beta = jnp.asarray(beta, jnp.float32)  # may be traced; no Python branch on it
  smooth = jnp.where(abs_err < beta, 0.5 * jnp.square(err) / jnp.where(beta > 0, beta, 1.0),
                     abs_err - 0.5 * beta)
  elem = jnp.where(beta == 0, jnp.square(err), smooth)
  scale = 1.0 / math.sqrt(pred.shape[-1]) if loss_scale is None else loss_scale
  per_pos = jnp.sum(elem, axis=-1) * scale
  m = mask.astype(jnp.float32)
  return jnp.sum(per_pos * m) / jnp.maximum(jnp.sum(m), 1.0)


def data2vec_targets(
    layers: jax.Array,
    top_k: int,
    eps: float = 1e-5,
    layer_norm_targets: bool = False,
) -> jax.Array:
  """data2vec 2.0 teacher targets: average of the instance-normalised top-k layer outputs.

  From "Efficient Self-supervised Learning with Contextualized Target Representations for
  Vision, Speech and Language".

  Args:
    layers: [L, N, P, D] teacher block outputs, ordered from first to last block; P are the
      patch positions (leave out CLS/register tokens before calling).
    top_k: number of final layers averaged, 1 <= top_k <= L.
    eps: instance-norm epsilon.
    layer_norm_targets: additionally layer-normalise the averaged target over D (no affine,
      eps 1e-5), as the reference image config does (`layer_norm_targets`).

  Returns:
    [N, P, D] float32 targets, without gradient: for each of layers[-top_k:],
    (x - mean_P x) / sqrt(biased var_P x + eps) per (image, channel) over the patch axis
    (torch's `instance_norm` on [N, D, P]), then averaged over the top_k layers.
  """
  num_layers = layers.shape[0]
  if not 1 <= top_k <= num_layers:
    raise ValueError(f"data2vec_targets: top_k must be in [1, {num_layers}], got {top_k}")
  x = jax.lax.stop_gradient(layers[num_layers - top_k:].astype(jnp.float32))
  mean = jnp.mean(x, axis=2, keepdims=True)
  var = jnp.mean(jnp.square(x - mean), axis=2, keepdims=True)
  y = jnp.mean((x - mean) / jnp.sqrt(var + eps), axis=0)
  if layer_norm_targets:
    mean = jnp.mean(y, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(y - mean), axis=-1, keepdims=True)
    y = (y - mean) / jnp.sqrt(var + 1e-5)
  return y
