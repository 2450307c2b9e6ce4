"""SupCon: contrastive learning where every image of the same class is a positive.

"Supervised Contrastive Learning" (Khosla et al., 2020).

Two augmented views of each image go through backbone -> projector; the L_out loss
(`ssljax.losses.supcon`) pulls together the V * B projections that share a label and pushes
apart the others, over the GLOBAL batch. The only method of the zoo that reads batch['label'].

Reference hyper-parameters (ImageNet, ResNet-50): projector `MLPHead([2048], 128)` (the paper's
2048-d hidden layer, 128-d output, normalised in the loss), T = 0.1, batch 6144, LARS with
base lr 0.3 x batch/256 (the paper's cosine schedule), 700 epochs; CIFAR: batch 1024, lr 0.5,
1000 epochs. As in the reference code, both views are forwarded together (one BatchNorm batch).
"""
from __future__ import annotations

import jax.numpy as jnp
import ml_collections

from ssljax import losses
from ssljax.data.views import ViewSpec
from ssljax.errors import ConfigError
from ssljax.methods import base
from ssljax.methods import common
from ssljax.models.heads import MLPHead


class SupCon(base.Method):
  """SupCon. Params: {'backbone', 'head'}; state: their BatchNorm statistics (if any)."""

  name = "supcon"

  @staticmethod
  def default_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(
        temperature=0.1,
        proj_hidden_dims=(2048,),
        proj_dim=128,
        proj_use_bn=True,
        loss_impl="auto",      # auto | reference | xla | pallas (losses.contrastive)
    ))

  @classmethod
  def validate_config(cls, config):
    if config.supcon.temperature <= 0:
      raise ConfigError(f"config.supcon.temperature={config.supcon.temperature!r}; expected > 0")
    from ssljax.kernels._common import IMPLS
    if config.supcon.loss_impl not in IMPLS:
      raise ConfigError(f"config.supcon.loss_impl={config.supcon.loss_impl!r}; "
                        f"expected one of {IMPLS}")

  def __init__(self, config):
    super().__init__(config)
    self.backbone = common.backbone_from_config(config)
    self.head = MLPHead(hidden_dims=tuple(self.cfg.proj_hidden_dims), out_dim=self.cfg.proj_dim,
                        use_bn=self.cfg.proj_use_bn)
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
    if "label" not in batch:
      raise ValueError(f"supcon needs batch['label'] (int [B]); the batch has keys {sorted(batch)}")
    views = batch["global"]                                   # [B, 2, H, W, C]
    z, state = self._project(params, state, common.merge_views(views), rng, train=True)
    z = common.split_views(z.astype(jnp.float32), 2)          # [2, B, E]
    loss = losses.supcon(z, batch["label"], self.cfg.temperature, impl=self.cfg.loss_impl)
    zn = losses.l2_normalize(z[0])
    metrics = {"embedding_std": jnp.mean(jnp.std(zn, axis=0)),
               "positive_cosine": jnp.mean(jnp.sum(zn * losses.l2_normalize(z[1]), -1))}
    return loss, (metrics, state)

  def embedding_head(self, params, state):
    return base.Backbone(self.head, {"params": params["head"], **state["head"]})


METHOD = SupCon
