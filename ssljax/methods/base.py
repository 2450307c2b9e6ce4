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

Outside the step, `pretrained_backbone(params, state)` is the one definition of the backbone a
method pretrains (for DINO-family methods the EMA teacher, with its BatchNorm statistics for a
ResNet; for MAE the patch-token mean of the encoder). `features` (kNN, linear and few-shot
probes), fine-tuning, export (`ssljax.load_backbone`) and the attention plots all use it.
`visualize` is the optional hook for pictures of a run (MAE reconstructions).
"""
from __future__ import annotations

from typing import Any, NamedTuple, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ssljax.data.views import Views

Params = Any
MethodState = Any
Batch = dict[str, jax.Array]
Metrics = dict[str, jax.Array]


class Backbone(NamedTuple):
  """A backbone ready to apply: `module.apply(variables, x, train=False)` maps a batch of the
  view spec's evaluation inputs (normalised images [N, H, W, C] for the image methods) to
  features [N, D].

  Attributes:
    module: an unbound Flax module: a ViT or ResNet, or `common.PatchMean` around a ViT.
    variables: {'params': ..., other collections such as 'batch_stats'}.
  """
  module: nn.Module
  variables: dict


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
    """May: raise ssljax.errors.ConfigError for method-specific impossible values."""

  def view_spec(self) -> Views:
    """Must: what the pipeline makes of each record (`ssljax.data.views.Views`): the batch fields
    by kind (image crops and masks with `ViewSpec`; sequence crops with `SequenceViews`; several
    with `Joint`) and the evaluation input that `features` takes."""
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

  def pretrained_backbone(self, params: Params, state: MethodState) -> Backbone:
    """May: the backbone this method pretrains, as kNN, probes, fine-tuning and export use it.

    Default: `self.backbone` with params['backbone'] and its collections (BatchNorm statistics)
    state['backbone']. Methods that keep it elsewhere (an EMA teacher, a frozen part in the
    state) or pool it differently override this, and only this.
    """
    collections = state.get("backbone", {}) if isinstance(state, dict) else {}
    return Backbone(self.backbone, {"params": params["backbone"], **collections})

  def features(self, params: Params, state: MethodState, images: jax.Array) -> jax.Array:
    """Backbone features [N, D] float32 of images [N, H, W, C] in eval mode (kNN, probes, export):
    `pretrained_backbone` applied. Not to be overridden: override `pretrained_backbone`."""
    module, variables = self.pretrained_backbone(params, state)
    return module.apply(variables, images, train=False).astype(jnp.float32)

  def embedding_head(self, params: Params, state: MethodState) -> Optional[Backbone]:
    """May: the head (module, variables) that maps `features` to what the loss sees (a
    projector), for collapse diagnostics; None (the default): the features themselves."""
    del params, state
    return None

  def embeddings(self, params: Params, state: MethodState, images: jax.Array) -> jax.Array:
    """The embedding the loss sees, [N, E] float32: `embedding_head` on `features`, eval mode."""
    feats = self.features(params, state, images)
    head = self.embedding_head(params, state)
    if head is None:
      return feats
    return head.module.apply(head.variables, feats, train=False).astype(jnp.float32)

  def artifacts(self) -> dict[str, bytes]:
    """May: files the trained model needs beside its weights, {file name: bytes} (e.g. an
    image-text method's 'tokenizer.model'); the trainer writes them into the workdir and the
    export next to the weights. Default: none."""
    return {}

  def visualize(self, params: Params, state: MethodState, images: jax.Array,
                rng: jax.Array) -> dict[str, np.ndarray]:
    """May: pictures of the method at work, {name: uint8 [H, W, 3]}, of a few held-out images
    [N, H, W, C] (e.g. MAE reconstructions). Default: none."""
    del params, state, images, rng
    return {}
