"""LeJEPA losses: SIGReg (sliced Epps-Pulley Gaussianity test) and the LeJEPA objective.

All functions are pure, take plain arrays and compute in float32. SIGReg uses the
characteristic function of the GLOBAL batch: under `jax.jit` with a sharded batch XLA
inserts the collectives.
"""
from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp


def _epps_pulley_grid(knots: int, t_max: float):
  """Knots t = linspace(0, t_max, knots), phi(t) = exp(-t^2/2), weights phi(t) * w(t).

  w are the trapezoid weights of the integral over [-t_max, t_max] folded onto [0, t_max]
  (the integrand is even): dt at t = 0 and t = t_max, 2 dt in between, as in the LeJEPA
  reference implementation.
  """
  if knots < 2 or (isinstance(t_max, (int, float)) and t_max <= 0):
    raise ValueError(f"sigreg: need knots >= 2 and t_max > 0, got knots={knots}, t_max={t_max}")
  t = jnp.linspace(0.0, t_max, knots, dtype=jnp.float32)
  dt = t_max / (knots - 1)
  w = jnp.full((knots,), 2.0 * dt, dtype=jnp.float32).at[jnp.array([0, knots - 1])].set(dt)
  phi = jnp.exp(-0.5 * jnp.square(t))
  return t, phi, w * phi


def sigreg(
    x: jax.Array,
    directions: Optional[jax.Array] = None,
    key: Optional[jax.Array] = None,
    knots: int = 17,
    t_max: float = 3.0,
    num_slices: int = 256,
) -> jax.Array:
  """Sketched Isotropic Gaussian Regularisation (SIGReg).

  From "LeJEPA: Provable and Scalable Self-Supervised Learning Without the Heuristics".
  Projects the samples on S unit directions and, per direction, computes the Epps-Pulley
  statistic of the GLOBAL batch against N(0, 1):
    EP = N * integral over t in [-t_max, t_max] of |ecf(t) - exp(-t^2/2)|^2 exp(-t^2/2) dt,
  ecf(t) = mean_n exp(i t x_n), by the trapezoid rule on t = linspace(0, t_max, knots) with
  the even integrand folded onto t >= 0 (weights dt, 2dt, ..., 2dt, dt).

  Args:
    x: [N, D] embeddings, or [..., N, D] (one statistic per leading index, all averaged).
    directions: [D, S] projection directions; each column is normalised to unit norm here (the
      statistic is defined for unit directions). If None, S = num_slices directions are drawn
      from `key` (Gaussian, normalised): use the same key on every device and a new one every
      step.
    key: PRNG key, used only when `directions` is None.
    knots: number of integration knots on [0, t_max].
    t_max: upper end of the integration range.
    num_slices: number of random directions when drawing them from `key`.

  Returns:
    Scalar: the statistic averaged over the S slices (and any leading dims of x).
  """
  x = x.astype(jnp.float32)
  d = x.shape[-1]
  if directions is None:
    if key is None:
      raise ValueError("sigreg: pass either directions [D, S] or a PRNG key")
    a = jax.random.normal(key, (d, num_slices), dtype=jnp.float32)
    directions = a / jnp.linalg.norm(a, axis=0, keepdims=True)
  elif directions.ndim != 2 or directions.shape[0] != d:
    raise ValueError(f"sigreg: expected directions [{d}, S], got shape {directions.shape}")
  directions = directions.astype(jnp.float32)
  directions = directions / jnp.maximum(jnp.linalg.norm(directions, axis=0, keepdims=True), 1e-12)
  directions = jax.lax.stop_gradient(directions)
  t, phi, weights = _epps_pulley_grid(knots, t_max)
  n = x.shape[-2]
  xt = (x @ directions)[..., None] * t  # [..., N, S, knots]
  cos_mean = jnp.mean(jnp.cos(xt), axis=-3)
  sin_mean = jnp.mean(jnp.sin(xt), axis=-3)
  err = jnp.square(cos_mean - phi) + jnp.square(sin_mean)  # [..., S, knots]
  stat = (err @ weights) * n  # [..., S]
  return jnp.mean(stat)


def lejepa_loss(
    global_proj: jax.Array,
    all_proj: jax.Array,
    lamb: float = 0.05,
    key: Optional[jax.Array] = None,
    directions: Optional[jax.Array] = None,
    num_slices: int = 256,
    knots: int = 17,
    t_max: float = 3.0,
) -> jax.Array:
  """LeJEPA objective: view-invariance to the global-view center plus SIGReg.

  From "LeJEPA: Provable and Scalable Self-Supervised Learning Without the Heuristics".
  No stop-gradient, no teacher.

  Args:
    global_proj: [Vg, N, D] projections of the global views.
    all_proj: [V, N, D] projections of all views (usually including the global ones).
    lamb: trade-off lambda.
    key: PRNG key for the SIGReg directions (same directions for every view), used when
      `directions` is None.
    directions: optional explicit [D, S] unit directions for SIGReg.
    num_slices, knots, t_max: SIGReg settings (see `sigreg`).

  Returns:
    Scalar (1 - lamb) * mean_{v,n,d} (mean_g global_proj[g] - all_proj[v])^2
    + lamb * mean_v sigreg(all_proj[v]). The squared distance is averaged over D too, as in
    the reference code.
  """
  global_proj = global_proj.astype(jnp.float32)
  all_proj = all_proj.astype(jnp.float32)
  if global_proj.shape[1:] != all_proj.shape[1:]:
    raise ValueError(f"lejepa_loss: global_proj [Vg, N, D] and all_proj [V, N, D] must share "
                     f"N, D; got {global_proj.shape} and {all_proj.shape}")
  centers = jnp.mean(global_proj, axis=0)
  inv = jnp.mean(jnp.square(centers[None] - all_proj))
  reg = sigreg(all_proj, directions=directions, key=key, knots=knots, t_max=t_max,
               num_slices=num_slices)
  return (1.0 - lamb) * inv + lamb * reg
