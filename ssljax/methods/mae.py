"""MAE: encode a random 25% of the patches, reconstruct the pixels of the rest with a light decoder.

"Masked Autoencoders Are Scalable Vision Learners" (He et al., 2022). As in its reference code:
  * uniform random masking, ratio 0.75 (per record in the grain pipeline: `ViewSpec.mask='random'`,
    giving batch['mask'] [B, P], batch['keep_indices'] [B, K], batch['masked_indices'] [B, P-K]);
  * the encoder (the run's ViT) sees only the K visible patches (plus its cls token), no mask
    tokens: `ViT(keep_indices=...)`;
  * the decoder embeds the encoder's visible tokens to `decoder_width`, puts a shared learned mask
    token at every removed position, adds fixed 2-D sin-cos positional embeddings, runs
    `decoder_depth` transformer blocks (paper: 8 blocks of width 512, 16 heads) and predicts the
    p*p*C pixels of every patch;
  * loss `ssljax.losses.mae_loss` on the masked patches with per-patch normalised targets
    (norm_pix, the paper's default for its best results);
  * recipe (ViT-B/16, ImageNet): AdamW (0.9, 0.95), base lr 1.5e-4 x batch/256, weight decay 0.05,
    batch 4096, 40 warm-up epochs of 800-1600, augmentation = random resized crop (0.2, 1) + flip.

Features for kNN / probes: configurable `feature_pool`; the paper linear-probes the cls token
('backbone' with pool='cls') and notes that average pooling is similar; 'patch_mean' is the default
here because the cls token receives no loss signal in MAE pretraining.
"""
from __future__ import annotations

import os
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ssljax import losses
from ssljax.data import masks as masks_lib
from ssljax.data.views import ViewSpec
from ssljax.errors import ConfigError
from ssljax.methods import _masked
from ssljax.methods import base
from ssljax.methods import common
from ssljax.models import vit as vit_lib


class MAEDecoder(nn.Module):
  """MAE's light decoder: visible tokens [N, K, D] + their indices -> pixel predictions [N, P, p*p*C].

  Attributes:
    width, depth, num_heads, mlp_ratio: the decoder transformer.
    grid: patches per side (P = grid**2).
    patch_dim: p * p * C values predicted per patch.
    attention_impl, dtype: as the ViT's.
  """
  width: int
  depth: int
  num_heads: int
  grid: int
  patch_dim: int
  mlp_ratio: float = 4.0
  attention_impl: str = "auto"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, visible: jax.Array, keep: jax.Array, cls: Optional[jax.Array] = None,
               train: bool = False) -> jax.Array:
    """visible [N, K, D], keep [N, K], optional encoder cls token [N, D] -> [N, P, patch_dim].

    As in the reference decoder, the encoder's cls token (when it has one) is embedded with the
    patch tokens, enters the decoder blocks first with a zero positional embedding, and is dropped
    before the prediction head.
    """
    num_patches = self.grid * self.grid
    embed = nn.Dense(self.width, dtype=self.dtype, param_dtype=jnp.float32, name="embed")
    x = embed(visible)
    mask_token = self.param("mask_token", nn.initializers.normal(0.02), (self.width,), jnp.float32)
    x = _masked.scatter(x, keep, mask_token, num_patches)                       # [N, P, Dd]
    x = x + vit_lib.sincos_2d_posemb(self.grid, self.grid, self.width).astype(x.dtype)[None]
    if cls is not None:
      x = jnp.concatenate([embed(cls)[:, None].astype(x.dtype), x], axis=1)
    x = _masked.TransformerStack(self.depth, self.num_heads, self.mlp_ratio, self.attention_impl,
                                 self.dtype, name="blocks")(x, train=train)
    if cls is not None:
      x = x[:, 1:]
    return nn.Dense(self.patch_dim, dtype=self.dtype, param_dtype=jnp.float32,
                    name="pred")(x).astype(jnp.float32)


class MAE(base.Method):
  """MAE. Params: {'backbone' (the ViT encoder), 'decoder'}; state: {} (nothing carried)."""

  name = "mae"
  centre_embeddings = True     # embeddings = mean-pooled patch tokens

  @staticmethod
  def default_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(
        mask_ratio=0.75,
        decoder_width=512,
        decoder_depth=8,
        decoder_heads=16,
        decoder_mlp_ratio=4.0,
        norm_pix=True,
        decoder_cls=True,            # feed the encoder's cls token to the decoder (reference code)
        feature_pool="patch_mean",   # 'patch_mean' | 'backbone' (the ViT's own pooling)
    ))

  @classmethod
  def validate_config(cls, config):
    c = config.mae
    if not 0.0 < c.mask_ratio < 1.0:
      raise ConfigError(f"config.mae.mask_ratio={c.mask_ratio}; expected in (0, 1)")
    if c.decoder_width % c.decoder_heads or c.decoder_width % 4:
      raise ConfigError(f"config.mae.decoder_width={c.decoder_width}; expected a multiple of 4 and "
                        f"of decoder_heads={c.decoder_heads}")
    if c.feature_pool not in ("patch_mean", "backbone"):
      raise ConfigError(f"config.mae.feature_pool={c.feature_pool!r}; expected 'patch_mean' or "
                        "'backbone'")
    if config.model.name != "vit":
      raise ConfigError(f"config.model.name={config.model.name!r}; mae needs 'vit'")

  def __init__(self, config):
    super().__init__(config)
    self.backbone = _masked.vit_backbone(config, self.name)
    self.grid = _masked.grid_size(config)
    self.num_patches = self.grid * self.grid
    self.num_keep = masks_lib.num_keep(self.num_patches, self.cfg.mask_ratio)
    p = self.backbone.patch_size
    self.decoder = MAEDecoder(
        width=self.cfg.decoder_width, depth=self.cfg.decoder_depth, num_heads=self.cfg.decoder_heads,
        grid=self.grid, patch_dim=0, mlp_ratio=self.cfg.decoder_mlp_ratio,
        attention_impl=self.backbone.attention_impl, dtype=self.backbone.dtype)
    self._p = p
    self._use_cls = self.cfg.decoder_cls and self.backbone.pool == "cls"

  def view_spec(self) -> ViewSpec:
    return ViewSpec(global_crops=1, global_size=self.config.data.image_size,
                    global_scale=tuple(self.config.data.augment.crop_scale), mask="random",
                    mask_ratio=self.cfg.mask_ratio, patch_size=self.config.model.patch_size)

  def _decoder_for(self, channels: int) -> MAEDecoder:
    return self.decoder.clone(patch_dim=self._p * self._p * channels)

  def init(self, rng, batch):
    b_rng, d_rng = jax.random.split(rng)
    x = batch["global"][:, 0]
    keep = batch["keep_indices"]
    b_params = self.backbone.init({"params": b_rng}, x, keep_indices=keep)["params"]
    visible = jnp.zeros((x.shape[0], keep.shape[1], self.backbone.width), jnp.float32)
    cls = jnp.zeros((x.shape[0], self.backbone.width), jnp.float32) if self._use_cls else None
    d_params = self._decoder_for(x.shape[-1]).init({"params": d_rng}, visible, keep, cls)["params"]
    return {"backbone": b_params, "decoder": d_params}, {}

  def predict(self, params, images, keep, train=False, rng=None):
    """Pixel predictions [N, P, p*p*C] for every patch from the visible patches `keep` [N, K]."""
    rngs = {"dropout": rng} if (train and rng is not None) else None
    tokens = self.backbone.apply({"params": params["backbone"]}, images, train=train,
                                 keep_indices=keep, return_tokens=True, rngs=rngs)
    cls = tokens["cls"] if self._use_cls else None
    return self._decoder_for(images.shape[-1]).apply({"params": params["decoder"]},
                                                     tokens["patches"], keep, cls)

  def loss(self, params, state, batch, rng, step):
    del step
    images = batch["global"][:, 0]                                   # [B, H, W, C]
    pred = self.predict(params, images, batch["keep_indices"], train=True, rng=rng)
    target = vit_lib.patchify(images.astype(jnp.float32), self._p)    # [B, P, p*p*C]
    loss = losses.mae_loss(pred, target, batch["mask"], norm_pix=self.cfg.norm_pix)
    metrics = {"visible_fraction": jnp.mean(1.0 - batch["mask"].astype(jnp.float32))}
    return loss, (metrics, state)

  def pretrained_backbone(self, params, state):
    """The encoder, pooled as `feature_pool` says (default: the mean of its patch tokens)."""
    return base.Backbone(*common.pooled_backbone(self.backbone, {"params": params["backbone"]},
                                                 self.cfg.feature_pool))

  def visualize(self, params, state, images, rng) -> dict[str, np.ndarray]:
    """{'mae_reconstruction': uint8 [H', W', 3]}: rows original / masked / reconstruction of a few
    (held-out) images [N, H, W, C], masks drawn from `rng` (see `reconstruction_grid`)."""
    del state
    return {"mae_reconstruction": reconstruction_grid(self, params, images, rng)}


def reconstruct(method: MAE, params, images: jax.Array, rng: jax.Array):
  """(mask [N, P] bool, reconstruction [N, H, W, C]) in the images' (normalised) pixel space.

  With norm_pix the decoder predicts normalised patches; they are mapped back with each target
  patch's own mean and std (as the MAE visualisation demo does), and visible patches are shown
  as they are.
  """
  n, h, w, c = images.shape
  keep, _, mask = _masked.random_masks(rng, n, method.num_patches, method.num_keep)
  pred = method.predict(params, images, keep)
  target = vit_lib.patchify(images.astype(jnp.float32), method._p)
  if method.cfg.norm_pix:
    mean = jnp.mean(target, -1, keepdims=True)
    var = jnp.var(target, -1, keepdims=True, ddof=1)
    pred = pred * jnp.sqrt(var + 1e-6) + mean
  mixed = jnp.where(mask[..., None], pred, target)
  return mask, vit_lib.unpatchify(mixed, method._p, h // method._p, w // method._p)


def reconstruction_grid(method: MAE, params, images, rng: jax.Array, gap: int = 2,
                        min_cell: int = 64) -> np.ndarray:
  """uint8 [H', W', 3] image grid: rows original / masked / reconstruction of images [N, H, W, C].

  Pixels are de-normalised with config.data.augment mean/std and clipped to [0, 1]. The masked row
  shows removed patches in mid grey; the reconstruction row shows the visible patches as they are
  and the decoder's prediction at the masked ones. Each pixel is repeated so that a cell is at
  least `min_cell` pixels wide (16 px digits are unreadable otherwise); cells are separated by
  `gap` white pixels. Grayscale is repeated to 3 channels.
  """
  images = jnp.asarray(images, jnp.float32)
  mask, recon = reconstruct(method, params, images, rng)
  aug = method.config.data.augment
  mean, std = np.asarray(aug.mean, np.float32), np.asarray(aug.std, np.float32)
  to_img = lambda x: np.clip(np.asarray(x, np.float32) * std + mean, 0.0, 1.0)  # noqa: E731
  n, h, w, c = images.shape
  p, grid = method._p, method.grid
  pix_mask = np.repeat(np.repeat(np.asarray(mask).reshape(n, grid, grid), p, 1), p, 2)[..., None]
  original = to_img(images)
  rows = [original, np.where(pix_mask, 0.5, original), to_img(recon)]
  rep = max(1, -(-min_cell // max(h, w)))
  ch, cw = h * rep, w * rep
  out = np.ones((3 * ch + 4 * gap, n * cw + (n + 1) * gap, 3), np.float32)
  for r, imgs in enumerate(rows):
    imgs = np.repeat(np.repeat(imgs, rep, 1), rep, 2)
    if c == 1:
      imgs = np.repeat(imgs, 3, -1)
    for i in range(n):
      top, left = gap + r * (ch + gap), gap + i * (cw + gap)
      out[top:top + ch, left:left + cw] = imgs[i, ..., :3]
  return np.round(out * 255.0).astype(np.uint8)


def save_reconstructions(method: MAE, params, state, images, path: str, seed: int = 0) -> str:
  """Writes `reconstruction_grid` of images [N, H, W, C] as a PNG; returns path."""
  del state
  from PIL import Image
  grid = reconstruction_grid(method, params, images, jax.random.key(seed))
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  Image.fromarray(grid).save(path)
  return path


METHOD = MAE
