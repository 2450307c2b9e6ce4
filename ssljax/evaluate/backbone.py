"""A trained method's backbone as export and the attention plots need it: module, variables, pool.

`Method.pretrained_backbone(params, state)` is the one definition of the backbone a method
pretrains (its EMA teacher for DINO-family methods, with BatchNorm statistics for a ResNet);
`Method.features` applies it. `backbone_of` splits it into the plain ViT / ResNet, its numpy
variables and its pooling ('backbone': the module's own output; 'patch_mean': the mean of a
ViT's final patch tokens), which is what an export stores; `feature_module` puts the pooling
back (`ssljax.load_backbone`).
"""
from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import numpy as np

from ssljax import models
from ssljax.methods import common

# How a method's features are computed from the backbone's outputs.
POOLS = common.POOLS
feature_module = common.pooled_backbone


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


def backbone_of(method, params: Any, state: Any) -> CapturedBackbone:
  """`method.pretrained_backbone(params, state)` as (ViT / ResNet, numpy variables, pool).

  `feature_module(c.module, c.variables, c.pool)` applied to images gives `method.features`.

  Raises:
    ValueError: when the method's backbone is neither a ViT / ResNet nor the patch mean of a ViT.
  """
  module, variables = method.pretrained_backbone(params, state)
  variables = jax.tree_util.tree_map(np.asarray, jax.device_get(dict(variables)))
  if isinstance(module, common.PatchMean):
    return CapturedBackbone(module.vit, {k: v["vit"] for k, v in variables.items()}, "patch_mean")
  if isinstance(module, (models.ViT, models.ResNet)):
    return CapturedBackbone(module, variables, "backbone")
  raise ValueError(f"{type(method).__name__}.pretrained_backbone is a {type(module).__name__}; "
                   f"expected a ViT, a ResNet or common.PatchMean of a ViT")
