"""The method protocol: everything the method-agnostic trainer needs from a method.

The trainer owns the optimizer, the schedule, sharding, checkpoints and logging. A method owns its
networks, its view specification and its loss, and knows nothing about meshes, files or logging.

Per step the trainer does, inside one jitted pure function:

    (loss, (metrics, state)), grads = value_and_grad(method.loss, has_aux=True)(
        params, state, batch, rng, step)
    grads = method.transform_grads(grads, state, step)
    params = optimizer update of params with grads
    state = method.after_step(params, state, step)

`params` are what the optimizer updates; `state` is everything else the method carries from step
to step (BatchNorm statistics, an EMA teacher, a DINO center, a queue). Both are pytrees of arrays.
"""
from __future__ import annotations

from typing import Any

import jax
import ml_collections

from ssljax.data.augment import ViewSpec

Params = Any
MethodState = Any
Batch = dict[str, jax.Array]
Metrics = dict[str, jax.Array]


class Method:
  """Base class of every method. Subclasses override the methods marked 'must'."""

  name: str = ""
  # Collapse diagnostics centre the embeddings first (diagnostics.collapse_report(centre=True)).
  # For methods whose embeddings are mean-pooled patch tokens (masked modelling): these share a
  # large common vector, so the un-centred spread is small already at random init.
  centre_embeddings: bool = False

  def __init__(self, config: ml_collections.ConfigDict):
    """`config` is the whole run config; the method's own block is `config[self.name]`."""
    self.config = config
    self.cfg = config[self.name]

  @staticmethod
  def default_config() -> ml_collections.ConfigDict:
    """Must: the method's own config block with defaults (becomes `config.<name>`)."""
    raise NotImplementedError

  @classmethod
  def validate_config(cls, config: ml_collections.ConfigDict) -> None:
    """May: raise config.ConfigError for method-specific impossible values."""

  def view_spec(self) -> ViewSpec:
    """Must: the views the pipeline produces per image (global/local crops, masks)."""
    raise NotImplementedError

  def init(self, rng: jax.Array, batch: Batch) -> tuple[Params, MethodState]:
    """Must: initial (params, state) from an example batch (shapes only matter)."""
    raise NotImplementedError

  def loss(self, params: Params, state: MethodState, batch: Batch, rng: jax.Array,
           step: jax.Array) -> tuple[jax.Array, tuple[Metrics, MethodState]]:
    """Must: scalar float32 loss, differentiated w.r.t. params; metrics; the updated state."""
    raise NotImplementedError

  def transform_grads(self, grads: Params, state: MethodState, step: jax.Array) -> Params:
    """May: change the gradients before the optimizer sees them (e.g. zero DINO's last layer
    during its first epoch, freeze SwAV prototypes for the first iterations)."""
    del state, step
    return grads

  def after_step(self, params: Params, state: MethodState, step: jax.Array) -> MethodState:
    """May: state update after the optimizer step (EMA teacher, momentum schedules)."""
    del params, step
    return state

  def features(self, params: Params, state: MethodState, images: jax.Array) -> jax.Array:
    """Must: backbone features [N, D] of images [N, H, W, C] in eval mode (kNN, probes, export)."""
    raise NotImplementedError

  def embeddings(self, params: Params, state: MethodState, images: jax.Array) -> jax.Array:
    """May: the embedding the loss sees ([N, E]), for collapse diagnostics. Defaults to features."""
    return self.features(params, state, images)
