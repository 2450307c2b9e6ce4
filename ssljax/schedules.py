"""Schedules as pure functions of the step (jit-friendly: `step` may be a traced int array)."""
from __future__ import annotations

import jax.numpy as jnp


def cosine_increase(step, total_steps: int, start: float, end: float = 1.0):
  """`start` at step 0 rising to `end` at `total_steps` along a half cosine.

  The BYOL target-momentum schedule: tau = 1 - (1 - tau_base) (cos(pi k / K) + 1) / 2
  ("Bootstrap your own latent"), also used for DINO's teacher momentum and weight decay.
  """
  frac = jnp.clip(jnp.asarray(step, jnp.float32) / max(total_steps, 1), 0.0, 1.0)
  return end - (end - start) * (jnp.cos(jnp.pi * frac) + 1.0) / 2.0


def linear_warmup(step, warmup_steps: int, start: float, end: float):
  """Linear from `start` to `end` over `warmup_steps`, then constant `end` (DINO teacher temperature)."""
  if warmup_steps <= 0:
    return jnp.asarray(end, jnp.float32)
  frac = jnp.clip(jnp.asarray(step, jnp.float32) / warmup_steps, 0.0, 1.0)
  return start + (end - start) * frac
