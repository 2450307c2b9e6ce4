"""VICReg: invariance (MSE) plus variance and covariance regularisation of each branch.

"VICReg: Variance-Invariance-Covariance Regularization for Self-Supervised Learning"
(Bardes, Ponce and LeCun, 2022).

Two augmented views go through the same backbone and expander; `ssljax.losses.vicreg` takes the
MSE between the two embeddings, a hinge keeping every dimension's standard deviation above 1, and
the squared off-diagonal covariance, all over the GLOBAL batch (the reference code all-gathers the
embeddings before the variance and covariance terms).

Reference hyper-parameters (ImageNet, ResNet-50; the defaults of `default_config` and of
configs/vicreg_resnet50_imagenet.py): expander 8192-8192-8192 (Linear-BN-ReLU twice, then a
Linear), sim_coeff = std_coeff = 25, cov_coeff = 1, LARS with base lr 0.2 x batch/256,
weight decay 1e-6, batch 2048, 1000 epochs with a 10-epoch warm-up.

The expander's last Linear has a bias here (MLPHead) where the reference has none: it cancels in
z1 - z2 and in the centred variance and covariance, so it changes neither the loss nor any gradient.
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


class VICReg(base.Method):
  """VICReg. Params: {'backbone', 'expander'}; state: their BatchNorm statistics (if any)."""

  name = "vicreg"

  @staticmethod
  def default_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(
        sim_coeff=25.0,                  # invariance (MSE) weight, lambda in the paper
        std_coeff=25.0,                  # variance hinge weight, mu
        cov_coeff=1.0,                   # covariance weight, nu
        expander_hidden_dims=(8192, 8192),  # Linear-BN-ReLU layers of the expander
        expander_dim=8192,               # output width D
    ))

  def __init__(self, config):
    super().__init__(config)
    self.backbone = common.backbone_from_config(config)
    self.expander = MLPHead(hidden_dims=tuple(self.cfg.expander_hidden_dims),
                            out_dim=self.cfg.expander_dim, use_bn=True)
    self.modules = {"backbone": self.backbone, "expander": self.expander}

  def view_spec(self) -> ViewSpec:
    return common.two_views(self.config)

  def init(self, rng, batch):
    return common.init_chain(rng, batch["global"][:, 0], self.modules)

  def _expand(self, params, state, images, rng, train):
    """images [N, H, W, C] -> (embeddings [N, expander_dim] float32, updated state)."""
    return common.apply_chain(self.modules, params, state, images, train=train, rng=rng)

  def loss(self, params, state, batch, rng, step):
    """batch['global'] [B, 2, H, W, C] -> vicreg(z1 [B, D], z2 [B, D])."""
    del step
    # One forward pass per view, as in the reference: BatchNorm statistics per view.
    (z1, z2), state = common.map_views(lambda s, x, r: self._expand(params, s, x, r, True), state,
                                       batch["global"], jax.random.split(rng, 2))
    c = self.cfg
    loss = losses.vicreg(z1, z2, sim_coeff=c.sim_coeff, std_coeff=c.std_coeff, cov_coeff=c.cov_coeff)
    zn = losses.l2_normalize(z1)
    metrics = {"embedding_std": jnp.mean(jnp.std(zn, axis=0)),
               "raw_std": jnp.mean(jnp.std(z1, axis=0, ddof=1)),
               "invariance_mse": jnp.mean(jnp.square(z1 - z2))}
    return loss, (metrics, state)

  def embedding_head(self, params, state):
    return base.Backbone(self.expander, {"params": params["expander"], **state["expander"]})


METHOD = VICReg
