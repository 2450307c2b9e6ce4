"""Sums over leading (batch) axes, in float32, with an XLA:CPU form behind a switch.

The heads and losses that reduce over the batch (`ssljax.models.heads.WeightNormDense`,
`ssljax.losses.update_center`, DINO's metrics) call these. The default form is plain jnp;
`cpu_tuning=True` (a model or method built with the CPU tuning on, `ssljax.cpu.enabled`) computes
the same function as a matrix-vector product (`ssljax.cpu.reductions`), which XLA:CPU runs far
faster than its reduce fusion at DINO's head width.

Precision: both forms accumulate in float32 whatever the input dtype: the plain form casts to
float32 and sums with `jnp.sum(..., dtype=float32)` (a reduce, no matrix unit, so no bfloat16
passes on TPU); the matvec form multiplies at `lax.Precision.HIGHEST`. The two differ by float
summation order only.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from ssljax.cpu import reductions as cpu_reductions


def _check_axes(x: jax.Array, num_axes: int) -> None:
  if not 1 <= num_axes <= x.ndim:
    raise ValueError(f"leading_sum: num_axes={num_axes} must be in [1, {x.ndim}] for a "
                     f"{x.ndim}-d array of shape {x.shape}")


def leading_sum(x: jax.Array, num_axes: int = 1, cpu_tuning: bool = False) -> jax.Array:
  """Sum over the first `num_axes` axes of `x`. [A, ..., *rest] -> rest, float32.

  Args:
    x: the array; any float dtype, summed in float32 (see the module docstring).
    num_axes: how many leading axes to sum over, 1 to x.ndim.
    cpu_tuning: compute it as a matvec (`ssljax.cpu.reductions.leading_sum`, precision HIGHEST).
  """
  _check_axes(x, num_axes)
  if cpu_tuning:
    return cpu_reductions.leading_sum(x, num_axes)
  return jnp.sum(x.astype(jnp.float32), axis=tuple(range(num_axes)), dtype=jnp.float32)


def leading_mean(x: jax.Array, num_axes: int = 1, cpu_tuning: bool = False) -> jax.Array:
  """Mean over the first `num_axes` axes of `x`. [A, ..., *rest] -> rest, float32 (as
  `leading_sum`, divided by the number of summed elements)."""
  return leading_sum(x, num_axes, cpu_tuning) / math.prod(x.shape[:num_axes])


def scale_columns(z: jax.Array, s: jax.Array, cpu_tuning: bool = False) -> jax.Array:
  """z * s[None, :] for z [N, K], s [K] -> [N, K].

  With `cpu_tuning` it is `ssljax.cpu.reductions.scale_columns`, whose gradient for `s` is a
  matvec (precision HIGHEST) instead of autodiff's axis-0 reduce (a `jax.custom_vjp`, so only
  reverse-mode autodiff goes through it). Without, it is the plain product (every autodiff mode).
  """
  if cpu_tuning:
    return cpu_reductions.scale_columns(z, s)
  return z * s[None, :]
