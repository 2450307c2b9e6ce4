"""BYOL: an online network predicts an EMA target network's projection of the other view.

"Bootstrap your own latent: A new approach to self-supervised Learning" (Grill et al., 2020).

Online: backbone -> projector -> predictor. Target: backbone -> projector, an exponential moving
average of the online backbone and projector, with momentum tau rising from `tau_base` to 1 along
the cosine schedule tau_k = 1 - (1 - tau_base) (cos(pi k / K) + 1) / 2 (`schedules.cosine_increase`).
Loss, symmetrised over the two views as in the paper:

    L = (2 - 2 cos(q1, sg(z'2))) + (2 - 2 cos(q2, sg(z'1)))
      = 4 + 2 * (negative_cosine(q1, sg(z'2)) + negative_cosine(q2, sg(z'1)))

where q_i is the online prediction of view i and z'_i the target projection, sg = stop_gradient.

Reference hyper-parameters (ImageNet, ResNet-50): projector and predictor MLPHead([4096], 256) with
BatchNorm, tau_base 0.996, LARS with base lr 0.2 x batch/256, weight decay 1.5e-6, batch 4096.
As in the reference code each view is forwarded separately (BatchNorm statistics per view), and the
target network runs in training mode (batch statistics) with its own BatchNorm state;
`joint_view_bn=True` forwards both views as one batch instead (statistics over both views, as
lightly's and solo-learn's BYOL do).
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


class BYOL(base.Method):
  """BYOL.

  Params: {'backbone', 'projector', 'predictor'} (online network, what the optimizer updates).
  State: {'online': BatchNorm statistics of the three online modules,
          'target': {'params': {'backbone', 'projector'}, 'stats': their BatchNorm statistics}}.
  """

  name = "byol"

  @staticmethod
  def default_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(
        tau_base=0.996,             # target EMA momentum at step 0, cosine-increased to 1
        proj_hidden_dims=(4096,),
        proj_dim=256,
        proj_last_bn=False,         # BatchNorm (scale only) on the projector's output; not in the paper
        pred_hidden_dims=(4096,),
        use_bn=True,                # BatchNorm in the hidden layers of projector and predictor
        joint_view_bn=False,        # True: both views in one forward (BatchNorm statistics over
                                    # both, as lightly's and solo-learn's BYOL); False: per view
    ))

  @classmethod
  def validate_config(cls, config):
    tau = config.byol.tau_base
    if not 0.0 <= tau < 1.0:
      raise ConfigError(f"config.byol.tau_base={tau!r}; expected a momentum in [0, 1)")

  def __init__(self, config):
    super().__init__(config)
    self.backbone = common.backbone_from_config(config)
    self.projector = MLPHead(hidden_dims=tuple(self.cfg.proj_hidden_dims), out_dim=self.cfg.proj_dim,
                             use_bn=self.cfg.use_bn, last_bn=self.cfg.proj_last_bn)
    self.predictor = MLPHead(hidden_dims=tuple(self.cfg.pred_hidden_dims), out_dim=self.cfg.proj_dim,
                             use_bn=self.cfg.use_bn)
    self.encoder = {"backbone": self.backbone, "projector": self.projector}
    # The target: an EMA of the online backbone and projector, tau rising from tau_base to 1.
    self.ema = common.EMATarget(common.cosine_momentum(self.cfg.tau_base, config.total_steps),
                                path=("target", "params"), online=("backbone", "projector"))
    self.momentum = self.ema.momentum   # tau at a step

  def view_spec(self) -> ViewSpec:
    return common.two_views(self.config)

  def init(self, rng, batch):
    params, stats = common.init_chain(rng, batch["global"][:, 0],
                                      {**self.encoder, "predictor": self.predictor})
    # The target starts as a copy of the online backbone and projector.
    target = {"params": self.ema.init(params), "stats": self.ema.init(stats)}
    return params, {"online": stats, "target": target}

  def _encode(self, params, stats, images, rng, train):
    """backbone -> projector. images [N, H, W, C] -> (z [N, E] float32, updated stats)."""
    return common.apply_chain(self.encoder, params, stats, images, train=train, rng=rng)

  def _online(self, params, stats, images, rng, train):
    """Online prediction q [N, E] (float32) of images [N, H, W, C], and the updated stats."""
    e_rng, q_rng = jax.random.split(rng)
    z, stats = self._encode(params, stats, images, e_rng, train)
    q, q_state = common.apply_module(self.predictor, params["predictor"], stats["predictor"], z,
                                     train=train, rng=q_rng)
    return q, {**stats, "predictor": q_state}

  def forward(self, params, state, batch, rng):
    """Both views through both networks (train mode).

    Returns ((q [2, B, E], target z' [2, B, E] without gradient), updated state).
    """
    views = batch["global"]                                   # [B, 2, H, W, C]
    target_params = state["target"]["params"]

    def both(stats, images, key):
      """images through the online network and the target: ((q, z), (online, target) stats)."""
      online, target = stats
      o_rng, t_rng = jax.random.split(key)
      q, online = self._online(params, online, images, o_rng, train=True)
      z, target = self._encode(target_params, target, images, t_rng, train=True)
      return (q, z), (online, target)

    stats = (state["online"], state["target"]["stats"])
    if self.cfg.joint_view_bn:     # [B * 2, ...] sample-major, back to [2, B, ...]
      (q, z), stats = both(stats, common.merge_views(views), rng)
      q, z = common.split_views(q, 2), common.split_views(z, 2)
    else:                          # each view on its own, as the reference
      outs = []
      for v in range(2):
        out, stats = both(stats, views[:, v], jax.random.fold_in(rng, v))
        outs.append(out)
      q, z = (jnp.stack(x) for x in zip(*outs))
    new_state = {"online": stats[0], "target": {"params": target_params, "stats": stats[1]}}
    return (q, jax.lax.stop_gradient(z)), new_state

  def loss(self, params, state, batch, rng, step):
    del step
    (q, z), state = self.forward(params, state, batch, rng)
    # negative_cosine = -mean cos; the paper's per-direction loss is 2 - 2 cos.
    nc = losses.negative_cosine(q[0], z[1]) + losses.negative_cosine(q[1], z[0])
    loss = 4.0 + 2.0 * nc
    zn = losses.l2_normalize(z[0])
    metrics = {"embedding_std": jnp.mean(jnp.std(zn, axis=0)),
               "prediction_cosine": -nc / 2.0}
    return loss, (metrics, state)

  def after_step(self, params, state, step):
    return self.ema.after_step(params, state, step)

  def pretrained_backbone(self, params, state):
    """The online backbone (BYOL evaluates it) with its BatchNorm statistics."""
    return base.Backbone(self.backbone, {"params": params["backbone"],
                                         **state["online"]["backbone"]})

  def embedding_head(self, params, state):
    return base.Backbone(self.projector, {"params": params["projector"],
                                          **state["online"]["projector"]})


METHOD = BYOL
