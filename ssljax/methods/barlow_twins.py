"""Barlow Twins: make the cross-correlation of two views' embeddings close to the identity.

"Barlow Twins: Self-Supervised Learning via Redundancy Reduction" (Zbontar et al., 2021).

Two augmented views go through the same backbone and projector; the loss
`ssljax.losses.barlow_twins` standardises each embedding dimension over the GLOBAL batch (the
reference code's affine-free BatchNorm followed by an all-reduce of C), forms the D x D
cross-correlation C and pushes its diagonal to 1 and its off-diagonal to 0.

Reference hyper-parameters (ImageNet, ResNet-50; the defaults of `default_config` and of
configs/barlow_twins_resnet50_imagenet.py): projector 8192-8192-8192 (Linear-BN-ReLU twice, then a
Linear), lambda = 0.0051, LARS with base lr 0.2 x batch/256, weight decay 1.5e-6, batch 2048,
1000 epochs with a 10-epoch warm-up.

The projector's last Linear has a bias here (MLPHead) where the reference has none: the loss
subtracts each dimension's batch mean, so that bias changes neither the loss nor any gradient.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from ssljax import losses
from ssljax.data.views import ViewSpec
from ssljax.methods import base
from ssljax.methods import common
from ssljax.models.heads import MLPHead


class BarlowTwins(base.Method):
  """Barlow Twins. Params: {'backbone', 'projector'}; state: their BatchNorm statistics (if any)."""

  name = "barlow_twins"

  @staticmethod
  def default_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(
        lambd=0.0051,                    # off-diagonal weight (the paper's lambda)
        proj_hidden_dims=(8192, 8192),   # Linear-BN-ReLU layers of the projector
        proj_dim=8192,                   # output width D of the projector
    ))

  def __init__(self, config):
    super().__init__(config)
    self.backbone = common.backbone_from_config(config)
    self.projector = MLPHead(hidden_dims=tuple(self.cfg.proj_hidden_dims), out_dim=self.cfg.proj_dim,
                             use_bn=True)
    self.modules = {"backbone": self.backbone, "projector": self.projector}

  def view_spec(self) -> ViewSpec:
    return common.two_views(self.config)

  def init(self, rng, batch):
    return common.init_chain(rng, batch["global"][:, 0], self.modules)

  def _project(self, params, state, images, rng, train):
    """images [N, H, W, C] -> (embeddings [N, proj_dim] float32, updated state)."""
    return common.apply_chain(self.modules, params, state, images, train=train, rng=rng)

  def loss(self, params, state, batch, rng, step):
    """batch['global'] [B, 2, H, W, C] -> barlow_twins(z1 [B, D], z2 [B, D])."""
    del step
    # One forward pass per view, as in the reference (y1 and y2 through backbone and projector
    # separately): each view's BatchNorm layers normalise over that view's global batch.
    (z1, z2), state = common.map_views(lambda s, x, r: self._project(params, s, x, r, True), state,
                                       batch["global"], jax.random.split(rng, 2))
    loss = losses.barlow_twins(z1, z2, self.cfg.lambd)
    zn = losses.l2_normalize(z1)
    metrics = {"embedding_std": jnp.mean(jnp.std(zn, axis=0)),
               "positive_cosine": jnp.mean(jnp.sum(zn * losses.l2_normalize(z2), -1))}
    return loss, (metrics, state)

  def embedding_head(self, params, state):
    return base.Backbone(self.projector, {"params": params["projector"], **state["projector"]})


METHOD = BarlowTwins
