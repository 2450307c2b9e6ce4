"""MoCo v3: a query encoder with predictor contrasts against a momentum key encoder's projections.

"An Empirical Study of Training Self-Supervised Vision Transformers" (Chen, Xie & He, 2021).

Query encoder: backbone -> projector -> predictor. Key (momentum) encoder: backbone -> projector,
an exponential moving average of the query backbone and projector with momentum m rising from
`momentum_base` to 1 along a half cosine (`schedules.cosine_increase`). Keys of the whole GLOBAL
batch are the negatives (no queue). The loss is the reference code's symmetrised, 2T-scaled InfoNCE:

    L = 2T * info_nce(q1, sg(k2), T) + 2T * info_nce(q2, sg(k1), T)

`freeze_patch_embed` (ViT only) is the paper's stability trick: the patch projection keeps its
random init for the whole run. It lives in the method state, not in the params: zeroing its
gradient in `transform_grads` would not freeze it, since AdamW / LARS / SGD weight decay would
still shrink it every step (the PyTorch reference sets requires_grad=False, which skips it in the
optimizer altogether). Query and key encoders share the one frozen projection.

Reference hyper-parameters (the paper and its reference code): ViT-S/16, ViT-B/16: AdamW, base lr
1.5e-4 x batch/256, weight decay 0.1, batch 4096, 300 epochs with 40 warm-up epochs, T = 0.2,
m = 0.99, projector `MLPHead([4096, 4096], 256, last_bn=True)`, predictor
`MLPHead([4096], 256, last_bn=True)`, frozen patch projection (the defaults below). ResNet-50:
LARS, base lr 0.6 (100 epochs) or 0.3, weight decay 1e-6 or 1.5e-6, T = 1.0, m = 0.99 (100 epochs)
or 0.996, projector `MLPHead([4096], 256, last_bn=True)`, predictor without the output BN
(`pred_last_bn=False`). The reference's output BatchNorm has no affine parameters; ssljax's keeps
a scale (MLPHead's last BN).
As in the reference each view is forwarded separately (BatchNorm statistics per view) and the key
encoder runs in training mode with its own BatchNorm state.
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

_PATCH = "patch_embed"


class MoCoV3(base.Method):
  """MoCo v3.

  Params: {'backbone', 'projector', 'predictor'} (the query encoder; without
    backbone/patch_embed when `freeze_patch_embed`).
  State: {'online': BatchNorm statistics of the three query modules,
          'target': {'params': {'backbone', 'projector'}, 'stats': their BatchNorm statistics},
          'frozen': {'patch_embed': ...} when `freeze_patch_embed`, else {}}.
  """

  name = "mocov3"

  @staticmethod
  def default_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(
        temperature=0.2,            # ViT: 0.2; ResNet-50: 1.0
        momentum_base=0.99,         # key-encoder EMA momentum at step 0, cosine-increased to 1
        proj_hidden_dims=(4096, 4096),
        proj_dim=256,
        pred_hidden_dims=(4096,),
        pred_last_bn=True,          # ViT: True; ResNet-50: False
        freeze_patch_embed=False,   # ViT only: keep the random patch projection (the ViT recipe)
        loss_impl="auto",      # auto | reference | xla | pallas (losses.contrastive)
    ))

  @classmethod
  def validate_config(cls, config):
    c = config.mocov3
    if not 0.0 <= c.momentum_base < 1.0:
      raise ConfigError(f"config.mocov3.momentum_base={c.momentum_base!r}; expected [0, 1)")
    if c.temperature <= 0:
      raise ConfigError(f"config.mocov3.temperature={c.temperature!r}; expected > 0")
    if c.freeze_patch_embed and config.model.name != "vit":
      raise ConfigError(f"config.mocov3.freeze_patch_embed=True with model.name="
                        f"{config.model.name!r}; expected a 'vit' backbone (it has a patch projection)")

  def __init__(self, config):
    super().__init__(config)
    self.backbone = common.backbone_from_config(config)
    self.projector = MLPHead(hidden_dims=tuple(self.cfg.proj_hidden_dims), out_dim=self.cfg.proj_dim,
                             last_bn=True)
    self.predictor = MLPHead(hidden_dims=tuple(self.cfg.pred_hidden_dims), out_dim=self.cfg.proj_dim,
                             last_bn=self.cfg.pred_last_bn)
    self.encoder = {"backbone": self.backbone, "projector": self.projector}
    # The key encoder: an EMA of the query backbone and projector, m rising to 1.
    self.ema = common.EMATarget(common.cosine_momentum(self.cfg.momentum_base, config.total_steps),
                                path=("target", "params"), online=("backbone", "projector"))
    self.momentum = self.ema.momentum   # m at a step

  def view_spec(self) -> ViewSpec:
    return common.two_views(self.config)

  def init(self, rng, batch):
    params, stats = common.init_chain(rng, batch["global"][:, 0],
                                      {**self.encoder, "predictor": self.predictor})
    frozen = {}
    if self.cfg.freeze_patch_embed:
      params["backbone"] = dict(params["backbone"])
      frozen = {_PATCH: params["backbone"].pop(_PATCH)}
    target = {"params": self.ema.init(params), "stats": self.ema.init(stats)}
    return params, {"online": stats, "target": target, "frozen": frozen}

  def backbone_params(self, params, state):
    """The full backbone params: `params['backbone']` plus the frozen patch projection, if any."""
    return {**params["backbone"], **state["frozen"]}

  def _encode(self, params, frozen, stats, images, rng, train):
    """backbone -> projector. images [N, H, W, C] -> (z [N, E] float32, updated stats)."""
    params = {**params, "backbone": {**params["backbone"], **frozen}}
    return common.apply_chain(self.encoder, params, stats, images, train=train, rng=rng)

  def forward(self, params, state, batch, rng):
    """Both views through both encoders (train mode).

    Returns ((queries q [2, B, E], keys k [2, B, E] without gradient), updated state).
    """
    views = batch["global"]                                   # [B, 2, H, W, C]
    online, target, frozen = state["online"], state["target"]["stats"], state["frozen"]
    qs, ks = [], []
    for v in range(2):
      e_rng, q_rng, k_rng = jax.random.split(jax.random.fold_in(rng, v), 3)
      z, online = self._encode(params, frozen, online, views[:, v], e_rng, train=True)
      q, q_state = common.apply_module(self.predictor, params["predictor"], online["predictor"], z,
                                       train=True, rng=q_rng)
      online = {**online, "predictor": q_state}
      k, target = self._encode(state["target"]["params"], frozen, target, views[:, v], k_rng,
                               train=True)
      qs.append(q)
      ks.append(jax.lax.stop_gradient(k))
    new_state = {**state, "online": online,
                 "target": {"params": state["target"]["params"], "stats": target}}
    return (jnp.stack(qs), jnp.stack(ks)), new_state

  def _impl_kwargs(self):
    return {"impl": self.cfg.loss_impl}

  def loss(self, params, state, batch, rng, step):
    del step
    (q, k), state = self.forward(params, state, batch, rng)
    t = self.cfg.temperature
    kw = self._impl_kwargs()
    loss = 2.0 * t * (losses.info_nce(q[0], k[1], t, **kw) + losses.info_nce(q[1], k[0], t, **kw))
    qn = losses.l2_normalize(q[0])
    metrics = {"embedding_std": jnp.mean(jnp.std(losses.l2_normalize(k[0]), axis=0)),
               "positive_cosine": jnp.mean(jnp.sum(qn * losses.l2_normalize(k[1]), -1))}
    return loss, (metrics, state)

  def after_step(self, params, state, step):
    return self.ema.after_step(params, state, step)

  def pretrained_backbone(self, params, state):
    """The query backbone, with the frozen patch projection and its BatchNorm statistics."""
    return base.Backbone(self.backbone, {"params": self.backbone_params(params, state),
                                         **state["online"]["backbone"]})

  def embedding_head(self, params, state):
    return base.Backbone(self.projector, {"params": params["projector"],
                                          **state["online"]["projector"]})


METHOD = MoCoV3
