"""SimCLR: two augmented views, a projection MLP, and the NT-Xent loss over the global batch.

"A Simple Framework for Contrastive Learning of Visual Representations" (Chen et al., 2020);
the 3-layer head of SimCLRv2, "Big Self-Supervised Models are Strong Semi-Supervised Learners"
(Chen et al., 2020), is `proj_hidden_dims=(2048, 2048), proj_last_bn=True` (v2 puts BatchNorm on
every projection layer, the output one included; lightly's SimCLRProjectionHead does too).
"""
from __future__ import annotations

import jax.numpy as jnp
import ml_collections

from ssljax import losses
from ssljax.data.views import ViewSpec
from ssljax.methods import base
from ssljax.methods import common
from ssljax.models.heads import MLPHead


class SimCLR(base.Method):
  """SimCLR. Params: {'backbone', 'head'}; state: their BatchNorm statistics (if any)."""

  name = "simclr"

  @staticmethod
  def default_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(
        temperature=0.5,          # the paper's T for batch 256..4096 with LARS is 0.1..0.5
        proj_hidden_dims=(2048,),  # SimCLR v1: one hidden layer; v2: (2048, 2048)
        proj_dim=128,
        proj_use_bn=True,
        proj_last_bn=False,       # BatchNorm (scale only) on the output layer: SimCLR v2's head
        loss_impl="auto",    # auto | reference | xla | pallas (losses.contrastive)
    ))

  def __init__(self, config):
    super().__init__(config)
    self.backbone = common.backbone_from_config(config)
    self.head = MLPHead(hidden_dims=tuple(self.cfg.proj_hidden_dims), out_dim=self.cfg.proj_dim,
                        use_bn=self.cfg.proj_use_bn, last_bn=self.cfg.proj_last_bn)
    self.modules = {"backbone": self.backbone, "head": self.head}

  def view_spec(self) -> ViewSpec:
    return common.two_views(self.config)

  def init(self, rng, batch):
    return common.init_chain(rng, batch["global"][:, 0], self.modules)

  def _project(self, params, state, images, rng, train):
    """images [N, H, W, C] -> (projections [N, E] float32, updated state)."""
    return common.apply_chain(self.modules, params, state, images, train=train, rng=rng)

  def loss(self, params, state, batch, rng, step):
    del step
    views = batch["global"]                                   # [B, 2, H, W, C]
    z, state = self._project(params, state, common.merge_views(views), rng, train=True)
    z1, z2 = common.split_views(z.astype(jnp.float32), 2)     # [B, E] each
    loss = losses.nt_xent(z1, z2, self.cfg.temperature, **self._impl_kwargs())
    zn = losses.l2_normalize(z1)
    metrics = {"embedding_std": jnp.mean(jnp.std(zn, axis=0)),
               "positive_cosine": jnp.mean(jnp.sum(zn * losses.l2_normalize(z2), -1))}
    return loss, (metrics, state)

  def _impl_kwargs(self):
    return {"impl": self.cfg.loss_impl}

  def embedding_head(self, params, state):
    return base.Backbone(self.head, {"params": params["head"], **state["head"]})


METHOD = SimCLR
