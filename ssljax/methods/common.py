"""Pieces shared by methods: building the backbone from the run config, applying Flax modules
with their mutable collections, and splitting [B, V, ...] view stacks."""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from ssljax import models


def backbone_from_config(config: ml_collections.ConfigDict) -> nn.Module:
  """The backbone of `config.model`, computing in the run's `config.dtype`."""
  model_cfg = ml_collections.ConfigDict(config.model.to_dict())
  model_cfg.dtype = config.dtype
  return models.build_backbone(model_cfg)


def init_module(module: nn.Module, rng: jax.Array, x: jax.Array, **kwargs) -> tuple[Any, Any]:
  """(params, other collections) of `module` initialised on example input x."""
  params_rng, dropout_rng = jax.random.split(rng)
  variables = module.init({"params": params_rng, "dropout": dropout_rng}, x, train=False, **kwargs)
  variables = dict(variables)
  params = variables.pop("params")
  return params, variables


def apply_module(module: nn.Module, params: Any, collections: Any, x: jax.Array, *, train: bool,
                 rng: jax.Array | None = None, **kwargs) -> tuple[Any, Any]:
  """Runs `module` and returns (output, updated collections).

  In train mode the mutable collections (BatchNorm's 'batch_stats') are updated; in eval mode
  they are read only and returned unchanged.
  """
  variables = {"params": params, **collections}
  rngs = {"dropout": rng} if (train and rng is not None) else None
  if train and collections:
    out, updates = module.apply(variables, x, train=True, rngs=rngs, mutable=list(collections), **kwargs)
    return out, dict(updates)
  return module.apply(variables, x, train=train, rngs=rngs, **kwargs), collections


def merge_views(views: jax.Array) -> jax.Array:
  """[B, V, H, W, C] -> [B * V, H, W, C], keeping the (sharded) batch axis leading and contiguous."""
  b, v = views.shape[:2]
  return views.reshape((b * v,) + views.shape[2:])


def split_views(x: jax.Array, num_views: int) -> jax.Array:
  """[B * V, ...] -> [V, B, ...] (the inverse of `merge_views`, views first for the losses)."""
  bv = x.shape[0]
  return jnp.swapaxes(x.reshape((bv // num_views, num_views) + x.shape[1:]), 0, 1)


def ema_update(target: Any, online: Any, momentum) -> Any:
  """target <- momentum * target + (1 - momentum) * online, leaf by leaf (EMA teacher / target net)."""
  return jax.tree_util.tree_map(lambda t, o: momentum * t + (1.0 - momentum) * o, target, online)


def init_backbone_head(backbone: nn.Module, head: nn.Module, head_name: str, rng: jax.Array,
                       x: jax.Array) -> tuple[dict, dict]:
  """({'backbone', head_name} params, the same for other collections) on example images x."""
  b_rng, h_rng = jax.random.split(rng)
  b_params, b_state = init_module(backbone, b_rng, x)
  feats = backbone.apply({"params": b_params, **b_state}, x, train=False)
  h_params, h_state = init_module(head, h_rng, feats)
  return {"backbone": b_params, head_name: h_params}, {"backbone": b_state, head_name: h_state}


def apply_backbone_head(backbone: nn.Module, head: nn.Module, head_name: str, params: dict,
                        state: dict, images: jax.Array, rng: jax.Array, train: bool) -> tuple[jax.Array, dict]:
  """images [N, H, W, C] -> (head(backbone(images)) [N, E] float32, updated collections)."""
  b_rng, h_rng = jax.random.split(rng)
  feats, b_state = apply_module(backbone, params["backbone"], state["backbone"], images,
                                train=train, rng=b_rng)
  z, h_state = apply_module(head, params[head_name], state[head_name], feats, train=train, rng=h_rng)
  return z.astype(jnp.float32), {"backbone": b_state, head_name: h_state}
