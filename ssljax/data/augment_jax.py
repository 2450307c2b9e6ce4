"""Batched photometric augmentations in JAX: the device half of the SimCLR view.

With `data.augment_on='device'` the host pipeline only decodes, draws the random resized crop and
resizes it (uint8), and draws the view's photometric parameters; the jitted train step then runs
the photometric part here, on the accelerator. The parameters of one view are the 14 uniforms in
[0, 1) that the host path (`ssljax.data.augment`) draws after the crop, with the same meaning, so
for the same record the two paths make the same view up to float rounding:

  u[0]     horizontal flip if u[0] < hflip_prob
  u[1]     colour jitter if u[1] < color_jitter_prob
  u[2:6]   brightness, contrast, saturation, hue factors (torchvision ColorJitter ranges)
  u[6:10]  the jitter order: the ops are applied in the order of argsort(u[6:10])
  u[10]    grayscale if u[10] < grayscale_prob (RGB only)
  u[11]    Gaussian blur if u[11] < blur_prob, with sigma = lo + (hi - lo) * u[12]
  u[13]    solarisation if u[13] < solarize_prob

Every op is a pure function of images [B, H, W, C] (uint8 or float in [0, 1]) and parameters
[B, 14]; `random_uniforms(key, B)` draws the parameters from one key per sample where no host
draws them. All arithmetic is float32 (matmuls at HIGHEST precision, so that TPUs do not round
the blur to bfloat16); the result is cast to `dtype`. The config is read at trace time.
"""
from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

NUM_UNIFORMS = 14
_LUMA = (0.299, 0.587, 0.114)
_HI = jax.lax.Precision.HIGHEST


def random_uniforms(keys: jax.Array) -> jax.Array:
  """Per-sample photometric parameters float32 [B, 14] from one PRNG key per sample [B, 2]."""
  return jax.vmap(lambda k: jax.random.uniform(k, (NUM_UNIFORMS,), jnp.float32))(keys)


def to_unit(images: jax.Array) -> jax.Array:
  """uint8 [..] -> float32 x / 255 (the host path's float32 arithmetic); float stays as is."""
  if images.dtype == jnp.uint8:
    return images.astype(jnp.float32) * np.float32(1.0 / 255.0)
  return images.astype(jnp.float32)


def gray(x: jax.Array) -> jax.Array:
  """[..., H, W, C] -> [..., H, W, 1] ITU-R 601 luma (identity for C = 1)."""
  if x.shape[-1] == 1:
    return x
  return (x[..., 0:1] * _LUMA[0] + x[..., 1:2] * _LUMA[1]) + x[..., 2:3] * _LUMA[2]


def _factor(strength: float, u: jax.Array) -> jax.Array:
  """torchvision ColorJitter factor: uniform in [max(0, 1 - s), 1 + s]."""
  lo = max(0.0, 1.0 - strength)
  return lo + (1.0 + strength - lo) * u


def adjust_hue(x: jax.Array, shift: jax.Array) -> jax.Array:
  """Rotates the HSV hue of one RGB image [H, W, 3] in [0, 1] by `shift` turns (scalar).

  Value v = max and chroma c = max - min do not change, so channel n (R: 5, G: 3, B: 1) is
  v - c * clip(min(k, 4 - k), 0, 1) with k = (n + h6 + 6 shift) mod 6, h6 the hue in [0, 6).
  """
  r, g, b = x[..., 0], x[..., 1], x[..., 2]
  v = jnp.maximum(jnp.maximum(r, g), b)
  c = v - jnp.minimum(jnp.minimum(r, g), b)
  num = jnp.where(v == r, g - b, jnp.where(v == g, (b - r) + 2.0 * c, (r - g) + 4.0 * c))
  h6 = num / jnp.maximum(c, 1e-12) + 6.0 * shift
  h6 = h6 - 6.0 * jnp.floor(h6 * (1.0 / 6.0))
  k = h6[..., None] + jnp.asarray([5.0, 3.0, 1.0], jnp.float32)
  k = jnp.where(k >= 6.0, k - 6.0, k)
  return v[..., None] - c[..., None] * jnp.clip(jnp.minimum(k, 4.0 - k), 0.0, 1.0)


def _jitter_one(x: jax.Array, u: jax.Array, p: Any) -> jax.Array:
  """Colour jitter of one image [H, W, C] from u[2:10]: 4 factors, then 4 order keys."""
  rgb = x.shape[-1] == 3

  def brightness(x):
    return jnp.clip(x * _factor(p.brightness, u[2]), 0.0, 1.0) if p.brightness > 0 else x

  def contrast(x):
    if p.contrast <= 0:
      return x
    f = _factor(p.contrast, u[3])
    return jnp.clip(x * f + (1.0 - f) * jnp.mean(gray(x)), 0.0, 1.0)

  def saturation(x):
    if p.saturation <= 0 or not rgb:
      return x
    f = _factor(p.saturation, u[4])
    return jnp.clip(x * f + gray(x) * (1.0 - f), 0.0, 1.0)

  def hue(x):
    if p.hue <= 0 or not rgb:
      return x
    return adjust_hue(x, (2.0 * u[5] - 1.0) * p.hue)

  order = jnp.argsort(u[6:10])
  for i in range(4):
    x = jax.lax.switch(order[i], (brightness, contrast, saturation, hue), x)
  return x


@functools.lru_cache(maxsize=64)
def _blur_taps(size: int) -> tuple[np.ndarray, np.ndarray]:
  """(tap offsets float32 [k], flat index [k * S] into an [S, S] matrix with reflect padding);
  k = 10% of the size, made odd, at least 3 (the host path's kernel)."""
  from ssljax.data import augment  # pylint: disable=g-import-not-at-top
  return augment._reflect_taps(size)  # pylint: disable=protected-access


def blur_matrix(size: int, sigma: jax.Array) -> jax.Array:
  """The [S, S] matrix B of a Gaussian blur with reflect padding: blurred = B x B^T per channel."""
  taps, flat = _blur_taps(size)
  taps = jnp.asarray(taps)
  w = jnp.exp(taps * taps * (-0.5 / (sigma * sigma)))
  w = w / jnp.sum(w)
  b = jnp.zeros((size * size,), jnp.float32).at[jnp.asarray(flat)].add(jnp.repeat(w, size))
  return b.reshape(size, size)


def blur(x: jax.Array, sigma: jax.Array) -> jax.Array:
  """Separable Gaussian blur of one square image [S, S, C] (reflect padding) with `sigma`."""
  b = blur_matrix(x.shape[0], sigma)
  t = jnp.einsum("ij,jkc->ikc", b, x, precision=_HI)
  return jnp.einsum("ikc,lk->ilc", t, b, precision=_HI)


def _photometric_one(x: jax.Array, u: jax.Array, p: Any) -> jax.Array:
  """One view [S, S, C] in [0, 1] -> normalised float32, the host path's steps 2-7."""
  x = jnp.where(u[1] < p.color_jitter_prob, _jitter_one(x, u, p), x)
  if x.shape[-1] == 3:
    x = jnp.where(u[10] < p.grayscale_prob, jnp.broadcast_to(gray(x), x.shape), x)
  lo, hi = p.blur_sigma
  if p.blur_prob > 0:
    x = jnp.where(u[11] < p.blur_prob, blur(x, lo + (hi - lo) * u[12]), x)
  if p.solarize_prob > 0:
    x = jnp.where(u[13] < p.solarize_prob,
                  jnp.where(x >= p.solarize_threshold, 1.0 - x, x), x)
  x = jnp.where(u[0] < p.hflip_prob, x[:, ::-1], x)
  return normalize(x, p.mean, p.std)


def normalize(x: jax.Array, mean, std) -> jax.Array:
  """(x - mean) / std per channel of x in [0, 1], as the host path computes it."""
  c = x.shape[-1]
  if len(mean) not in (1, c) or len(std) not in (1, c):
    raise ValueError(f"mean {tuple(mean)} / std {tuple(std)} must have 1 or {c} entries for C={c}")
  inv = np.float32(1.0) / np.asarray(std, np.float32)
  shift = np.asarray(mean, np.float32) * inv
  return x * inv - shift


def photometric(images: jax.Array, uniforms: jax.Array, cfg: Any,
                dtype: Any = jnp.float32, overrides: Any = ()) -> jax.Array:
  """The photometric half of the SimCLR view on a batch, on the device.

  Args:
    images: uint8 (or float in [0, 1]) [B, S, S, C], C in (1, 3): resized crops.
    uniforms: float32 [B, 14] per-view parameters (module docstring; `random_uniforms`).
    cfg: the augmentation config (keys of `augment.default_augment_config()`).
    dtype: output dtype (the run's compute dtype).
    overrides: (key, value) pairs that replace single settings of `cfg` (e.g. a view's blur_prob).

  Returns:
    [B, S, S, C] normalised views in `dtype`.
  """
  from ssljax.data import augment  # pylint: disable=g-import-not-at-top
  if images.ndim != 4 or images.shape[1] != images.shape[2] or images.shape[-1] not in (1, 3):
    raise ValueError(f"images must be square [B, S, S, C] with C in (1, 3), got {images.shape}")
  if uniforms.shape != (images.shape[0], NUM_UNIFORMS):
    raise ValueError(f"uniforms have shape {uniforms.shape}; expected "
                     f"({images.shape[0]}, {NUM_UNIFORMS})")
  p = augment._params(cfg)._replace(**dict(overrides))  # pylint: disable=protected-access
  fn = functools.partial(_photometric_one, p=p)
  return jax.vmap(fn)(to_unit(images), uniforms.astype(jnp.float32)).astype(dtype)


def photometric_views(views: jax.Array, uniforms: jax.Array, cfg: Any,
                      dtype: Any = jnp.float32, view_overrides: Any = ()) -> jax.Array:
  """`photometric` on stacked views [B, V, S, S, C] with parameters [B, V, 14]; view v takes
  `view_overrides[v % len]` (pairs (key, value)) when given."""
  if view_overrides:
    n = len(view_overrides)
    return jnp.stack([photometric(views[:, v], uniforms[:, v], cfg, dtype, view_overrides[v % n])
                      for v in range(views.shape[1])], axis=1)
  b, v = views.shape[:2]
  out = photometric(views.reshape((b * v,) + views.shape[2:]),
                    uniforms.reshape(b * v, NUM_UNIFORMS), cfg, dtype)
  return out.reshape(views.shape)
