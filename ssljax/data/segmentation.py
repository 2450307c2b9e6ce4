"""Semantic-segmentation data for dense probes: images with per-pixel class masks.

Two sources, both giving `SegmentationSplit`s (uint8 images [N, S, S, C], uint8 masks [N, S, S]):

- `digits_canvases`: made here from scikit-learn's bundled digits (nothing downloaded, the same
  fixed train / held-out split as the `digits` source): a canvas is a grid of digit-sized slots,
  each holding a digit upsampled to `digit_size` (the scale the digits configs train at) or left
  empty; the mask holds 1 + the digit's class on the digit's ink and 0 (background) elsewhere,
  11 classes. Deterministic from `seed`.
- `folder_split`: `root/<split>/images/<name>.<ext>` with `root/<split>/masks/<name>.png`, a mask
  being a single-channel PNG of class ids (palette PNGs as VOC / ADE20K ship them are read as
  their indices); `IGNORE` (255) marks pixels that are not scored. Images are resized to `size`
  (bilinear) and masks with nearest neighbours.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np

from ssljax.data import crops
from ssljax.data import sources

IGNORE = 255
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


@dataclasses.dataclass
class SegmentationSplit:
  """images: uint8 [N, S, S, C]; masks: uint8 [N, S, S] class ids (IGNORE = not scored);
  class_names: one per class id."""
  images: np.ndarray
  masks: np.ndarray
  class_names: tuple[str, ...]

  @property
  def num_classes(self) -> int:
    return len(self.class_names)


DIGIT_CLASSES = ("background",) + tuple(f"digit_{d}" for d in range(10))


def digits_canvases(split: str, num: int, canvas: int = 32, digit_size: int = 16,
                    fill_prob: float = 0.6, seed: int = 0) -> SegmentationSplit:
  """`num` canvases of the digits source's `split` ('train' | 'val') with per-pixel digit masks.

  The canvas is a grid of (canvas // digit_size)^2 slots; each slot holds a digit with probability
  `fill_prob` (every canvas at least one), upsampled from 8x8 to `digit_size` (bilinear, as the
  eval views are made), so a digit appears at the scale and patch alignment the digits configs
  train at, among others. Mask: 1 + the digit's class on its footprint (the 8x8 pixels with ink
  >= 4/16, each covering a (digit_size / 8)^2 block), 0 (background) elsewhere.

  Args:
    split: 'train' or 'val': which digits (the fixed split of `ssljax.data.sources.digits`).
    num: canvases to make.
    canvas: canvas side in pixels (a multiple of digit_size).
    digit_size: side of a slot and of each upsampled digit (a multiple of 8).
    fill_prob: probability that a slot holds a digit.
    seed: the draws (digits, slots); the split's digits never mix with the other split's.

  Returns:
    SegmentationSplit with 11 classes (0 background, 1 + d for digit d), 1 channel.
  """
  if canvas % digit_size or digit_size % 8:
    raise ValueError(f"canvas={canvas}, digit_size={digit_size}; expected digit_size a multiple "
                     f"of 8 that divides canvas")
  src = sources.digits(split)
  rng = np.random.default_rng([seed, 0 if split == "train" else 1])
  slots = canvas // digit_size
  up = digit_size // 8
  images = np.zeros((num, canvas, canvas, 1), np.uint8)
  masks = np.zeros((num, canvas, canvas), np.uint8)
  for i in range(num):
    filled = rng.random((slots, slots)) < fill_prob
    if not filled.any():
      filled[tuple(rng.integers(0, slots, size=2))] = True
    for r, c in zip(*np.nonzero(filled)):
      rec = src[int(rng.integers(len(src)))]
      ink = np.asarray(rec["image"])[..., 0]                                # uint8 [8, 8]
      window = (slice(r * digit_size, (r + 1) * digit_size),
                slice(c * digit_size, (c + 1) * digit_size))
      images[i][window] = crops.center_crop_uint8(rec["image"], digit_size)
      footprint = np.kron(ink >= 64, np.ones((up, up), bool))              # [d, d]
      masks[i][window] = np.where(footprint, 1 + int(rec["label"]), 0)
  return SegmentationSplit(images, masks, DIGIT_CLASSES)


def _read_mask(path: str, size: int) -> np.ndarray:
  from PIL import Image  # pylint: disable=g-import-not-at-top
  with Image.open(path) as im:
    if im.mode not in ("L", "P", "I", "I;16"):
      raise ValueError(f"mask {path!r} has mode {im.mode}; expected a single-channel PNG of class "
                       f"ids (mode L or P)")
    m = im.resize((size, size), Image.NEAREST)
    return np.asarray(m, np.int64)


def _read_image(path: str, size: int) -> np.ndarray:
  from PIL import Image  # pylint: disable=g-import-not-at-top
  with Image.open(path) as im:
    return np.asarray(im.convert("RGB").resize((size, size), Image.BILINEAR), np.uint8)


def folder_split(root: str, split: str, size: int, max_examples: int | None = None,
                 num_classes: int | None = None) -> SegmentationSplit:
  """`root/<split>/images/*` with `root/<split>/masks/<same name>.png`, resized to `size`.

  Class ids run 0..K-1 with IGNORE (255) for unscored pixels; K is `num_classes` or 1 + the
  largest id found. Raises ValueError (one line) for a missing folder, an image without a mask,
  or a mask that is not single-channel.
  """
  image_dir, mask_dir = os.path.join(root, split, "images"), os.path.join(root, split, "masks")
  for d in (image_dir, mask_dir):
    if not os.path.isdir(d):
      raise ValueError(f"segmentation folder {root!r} has no {os.path.relpath(d, root)!r}; "
                       f"expected {root}/<train|val>/images/<name>.<ext> and "
                       f"{root}/<train|val>/masks/<name>.png")
  names = sorted(n for n in os.listdir(image_dir) if n.lower().endswith(IMAGE_EXTENSIONS))
  if not names:
    raise ValueError(f"segmentation folder {image_dir!r} holds no images")
  names = names[:max_examples] if max_examples else names
  images, masks = [], []
  for name in names:
    mask_path = os.path.join(mask_dir, os.path.splitext(name)[0] + ".png")
    if not os.path.exists(mask_path):
      raise ValueError(f"image {os.path.join(image_dir, name)!r} has no mask {mask_path!r}")
    images.append(_read_image(os.path.join(image_dir, name), size))
    masks.append(_read_mask(mask_path, size))
  masks = np.stack(masks)
  scored = masks[masks != IGNORE]
  k = int(num_classes or (int(scored.max()) + 1 if scored.size else 1))
  if scored.size and (scored.min() < 0 or scored.max() >= k):
    raise ValueError(f"masks in {mask_dir!r} hold class id {int(scored.max())}; expected ids in "
                     f"[0, {k}) or {IGNORE} (ignored)")
  return SegmentationSplit(np.stack(images), masks.astype(np.uint8),
                           tuple(f"class_{i}" for i in range(k)))


def to_model_input(images: np.ndarray, aug_cfg, channels: int) -> np.ndarray:
  """uint8 [N, S, S, C] -> float32 normalised model input with `channels` channels (the backbone's;
  grey images are repeated to 3, RGB ones averaged to 1), as the eval views are normalised."""
  if images.shape[-1] != channels:
    if channels == 3:
      images = np.repeat(images, 3, axis=-1)
    else:
      images = np.round(images.astype(np.float32).mean(-1, keepdims=True)).astype(np.uint8)
  return crops.normalize_uint8(images, aug_cfg)
