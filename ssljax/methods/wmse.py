"""W-MSE: whiten the embeddings of random sub-batches, then pull positive pairs together.

"Whitening for Self-Supervised Representation Learning" (Ermolov et al., 2021).

V augmented views of each image go through the backbone (one pass per view) and a projection
head (one pass over all views, as the reference's `head(torch.cat(h))`). Each iteration of
`w_iter` draws a random permutation of the GLOBAL batch (the same for every view, so positives
stay aligned), cuts it into sub-batches of `w_size`, and `ssljax.losses.wmse` whitens every
sub-batch of every view by the Cholesky factor of its covariance, L2-normalises, and averages
2 - 2 cos over all view pairs. The loss is the mean over the `w_iter` draws.

Reference hyper-parameters (CIFAR-10, ResNet-18; the defaults of `default_config` and of
configs/wmse_resnet18_cifar10.py): head Linear(1024)-BN-ReLU-Linear(64), embedding 64,
w_size 128, w_iter 1, eps 0 (no shrinkage), 2 views ("W-MSE 2") or 4 ("W-MSE 4"), Adam with
lr 3e-3 and L2 1e-6.

Whitening needs w_size > proj_dim unless eps > 0 (the covariance must be invertible), and the
global batch must be a multiple of w_size: `validate_config` checks both.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from ssljax import losses
from ssljax.data.views import ViewSpec
from ssljax.errors import ConfigError
from ssljax.methods import base
from ssljax.methods import common
from ssljax.models.heads import MLPHead


class WMSE(base.Method):
  """W-MSE. Params: {'backbone', 'projector'}; state: their BatchNorm statistics (if any)."""

  name = "wmse"

  @staticmethod
  def default_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(
        num_views=2,              # 2 = "W-MSE 2", 4 = "W-MSE 4"
        w_size=128,               # whitening sub-batch size; divides the global batch
        w_iter=1,                 # random sub-batch draws per step (loss averaged over them)
        eps=0.0,                  # covariance shrinkage towards I (0 in the reference)
        proj_hidden_dims=(1024,),
        proj_dim=64,              # embedding size; must be < w_size when eps == 0
    ))

  @classmethod
  def validate_config(cls, config) -> None:
    c = config[cls.name]
    if c.num_views < 2:
      raise ConfigError(f"config.wmse.num_views={c.num_views}; expected >= 2")
    if c.w_iter < 1:
      raise ConfigError(f"config.wmse.w_iter={c.w_iter}; expected >= 1")
    if c.w_size < 2 or config.batch_size % c.w_size:
      raise ConfigError(f"config.wmse.w_size={c.w_size} does not divide config.batch_size="
                        f"{config.batch_size}; expected a divisor >= 2 of the global batch")
    if c.eps == 0.0 and c.w_size <= c.proj_dim:
      raise ConfigError(f"config.wmse.w_size={c.w_size} <= config.wmse.proj_dim={c.proj_dim} with "
                        f"eps=0: the sub-batch covariance is singular; expected w_size > proj_dim "
                        f"or eps > 0")

  def __init__(self, config):
    super().__init__(config)
    self.backbone = common.backbone_from_config(config)
    self.projector = MLPHead(hidden_dims=tuple(self.cfg.proj_hidden_dims), out_dim=self.cfg.proj_dim,
                             use_bn=True)

  def view_spec(self) -> ViewSpec:
    return ViewSpec(global_crops=self.cfg.num_views, global_size=self.config.data.image_size,
                    global_scale=tuple(self.config.data.augment.crop_scale))

  def init(self, rng, batch):
    return common.init_chain(rng, batch["global"][:, 0],
                             {"backbone": self.backbone, "projector": self.projector})

  def embed_views(self, params, state, views, rng, train=True):
    """views [B, V, H, W, C] -> (embeddings [V, B, proj_dim] float32, updated state)."""
    v = views.shape[1]
    rngs = jax.random.split(rng, v + 1)
    feats = []
    b_state = state["backbone"]
    for i in range(v):  # backbone per view (its BatchNorm per view), as in the reference
      f, b_state = common.apply_module(self.backbone, params["backbone"], b_state, views[:, i],
                                       train=train, rng=rngs[i])
      feats.append(f)
    z, h_state = common.apply_module(self.projector, params["projector"], state["projector"],
                                     jnp.concatenate(feats, axis=0), train=train, rng=rngs[v])
    z = z.astype(jnp.float32).reshape(v, views.shape[0], -1)
    return z, {"backbone": b_state, "projector": h_state}

  def loss(self, params, state, batch, rng, step):
    """batch['global'] [B, V, H, W, C] -> mean over w_iter draws of wmse(z[:, perm])."""
    del step
    f_rng, p_rng = jax.random.split(rng)
    z, state = self.embed_views(params, state, batch["global"], f_rng)   # [V, B, D]
    n = z.shape[1]
    total = 0.0
    for key in jax.random.split(p_rng, self.cfg.w_iter):
      perm = jax.random.permutation(key, n)  # same shuffle for every view: positives stay aligned
      total = total + losses.wmse(z[:, perm], self.cfg.w_size, self.cfg.eps)
    loss = total / self.cfg.w_iter
    zn = losses.l2_normalize(z[0])
    metrics = {"embedding_std": jnp.mean(jnp.std(zn, axis=0)),
               "positive_cosine": jnp.mean(jnp.sum(zn * losses.l2_normalize(z[1]), -1))}
    return loss, (metrics, state)

  def embedding_head(self, params, state):
    return base.Backbone(self.projector, {"params": params["projector"], **state["projector"]})


METHOD = WMSE
