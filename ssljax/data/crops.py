"""The host half of device-side augmentation: crops as uint8, the draws that go with them, and
the uint8 evaluation views.

With `data.augment_on='device'` the pipeline keeps the random resized crop (it changes shapes and
needs the full decoded image) and hands the device uint8 crops plus each view's photometric
draws; `ssljax.data.augment_jax` does the rest in the train step. Evaluation banks store uint8
centre crops (a quarter of float32's bytes) and normalise per chunk.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ssljax.data import augment

# pylint: disable=protected-access


def center_crop_uint8(image: np.ndarray, size: int) -> np.ndarray:
  """`center_view` before normalisation: uint8 [S, S, C] (a quarter of the float32 bytes)."""
  image = augment._as_hwc_uint8(image)
  h, w, _ = image.shape
  side = min(h, w)
  top, left = (h - side) // 2, (w - side) // 2
  return augment._crop_resize_uint8(image, (left, top, left + side, top + side), size).copy()


def normalize_uint8(images: np.ndarray, cfg: Any) -> np.ndarray:
  """uint8 [..., C] -> float32 (x / 255 - mean) / std per channel, with `center_view`'s float32
  arithmetic (so the two agree bit for bit)."""
  images = np.asarray(images)
  c = images.shape[-1]
  mean, std = tuple(cfg["mean"]), tuple(cfg["std"])
  if len(mean) not in (1, c) or len(std) not in (1, c):
    raise ValueError(f"mean {mean} / std {std} must have 1 or {c} entries for C={c}")
  inv = np.float32(1.0) / np.asarray(std, np.float32)
  shift = np.asarray(mean, np.float32) * inv
  x = images.astype(np.float32) * np.float32(1.0 / 255.0)
  return x * inv - shift


def _crop_uint8(image: np.ndarray, rng: np.random.Generator, size: int,
                p: Any) -> tuple[np.ndarray, np.ndarray]:
  """The host half of `augment._augment`, with its draws: (uint8 [S, S, C] crop, float32 [14]
  photometric uniforms)."""
  h, w, _ = image.shape
  u_crop = rng.random(2 * augment._CROP_TRIES + 2).tolist()
  u = rng.random(14).astype(np.float32)
  box = augment._crop_box(h, w, u_crop, p.crop_scale, p.crop_ratio)
  return augment._crop_resize_uint8(image, box, size), u


def multicrop_uint8(image: np.ndarray, rng: np.random.Generator, spec: Any,
                    cfg: Any) -> dict[str, np.ndarray]:
  """`augment.multicrop_views` with the photometric half left to the device
  (`augment_jax.photometric`).

  Draws exactly what `multicrop_views` draws, in the same order (22 uniforms for a view's crop,
  then 14 for the rest), so a record gets the same crops and the same photometric parameters
  whichever half runs where.

  Returns:
    {'global': uint8 [G, gs, gs, C], 'global_aug': float32 [G, 14], and 'local' /
    'local_aug' likewise when spec.local_crops > 0}.
  """
  image = augment._as_hwc_uint8(image)
  out = {}
  for name, n, size, scale in (("global", spec.global_crops, spec.global_size, spec.global_scale),
                               ("local", spec.local_crops, spec.local_size, spec.local_scale)):
    if n:   # (view_overrides change photometric settings only: the crops do not depend on them)
      p = augment._params(cfg, scale)
      crops, us = zip(*[_crop_uint8(image, rng, size, p) for _ in range(n)])
      out[name], out[f"{name}_aug"] = np.stack(crops), np.stack(us)
  return out
