"""I-JEPA: predict an EMA target encoder's patch representations of target blocks from a context block.

"Self-Supervised Learning from Images with a Joint-Embedding Predictive Architecture" (Assran et al.,
2023). Following its reference code:
  * multi-block masks per record from the pipeline (ViewSpec.mask='multiblock'): context_keep
    [B, Kc] (one block, scale (0.85, 1), minus every target patch) and target_indices [B, T, Kt]
    (T = 4 blocks, scale (0.15, 0.2), aspect (0.75, 1.5)); see ssljax.data.masks.multiblock_masks;
  * the context encoder (the run's ViT) sees only the context patches;
  * the target encoder is an EMA of it, run on the full image without gradient; targets are its
    final patch tokens, layer-normalised over D (no affine), gathered at each target block;
  * a narrow predictor ViT: context tokens embedded to `predictor_width` plus fixed sin-cos
    positional embeddings of their positions, concatenated (per target block) with a learned mask
    token plus the positional embeddings of the target positions; `predictor_depth` blocks, a final
    LayerNorm and a projection back to D; the outputs at the mask tokens are the predictions;
  * L2 loss (the paper's): mean over target patches of the mean squared error over D, computed as
    `ssljax.losses.smooth_l1_regression` with beta=0 (squared error) and loss_scale=1/D;
  * EMA momentum linear from 0.996 to 1.0 over training; recipe (ViT-H/14, ImageNet): AdamW lr
    1e-3, weight decay 0.04 -> 0.4, batch 2048, predictor depth 12 width 384, 300 epochs,
    random resized crop (0.3, 1) only.
Features for kNN / probes: the mean of the final patch tokens (the paper average-pools), of the
target encoder (`feature_encoder='target'`, the paper's evaluation) or the context encoder.

Options beyond the paper (defaults are the paper's), for small grids where its masks and targets
do not learn (see configs/ijepa_digits.py for the measurements):
  * `mask='random'`: a uniform random context of round(P * (1 - mask_ratio)) patches whose
    complement is the one target block (the pipeline's MAE-style masks), and `num_masks` copies of
    each image with their own random masks sharing one target-encoder pass (data2vec 2.0's
    multi-mask; V-JEPA likewise predicts several masks per sample);
  * `targets='data2vec'`: data2vec 2.0's targets (instance-normalised feed-forward outputs of the
    last `target_top_k` blocks, averaged, layer-normalised) instead of the final tokens;
  * the multi-block geometry: `num_targets`, `target_scale`, `context_scale`.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from ssljax import losses
from ssljax.data import masks as masks_lib
from ssljax.data.views import ViewSpec
from ssljax.errors import ConfigError
from ssljax.methods import _masked
from ssljax.methods import base
from ssljax.methods import common
from ssljax.models import vit as vit_lib


class Predictor(nn.Module):
  """I-JEPA predictor: (context tokens, their indices, target indices) -> target predictions.

  Attributes:
    width, depth, num_heads, mlp_ratio: the predictor transformer.
    out_dim: D of the encoder.
    grid: patches per side.
  """
  width: int
  depth: int
  num_heads: int
  out_dim: int
  grid: int
  mlp_ratio: float = 4.0
  attention_impl: str = "auto"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, context: jax.Array, context_idx: jax.Array, target_idx: jax.Array,
               train: bool = False) -> jax.Array:
    """context [N, Kc, D], context_idx [N, Kc], target_idx [N, T, Kt] -> [N, T, Kt, out_dim]."""
    n, kc, _ = context.shape
    _, t, kt = target_idx.shape
    pos = vit_lib.sincos_2d_posemb(self.grid, self.grid, self.width)          # [P, w]
    x = nn.Dense(self.width, dtype=self.dtype, param_dtype=jnp.float32, name="embed")(context)
    x = x + jnp.take(pos, context_idx, axis=0).astype(x.dtype)                # [N, Kc, w]
    x = jnp.broadcast_to(x[:, None], (n, t, kc, self.width)).reshape(n * t, kc, self.width)
    mask_token = self.param("mask_token", nn.initializers.normal(0.02), (self.width,), jnp.float32)
    m = mask_token.astype(x.dtype) + jnp.take(pos, target_idx.reshape(n * t, kt), axis=0)
    h = jnp.concatenate([x, m.astype(x.dtype)], axis=1)                       # [N*T, Kc+Kt, w]
    h = _masked.TransformerStack(self.depth, self.num_heads, self.mlp_ratio, self.attention_impl,
                                 self.dtype, name="blocks")(h, train=train)
    out = nn.Dense(self.out_dim, dtype=self.dtype, param_dtype=jnp.float32, name="proj")(h[:, kc:])
    return out.reshape(n, t, kt, self.out_dim).astype(jnp.float32)


def _layer_norm(x: jax.Array, eps: float = 1e-6) -> jax.Array:
  """Parameter-free LayerNorm over the last axis (the reference's F.layer_norm on the targets)."""
  mean = jnp.mean(x, -1, keepdims=True)
  var = jnp.mean(jnp.square(x - mean), -1, keepdims=True)
  return (x - mean) / jnp.sqrt(var + eps)


def _gather_targets(tokens: jax.Array, target_idx: jax.Array) -> jax.Array:
  """tokens [B, P, D] at target_idx [B, T, Kt] -> [B, T, Kt, D]."""
  b, t, kt = target_idx.shape
  return _masked.gather(tokens, target_idx.reshape(b, t * kt)).reshape(b, t, kt, -1)


class IJEPA(base.Method):
  """I-JEPA. Params: {'backbone' (context encoder), 'predictor'}; state: {'target'} (EMA encoder)."""

  name = "ijepa"
  centre_embeddings = True     # embeddings = mean-pooled patch tokens

  @staticmethod
  def default_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(
        predictor_width=384,
        predictor_depth=12,
        predictor_heads=12,
        predictor_mlp_ratio=4.0,
        ema_start=0.996,
        ema_end=1.0,
        feature_pool="patch_mean",  # 'patch_mean' | 'backbone'
        feature_encoder="target",   # 'target' (EMA, the paper's evaluation) | 'context'
        targets="final",            # 'final' (paper) | 'data2vec' (see `targets`)
        target_top_k=3,             # 'data2vec' targets: blocks averaged (capped at the depth)
        mask="multiblock",          # 'multiblock' (paper) | 'random' (see `view_spec`)
        mask_ratio=0.5,             # 'random': fraction of patches that are the target
        num_targets=4,              # 'multiblock': target blocks per image
        target_scale=(0.15, 0.2),   # 'multiblock': area fraction of a target block
        context_scale=(0.85, 1.0),  # 'multiblock': area fraction of the context block
        num_masks=1,                # 'random': masked copies per image sharing one target pass
    ))

  @classmethod
  def validate_config(cls, config):
    c = config.ijepa
    if config.model.name != "vit":
      raise ConfigError(f"config.model.name={config.model.name!r}; ijepa needs 'vit'")
    if c.feature_encoder not in ("target", "context"):
      raise ConfigError(f"config.ijepa.feature_encoder={c.feature_encoder!r}; expected 'target' "
                        "or 'context'")
    if c.targets not in ("final", "data2vec"):
      raise ConfigError(f"config.ijepa.targets={c.targets!r}; expected 'final' or 'data2vec'")
    if c.targets == "data2vec" and c.target_top_k < 1:
      raise ConfigError(f"config.ijepa.target_top_k={c.target_top_k}; expected >= 1")
    if c.mask not in ("multiblock", "random"):
      raise ConfigError(f"config.ijepa.mask={c.mask!r}; expected 'multiblock' or 'random'")
    if c.mask == "random" and not 0.0 < c.mask_ratio < 1.0:
      raise ConfigError(f"config.ijepa.mask_ratio={c.mask_ratio}; expected in (0, 1)")
    if c.num_masks < 1 or (c.num_masks > 1 and c.mask != "random"):
      raise ConfigError(f"config.ijepa.num_masks={c.num_masks}; expected >= 1, and 1 unless "
                        f"mask='random' (config.ijepa.mask={c.mask!r})")
    if c.mask == "multiblock":
      problem = masks_lib.multiblock_problem(c.num_targets, tuple(c.target_scale),
                                             tuple(c.context_scale))
      if problem:
        raise ConfigError(f"config.ijepa.{problem}")
    if c.predictor_width % c.predictor_heads or c.predictor_width % 4:
      raise ConfigError(f"config.ijepa.predictor_width={c.predictor_width}; expected a multiple of "
                        f"4 and of predictor_heads={c.predictor_heads}")

  def __init__(self, config):
    super().__init__(config)
    self.backbone = _masked.vit_backbone(config, self.name)
    self.grid = _masked.grid_size(config)
    self.predictor = Predictor(self.cfg.predictor_width, self.cfg.predictor_depth,
                               self.cfg.predictor_heads, self.backbone.width, self.grid,
                               self.cfg.predictor_mlp_ratio, self.backbone.attention_impl,
                               self.backbone.dtype)
    # The target encoder: an EMA of the context encoder, momentum linear over the run.
    self.ema = common.EMATarget(
        common.linear_momentum(self.cfg.ema_start, self.cfg.ema_end, config.total_steps),
        path=("target",), online="backbone")
    self.momentum = self.ema.momentum

  def view_spec(self) -> ViewSpec:
    """One crop; 'multiblock' masks (the paper's), or 'random': a random context of
    round(P * (1 - mask_ratio)) patches whose complement is one target block."""
    c = self.cfg
    return ViewSpec(global_crops=1, global_size=self.config.data.image_size,
                    global_scale=tuple(self.config.data.augment.crop_scale), mask=c.mask,
                    mask_ratio=c.mask_ratio, patch_size=self.config.model.patch_size,
                    num_targets=c.num_targets, target_scale=tuple(c.target_scale),
                    context_scale=tuple(c.context_scale))

  @staticmethod
  def context_and_targets(batch) -> tuple[jax.Array, jax.Array]:
    """(context [B, Kc], targets [B, T, Kt]) patch indices from either kind of mask."""
    if "context_keep" in batch:
      return batch["context_keep"], batch["target_indices"]
    return batch["keep_indices"], batch["masked_indices"][:, None]

  def init(self, rng, batch):
    b_rng, p_rng = jax.random.split(rng)
    x = batch["global"][:, 0]
    ctx, tgt = self.context_and_targets(batch)
    b_params = self.backbone.init({"params": b_rng}, x, keep_indices=ctx)["params"]
    tokens = jnp.zeros(ctx.shape + (self.backbone.width,), jnp.float32)
    p_params = self.predictor.init({"params": p_rng}, tokens, ctx, tgt)["params"]
    params = {"backbone": b_params, "predictor": p_params}
    return params, {"target": self.ema.init(params)}

  def target_tokens(self, target_params, images):
    """[B, P, D] target-encoder targets for every patch of images [B, H, W, C].

    'final' (the paper's): the final patch tokens, layer-normalised over D. 'data2vec': data2vec
    2.0's targets (`ssljax.losses.data2vec_targets`): each of the last `target_top_k` blocks'
    feed-forward outputs instance-normalised over the patches, averaged, then layer-normalised.
    """
    if self.cfg.targets == "data2vec":
      _, layers = _masked.block_outputs(self.backbone, target_params, images, source="ffn")
      return losses.data2vec_targets(layers, min(self.cfg.target_top_k, self.backbone.depth),
                                     layer_norm_targets=True)
    tokens = self.backbone.apply({"params": target_params}, images, train=False,
                                 return_tokens=True)
    return _layer_norm(tokens["patches"])

  def targets(self, target_params, images, target_idx):
    """[B, T, Kt, D] targets (`target_tokens`) at target_idx [B, T, Kt]."""
    return _gather_targets(self.target_tokens(target_params, images), target_idx)

  def predict(self, params, images, context_idx, target_idx, train=False, rng=None):
    """[B, T, Kt, D] predictions from the context patches context_idx [B, Kc]."""
    rngs = {"dropout": rng} if (train and rng is not None) else None
    tokens = self.backbone.apply({"params": params["backbone"]}, images, train=train,
                                 keep_indices=context_idx, return_tokens=True, rngs=rngs)
    return self.predictor.apply({"params": params["predictor"]}, tokens["patches"], context_idx,
                                target_idx)

  def masks(self, batch, rng) -> tuple[jax.Array, jax.Array]:
    """Context [B*M, Kc] and target [B*M, T, Kt] indices of the M = num_masks copies of each
    image, copy-major within each image: copy 0 is the pipeline's mask, copies 1..M-1 (random
    masks only) are drawn from `rng` with the same static sizes."""
    if self.cfg.num_masks == 1:
      return self.context_and_targets(batch)
    keep, masked, _ = _masked.mask_copies(rng, batch["keep_indices"], batch["masked_indices"],
                                          batch["mask"], self.cfg.num_masks, self.grid ** 2)
    return keep, masked[:, None]

  def loss(self, params, state, batch, rng, step):
    del step
    images = batch["global"][:, 0]
    m = self.cfg.num_masks
    ctx, tgt = self.masks(batch, jax.random.fold_in(rng, 1))
    tokens = jax.lax.stop_gradient(self.target_tokens(state["target"], images))  # one pass
    target = _gather_targets(jnp.repeat(tokens, m, axis=0), tgt)
    pred = self.predict(params, jnp.repeat(images, m, axis=0), ctx, tgt, train=True, rng=rng)
    b, t, kt, d = pred.shape
    loss = losses.smooth_l1_regression(pred.reshape(b * t, kt, d), target.reshape(b * t, kt, d),
                                       jnp.ones((b * t, kt), bool), beta=0.0, loss_scale=1.0 / d)
    metrics = {"pred_std": jnp.mean(jnp.std(pred.reshape(-1, d), axis=0))}
    return loss, (metrics, state)

  def after_step(self, params, state, step):
    return self.ema.after_step(params, state, step)

  def pretrained_backbone(self, params, state):
    """The target encoder (`feature_encoder`; or the context encoder), pooled as `feature_pool`."""
    encoder = state["target"] if self.cfg.feature_encoder == "target" else params["backbone"]
    return base.Backbone(*common.pooled_backbone(self.backbone, {"params": encoder},
                                                 self.cfg.feature_pool))


METHOD = IJEPA
