"""Sums over leading (batch) axes written as matrix-vector products.

XLA:CPU (jaxlib 0.10, YNNPACK reduce fusions) runs a reduction over the leading axis of a wide
array far below memory speed: at DINO's head width, [64, 65536] -> [65536] took ~50-70 ms, about
0.3 GB/s (benchmarks/peer_throughput.py --profile). The same sum as `ones @ x` is a dot, which
runs at memory speed. These helpers compute exactly the same function (up to float summation
order) in that form; on GPU/TPU the two forms cost the same.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def leading_sum(x: jax.Array, num_axes: int = 1) -> jax.Array:
  """Sum over the first `num_axes` axes of `x`, as a matvec. [A, ..., *rest] -> rest, float32."""
  if not 1 <= num_axes <= x.ndim:
    raise ValueError(f"leading_sum: num_axes={num_axes} must be in [1, {x.ndim}] for a "
                     f"{x.ndim}-d array of shape {x.shape}")
  rows = math.prod(x.shape[:num_axes])
  rest = x.shape[num_axes:]
  flat = x.reshape((rows, -1)).astype(jnp.float32)
  return jnp.dot(jnp.ones((rows,), jnp.float32), flat).reshape(rest)


def leading_mean(x: jax.Array, num_axes: int = 1) -> jax.Array:
  """Mean over the first `num_axes` axes of `x`, as a matvec (see `leading_sum`)."""
  return leading_sum(x, num_axes) / math.prod(x.shape[:num_axes])


@jax.custom_vjp
def scale_columns(z: jax.Array, s: jax.Array) -> jax.Array:
  """z * s[None, :] for z [N, K], s [K], whose gradient for `s` is a matvec, not a reduce.

  Autodiff of the plain product gives ds = sum_n dy[n] * z[n], an axis-0 reduction of an [N, K]
  array (slow on XLA:CPU at K = 65536, see the module docstring); here it is ones @ (dy * z).
  """
  return z * s[None, :]


def _scale_columns_fwd(z, s):
  return z * s[None, :], (z, s)


def _scale_columns_bwd(res, dy):
  z, s = res
  ds = leading_sum(dy * z).astype(s.dtype)
  return (dy * s[None, :]).astype(z.dtype), ds


scale_columns.defvjp(_scale_columns_fwd, _scale_columns_bwd)
