"""Per-record image augmentations in numpy (and PIL for the crop-resize), seeded per record.

Every function takes a uint8 image [H, W, C] (C = 1 or 3; a 2-D [H, W] image is read as C = 1) and
returns float32 views normalised as (x / 255 - mean) / std. All randomness comes from the
`np.random.Generator` passed in: no global state is touched, so the same Generator seed gives the
same views bit for bit, which is what lets the grain iterator state be checkpointed mid-epoch.

The SimCLR view ("A Simple Framework for Contrastive Learning of Visual Representations"), in order:
  1. random resized crop (torchvision `RandomResizedCrop` semantics: area fraction uniform in
     `crop_scale`, aspect ratio log-uniform in `crop_ratio`, 10 tries then a centre-crop fallback),
     cropped and resized in one bilinear PIL call (antialiased when shrinking; upsamples tiny images
     such as the 8x8 digits to 16 or 32 px);
  2. horizontal flip with probability `hflip_prob` (drawn here, applied at the very end: steps 3-7
     commute with a mirror, so the result is torchvision's order, and a flipped view is the exact
     mirror of the unflipped one);
  3. colour jitter with probability `color_jitter_prob`: brightness, contrast, saturation, hue in a
     random order (torchvision `ColorJitter` factors; for C = 1 only brightness and contrast apply);
  4. grayscale with probability `grayscale_prob` (ITU-R 601 luma, replicated over the channels);
  5. Gaussian blur with probability `blur_prob`: sigma uniform in `blur_sigma`, kernel size 10% of
     the view size made odd and at least 3, reflect padding, separable;
  6. solarisation with probability `solarize_prob`: x -> 1 - x where x >= `solarize_threshold`;
  7. normalisation with the per-channel `mean` and `std` (a 1-tuple broadcasts over channels).

Random draws per view: one `rng.random(22)` for the crop and one `rng.random(14)` for everything
else, always, whatever the probabilities, so that the stream position after a view does not depend
on which augmentations fired (multi-crop draws its views in order: globals, then locals).
"""
from __future__ import annotations

import contextlib
import functools
import math
from typing import Any, NamedTuple, Sequence

import ml_collections
import numpy as np
from PIL import Image

from ssljax.data.views import ViewSpec  # noqa: F401  (re-exported: its old home)

_LUMA = np.array([0.299, 0.587, 0.114], np.float32)
_HUE_N = np.array([5.0, 3.0, 1.0], np.float32).reshape(3, 1, 1)
_CROP_TRIES = 10


def default_augment_config() -> ml_collections.ConfigDict:
  """SimCLR's augmentation defaults (strength s = 0.5 jitter, as in the paper's ImageNet recipe).

  Returns:
    ConfigDict with crop_scale, crop_ratio, hflip_prob, color_jitter_prob, brightness, contrast,
    saturation, hue, grayscale_prob, blur_prob, blur_sigma, solarize_prob, solarize_threshold, mean,
    std. Ranges are tuples of floats, probabilities and strengths floats.
  """
  return ml_collections.ConfigDict(dict(
      crop_scale=(0.08, 1.0),
      crop_ratio=(3.0 / 4.0, 4.0 / 3.0),
      hflip_prob=0.5,
      color_jitter_prob=0.8,
      brightness=0.4,
      contrast=0.4,
      saturation=0.4,
      hue=0.1,
      grayscale_prob=0.2,
      blur_prob=0.5,
      blur_sigma=(0.1, 2.0),
      solarize_prob=0.0,
      solarize_threshold=0.5,
      mean=(0.5,),
      std=(0.5,),
  ))


class _Params(NamedTuple):
  """The config read once per call into plain Python values (ConfigDict access is slow)."""
  crop_scale: tuple[float, float]
  crop_ratio: tuple[float, float]
  hflip_prob: float
  color_jitter_prob: float
  brightness: float
  contrast: float
  saturation: float
  hue: float
  grayscale_prob: float
  blur_prob: float
  blur_sigma: tuple[float, float]
  solarize_prob: float
  solarize_threshold: float
  mean: tuple[float, ...]
  std: tuple[float, ...]


def _params(cfg: Any, crop_scale: Sequence[float] | None = None) -> _Params:
  p = _Params(*[cfg[name] for name in _Params._fields])
  if crop_scale is not None:
    p = p._replace(crop_scale=tuple(crop_scale))
  return p


def _as_hwc_uint8(image: np.ndarray) -> np.ndarray:
  image = np.asarray(image)
  if image.ndim == 2:
    image = image[:, :, None]
  if image.ndim != 3 or image.shape[-1] not in (1, 3):
    raise ValueError(f"image must be [H, W, C] with C in (1, 3), got shape {image.shape}")
  if image.dtype != np.uint8:
    raise ValueError(f"image must be uint8, got {image.dtype}")
  return image


def _crop_resize(image: np.ndarray, box: tuple[int, int, int, int], size: int) -> np.ndarray:
  """uint8 [H, W, C] -> float32 [C, size, size] in [0, 1]: bilinear resize of box (l, t, r, b).

  Pillow's BILINEAR filter samples output pixel i at left + (i + 0.5) * scale, interpolates between
  the nearest pixel centres when enlarging and stretches the triangle filter by the scale when
  shrinking (antialiased), exactly what torchvision's RandomResizedCrop does on PIL images.
  """
  x = _crop_resize_uint8(image, box, size)
  return x.transpose(2, 0, 1).astype(np.float32) * np.float32(1.0 / 255.0)


def _crop_resize_uint8(image: np.ndarray, box: tuple[int, int, int, int], size: int) -> np.ndarray:
  """uint8 [H, W, C] -> uint8 [size, size, C]: Pillow's bilinear resize of box (l, t, r, b)."""
  h, w, c = image.shape
  mode = "L" if c == 1 else "RGB"
  pil = Image.frombuffer(mode, (w, h), np.ascontiguousarray(image).tobytes(), "raw", mode, 0, 1)
  out = pil.resize((size, size), Image.Resampling.BILINEAR, box=box)
  return np.frombuffer(out.tobytes(), np.uint8).reshape(size, size, c)


def _crop_box(h: int, w: int, u: Sequence[float], scale: Sequence[float],
              ratio: Sequence[float]) -> tuple[int, int, int, int]:
  """torchvision RandomResizedCrop.get_params from 2 * 10 + 2 uniforms `u`; (left, top, r, b)."""
  area = h * w
  log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
  for t in range(_CROP_TRIES):
    target = area * (scale[0] + (scale[1] - scale[0]) * u[2 * t])
    aspect = math.exp(log_lo + (log_hi - log_lo) * u[2 * t + 1])
    cw = int(round(math.sqrt(target * aspect)))
    ch = int(round(math.sqrt(target / aspect)))
    if 0 < cw <= w and 0 < ch <= h:
      top = int(u[-2] * (h - ch + 1))
      left = int(u[-1] * (w - cw + 1))
      return left, top, left + cw, top + ch
  in_ratio = w / h
  if in_ratio < min(ratio):
    cw, ch = w, int(round(w / min(ratio)))
  elif in_ratio > max(ratio):
    cw, ch = int(round(h * max(ratio))), h
  else:
    cw, ch = w, h
  top, left = (h - ch) // 2, (w - cw) // 2
  return left, top, left + cw, top + ch


def _gray(x: np.ndarray) -> np.ndarray:
  """[C, S, S] float -> [1, S, S] ITU-R 601 luma (identity for C = 1)."""
  if x.shape[0] == 1:
    return x
  return (_LUMA @ x.reshape(3, -1)).reshape((1,) + x.shape[1:])


def _clip01(x: np.ndarray) -> np.ndarray:
  """In-place clamp to [0, 1] (ufuncs with Python scalars: float32 stays float32, no wrapper)."""
  return np.minimum(np.maximum(x, 0.0, out=x), 1.0, out=x)


def _adjust_hue(x: np.ndarray, shift: float) -> np.ndarray:
  """Rotate the HSV hue of a float RGB image [3, S, S] in [0, 1] by `shift` turns.

  Value v = max and chroma c = max - min do not change under a hue rotation, so the HSV round trip
  reduces to: hue h6 in [0, 6) from the maximal channel, then channel n (R: 5, G: 3, B: 1) is
  v - c * clip(min(k, 4 - k), 0, 1) with k = (n + h6 + 6 shift) mod 6.
  """
  r, g, b = x[0], x[1], x[2]
  v = np.maximum(np.maximum(r, g), b)
  c = v - np.minimum(np.minimum(r, g), b)
  num = np.where(v == r, g - b, np.where(v == g, (b - r) + 2.0 * c, (r - g) + 4.0 * c))
  h6 = num / np.maximum(c, 1e-12) + 6.0 * shift
  h6 -= 6.0 * np.floor(h6 * (1.0 / 6.0))  # now in [0, 6)
  k = h6 + _HUE_N  # [3, S, S] in [1, 11)
  k = np.where(k >= 6.0, k - 6.0, k)
  ramp = np.minimum(k, 4.0 - k)
  return v - c * _clip01(ramp)


def _factor(strength: float, u: float) -> float:
  """torchvision ColorJitter factor: uniform in [max(0, 1 - s), 1 + s]."""
  lo = max(0.0, 1.0 - strength)
  return lo + (1.0 + strength - lo) * u


def _jitter(x: np.ndarray, u: Sequence[float], p: _Params) -> np.ndarray:
  """Colour jitter of [C, S, S] from 8 uniforms: 4 factors, then 4 whose argsort is the order."""
  rgb = x.shape[0] == 3
  for op in sorted(range(4), key=lambda i: u[4 + i]):
    if op == 0 and p.brightness > 0:
      x = _clip01(x * _factor(p.brightness, u[0]))
    elif op == 1 and p.contrast > 0:
      f = _factor(p.contrast, u[1])
      mean = float(_gray(x).sum()) / (x.shape[1] * x.shape[2])
      x = _clip01(x * f + (1.0 - f) * mean)
    elif op == 2 and p.saturation > 0 and rgb:
      f = _factor(p.saturation, u[2])
      x = _clip01(x * f + _gray(x) * (1.0 - f))
    elif op == 3 and p.hue > 0 and rgb:
      x = _adjust_hue(x, (2.0 * u[3] - 1.0) * p.hue)
  return x


@functools.lru_cache(maxsize=64)
def _reflect_taps(size: int) -> tuple[np.ndarray, np.ndarray]:
  """Kernel taps [k] and, per tap and output position, the flat index into an [S, S] blur matrix
  of the input position it reads (reflect padding), [k * S].

  k = 10% of `size`, made odd, at least 3 (SimCLR: 23 for 224 px).
  """
  k = max(3, int(0.1 * size))
  k += 1 - k % 2
  taps = np.arange(-(k // 2), k // 2 + 1)
  src = np.arange(size)[None, :] + taps[:, None]  # [k, S]
  if size > 1:
    period = 2 * (size - 1)
    src = np.abs(src) % period
    src = np.where(src >= size, period - src, src)
  else:
    src = np.zeros_like(src)
  flat = (np.arange(size)[None, :] * size + src).ravel()
  taps = taps.astype(np.float32)
  for a in (taps, flat):
    a.flags.writeable = False
  return taps, flat


_blas_controller = None


def _one_blas_thread():
  """Context: numpy's BLAS on one thread. The pipeline's parallelism is its read threads and worker
  processes; a BLAS pool per thread on top oversubscribed the cores (two grain workers at 224 px:
  33 img/s instead of ~300)."""
  global _blas_controller
  if _blas_controller is None:
    import threadpoolctl
    _blas_controller = threadpoolctl.ThreadpoolController()
  return _blas_controller.limit(limits=1, user_api="blas")


def _blur(x: np.ndarray, sigma: float) -> np.ndarray:
  """Separable Gaussian blur (reflect padding) of a square [C, S, S] float32 image.

  Multiplies by the [S, S] blur matrix on both sides: two single-threaded BLAS matmuls, which
  measured ~2x faster than summing the k shifted copies of the padded image per axis at 224 to
  512 px (one core).
  """
  s = x.shape[-1]
  taps, flat = _reflect_taps(s)
  w = np.exp(taps * taps * (-0.5 / (sigma * sigma)))
  w /= w.sum()
  # b[i, j] = sum of the weights of the taps that output position i reads from input position j.
  b = np.bincount(flat, weights=np.repeat(w, s), minlength=s * s).reshape(s, s).astype(np.float32)
  # OpenBLAS runs products of up to 64^3 multiply-adds on one thread anyway: no limit to set.
  with _one_blas_thread() if s > 64 else contextlib.nullcontext():
    return b @ x @ b.T


def _to_hwc_normalized(x: np.ndarray, mean: Sequence[float], std: Sequence[float],
                       flip: bool = False) -> np.ndarray:
  """[C, S, S] in [0, 1] -> float32 [S, S, C] of (x - mean) / std, mirrored along W if `flip`."""
  c = x.shape[0]
  if len(mean) not in (1, c) or len(std) not in (1, c):
    raise ValueError(f"mean {tuple(mean)} / std {tuple(std)} must have 1 or {c} entries for C={c}")
  inv = np.float32(1.0) / np.asarray(std, np.float32).reshape(-1, 1, 1)
  shift = np.asarray(mean, np.float32).reshape(-1, 1, 1) * inv
  if flip:
    x = x[:, :, ::-1]
  return np.ascontiguousarray((x * inv - shift).transpose(1, 2, 0))


def _augment(image: np.ndarray, rng: np.random.Generator, size: int, p: _Params) -> np.ndarray:
  h, w, c = image.shape
  u_crop = rng.random(2 * _CROP_TRIES + 2).tolist()  # Python floats: float32 math stays float32
  u = rng.random(14).tolist()
  box = _crop_box(h, w, u_crop, p.crop_scale, p.crop_ratio)
  x = _crop_resize(image, box, size)
  if u[1] < p.color_jitter_prob:
    x = _jitter(x, u[2:10], p)
  if c == 3 and u[10] < p.grayscale_prob:
    x = np.repeat(_gray(x), 3, axis=0)
  if u[11] < p.blur_prob:
    lo, hi = p.blur_sigma
    x = _blur(x, lo + (hi - lo) * u[12])
  if u[13] < p.solarize_prob:
    x = np.where(x >= p.solarize_threshold, 1.0 - x, x)
  return _to_hwc_normalized(x, p.mean, p.std, flip=bool(u[0] < p.hflip_prob))


def augment_view(image: np.ndarray, rng: np.random.Generator, size: int, cfg: Any) -> np.ndarray:
  """One augmented SimCLR view of an image.

  Args:
    image: uint8 [H, W, C], C in (1, 3) ([H, W] is read as C = 1).
    rng: the record's Generator; the only source of randomness (36 uniforms are drawn).
    size: output side S in pixels.
    cfg: mapping with the keys of `default_augment_config()` (ConfigDict or dict).

  Returns:
    float32 [S, S, C], (x / 255 - mean) / std of the augmented image.
  """
  return _augment(_as_hwc_uint8(image), rng, size, _params(cfg))


def center_view(image: np.ndarray, size: int, cfg: Any) -> np.ndarray:
  """Deterministic eval transform: centre square crop (shorter side), bilinear resize, normalise.

  Args:
    image: uint8 [H, W, C], C in (1, 3).
    size: output side S.
    cfg: mapping with at least `mean` and `std`.

  Returns:
    float32 [S, S, C]; equal, bit for bit, to `crops.normalize_uint8(crops.center_crop_uint8(...))`.
  """
  image = _as_hwc_uint8(image)
  h, w, _ = image.shape
  side = min(h, w)
  top, left = (h - side) // 2, (w - side) // 2
  x = _crop_resize(image, (left, top, left + side, top + side), size)
  return _to_hwc_normalized(x, tuple(cfg["mean"]), tuple(cfg["std"]))


def multicrop_views(image: np.ndarray, rng: np.random.Generator, spec: ViewSpec, cfg: Any,
                    global_cfgs: Sequence[Any] | None = None,
                    local_cfg: Any | None = None) -> dict[str, np.ndarray]:
  """Multi-crop views (SwAV/DINO): G global crops and L local crops of one image.

  The crop scale of each view comes from `spec` (global_scale / local_scale) and replaces the
  config's crop_scale; every other setting comes from the config. Views are drawn in order
  global 0..G-1 then local 0..L-1 from `rng`.

  Args:
    image: uint8 [H, W, C], C in (1, 3).
    rng: the record's Generator.
    spec: ViewSpec (global_crops, global_size, global_scale, local_crops, local_size, local_scale).
    cfg: augmentation config (keys of `default_augment_config()`).
    global_cfgs: optional per-global-crop configs for asymmetric recipes (BYOL/DINO: blur 1.0 on
      view 0, blur 0.1 + solarise 0.2 on view 1); cycled when shorter than G. Defaults to `cfg`.
    local_cfg: optional config for the local crops; defaults to `cfg`.
    `spec.view_overrides` / `spec.local_overrides` (pairs (key, value)) change single settings
    of global crop i (cycled) / of the local crops on top of these.

  Returns:
    {'global': float32 [G, gs, gs, C], 'local': float32 [L, ls, ls, C]}; 'local' is absent when
    spec.local_crops == 0.
  """
  image = _as_hwc_uint8(image)
  gcfgs = list(global_cfgs) if global_cfgs else [cfg]
  gparams = [_params(g, spec.global_scale) for g in gcfgs]
  if spec.view_overrides:
    over = spec.view_overrides
    gparams = [gparams[i % len(gparams)]._replace(**dict(over[i % len(over)]))
               for i in range(spec.global_crops)]
  out = {"global": np.stack([
      _augment(image, rng, spec.global_size, gparams[i % len(gparams)])
      for i in range(spec.global_crops)])}
  if spec.local_crops > 0:
    lp = _params(local_cfg if local_cfg is not None else cfg, spec.local_scale)
    lp = lp._replace(**dict(spec.local_overrides))
    out["local"] = np.stack([_augment(image, rng, spec.local_size, lp)
                             for _ in range(spec.local_crops)])
  return out
