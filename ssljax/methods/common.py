"""Pieces shared by methods: building the backbone from the run config, applying chains of Flax
modules with their mutable collections, [B, V, ...] view stacks, the two-view spec, the
patch-mean feature pooling and EMA target networks."""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional, Sequence, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from ssljax import models
from ssljax.data.views import ViewSpec


def backbone_from_config(config: ml_collections.ConfigDict) -> nn.Module:
  """The backbone of `config.model`, computing in the run's `config.dtype`."""
  model_cfg = ml_collections.ConfigDict(config.model.to_dict())
  model_cfg.dtype = config.dtype
  return models.build_backbone(model_cfg)


def two_views(config: ml_collections.ConfigDict) -> ViewSpec:
  """The joint-embedding methods' views: 2 global crops of config.data.image_size, area fraction
  config.data.augment.crop_scale, no local crops, no mask."""
  return ViewSpec(global_crops=2, global_size=config.data.image_size,
                  global_scale=tuple(config.data.augment.crop_scale))


# ---------------------------------------------------------------------------------------------
# Applying modules with their collections.
# ---------------------------------------------------------------------------------------------


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
    out, updates = module.apply(variables, x, train=True, rngs=rngs, mutable=list(collections),
                                **kwargs)
    return out, dict(updates)
  return module.apply(variables, x, train=train, rngs=rngs, **kwargs), collections


def init_chain(rng: jax.Array, x: jax.Array, modules: dict[str, nn.Module]) -> tuple[dict, dict]:
  """Initialises `modules` in order, each on the previous one's output for example input x.

  Returns ({name: params}, {name: other collections}); the rng is split once per module.
  """
  params, collections = {}, {}
  names = list(modules)
  for i, (key, name) in enumerate(zip(jax.random.split(rng, len(names)), names)):
    params[name], collections[name] = init_module(modules[name], key, x)
    if i + 1 < len(names):
      x = modules[name].apply({"params": params[name], **collections[name]}, x, train=False)
  return params, collections


def apply_chain(modules: dict[str, nn.Module], params: dict, collections: dict, x: jax.Array, *,
                train: bool, rng: jax.Array | None = None, **kwargs) -> tuple[jax.Array, dict]:
  """x through `modules` in order: (last output float32, `collections` with theirs updated).

  params / collections hold one entry per module name (and may hold more, kept as they are);
  `kwargs` go to the first module (e.g. a ViT's `keep_indices`); the rng is split once per module.
  """
  names = list(modules)
  keys = jax.random.split(rng, len(names)) if rng is not None else [None] * len(names)
  new = dict(collections)
  for i, (name, key) in enumerate(zip(names, keys)):
    x, new[name] = apply_module(modules[name], params[name], collections[name], x, train=train,
                                rng=key, **(kwargs if i == 0 else {}))
  return x.astype(jnp.float32), new


def map_views(fn: Callable, state: Any, views: jax.Array, keys: Sequence[jax.Array]):
  """fn(state, views[:, v], keys[v]) -> (out, state) for each view v, threading the state.

  The references forward each view separately (BatchNorm statistics per view). views
  [B, V, ...] -> (outputs stacked [V, ...], the state after the last view).
  """
  outs = []
  for v in range(views.shape[1]):
    out, state = fn(state, views[:, v], keys[v])
    outs.append(out)
  return jnp.stack(outs), state


def merge_views(views: jax.Array) -> jax.Array:
  """[B, V, H, W, C] -> [B * V, H, W, C], the (sharded) batch axis leading and contiguous."""
  b, v = views.shape[:2]
  return views.reshape((b * v,) + views.shape[2:])


def split_views(x: jax.Array, num_views: int) -> jax.Array:
  """[B * V, ...] -> [V, B, ...] (the inverse of `merge_views`, views first for the losses)."""
  bv = x.shape[0]
  return jnp.swapaxes(x.reshape((bv // num_views, num_views) + x.shape[1:]), 0, 1)


# ---------------------------------------------------------------------------------------------
# Feature pooling.
# ---------------------------------------------------------------------------------------------


class PatchMean(nn.Module):
  """A ViT whose output is the mean of its final (normed) patch tokens: [N, H, W, C] -> [N, D].

  Its variables are the ViT's under the name 'vit' ({'params': {'vit': ...}}).
  """
  vit: nn.Module

  def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
    tokens = self.vit(images, train=train, return_tokens=True)
    return jnp.mean(tokens["patches"], axis=1)


POOLS = ("backbone", "patch_mean")


def pooled_backbone(module: nn.Module, variables: dict, pool: str) -> tuple[nn.Module, dict]:
  """(module, variables) whose apply gives features pooled as `pool`: 'backbone' (the module's
  own output) or 'patch_mean' (`PatchMean` of a ViT)."""
  if pool == "backbone":
    return module, variables
  if pool == "patch_mean":
    return PatchMean(module), {k: {"vit": v} for k, v in variables.items()}
  raise ValueError(f"feature_pool={pool!r}; expected one of {POOLS}")


# ---------------------------------------------------------------------------------------------
# EMA target networks.
# ---------------------------------------------------------------------------------------------


def cosine_momentum(base: float, total_steps: int) -> optax.Schedule:
  """`base` at step 0 rising to 1 at `total_steps` along a half cosine (BYOL, MoCo v3, DINO):
  m_k = 1 - (1 - base) (cos(pi k / K) + 1) / 2, then 1."""
  decay = optax.cosine_decay_schedule(1.0 - base, max(int(total_steps), 1))
  return lambda step: 1.0 - decay(step)


def linear_momentum(start: float, end: float, steps: float) -> optax.Schedule:
  """`start` at step 0, linear to `end` at `steps`, then `end` (data2vec, I-JEPA, MSN)."""
  steps = max(float(steps), 1.0)
  return lambda step: start + (end - start) * jnp.clip(jnp.asarray(step, jnp.float32) / steps,
                                                       0.0, 1.0)


def _get(tree: dict, path: tuple[str, ...]) -> Any:
  for key in path:
    tree = tree[key]
  return tree


def _set(tree: dict, path: tuple[str, ...], value: Any) -> dict:
  if not path:
    return value
  return {**tree, path[0]: _set(tree[path[0]], path[1:], value)}


@dataclasses.dataclass(frozen=True)
class EMATarget:
  """An exponential moving average of (part of) the params, kept in the method state.

  target <- m target + (1 - m) online with m = momentum(step) (`optax.incremental_update`).

  Attributes:
    momentum: an optax schedule, step -> m in [0, 1].
    path: where the target lives in the method state, e.g. ('target', 'params').
    online: what it averages: None (all params), a key (params[key]) or a tuple of keys
      ({key: params[key]}).
  """
  momentum: optax.Schedule
  path: tuple[str, ...]
  online: Optional[Union[str, tuple[str, ...]]] = None

  def select(self, params: dict) -> Any:
    """The part of params that the target averages."""
    if self.online is None:
      return params
    if isinstance(self.online, str):
      return params[self.online]
    return {k: params[k] for k in self.online}

  def init(self, params: dict) -> Any:
    """The initial target: a copy of the online part (no aliasing between donated buffers)."""
    return jax.tree_util.tree_map(jnp.copy, self.select(params))

  def get(self, state: dict) -> Any:
    """The target params in the method state."""
    return _get(state, self.path)

  def after_step(self, params: dict, state: dict, step: jax.Array) -> dict:
    """The method state with its target moved towards the online params."""
    m = self.momentum(step)
    target = optax.incremental_update(self.select(params), self.get(state), 1.0 - m)
    return _set(state, self.path, target)
