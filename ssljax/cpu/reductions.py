"""Sums over leading (batch) axes as matrix-vector products, for XLA:CPU.

XLA:CPU (jaxlib 0.10, YNNPACK reduce fusions) runs a reduction over the leading axis of a wide
array far below memory speed (DINO's [B, 65536] head arrays: the weight-norm column norms and
their gradient, the teacher centre). The same sum as `ones @ x` is a dot, which runs at memory
speed. These compute the functions of `ssljax.reductions` (up to float summation order) in that
form; `ssljax.reductions` calls them when its `cpu_tuning` argument is True. Found by profiling
the DINO recipe of BENCHMARKS.md, section "Train-step throughput vs lightly"
(`benchmarks/peer_throughput.py --profile`).

Precision: the products are float32 x float32 at `lax.Precision.HIGHEST` with float32 results, so
the sum is a float32 one on every backend (at DEFAULT precision a TPU would round the operands to
bfloat16 first).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

_HIGHEST = jax.lax.Precision.HIGHEST


def leading_sum(x: jax.Array, num_axes: int = 1) -> jax.Array:
  """Sum over the first `num_axes` axes, as a matvec. [A, ..., *rest] -> rest, float32."""
  rows = math.prod(x.shape[:num_axes])
  rest = x.shape[num_axes:]
  flat = x.reshape((rows, -1)).astype(jnp.float32)
  return jnp.dot(jnp.ones((rows,), jnp.float32), flat, precision=_HIGHEST).reshape(rest)


@jax.custom_vjp
def scale_columns(z: jax.Array, s: jax.Array) -> jax.Array:
  """z * s[None, :] for z [N, K], s [K], whose gradient for `s` is a matvec, not a reduce.

  Autodiff of the plain product gives ds = sum_n dy[n] * z[n], an axis-0 reduction of an [N, K]
  array; here it is ones @ (dy * z). A `jax.custom_vjp`: `jax.jvp` does not go through it.
  """
  return z * s[None, :]


def _scale_columns_fwd(z, s):
  return z * s[None, :], (z, s)


def _scale_columns_bwd(res, dy):
  z, s = res
  ds = leading_sum(dy * z).astype(s.dtype)
  return (dy * s[None, :]).astype(z.dtype), ds


scale_columns.defvjp(_scale_columns_fwd, _scale_columns_bwd)
