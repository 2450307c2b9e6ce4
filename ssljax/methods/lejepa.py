"""LeJEPA: multi-view invariance to the global-view centre plus SIGReg, no teacher, no stop-gradient.

"LeJEPA: Provable and Scalable Self-Supervised Learning Without the Heuristics" (Balestriero &
LeCun, 2025). Following its reference (minimal) implementation:
  * V = Vg global + Vl local crops per image (paper: 2 global at 224 px, 6 local at 96 px);
  * backbone features of every view, then an MLP projector with BatchNorm (paper: 3 layers,
    hidden 2048, output 128 for ResNets / ViTs);
  * loss `ssljax.losses.lejepa_loss(global_proj [Vg, B, E], all_proj [V, B, E], lamb, key)`:
    (1 - lamb) * squared distance of every view to the mean of the global views
    + lamb * SIGReg averaged over views, lamb = 0.05 (the single hyper-parameter);
  * the SIGReg directions are drawn from the step's key (`sigreg_slices` of them, new every step,
    the same on every device because the key is);
  * no EMA, no predictor, no stop-gradient anywhere; recipe (ViT, ImageNet): AdamW lr 5e-4,
    weight decay 5e-2, DINO-style augmentations.
Features for kNN / probes: the backbone's pooled output.
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


class LeJEPA(base.Method):
  """LeJEPA. Params: {'backbone', 'projector'}; state: their BatchNorm statistics (if any)."""

  name = "lejepa"

  @staticmethod
  def default_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(
        lamb=0.05,
        global_crops=2,
        global_scale=(0.3, 1.0),
        local_crops=6,
        local_size=96,
        local_scale=(0.05, 0.3),
        proj_hidden_dims=(2048, 2048),
        proj_dim=128,
        sigreg_slices=256,
        sigreg_knots=17,
    ))

  @classmethod
  def validate_config(cls, config):
    c = config.lejepa
    if not 0.0 <= c.lamb <= 1.0:
      raise ConfigError(f"config.lejepa.lamb={c.lamb}; expected in [0, 1]")
    if c.global_crops < 1 or c.local_crops < 0:
      raise ConfigError(f"config.lejepa.global_crops={c.global_crops}, local_crops={c.local_crops}; "
                        "expected >= 1 and >= 0")
    if c.local_crops and c.local_size < 1:
      raise ConfigError(f"config.lejepa.local_size={c.local_size}; expected >= 1 with local crops")

  def __init__(self, config):
    super().__init__(config)
    self.backbone = common.backbone_from_config(config)
    self.projector = MLPHead(hidden_dims=tuple(self.cfg.proj_hidden_dims), out_dim=self.cfg.proj_dim,
                             use_bn=True)

  def view_spec(self) -> ViewSpec:
    c = self.cfg
    return ViewSpec(global_crops=c.global_crops, global_size=self.config.data.image_size,
                    global_scale=tuple(c.global_scale), local_crops=c.local_crops,
                    local_size=c.local_size if c.local_crops else 0, local_scale=tuple(c.local_scale))

  def init(self, rng, batch):
    return common.init_chain(rng, batch["global"][:, 0],
                             {"backbone": self.backbone, "projector": self.projector})

  def project(self, params, state, batch, rng, train=True):
    """(all_proj [V, B, E] float32, global views first, updated state)."""
    g_rng, l_rng, h_rng = jax.random.split(rng, 3)
    b, g = batch["global"].shape[:2]
    feats, b_state = common.apply_module(self.backbone, params["backbone"], state["backbone"],
                                         common.merge_views(batch["global"]), train=train, rng=g_rng)
    parts = [feats.reshape((b, g) + feats.shape[1:])]
    if "local" in batch and batch["local"].shape[1]:
      local, b_state = common.apply_module(self.backbone, params["backbone"], b_state,
                                           common.merge_views(batch["local"]), train=train,
                                           rng=l_rng)
      parts.append(local.reshape((b, -1) + local.shape[1:]))
    # One projector pass over every view, rows sample-major ([B * V]): concatenating the views'
    # row blocks instead would break the batch sharding and gather the features.
    rows = jnp.concatenate(parts, axis=1)                                  # [B, V, F]
    z, h_state = common.apply_module(self.projector, params["projector"], state["projector"],
                                     common.merge_views(rows), train=train, rng=h_rng)
    return (common.split_views(z.astype(jnp.float32), rows.shape[1]),     # [V, B, E]
            {"backbone": b_state, "projector": h_state})

  def loss(self, params, state, batch, rng, step):
    del step
    fwd_rng, sig_rng = jax.random.split(rng)
    all_proj, state = self.project(params, state, batch, fwd_rng, train=True)
    g = batch["global"].shape[1]
    loss = losses.lejepa_loss(all_proj[:g], all_proj, lamb=self.cfg.lamb, key=sig_rng,
                              num_slices=self.cfg.sigreg_slices, knots=self.cfg.sigreg_knots)
    zn = losses.l2_normalize(all_proj[0])
    metrics = {"embedding_std": jnp.mean(jnp.std(zn, axis=0)),
               "invariance": jnp.mean(jnp.square(jnp.mean(all_proj[:g], 0)[None] - all_proj))}
    return loss, (metrics, state)

  def embedding_head(self, params, state):
    return base.Backbone(self.projector, {"params": params["projector"], **state["projector"]})


METHOD = LeJEPA
