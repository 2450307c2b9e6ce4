"""SimCLR: two augmented views, a projection MLP, and the NT-Xent loss over the global batch.

"A Simple Framework for Contrastive Learning of Visual Representations" (Chen et al., 2020);
the 3-layer head of SimCLRv2, "Big Self-Supervised Models are Strong Semi-Supervised Learners"
(Chen et al., 2020), is `proj_hidden_dims=(2048, 2048)`.
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
        loss_impl="reference",    # 'reference' | 'xla' | 'pallas' | 'auto' (ssljax.kernels)
    ))

  def __init__(self, config):
    super().__init__(config)
    self.backbone = common.backbone_from_config(config)
    self.head = MLPHead(hidden_dims=tuple(self.cfg.proj_hidden_dims), out_dim=self.cfg.proj_dim,
                        use_bn=self.cfg.proj_use_bn)

  def view_spec(self) -> ViewSpec:
    return ViewSpec(global_crops=2, global_size=self.config.data.image_size,
                    global_scale=tuple(self.config.data.augment.crop_scale))

  def init(self, rng, batch):
    return common.init_backbone_head(self.backbone, self.head, "head", rng, batch["global"][:, 0])

  def _project(self, params, state, images, rng, train):
    return common.apply_backbone_head(self.backbone, self.head, "head", params, state, images, rng,
                                      train)

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
    # The kernels path is opt-in until every contrastive loss takes `impl`.
    return {} if self.cfg.loss_impl == "reference" else {"impl": self.cfg.loss_impl}

  def features(self, params, state, images):
    feats, _ = common.apply_module(self.backbone, params["backbone"], state["backbone"], images,
                                   train=False)
    return feats.astype(jnp.float32)

  def embeddings(self, params, state, images):
    z, _ = self._project(params, state, images, jax.random.key(0), train=False)
    return z.astype(jnp.float32)


METHOD = SimCLR
