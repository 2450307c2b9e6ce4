"""data2vec 2.0: regress an EMA teacher's contextualised targets from several masked copies.

"Efficient Self-supervised Learning with Contextualized Target Representations for Vision, Speech
and Language" (Baevski et al., 2023). Following its reference image recipe:
  * the teacher is an EMA of the student encoder, run once on the full image (eval mode);
    momentum annealed linearly from `ema_start` to `ema_end` over `ema_anneal_steps`
    (paper, ViT-B: 0.9998 -> 0.99999);
  * targets = `ssljax.losses.data2vec_targets`: instance-normalised outputs of the top-k teacher
    blocks, averaged (ViT-B: top 10 of 12), then layer-normalised (`layer_norm_targets`); the
    output of a block is its feed-forward output before the residual addition
    (`target_source='ffn'`, data2vec's choice, kept by data2vec 2.0); 'block' takes the residual
    stream instead, which carries the input patch and position embeddings into the targets
    (learns less on digits: BENCHMARKS.md);
  * `num_masks` masked copies of every image (paper: "multi-mask", 16 for ViT-B at ratio 0.8)
    share the one teacher pass; the first mask comes from the pipeline (ViewSpec.mask='random'),
    the others are drawn in the graph from the step's key with the same static visible count;
  * the student encoder (the run's ViT) sees only the visible patches (no mask tokens);
  * a light convolutional decoder (the reference `Decoder2d`): the visible tokens are put back on
    the patch grid with a learned mask embedding elsewhere, then `decoder_layers` blocks of
    grouped 3x3 conv -> LayerNorm -> GELU (residual after the first) and a linear projection to
    the encoder width;
  * loss `ssljax.losses.smooth_l1_regression` at the masked positions, beta 0 (squared error,
    the reference image setting), scaled by 1/sqrt(D).
Simplification: masks are uniform random (the paper uses inverse block masking); the paper's extra
CLS-token regression (weight 0.01) is left out.

Features for kNN / probes: the mean of the final patch tokens (`feature_pool`), as data2vec 2.0's
linear probe uses mean pooling, of the student (`feature_encoder`; 'teacher' pools the EMA encoder).
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


class GroupedConv2d(nn.Module):
  """A 'SAME' k x k convolution with feature groups, as an einsum over the k*k shifted windows.

  Mathematically `nn.Conv(features, (k, k), padding='SAME', feature_group_count=groups)`; written
  as one einsum because XLA's CPU grouped convolutions are very slow, and the decoder's grid is
  small. [N, H, W, C] -> [N, H, W, features].
  """
  features: int
  kernel: int = 3
  groups: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    n, h, w, c = x.shape
    k, g = self.kernel, self.groups
    if c % g or self.features % g:
      raise ValueError(f"GroupedConv2d: channels {c} and features {self.features} must be "
                       f"divisible by groups={g}")
    fan_in = k * k * c // g
    kernel = self.param("kernel", nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform",
                                                                    in_axis=(0, 2), out_axis=(1, 3)),
                        (k * k, g, c // g, self.features // g), jnp.float32)
    bias = self.param("bias", nn.initializers.uniform(1.0 / fan_in ** 0.5), (self.features,),
                      jnp.float32)
    lo = (k - 1) // 2
    xp = jnp.pad(x, ((0, 0), (lo, k - 1 - lo), (lo, k - 1 - lo), (0, 0)))
    windows = jnp.stack([xp[:, i:i + h, j:j + w] for i in range(k) for j in range(k)], axis=3)
    windows = windows.reshape(n, h, w, k * k, g, c // g).astype(self.dtype)
    y = jnp.einsum("nhwkgc,kgcd->nhwgd", windows, kernel.astype(self.dtype))
    return y.reshape(n, h, w, self.features) + bias.astype(self.dtype)


class ConvDecoder(nn.Module):
  """data2vec 2.0's Decoder2d: [N, P, D] tokens on a grid -> [N, P, out_dim] predictions.

  Attributes:
    width: decoder channels.
    num_layers: conv blocks.
    out_dim: output dimension (the teacher's width).
    grid: patches per side.
    kernel: conv kernel size.
    groups: conv feature groups (width must be divisible by it).
  """
  width: int
  num_layers: int
  out_dim: int
  grid: int
  kernel: int = 3
  groups: int = 16
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    n = x.shape[0]
    x = x.reshape(n, self.grid, self.grid, x.shape[-1]).astype(self.dtype)
    for i in range(self.num_layers):
      y = GroupedConv2d(self.width, self.kernel, self.groups, self.dtype, name=f"conv{i}")(x)
      y = nn.LayerNorm(use_bias=False, use_scale=False, dtype=self.dtype, name=f"norm{i}")(y)
      y = nn.gelu(y, approximate=False)
      x = y if i == 0 else x + y
    x = nn.Dense(self.out_dim, dtype=self.dtype, param_dtype=jnp.float32, name="proj")(x)
    return x.reshape(n, self.grid * self.grid, self.out_dim).astype(jnp.float32)


class Data2Vec(base.Method):
  """data2vec 2.0. Params: {'backbone', 'mask_embed', 'decoder'}; state: {'teacher'} (EMA backbone)."""

  name = "data2vec"
  centre_embeddings = True     # embeddings = mean-pooled patch tokens

  @staticmethod
  def default_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(
        mask_ratio=0.8,
        num_masks=16,              # masked copies per image ("clone_batch")
        top_k=10,                  # teacher blocks averaged (capped at the depth)
        target_source="ffn",       # 'ffn' (paper) | 'block': which output of each teacher block
        layer_norm_targets=True,
        loss_beta=0.0,             # 0 -> squared error (reference image setting)
        decoder_width=768,
        decoder_layers=6,
        decoder_kernel=3,
        decoder_groups=16,
        ema_start=0.9998,
        ema_end=0.99999,
        ema_anneal_steps=-1,       # -1: total_steps
        feature_pool="patch_mean",  # 'patch_mean' | 'backbone'
        feature_encoder="student",  # 'student' | 'teacher' (the EMA encoder) for features()
    ))

  @classmethod
  def validate_config(cls, config):
    c = config.data2vec
    if config.model.name != "vit":
      raise ConfigError(f"config.model.name={config.model.name!r}; data2vec needs 'vit'")
    if not 0.0 < c.mask_ratio < 1.0:
      raise ConfigError(f"config.data2vec.mask_ratio={c.mask_ratio}; expected in (0, 1)")
    if c.num_masks < 1:
      raise ConfigError(f"config.data2vec.num_masks={c.num_masks}; expected >= 1")
    if c.top_k < 1:
      raise ConfigError(f"config.data2vec.top_k={c.top_k}; expected >= 1")
    if c.target_source not in ("ffn", "block"):
      raise ConfigError(f"config.data2vec.target_source={c.target_source!r}; expected 'ffn' or "
                        "'block'")
    if c.feature_encoder not in ("student", "teacher"):
      raise ConfigError(f"config.data2vec.feature_encoder={c.feature_encoder!r}; expected "
                        "'student' or 'teacher'")
    if c.decoder_width % c.decoder_groups:
      raise ConfigError(f"config.data2vec.decoder_width={c.decoder_width} is not divisible by "
                        f"decoder_groups={c.decoder_groups}")

  def __init__(self, config):
    super().__init__(config)
    self.backbone = _masked.vit_backbone(config, self.name)
    self.grid = _masked.grid_size(config)
    self.num_patches = self.grid * self.grid
    self.num_keep = masks_lib.num_keep(self.num_patches, self.cfg.mask_ratio)
    self.top_k = min(self.cfg.top_k, self.backbone.depth)
    self.decoder = ConvDecoder(self.cfg.decoder_width, self.cfg.decoder_layers, self.backbone.width,
                               self.grid, self.cfg.decoder_kernel, self.cfg.decoder_groups,
                               self.backbone.dtype)
    steps = self.cfg.ema_anneal_steps
    self.ema_steps = config.total_steps if steps < 0 else steps
    # The teacher: an EMA of the student encoder, momentum linear from ema_start to ema_end.
    self.ema = common.EMATarget(
        common.linear_momentum(self.cfg.ema_start, self.cfg.ema_end, self.ema_steps),
        path=("teacher",), online="backbone")
    self.momentum = self.ema.momentum

  def view_spec(self) -> ViewSpec:
    return ViewSpec(global_crops=1, global_size=self.config.data.image_size,
                    global_scale=tuple(self.config.data.augment.crop_scale), mask="random",
                    mask_ratio=self.cfg.mask_ratio, patch_size=self.config.model.patch_size)

  def init(self, rng, batch):
    b_rng, d_rng = jax.random.split(rng)
    x = batch["global"][:, 0]
    b_params = self.backbone.init({"params": b_rng}, x, keep_indices=batch["keep_indices"])["params"]
    tokens = jnp.zeros((x.shape[0], self.num_patches, self.backbone.width), jnp.float32)
    d_params = self.decoder.init({"params": d_rng}, tokens)["params"]
    params = {"backbone": b_params, "decoder": d_params,
              "mask_embed": jnp.zeros((self.backbone.width,), jnp.float32)}
    return params, {"teacher": self.ema.init(params)}

  def masks(self, batch, rng):
    """keep [B*M, K] and mask [B*M, P] of the M copies, copy-major within each image.

    Copy 0 is the pipeline's mask; copies 1..M-1 are drawn from `rng`.
    """
    keep, _, mask = _masked.mask_copies(rng, batch["keep_indices"], batch["masked_indices"],
                                        batch["mask"], self.cfg.num_masks, self.num_patches)
    return keep, mask

  def targets(self, teacher, images):
    """[B, P, D] teacher targets (no gradient) of images [B, H, W, C]."""
    _, layers = _masked.block_outputs(self.backbone, teacher, images, source=self.cfg.target_source)
    return losses.data2vec_targets(layers, self.top_k,
                                   layer_norm_targets=self.cfg.layer_norm_targets)

  def predict(self, params, images, keep, train=False, rng=None):
    """Student predictions [N, P, D] for images [N, ...] whose visible patches are keep [N, K]."""
    rngs = {"dropout": rng} if (train and rng is not None) else None
    tokens = self.backbone.apply({"params": params["backbone"]}, images, train=train,
                                 keep_indices=keep, return_tokens=True, rngs=rngs)
    full = _masked.scatter(tokens["patches"], keep, params["mask_embed"], self.num_patches)
    return self.decoder.apply({"params": params["decoder"]}, full)

  def loss(self, params, state, batch, rng, step):
    del step
    mask_rng, drop_rng = jax.random.split(rng)
    images = batch["global"][:, 0]                                     # [B, H, W, C]
    m = self.cfg.num_masks
    target = jax.lax.stop_gradient(self.targets(state["teacher"], images))  # [B, P, D]
    keep, mask = self.masks(batch, mask_rng)                           # [B*M, K], [B*M, P]
    pred = self.predict(params, jnp.repeat(images, m, axis=0), keep, train=True, rng=drop_rng)
    loss = losses.smooth_l1_regression(pred, jnp.repeat(target, m, axis=0), mask,
                                       beta=self.cfg.loss_beta)
    metrics = {"target_std": jnp.mean(jnp.std(target, axis=0)),
               "pred_std": jnp.mean(jnp.std(pred, axis=0))}
    return loss, (metrics, state)

  def after_step(self, params, state, step):
    return self.ema.after_step(params, state, step)

  def pretrained_backbone(self, params, state):
    """The student (`feature_encoder`; or the EMA teacher), pooled as `feature_pool` says."""
    encoder = state["teacher"] if self.cfg.feature_encoder == "teacher" else params["backbone"]
    return base.Backbone(*common.pooled_backbone(self.backbone, {"params": encoder},
                                                 self.cfg.feature_pool))


METHOD = Data2Vec
