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
from ssljax.data.augment import ViewSpec
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

  def view_spec(self) -> ViewSpec:
    return ViewSpec(global_crops=2, global_size=self.config.data.image_size,
                    global_scale=tuple(self.config.data.augment.crop_scale))

  def init(self, rng, batch):
    b_rng, p_rng, q_rng = jax.random.split(rng, 3)
    x = batch["global"][:, 0]
    b_params, b_state = common.init_module(self.backbone, b_rng, x)
    feats = self.backbone.apply({"params": b_params, **b_state}, x, train=False)
    p_params, p_state = common.init_module(self.projector, p_rng, feats)
    z = self.projector.apply({"params": p_params, **p_state}, feats, train=False)
    q_params, q_state = common.init_module(self.predictor, q_rng, z)
    return ({"backbone": b_params, "projector": p_params, "predictor": q_params},
            {"backbone": b_state, "projector": p_state, "predictor": q_state})

  def _encode(self, params, state, images, rng, train):
    """f = backbone -> projector: images [N, H, W, C] -> (z [N, E] float32, updated state)."""
    b_rng, p_rng = jax.random.split(rng)
    feats, b_state = common.apply_module(self.backbone, params["backbone"], state["backbone"], images,
                                         train=train, rng=b_rng)
    z, p_state = common.apply_module(self.projector, params["projector"], state["projector"], feats,
                                     train=train, rng=p_rng)
    return z, {**state, "backbone": b_state, "projector": p_state}

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

  def features(self, params, state, images):
    feats, _ = common.apply_module(self.backbone, params["backbone"], state["backbone"], images,
                                   train=False)
    return feats.astype(jnp.float32)

  def embeddings(self, params, state, images):
    z, _ = self._encode(params, state, images, jax.random.key(0), train=False)
    return z.astype(jnp.float32)


METHOD = SimSiam
