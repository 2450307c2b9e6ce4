"""Random-access data sources. Each returns records {'image': uint8 [H, W, C], 'label': int}.

Every source has `__len__`, `__getitem__`, `num_classes` and `channels`, which is all grain's
`MapDataset.source` and the evaluation code need.
"""
from __future__ import annotations

import os
import sys
from typing import Any

import numpy as np

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


class ImageReadError(IOError):
  """An image file that cannot be decoded; the message names its path."""


class ArraySource:
  """In-memory images uint8 [N, H, W, C] and labels int [N]."""

  def __init__(self, images: np.ndarray, labels: np.ndarray, num_classes: int):
    if images.ndim != 4 or images.dtype != np.uint8:
      raise ValueError(f"images must be uint8 [N, H, W, C], got {images.dtype} {images.shape}")
    if len(images) != len(labels):
      raise ValueError(f"{len(images)} images but {len(labels)} labels")
    self.images, self.labels, self.num_classes = images, labels.astype(np.int32), num_classes
    self.channels = images.shape[-1]

  def __len__(self) -> int:
    return len(self.images)

  def __getitem__(self, index: int) -> dict[str, Any]:
    return {"image": self.images[index], "label": int(self.labels[index])}


def digits(split: str) -> ArraySource:
  """scikit-learn's bundled `load_digits`: 1,797 real 8x8 grayscale handwritten digits, 10 classes.

  A fixed split (independent of the run's seed, so evaluations are comparable across runs):
  'train' = 1,437 images, 'val' = 360 images.
  """
  from sklearn.datasets import load_digits  # only this source needs scikit-learn
  if split not in ("train", "val"):
    raise ValueError(f"digits split={split!r}; expected 'train' or 'val'")
  d = load_digits()
  images = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)[..., None]   # [1797, 8, 8, 1]
  order = np.random.RandomState(1234).permutation(len(images))
  n_val = 360
  idx = order[n_val:] if split == "train" else order[:n_val]
  return ArraySource(images[idx], d.target[idx], num_classes=10)


def synthetic(num_examples: int, size: int, channels: int = 3, num_classes: int = 10,
              seed: int = 0) -> ArraySource:
  """Random uint8 images (for benchmarks and compile checks; there is nothing to learn)."""
  rng = np.random.default_rng(seed)
  images = rng.integers(0, 256, size=(num_examples, size, size, channels), dtype=np.uint8)
  return ArraySource(images, rng.integers(0, num_classes, size=num_examples), num_classes)


class ImageFolderSource:
  """`root/<class>/<image>` files, decoded lazily with Pillow and converted to RGB uint8.

  Grayscale, palette, RGBA and 16-bit files are converted. A file that cannot be decoded raises
  ImageReadError naming its path (on_bad_image='fail'), or (on_bad_image='skip') is reported once
  on stderr with its path, counted in `bad_files`, and replaced by the next readable file, so that
  batch shapes and the data order stay deterministic.
  """

  def __init__(self, root: str, on_bad_image: str = "fail"):
    if on_bad_image not in ("fail", "skip"):
      raise ValueError(f"on_bad_image={on_bad_image!r}; expected 'fail' or 'skip'")
    self.on_bad_image, self.bad_files = on_bad_image, set()
    if not os.path.isdir(root):
      raise FileNotFoundError(f"image folder {root!r} does not exist")
    self.classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    files, labels = [], []
    for label, cls in enumerate(self.classes):
      cdir = os.path.join(root, cls)
      for name in sorted(os.listdir(cdir)):
        if name.lower().endswith(IMAGE_EXTENSIONS):
          files.append(os.path.join(cdir, name))
          labels.append(label)
    if not files:
      raise FileNotFoundError(f"image folder {root!r} holds no image files "
                              f"(extensions {IMAGE_EXTENSIONS}) in class sub-folders")
    self.files, self.labels = files, np.asarray(labels, np.int32)
    self.num_classes, self.channels = len(self.classes), 3

  def __len__(self) -> int:
    return len(self.files)

  def __getitem__(self, index: int) -> dict[str, Any]:
    for offset in range(len(self.files)):
      i = (index + offset) % len(self.files)
      try:
        return {"image": load_image(self.files[i]), "label": int(self.labels[i])}
      except ImageReadError as e:
        if self.on_bad_image == "fail":
          raise
        if self.files[i] not in self.bad_files:
          self.bad_files.add(self.files[i])
          print(f"warning: skipping unreadable image ({len(self.bad_files)} so far): {e}",
                file=sys.stderr, flush=True)
    raise ImageReadError(f"no readable image among the {len(self.files)} files of this image folder")


def load_image(path: str) -> np.ndarray:
  """Decodes an image file to RGB uint8 [H, W, 3]."""
  from PIL import Image
  try:
    with Image.open(path) as im:
      if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im, dtype=np.float64)
        arr = np.round(arr / max(arr.max(), 1.0) * 255.0).astype(np.uint8)
        return np.repeat(arr[..., None], 3, axis=-1)
      return np.asarray(im.convert("RGB"), dtype=np.uint8)
  except Exception as e:  # Pillow raises several types for corrupt or truncated files
    raise ImageReadError(f"cannot read image {path!r}: {e}") from e


class TFDSSource:
  """A TFDS dataset read through `tfds.data_sources` (ArrayRecord, random access, no TensorFlow)."""

  def __init__(self, name: str, split: str, data_dir: str | None):
    import tensorflow_datasets as tfds
    self._source = tfds.data_sources(name, split=split, data_dir=data_dir or None)
    info = tfds.builder(name, data_dir=data_dir or None).info
    self.num_classes = int(info.features["label"].num_classes)
    self.channels = int(info.features["image"].shape[-1])

  def __len__(self) -> int:
    return len(self._source)

  def __getitem__(self, index: int) -> dict[str, Any]:
    rec = self._source[index]
    return {"image": np.asarray(rec["image"], np.uint8), "label": int(rec["label"])}


def build_source(data_cfg, split: str):
  """The source named by `data_cfg.source` for `split` ('train' or the eval split name)."""
  if data_cfg.source == "digits":
    return digits("train" if split == data_cfg.train_split else "val")
  if data_cfg.source == "synthetic":
    n = data_cfg.synthetic_examples if split == data_cfg.train_split else max(data_cfg.synthetic_examples // 4, 10)
    seed = 0 if split == data_cfg.train_split else 1
    return synthetic(n, data_cfg.synthetic_size, seed=seed)
  if data_cfg.source == "image_folder":
    return ImageFolderSource(os.path.join(data_cfg.path, split), on_bad_image=data_cfg.on_bad_image)
  if data_cfg.source == "tfds":
    return TFDSSource(data_cfg.tfds_name, split, data_cfg.path)
  raise ValueError(f"data.source={data_cfg.source!r}; expected 'digits', 'image_folder', 'tfds' or 'synthetic'")
