"""MSN: match the prototype assignment of a masked anchor view to that of an unmasked target view.

"Masked Siamese Networks for Label-Efficient Learning" (Assran et al., 2022).

Views per image: global crop 0 is the target view, global crop 1 and the L local ("focal") crops
are anchor views. Anchor views go through the online ViT with a random subset of their patch
tokens dropped (a fraction `mask_ratio`, drawn per image from the step's rng; only the kept tokens
enter the encoder, via the ViT's `keep_indices`), then the projection head. The target view goes
unmasked through the target encoder (backbone + head), an EMA of the online one, without gradient.
`ssljax.losses.msn_loss` compares both against learnable prototypes: the anchor's softmax over
cosine scores / temperature against the target's sharpened (and Sinkhorn-balanced) distribution,
plus the me-max regulariser (log K - entropy of the mean anchor prediction).

Reference conventions (facebookresearch/msn, configs/pretrain/msn_vits16.yaml, the defaults of
`default_config` and configs/msn_vit_s16_imagenet.py): 1 anchor view at 224 px + 10 focal views at
96 px (scale 0.3-1 and 0.05-0.3), patch drop 0.15 (ViT-S/16), head 2048-2048-256 with BatchNorm,
1024 prototypes initialised U(-1/sqrt(D), 1/sqrt(D)), temperature 0.1, sharpening 0.25, Sinkhorn
on the targets, me-max weight 1, EMA momentum linear from 0.996 towards 1 over 1.25 x the run,
AdamW lr 1e-3 at batch 1024, weight decay 0.04 (cosine to 0.4 in the reference), grad clip 3.
Per resolution group the head's BatchNorm sees that group only, as in the reference. The target
encoder runs in training mode (its BatchNorm uses batch statistics), as the reference's copy does;
the kNN/probe features are the target encoder's, which the reference evaluates.

Differences from the reference, kept small on purpose:
  * the head's activations are ReLU (ssljax MLPHead) where the reference uses GELU;
  * the patch subset is drawn per image (the reference shares one permutation across the batch);
  * the prototypes are stored flattened ([K * D], reshaped in the forward) so that the optimizer's
    rule "no weight decay and no LARS trust ratio for 1-D params" applies to them, like the
    reference's WD_exclude / LARS_exclude param group: they are normalised in the loss, and
    decoupled weight decay would otherwise shrink them and inflate their effective step size.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_collections

from ssljax import losses
from ssljax.data.views import ViewSpec
from ssljax.errors import ConfigError
from ssljax.methods import base
from ssljax.methods import common
from ssljax.models.heads import MLPHead


def random_keep_indices(rng: jax.Array, n: int, num_patches: int, num_keep: int) -> jax.Array:
  """Per-image uniform random patch subsets: int32 [n, num_keep], each row sorted and distinct."""
  order = jnp.argsort(jax.random.uniform(rng, (n, num_patches)), axis=1)
  return jnp.sort(order[:, :num_keep], axis=1).astype(jnp.int32)


def num_kept(num_patches: int, mask_ratio: float) -> int:
  """Tokens kept after dropping `mask_ratio` of them: floor(P * (1 - ratio)), at least 1."""
  return max(1, int(math.floor(num_patches * (1.0 - mask_ratio) + 1e-6)))


class MSN(base.Method):
  """MSN. Params: {'backbone', 'projector', 'prototypes' [K * D]}; state: BatchNorm statistics,
  'target_params' {'backbone', 'projector'} (the EMA encoder) and 'target' (its BatchNorm)."""

  name = "msn"

  @staticmethod
  def default_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(
        mask_ratio=0.15,             # patch drop of the anchor views (0.15 ViT-S/16, 0.3 ViT-B/16)
        local_crops=10,              # focal views
        local_size=96,
        local_scale=(0.05, 0.3),
        proj_hidden_dims=(2048, 2048),
        proj_dim=256,
        proj_last_bn=False,          # BatchNorm (scale only) on the head's output; not in the paper
        num_prototypes=1024,
        temperature=0.1,
        sharpen_temperature=0.25,
        me_max_weight=1.0,
        sinkhorn_iters=3,            # 0 = no Sinkhorn balancing of the targets (use_sinkhorn)
        ema_momentum=0.996,          # start of the linear EMA schedule
        ema_momentum_end=1.0,        # reached at ema_stretch x total_steps
        ema_stretch=1.25,
        eval_target=True,            # features / embeddings from the target (EMA) encoder
    ))

  @classmethod
  def validate_config(cls, config) -> None:
    c = config[cls.name]
    if config.model.name != "vit":
      raise ConfigError(f"config.model.name={config.model.name!r} with method 'msn'; expected 'vit' "
                        f"(MSN drops patch tokens of the anchor views)")
    if not 0.0 <= c.mask_ratio < 1.0:
      raise ConfigError(f"config.msn.mask_ratio={c.mask_ratio}; expected a fraction in [0, 1)")
    p = config.model.patch_size
    if c.local_crops and c.local_size % p:
      raise ConfigError(f"config.msn.local_size={c.local_size} is not a multiple of "
                        f"config.model.patch_size={p}")

  def __init__(self, config):
    super().__init__(config)
    self.backbone = common.backbone_from_config(config)
    self.projector = MLPHead(hidden_dims=tuple(self.cfg.proj_hidden_dims), out_dim=self.cfg.proj_dim,
                             use_bn=True, last_bn=self.cfg.proj_last_bn)
    c = self.cfg
    # The target encoder: an EMA of the online backbone and projector, momentum linear from
    # ema_momentum to ema_momentum_end at ema_stretch * total_steps.
    momentum = common.linear_momentum(c.ema_momentum, c.ema_momentum_end,
                                      c.ema_stretch * config.total_steps)
    self.ema = common.EMATarget(momentum, path=("target_params",), online=("backbone", "projector"))
    self.momentum = self.ema.momentum

  def view_spec(self) -> ViewSpec:
    c = self.cfg
    return ViewSpec(global_crops=2, global_size=self.config.data.image_size,
                    global_scale=tuple(self.config.data.augment.crop_scale),
                    local_crops=c.local_crops, local_size=c.local_size if c.local_crops else 0,
                    local_scale=tuple(c.local_scale))

  def init(self, rng, batch):
    b_rng, h_rng, p_rng = jax.random.split(rng, 3)
    x = batch["global"][:, 0]
    b_params, b_state = common.init_module(self.backbone, b_rng, x)
    feats = self.backbone.apply({"params": b_params, **b_state}, x, train=False)
    h_params, h_state = common.init_module(self.projector, h_rng, feats)
    d, k = self.cfg.proj_dim, self.cfg.num_prototypes
    bound = 1.0 / math.sqrt(d)
    protos = jax.random.uniform(p_rng, (k * d,), jnp.float32, -bound, bound)
    params = {"backbone": b_params, "projector": h_params, "prototypes": protos}
    online_bn = {"backbone": b_state, "projector": h_state}
    state = {"online": online_bn, "target_params": self.ema.init(params),
             "target": jax.tree_util.tree_map(jnp.copy, online_bn)}
    return params, state

  def prototype_matrix(self, params) -> jax.Array:
    """[K, D] prototypes (unnormalised; msn_loss normalises them)."""
    return params["prototypes"].reshape(self.cfg.num_prototypes, self.cfg.proj_dim)

  def _encode(self, enc_params, bn, images, rng, train, keep_indices=None):
    """images [N, H, W, C] -> (projections [N, proj_dim] float32, updated BatchNorm collections)."""
    b_rng, h_rng = jax.random.split(rng)
    feats, b_state = common.apply_module(self.backbone, enc_params["backbone"], bn["backbone"],
                                         images, train=train, rng=b_rng, keep_indices=keep_indices)
    z, h_state = common.apply_module(self.projector, enc_params["projector"], bn["projector"], feats,
                                     train=train, rng=h_rng)
    return z.astype(jnp.float32), {"backbone": b_state, "projector": h_state}

  def anchors(self, params, state, batch, rng):
    """Masked anchor views -> (projections [1 + L, B, proj_dim], online BN state)."""
    p = self.config.model.patch_size
    groups = [batch["global"][:, 1:2]] + ([batch["local"]] if "local" in batch else [])
    bn, out = state["online"], []
    for views, key in zip(groups, jax.random.split(rng, len(groups))):
      b, v, h, w = views.shape[:4]
      num_patches = (h // p) * (w // p)
      m_rng, e_rng = jax.random.split(key)
      keep = random_keep_indices(m_rng, b * v, num_patches, num_kept(num_patches, self.cfg.mask_ratio))
      z, bn = self._encode(params, bn, common.merge_views(views), e_rng, True, keep_indices=keep)
      out.append(common.split_views(z, v))                                # [v, B, E]
    # Views stacked on their own axis: merging them into the (sharded) batch axis would move
    # rows between devices.
    return jnp.concatenate(out, axis=0), bn

  def loss(self, params, state, batch, rng, step):
    """batch['global'] [B, 2, S, S, C] (0: target, 1: anchor), batch['local'] [B, L, s, s, C]."""
    del step
    c = self.cfg
    t_rng, a_rng = jax.random.split(rng)
    target, target_bn = self._encode(state["target_params"], state["target"], batch["global"][:, 0],
                                     t_rng, True)
    target = jax.lax.stop_gradient(target)
    anchor, online_bn = self.anchors(params, state, batch, a_rng)
    loss = losses.msn_loss(anchor, target, self.prototype_matrix(params), c.temperature,
                           c.sharpen_temperature, c.me_max_weight, c.sinkhorn_iters)
    tn = losses.l2_normalize(target)
    metrics = {"embedding_std": jnp.mean(jnp.std(tn, axis=0)),
               **self._diagnostics(params, anchor[0], target)}
    return loss, (metrics, dict(state, online=online_bn, target=target_bn))

  def _diagnostics(self, params, anchor, target):
    """Collapse diagnostics (no gradient), entropies in nats (log K = uniform).

    anchor_entropy: mean per-sample entropy of the anchor prediction; mean_anchor_entropy:
    entropy of its batch mean (what me-max keeps near log K); target_entropy: mean per-sample
    entropy of the sharpened target.
    """
    c = self.cfg
    protos = jax.lax.stop_gradient(losses.l2_normalize(self.prototype_matrix(params)))
    ent = lambda p: -jnp.sum(p * jnp.log(jnp.maximum(p, 1e-12)), axis=-1)
    logits = lambda x: losses.l2_normalize(jax.lax.stop_gradient(x)) @ protos.T / c.temperature
    p_a = jax.nn.softmax(logits(anchor), axis=-1)
    p_t = jax.nn.softmax(jax.nn.log_softmax(logits(target), axis=-1) / c.sharpen_temperature, axis=-1)
    return {"anchor_entropy": jnp.mean(ent(p_a)), "mean_anchor_entropy": ent(jnp.mean(p_a, axis=0)),
            "target_entropy": jnp.mean(ent(p_t))}

  def after_step(self, params, state, step):
    return self.ema.after_step(params, state, step)

  def _eval_encoder(self, params, state):
    if self.cfg.eval_target:
      return state["target_params"], state["target"]
    return params, state["online"]

  def pretrained_backbone(self, params, state):
    """The target (EMA) backbone with its BatchNorm statistics (`eval_target`), else the online."""
    enc, bn = self._eval_encoder(params, state)
    return base.Backbone(self.backbone, {"params": enc["backbone"], **bn["backbone"]})

  def embedding_head(self, params, state):
    enc, bn = self._eval_encoder(params, state)
    return base.Backbone(self.projector, {"params": enc["projector"], **bn["projector"]})


METHOD = MSN
