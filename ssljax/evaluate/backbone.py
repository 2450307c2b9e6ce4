"""The backbone inside a trained method: its module, its variables, and how features pool it.

Methods keep their backbone variables in different places (`params['backbone']`, an EMA
teacher, a frozen copy, BatchNorm statistics in the method state). Rather than asking every
method where, `capture_backbone` runs `method.features` once, eagerly, on a few images under
`flax.linen.intercept_methods` and records the variables and keyword arguments of the backbone
call it makes: whatever `features` uses is by construction what gets exported or inspected.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ssljax import models

# How a method's features are computed from the backbone's outputs.
POOLS = ("backbone", "patch_mean")


@dataclasses.dataclass
class CapturedBackbone:
  """The backbone of a method as `features` runs it.

  Attributes:
    module: the unbound backbone module (ViT or ResNet) as the method built it.
    variables: {'params': ..., other collections (e.g. 'batch_stats')} as numpy arrays.
    pool: 'backbone' (features = module output) or 'patch_mean' (features = mean of the
      final patch tokens, `return_tokens=True`).
  """
  module: nn.Module
  variables: dict[str, Any]
  pool: str


class PatchMeanBackbone(nn.Module):
  """A ViT whose output is the mean of its final (normed) patch tokens: [N, H, W, C] -> [N, D]."""
  vit: nn.Module

  def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
    tokens = self.vit(images, train=train, return_tokens=True)
    return jnp.mean(tokens["patches"], axis=1)


def feature_module(module: nn.Module, variables: dict[str, Any], pool: str):
  """(module, variables) whose `module.apply(variables, images)` gives the method's features."""
  if pool == "backbone":
    return module, variables
  if pool == "patch_mean":
    return PatchMeanBackbone(module), {k: {"vit": v} for k, v in variables.items()}
  raise ValueError(f"pool={pool!r}; expected one of {POOLS}")


def _is_backbone(module: nn.Module) -> bool:
  return isinstance(module, (models.ViT, models.ResNet)) and module.scope is not None and \
      not module.scope.path


def capture_backbone(method, params: Any, state: Any, images: np.ndarray) -> CapturedBackbone:
  """Finds the backbone call inside `method.features(params, state, images)`.

  Args:
    method: a `ssljax.methods.base.Method`.
    params, state: its (restored) parameters and method state.
    images: [N, H, W, C] a few example images (N >= 1), run eagerly once.

  Returns:
    The captured backbone; `feature_module(c.module, c.variables, c.pool)` applied to images
    reproduces `method.features` on them.

  Raises:
    ValueError: if `features` does not call a ViT/ResNet backbone, calls several, or pools
      its output in a way this function cannot reproduce.
  """
  calls = []

  def record(next_fun, args, kwargs, context):
    if context.method_name == "__call__" and _is_backbone(context.module):
      calls.append((context.module.clone(parent=None), dict(context.module.variables), dict(kwargs)))
    return next_fun(*args, **kwargs)

  def run(params, state, images):
    calls.clear()
    with nn.intercept_methods(record):
      feats = method.features(params, state, images)
    return feats, [c[1] for c in calls]

  # One jitted trace rather than eager op-by-op dispatch (which compiles every op on its own).
  images = jnp.asarray(images)
  feats, captured = jax.jit(run)(params, state, images)
  feats = np.asarray(feats)
  name = type(method).__name__
  if not calls:
    raise ValueError(f"{name}.features does not call a ViT or ResNet backbone; nothing to capture")
  if len(calls) > 1:
    raise ValueError(f"{name}.features calls {len(calls)} backbones; expected exactly one")
  module, _, kwargs = calls[0]
  variables = jax.tree_util.tree_map(np.asarray, captured[0])
  for pool in (("patch_mean",) if kwargs.get("return_tokens") else ("backbone",)):
    fm, fv = feature_module(module, variables, pool)
    out = np.asarray(jax.jit(lambda v, x: fm.apply(v, x, train=False))(fv, images))
    if out.shape == feats.shape and np.allclose(out, feats, rtol=1e-5, atol=1e-5):
      return CapturedBackbone(module, variables, pool)
  raise ValueError(f"{name}.features is not the backbone's output (nor the mean of its patch "
                   f"tokens); its pooling cannot be reproduced from the backbone alone")
