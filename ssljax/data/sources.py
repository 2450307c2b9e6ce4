"""Random-access data sources, by name (`data.source`); `register` adds one.

The image sources here return records {'image': uint8 [H, W, C], 'label': int} and have
`__len__`, `__getitem__`, `num_classes` and `channels`, which is all grain's `MapDataset.source`
and the evaluation code need. Sources of other modalities return other keys (the method's view
spec reads them, see ssljax.data.views).
"""
from __future__ import annotations

import functools
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
  if split not in ("train", "val"):
    raise ValueError(f"digits split={split!r}; expected 'train' or 'val'")
  pixels, target = _digits_arrays()
  images = np.round(pixels * (255.0 / 16.0)).astype(np.uint8)[..., None]   # [1797, 8, 8, 1]
  order = np.random.RandomState(1234).permutation(len(images))
  n_val = 360
  idx = order[n_val:] if split == "train" else order[:n_val]
  return ArraySource(images[idx], target[idx], num_classes=10)


@functools.lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
  """(pixels float [1797, 8, 8] in 0..16, targets int [1797]) of scikit-learn's `load_digits`.

  Read straight from the CSV that scikit-learn ships (what `load_digits` reads), which skips
  importing scikit-learn (1.5 s of every start-up); falls back to `load_digits` if the file moved.
  """
  import importlib.util
  spec = importlib.util.find_spec("sklearn")
  if spec is not None and spec.submodule_search_locations:
    path = os.path.join(list(spec.submodule_search_locations)[0], "datasets", "data", "digits.csv.gz")
    if os.path.exists(path):
      data = np.loadtxt(path, delimiter=",")
      return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(np.int64)
  from sklearn.datasets import load_digits
  d = load_digits()
  return d.images, d.target


class _CaptionedArraySource(ArraySource):
  """ArraySource whose records also carry a caption naming their label (image-text methods)."""

  def __getitem__(self, index: int) -> dict[str, Any]:
    record = super().__getitem__(index)
    record["texts"] = (f"a synthetic image of class {record['label']}",)
    return record

  def captions(self) -> list[str]:
    return [f"a synthetic image of class {int(label)}" for label in self.labels]


def synthetic(num_examples: int, size: int, channels: int = 3, num_classes: int = 10,
              seed: int = 0) -> ArraySource:
  """Random uint8 images with a caption (for benchmarks and compile checks: nothing to learn)."""
  rng = np.random.default_rng(seed)
  images = rng.integers(0, 256, size=(num_examples, size, size, channels), dtype=np.uint8)
  return _CaptionedArraySource(images, rng.integers(0, num_classes, size=num_examples),
                               num_classes)


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
  """A prepared TFDS dataset read through `tfds.data_source` (ArrayRecord, random access, no TensorFlow).

  `name` is a TFDS name ('cifar10', 'imagenet2012', 'stl10', 'imagenette/320px-v2', ...) and
  `data_dir` the TFDS data directory (None: TFDS's default, ~/tensorflow_datasets). The dataset
  must already be prepared in ArrayRecord format, e.g. once per cluster:
    tfds.builder(name, data_dir=D, file_format='array_record').download_and_prepare()
  (imagenet2012 needs its tar files placed in D/downloads/manual first). A dataset that is in
  `data_dir` but not registered with TFDS (a custom builder's output) is read from its files.
  Records become {'image': uint8 [H, W, C], 'label': int}; the features must include an 'image'
  (TFDS Image or a uint8 Tensor [H, W] / [H, W, C]) and, for evaluation, a ClassLabel 'label'.
  """

  def __init__(self, name: str, split: str, data_dir: str | None):
    import tensorflow_datasets as tfds
    where = f"data_dir={data_dir!r}" if data_dir else "the default TFDS data_dir"
    try:
      builder = tfds.builder(name, data_dir=data_dir or None)
    except Exception as e:  # DatasetNotFoundError and friends
      raise FileNotFoundError(f"TFDS dataset data.tfds_name={name!r} not found in {where}: {e}") from e
    splits = sorted(builder.info.splits.keys())
    if not splits:
      raise FileNotFoundError(
          f"TFDS dataset {name!r} is not prepared in {where}; prepare it once with "
          f"tfds.builder({name!r}, data_dir=..., file_format='array_record').download_and_prepare()")
    base_split = split.split("[")[0]
    if base_split not in splits:
      raise ValueError(f"TFDS dataset {name!r} has no split {split!r}; expected one of {splits}")
    features = builder.info.features
    if "image" not in features:
      raise ValueError(f"TFDS dataset {name!r} has features {sorted(features.keys())}; expected an 'image'")
    shape = tuple(features["image"].shape)
    self.channels = int(shape[-1]) if len(shape) == 3 and shape[-1] is not None else 1
    label = features["label"] if "label" in features else None
    self.num_classes = int(getattr(label, "num_classes", 0) or 0)
    self.name, self.split = name, split
    try:
      self._source = builder.as_data_source(split=split)
    except Exception as e:
      raise ValueError(f"TFDS dataset {name!r} split {split!r} cannot be read as a data source "
                       f"(is it in ArrayRecord format? prepare it with file_format='array_record'): "
                       f"{e}") from e

  def __len__(self) -> int:
    return len(self._source)

  def __getitem__(self, index: int) -> dict[str, Any]:
    rec = self._source[index]
    image = np.asarray(rec["image"], np.uint8)
    if image.ndim == 2:
      image = image[..., None]
    return {"image": image, "label": int(rec.get("label", -1))}


def _digits_source(data_cfg, split: str):
  return digits("train" if split == data_cfg.train_split else "val")


def _synthetic_source(data_cfg, split: str):
  train = split == data_cfg.train_split
  n = data_cfg.synthetic_examples if train else max(data_cfg.synthetic_examples // 4, 10)
  return synthetic(n, data_cfg.synthetic_size, seed=0 if train else 1)


def _image_folder_source(data_cfg, split: str):
  return ImageFolderSource(os.path.join(data_cfg.path, split), on_bad_image=data_cfg.on_bad_image)


def _tfds_source(data_cfg, split: str):
  return TFDSSource(data_cfg.tfds_name, split, data_cfg.path)


def _array_record_source(data_cfg, split: str):
  from ssljax.data import array_record  # pylint: disable=g-import-not-at-top
  return array_record.build(data_cfg, split)


def _paired(name: str):
  """A lazily imported builder of ssljax.data.paired (the image-text sources)."""
  def build(data_cfg, split: str):
    from ssljax.data import paired  # pylint: disable=g-import-not-at-top
    return getattr(paired, f"_{name}_source")(data_cfg, split)
  return build


# name -> builder(data_cfg, split) -> source (len, getitem -> record dict, num_classes)
_SOURCES: dict[str, Any] = {
    "digits": _digits_source,
    "image_folder": _image_folder_source,
    "tfds": _tfds_source,
    "synthetic": _synthetic_source,
    "array_record": _array_record_source,   # shards written by `python -m ssljax.data.prepare`
    # Image-text records {'image', 'texts', 'label'} (ssljax.data.paired).
    "captioned_digits": _paired("captioned_digits"),   # embedded; canvas side data.synthetic_size
    "captions": _paired("captions"),           # data.path/<split>/captions.jsonl
    "webdataset": _paired("webdataset"),       # data.path/<split>/*.tar
    "tfds_captions": _paired("tfds_captions"),   # TFDS image + data.text_key captions
}


def register(name: str, builder) -> None:
  """Makes `data.source=name` build `builder(data_cfg, split)`: a new data source (of any
  modality: records are dicts whose keys the method's view spec reads) without editing ssljax.

  The builder returns an object with `__len__`, `__getitem__(i) -> dict` and `num_classes` (0
  when unlabelled). Registering a taken name with another builder raises ValueError.
  """
  if not name or not isinstance(name, str):
    raise ValueError(f"source name {name!r}; expected a non-empty string")
  if _SOURCES.get(name, builder) is not builder:
    raise ValueError(f"data source {name!r} is already registered")
  _SOURCES[name] = builder


def available() -> tuple[str, ...]:
  """The registered data source names."""
  return tuple(_SOURCES)


def build_source(data_cfg, split: str):
  """The source named by `data_cfg.source` for `split` ('train' or the eval split name)."""
  if data_cfg.source not in _SOURCES:
    raise ValueError(f"data.source={data_cfg.source!r}; expected one of {available()}")
  return _SOURCES[data_cfg.source](data_cfg, split)
