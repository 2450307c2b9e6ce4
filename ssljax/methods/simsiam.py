"""SimSiam: a Siamese encoder and a predictor, with stop-gradient instead of a momentum target.

"Exploring Simple Siamese Representation Learning" (Chen & He, 2021).

Encoder f = backbone -> projector, shared by both views; predictor h. With z_i = f(x_i) and
p_i = h(z_i), the loss is symmetrised as in the paper's Algorithm 1:

    L = D(p1, sg(z2)) / 2 + D(p2, sg(z1)) / 2,   D = negative_cosine (= -mean cos)

sg = stop_gradient, the component the paper shows prevents collapse.

Reference hyper-parameters (ImageNet, ResNet-50): projector 3 layers of 2048 with BatchNorm on
every layer including the output (`MLPHead([2048, 2048], 2048, last_bn=True)`; the reference's
output BN has no affine parameters, ssljax's keeps a scale), predictor `MLPHead([512], 2048)`
(bottleneck), SGD momentum 0.9, base lr 0.05 x batch/256, weight decay 1e-4, batch 512. The
reference keeps the predictor's lr fixed (no cosine decay); ssljax's single schedule decays it too.
As in the reference, each view is forwarded separately (BatchNorm statistics per view).
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


class SimSiam(base.Method):
  """SimSiam. Params: {'backbone', 'projector', 'predictor'}; state: their BatchNorm statistics."""

  name = "simsiam"

  @staticmethod
  def default_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(
        proj_hidden_dims=(2048, 2048),
        proj_dim=2048,
        proj_last_bn=True,          # BN on the projector output (the paper's choice)
        pred_hidden_dims=(512,),    # the predictor's bottleneck
    ))

  def __init__(self, config):
    super().__init__(config)
    self.backbone = common.backbone_from_config(config)
    self.projector = MLPHead(hidden_dims=tuple(self.cfg.proj_hidden_dims), out_dim=self.cfg.proj_dim,
                             last_bn=self.cfg.proj_last_bn)
    self.predictor = MLPHead(hidden_dims=tuple(self.cfg.pred_hidden_dims), out_dim=self.cfg.proj_dim)
    self.encoder = {"backbone": self.backbone, "projector": self.projector}

  def view_spec(self) -> ViewSpec:
    return common.two_views(self.config)

  def init(self, rng, batch):
    return common.init_chain(rng, batch["global"][:, 0],
                             {**self.encoder, "predictor": self.predictor})

  def _encode(self, params, state, images, rng, train):
    """f = backbone -> projector: images [N, H, W, C] -> (z [N, E] float32, updated state)."""
    return common.apply_chain(self.encoder, params, state, images, train=train, rng=rng)

  def forward(self, params, state, batch, rng):
    """Both views, train mode: ((p [2, B, E], z [2, B, E]), updated state); z keeps its gradient."""
    views = batch["global"]                                   # [B, 2, H, W, C]
    ps, zs = [], []
    for v in range(2):
      e_rng, q_rng = jax.random.split(jax.random.fold_in(rng, v))
      z, state = self._encode(params, state, views[:, v], e_rng, train=True)
      p, q_state = common.apply_module(self.predictor, params["predictor"], state["predictor"], z,
                                       train=True, rng=q_rng)
      state = {**state, "predictor": q_state}
      ps.append(p)
      zs.append(z)
    return (jnp.stack(ps), jnp.stack(zs)), state

  def loss(self, params, state, batch, rng, step):
    del step
    (p, z), state = self.forward(params, state, batch, rng)
    sg = jax.lax.stop_gradient
    loss = 0.5 * (losses.negative_cosine(p[0], sg(z[1])) + losses.negative_cosine(p[1], sg(z[0])))
    zn = losses.l2_normalize(z[0])
    # The paper's collapse monitor: std of the normalised output, ~1/sqrt(E) when healthy.
    metrics = {"embedding_std": jnp.mean(jnp.std(zn, axis=0))}
    return loss, (metrics, state)

  def embedding_head(self, params, state):
    return base.Backbone(self.projector, {"params": params["projector"], **state["projector"]})


METHOD = SimSiam
