"""Image-text sources: records {'image': uint8 [H, W, C], 'texts': (str, ...), 'label': int}.

- `captioned_digits` (`data.source='captioned_digits'`, the embedded default, no download):
  scikit-learn's real 8x8 digits composed on colour canvases of `data.image_size` pixels, one
  digit each, with a colour, a size and a position, and templated captions (2-3 per image).
  Deterministic from the split. The held-out split uses held-out digit images, and a third of
  it shows (digit, colour) combinations never seen in training.
- `captions` (`data.path/<split>/captions.jsonl`): lines {"image": path relative to the file,
  "text": str or [str, ...], "label": optional int}; lines naming the same image are merged.
- `tfds_captions` (`data.tfds_name`, `data.path` = the TFDS data dir): a prepared TFDS dataset
  (ArrayRecord) with an 'image' and a caption feature named by `data.text_key` ('caption', or
  'captions/text' for coco_captions' layout), read without TensorFlow.
- `webdataset` (`data.path/<split>/*.tar`): WebDataset-style shards, the format LAION /
  DataComp / CC12M ship in: members `<key>.<jpg|jpeg|png|webp>` + `<key>.txt` (+ `<key>.cls`),
  indexed once with the standard library's `tarfile` and read by offset (random access).

A `classes.txt` (one class name per line, in label order) in the split folder or in `data.path`
names the classes for zero-shot classification (`class_names`); `captioned_digits` has its own.
"""
from __future__ import annotations

import functools
import io
import json
import os
import tarfile
from typing import Any

import numpy as np

from ssljax.data import sources

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
COLOURS = {"red": (230, 40, 40), "green": (40, 200, 60), "blue": (60, 100, 245),
           "yellow": (235, 220, 40), "white": (240, 240, 240), "purple": (190, 70, 230)}
SIZES = {"small": 0.6, "large": 0.9}
PLACES = ("on the left", "on the right", "at the top", "at the bottom", "in the middle")
CAPTION_TEMPLATES = (
    "a {size} {colour} {word} {place}",
    "the number {word} in {colour}",
    "a {colour} digit {word}, {size}, {place}",
    "{word} written in {colour} {place}",
)
# Zero-shot prompt ensemble for the digits (CLIP-style templates, none of them a training caption).
DIGIT_PROMPTS = ("a {}.", "the number {}.", "a digit {}.", "a picture of the number {}.")


def _held_out_colour(digit: int) -> int:
  """The colour index that training never shows with `digit`."""
  return (2 * digit + 1) % len(COLOURS)


class PairedArraySource:
  """In-memory images uint8 [N, H, W, C], captions per image, labels and class names."""

  def __init__(self, images: np.ndarray, texts: list[tuple[str, ...]], labels: np.ndarray,
               class_names: tuple[str, ...] = (), prompts: tuple[str, ...] = ()):
    self.images, self.texts = images, texts
    self.labels = np.asarray(labels, np.int32)
    self.class_names, self.prompts = tuple(class_names), tuple(prompts)
    self.num_classes, self.channels = len(self.class_names), images.shape[-1]

  def __len__(self) -> int:
    return len(self.images)

  def __getitem__(self, index: int) -> dict[str, Any]:
    return {"image": self.images[index], "texts": self.texts[index],
            "label": int(self.labels[index])}

  def captions(self) -> list[str]:
    return [t for texts in self.texts for t in texts]


def _canvas(digit_img: np.ndarray, size: int, colour, scale: float, place: str,
            rng: np.random.Generator) -> np.ndarray:
  from PIL import Image  # pylint: disable=import-outside-toplevel
  side = max(4, int(round(size * scale)))
  glyph = Image.fromarray(np.asarray(digit_img * (255.0 / 16.0), np.uint8)).resize(
      (side, side), Image.BILINEAR)
  alpha = np.asarray(glyph, np.float32)[..., None] / 255.0
  room = size - side
  centre, edge = room // 2, max(1, room // 8)
  y, x = {"on the left": (centre, edge), "on the right": (centre, room - edge),
          "at the top": (edge, centre), "at the bottom": (room - edge, centre),
          "in the middle": (centre, centre)}[place]
  jitter = max(1, room // 8)
  y = int(np.clip(y + rng.integers(-jitter, jitter + 1), 0, room))
  x = int(np.clip(x + rng.integers(-jitter, jitter + 1), 0, room))
  bg = rng.integers(10, 50)
  out = np.clip(bg + rng.normal(0, 6, (size, size, 3)), 0, 255).astype(np.float32)
  patch = out[y:y + side, x:x + side]
  out[y:y + side, x:x + side] = patch * (1 - alpha) + np.asarray(colour, np.float32) * alpha
  return np.round(out).astype(np.uint8)


@functools.lru_cache(maxsize=4)
def captioned_digits(split: str, size: int = 24, copies: int = 2) -> PairedArraySource:
  """The embedded captioned digits (module doc); 'train': 1,437 x `copies` canvases, 'val': 360.

  Each canvas has 2-3 captions from CAPTION_TEMPLATES; in 'train' the colour of digit d is never
  `_held_out_colour(d)`; in 'val' every third canvas has exactly that colour.
  """
  if split not in ("train", "val"):
    raise ValueError(f"captioned_digits split={split!r}; expected 'train' or 'val'")
  if size < 12:
    raise ValueError(f"captioned_digits size={size}; expected >= 12 pixels")
  pixels, target = sources._digits_arrays()  # pylint: disable=protected-access
  order = np.random.RandomState(1234).permutation(len(pixels))   # digits' own split
  idx = order[360:] if split == "train" else order[:360]
  reps = copies if split == "train" else 1
  rng = np.random.default_rng(7 if split == "train" else 8)
  colour_names = tuple(COLOURS)
  images, texts, labels = [], [], []
  for rep in range(reps):
    for j, i in enumerate(idx):
      digit = int(target[i])
      held = _held_out_colour(digit)
      if split == "val" and j % 3 == 0:
        c = held
      else:
        c = int(rng.integers(len(COLOURS) - 1))
        c = c + 1 if c >= held else c   # any colour but the held-out one
      size_name = ("small", "large")[int(rng.integers(2))]
      place = PLACES[int(rng.integers(len(PLACES)))] if size_name == "small" else "in the middle"
      images.append(_canvas(pixels[i], size, COLOURS[colour_names[c]], SIZES[size_name], place,
                            rng))
      fill = dict(size=size_name, colour=colour_names[c], word=DIGIT_WORDS[digit], place=place)
      count = 2 + int(rng.integers(2))
      picks = rng.permutation(len(CAPTION_TEMPLATES))[:count]
      texts.append(tuple(CAPTION_TEMPLATES[p].format(**fill) for p in picks))
      labels.append(digit)
  return PairedArraySource(np.stack(images), texts, np.asarray(labels), DIGIT_WORDS,
                           DIGIT_PROMPTS)


def _class_names(root: str, split_dir: str) -> tuple[str, ...]:
  for folder in (split_dir, root):
    path = os.path.join(folder, "classes.txt")
    if os.path.isfile(path):
      with open(path, encoding="utf-8") as f:
        return tuple(line.strip() for line in f if line.strip())
  return ()


def _texts_of(value, where: str) -> tuple[str, ...]:
  if isinstance(value, str):
    return (value,)
  if isinstance(value, (list, tuple)) and value and all(isinstance(t, str) for t in value):
    return tuple(value)
  raise ValueError(f"{where}: 'text' is {value!r}; expected a string or a list of strings")


class CaptionsFolderSource:
  """`root/<split>/captions.jsonl` (module doc); images decoded lazily with Pillow."""

  def __init__(self, root: str, split: str):
    split_dir = os.path.join(root, split)
    path = os.path.join(split_dir, "captions.jsonl")
    if not os.path.isfile(path):
      raise FileNotFoundError(f"captions file {path!r} does not exist; expected lines "
                              f'{{"image": "relative/path.jpg", "text": "a caption"}}')
    merged: dict[str, list] = {}
    with open(path, encoding="utf-8") as f:
      for n, line in enumerate(f, 1):
        if not line.strip():
          continue
        where = f"{path} line {n}"
        try:
          row = json.loads(line)
        except json.JSONDecodeError as e:
          raise ValueError(f"{where} is not JSON: {e}") from e
        if not isinstance(row, dict) or "image" not in row or "text" not in row:
          raise ValueError(f"{where}: expected an object with 'image' and 'text', got {line.strip()[:80]!r}")
        entry = merged.setdefault(row["image"], [[], int(row.get("label", -1))])
        entry[0].extend(_texts_of(row["text"], where))
    self.files = [os.path.join(split_dir, k) for k in merged]
    for file in self.files[:1]:
      if not os.path.isfile(file):
        raise FileNotFoundError(f"{path} names image {file!r}, which does not exist")
    self.texts = [tuple(v[0]) for v in merged.values()]
    self.labels = np.asarray([v[1] for v in merged.values()], np.int32)
    self.class_names, self.prompts = _class_names(root, split_dir), ()
    self.num_classes = len(self.class_names) or int(self.labels.max() + 1 if len(self.labels) else 0)
    self.channels = 3

  def __len__(self) -> int:
    return len(self.files)

  def __getitem__(self, index: int) -> dict[str, Any]:
    return {"image": sources.load_image(self.files[index]), "texts": self.texts[index],
            "label": int(self.labels[index])}

  def captions(self) -> list[str]:
    return [t for texts in self.texts for t in texts]


_IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp")


class WebDatasetSource:
  """WebDataset tar shards `root/<split>/*.tar` (module doc), random access by member offset."""

  def __init__(self, root: str, split: str):
    split_dir = os.path.join(root, split)
    if not os.path.isdir(split_dir):
      raise FileNotFoundError(f"webdataset folder {split_dir!r} does not exist; expected "
                              f"<key>.jpg + <key>.txt members in .tar shards there")
    shards = sorted(os.path.join(split_dir, f) for f in os.listdir(split_dir) if f.endswith(".tar"))
    if not shards:
      raise FileNotFoundError(f"webdataset folder {split_dir!r} holds no .tar shards")
    self.shards, self.items, self.texts, labels = shards, [], [], []
    for s, shard in enumerate(shards):
      groups: dict[str, dict[str, Any]] = {}
      try:
        with tarfile.open(shard) as tar:
          for m in tar.getmembers():
            if not m.isfile():
              continue
            base = os.path.basename(m.name)
            key, _, ext = base.partition(".")
            key = os.path.join(os.path.dirname(m.name), key)
            g = groups.setdefault(key, {})
            ext = "." + ext.lower()
            if ext in _IMAGE_EXTS:
              g["image"] = (m.offset_data, m.size)
            elif ext in (".txt", ".cls"):
              g[ext] = tar.extractfile(m).read().decode("utf-8").strip()
      except tarfile.TarError as e:
        raise ValueError(f"webdataset shard {shard!r} is not a readable tar file: {e}") from e
      for key, g in groups.items():
        if "image" not in g or ".txt" not in g:
          continue   # a sample without an image or a caption (as webdataset readers skip it)
        self.items.append((s, *g["image"], key))
        self.texts.append(tuple(t for t in g[".txt"].split("\n") if t.strip()) or ("",))
        labels.append(int(g[".cls"]) if g.get(".cls", "").lstrip("-").isdigit() else -1)
    if not self.items:
      raise FileNotFoundError(f"webdataset shards in {split_dir!r} hold no <key>.jpg + <key>.txt pair")
    self.labels = np.asarray(labels, np.int32)
    self.class_names, self.prompts = _class_names(root, split_dir), ()
    self.num_classes = len(self.class_names) or int(max(self.labels.max() + 1, 0))
    self.channels = 3

  def __len__(self) -> int:
    return len(self.items)

  def __getitem__(self, index: int) -> dict[str, Any]:
    from PIL import Image  # pylint: disable=import-outside-toplevel
    s, offset, size, key = self.items[index]
    with open(self.shards[s], "rb") as f:
      f.seek(offset)
      data = f.read(size)
    try:
      with Image.open(io.BytesIO(data)) as im:
        image = np.asarray(im.convert("RGB"), np.uint8)
    except Exception as e:  # Pillow raises several types for corrupt files
      raise sources.ImageReadError(f"cannot read image {key!r} of shard {self.shards[s]!r}: {e}") from e
    return {"image": image, "texts": self.texts[index], "label": int(self.labels[index])}

  def captions(self) -> list[str]:
    return [t for texts in self.texts for t in texts]


class TFDSCaptionsSource(sources.TFDSSource):
  """A prepared TFDS dataset with an image and caption feature(s), read without TensorFlow.

  `text_key` names the caption feature, nested with '/': a Text ('caption') or a sequence of
  them ('captions/text', coco_captions' layout). A ClassLabel 'label' gives `class_names`.
  """

  def __init__(self, name: str, split: str, data_dir: str | None, text_key: str):
    super().__init__(name, split, data_dir)
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
    features = tfds.builder(name, data_dir=data_dir or None).info.features
    node = features
    for part in text_key.split("/"):
      inner = getattr(node, "feature", node)   # a Sequence's per-element features
      if not hasattr(inner, "keys") or part not in inner.keys():
        raise ValueError(f"TFDS dataset {name!r} has no text feature data.text_key={text_key!r} "
                         f"(top-level features: {sorted(features.keys())})")
      node = inner[part]
    self.text_key = text_key
    label = features["label"] if "label" in features else None
    self.class_names = tuple(getattr(label, "names", ()) or ())
    self.prompts = ()

  def __getitem__(self, index: int) -> dict[str, Any]:
    rec = self._source[index]
    image = np.asarray(rec["image"], np.uint8)
    texts = rec
    for part in self.text_key.split("/"):
      texts = texts[part]
    if isinstance(texts, (bytes, str)):
      texts = [texts]
    texts = tuple(t.decode("utf-8") if isinstance(t, bytes) else str(t) for t in texts)
    return {"image": image[..., None] if image.ndim == 2 else image, "texts": texts or ("",),
            "label": int(rec.get("label", -1))}


def _tfds_captions_source(data_cfg, split: str):
  return TFDSCaptionsSource(data_cfg.tfds_name, split, data_cfg.path, data_cfg.text_key)


def _captioned_digits_source(data_cfg, split: str):
  return captioned_digits("train" if split == data_cfg.train_split else "val",
                          int(data_cfg.synthetic_size))


def _captions_source(data_cfg, split: str):
  return CaptionsFolderSource(data_cfg.path, split)


def _webdataset_source(data_cfg, split: str):
  return WebDatasetSource(data_cfg.path, split)
