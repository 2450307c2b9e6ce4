"""Embedded benchmark tasks harder than the 8x8 digits, written as image folders; nothing downloaded.

  python -m ssljax.data.benchmarks --task clutter_digits32 --out DIR    # DIR/train/<class>/*.png, DIR/val/...
  python -m ssljax.data.benchmarks --list                                # tasks, sizes, what they hold

Each task is an image folder for `data.source='image_folder'` (`data.path=DIR`): `train/` and `val/`,
one sub-folder per class, PNG files. The files depend only on the task name (and `--scale`): every
image is drawn from a numpy generator seeded by (task, split, index), so two runs write the same
pixels on any machine. Train and val never share a source instance (a digit, a region of a photo).

- `clutter_digits32` / `clutter_digits64`: scikit-learn's real handwritten digits (the same fixed
  1,437 / 360 split as `data.source='digits'`), each drawn twice with strong nuisances on a 32 or
  64 px canvas: scale (0.5-0.9 of the canvas), position, rotation (+-20 degrees), the grey level
  of a faintly textured background (smooth noise), 1-2 fainter fragments of other digits as
  clutter, pixel noise. Strokes are lighter than the ground (0.35-0.55 above its mean), as in the
  source digits; the images are grey (three equal channels up to the noise). 10 classes. Random
  colours, or strokes darker than the ground on some images, make the task unlearnable for
  instance discrimination at these budgets (README, the tasks' paragraph): kept out.
- `photo_patches32` / `photo_patches64`: patches of ten real photographs scikit-image ships
  (`skimage.data`: astronaut, brick, camera, chelsea, coffee, coins, grass, gravel, motorcycle,
  rocket), labelled by source photograph, at random positions and scales (0.12-0.4 of the shorter
  side), flipped / rotated by 90 degrees, with brightness / contrast / colour / greyscale nuisances.
  The right quarter of every photograph is kept for val. 10 classes. Needs scikit-image (`pip
  install scikit-image`, in ssljax's `[benchmarks]` and `[test]` extras); only its data files are read.

`raw_pixel_knn(path, image_size)` is the raw-pixel kNN baseline (the same kNN as the Trainer's
monitor, on normalised centre views): a method must beat it to have learned anything beyond pixels.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib.util
import os
import sys
from typing import Callable

import numpy as np

PHOTOS = ("astronaut.png", "brick.png", "camera.png", "chelsea.png", "coffee.png", "coins.png",
          "grass.png", "gravel.png", "motorcycle_left.png", "rocket.jpg")
DIGIT_NAMES = tuple(str(d) for d in range(10))


@dataclasses.dataclass(frozen=True)
class Task:
  """One benchmark task: `make(split, index) -> (uint8 [S, S, 3], label)` over `counts[split]` images."""
  name: str
  image_size: int
  classes: tuple[str, ...]
  counts: dict
  make: Callable[[str, int], tuple[np.ndarray, int]]
  about: str


def _rng(task: str, split: str, index: int) -> np.random.Generator:
  """A generator that depends only on (task, split, index): the same image on every machine."""
  digest = hashlib.sha256(f"{task}/{split}/{index}".encode()).digest()
  return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _resize(x: np.ndarray, h: int, w: int, cubic: bool = False) -> np.ndarray:
  """float [H, W] or [H, W, C] in [0, 1] -> [h, w] / [h, w, C], bilinear or bicubic (PIL, per channel)."""
  from PIL import Image
  if x.ndim == 2:
    return np.asarray(Image.fromarray(x.astype(np.float32), "F").resize(
        (w, h), Image.BICUBIC if cubic else Image.BILINEAR))
  return np.stack([_resize(x[..., c], h, w, cubic) for c in range(x.shape[-1])], axis=-1)


def _rotate(x: np.ndarray, degrees: float) -> np.ndarray:
  """float [H, W] mask rotated about its centre with the canvas expanded (bilinear)."""
  from PIL import Image
  return np.asarray(Image.fromarray(x.astype(np.float32), "F").rotate(
      degrees, resample=Image.BILINEAR, expand=True))


def _luma(c: np.ndarray) -> float:
  return float(0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2])


def _smooth_noise(rng: np.random.Generator, size: int) -> np.ndarray:
  """[size, size] in [0, 1]: a random grid of 3-8 cells per side, bilinearly upsampled."""
  cells = int(rng.integers(3, 9))
  x = _resize(rng.random((cells, cells)), size, size)
  return (x - x.min()) / max(float(x.max() - x.min()), 1e-6)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
  """float [size, size, 3]: a dark grey level (0-0.45) with a faint smooth-noise texture (+-0.04)."""
  level = rng.uniform(0.0, 0.45)
  return np.repeat(level + 0.08 * (_smooth_noise(rng, size)[..., None] - 0.5), 3, axis=-1)


def _stroke_grey(rng: np.random.Generator, canvas: np.ndarray) -> np.ndarray:
  """A grey 0.35-0.55 lighter than the canvas's mean: light strokes on a darker ground."""
  return np.full(3, min(_luma(canvas.reshape(-1, 3).mean(0)) + rng.uniform(0.35, 0.55), 1.0))


def _paint(canvas: np.ndarray, mask: np.ndarray, colour: np.ndarray, top: int, left: int,
           alpha: float = 1.0) -> None:
  """Alpha-blends `colour` into canvas [S, S, 3] through mask [h, w] in [0, 1] at (top, left), clipped."""
  s = canvas.shape[0]
  h, w = mask.shape
  t0, l0 = max(top, 0), max(left, 0)
  t1, l1 = min(top + h, s), min(left + w, s)
  if t1 <= t0 or l1 <= l0:
    return
  m = np.clip(mask[t0 - top:t1 - top, l0 - left:l1 - left], 0, 1)[..., None] * alpha
  canvas[t0:t1, l0:l1] = canvas[t0:t1, l0:l1] * (1 - m) + colour * m


def _digit_mask(pixels: np.ndarray, rng: np.random.Generator, height: int) -> np.ndarray:
  """An 8x8 digit (0..16) as a soft stroke mask [h, w] of the given height, random aspect, rotated
  (bicubic upsampling, then a soft threshold that keeps the strokes thin)."""
  width = max(4, int(round(height * rng.uniform(0.6, 0.95))))
  m = _resize(pixels / 16.0, height, width, cubic=True)
  m = _rotate(np.clip((m - 0.3) * 3.0, 0, 1), rng.uniform(-20, 20))
  return np.clip(m, 0, 1)


def _clutter_digits(size: int, name: str) -> Task:
  from ssljax.data import sources
  pools = {"train": sources.digits("train"), "val": sources.digits("val")}
  renders = 2

  def make(split: str, index: int) -> tuple[np.ndarray, int]:
    pool = pools[split]
    rng = _rng(name, split, index)
    i = index // renders
    canvas = _background(rng, size)
    for _ in range(int(rng.integers(1, 3))):                     # clutter: parts of other digits
      other = pool.images[int(rng.integers(len(pool)))][..., 0].astype(np.float32)
      m = _digit_mask(other, rng, int(size * rng.uniform(0.25, 0.5)))
      h, w = m.shape
      part = rng.integers(4)                                     # keep one half of it
      if part == 0: m = m[: h // 2]
      elif part == 1: m = m[h // 2:]
      elif part == 2: m = m[:, : w // 2]
      else: m = m[:, w // 2:]
      _paint(canvas, m, _stroke_grey(rng, canvas), int(rng.integers(-h // 4, size - h // 4)),
             int(rng.integers(-w // 4, size - w // 4)), alpha=rng.uniform(0.3, 0.7))
    m = _digit_mask(pool.images[i][..., 0].astype(np.float32), rng,
                    int(size * rng.uniform(0.5, 0.9)))
    colour = _stroke_grey(rng, canvas)
    h, w = m.shape
    top = int(rng.integers(0, max(size - h, 0) + 1)) if h <= size else (size - h) // 2
    left = int(rng.integers(0, max(size - w, 0) + 1)) if w <= size else (size - w) // 2
    _paint(canvas, m, colour, top, left)
    canvas = canvas + rng.normal(0, 0.04, canvas.shape)
    return np.round(np.clip(canvas, 0, 1) * 255).astype(np.uint8), int(pool.labels[i])

  return Task(name, size, DIGIT_NAMES, {"train": renders * 1437, "val": renders * 360}, make,
              f"real handwritten digits x{renders} on a {size} px canvas with scale, position, "
              "rotation, background grey level and texture, clutter and noise")


def skimage_data_dir() -> str:
  """The folder of the photographs scikit-image ships (read as files: skimage is not imported)."""
  spec = importlib.util.find_spec("skimage")
  if spec is None or not spec.submodule_search_locations:
    raise ModuleNotFoundError("the photo_patches tasks read the photographs scikit-image ships; "
                              "pip install scikit-image (ssljax's [benchmarks] extra)")
  return os.path.join(list(spec.submodule_search_locations)[0], "data")


def _load_photos() -> list[np.ndarray]:
  from PIL import Image
  root = skimage_data_dir()
  out = []
  for f in PHOTOS:
    with Image.open(os.path.join(root, f)) as im:
      out.append(np.asarray(im.convert("RGB"), np.float32) / 255.0)
  return out


def _photo_patches(size: int, name: str) -> Task:
  photos = _load_photos()
  per_class = {"train": 300, "val": 100}
  val_frac = 0.25

  def make(split: str, index: int) -> tuple[np.ndarray, int]:
    label = index % len(photos)
    photo = photos[label]
    rng = _rng(name, split, index)
    h, w, _ = photo.shape
    x0, x1 = (0, int(w * (1 - val_frac))) if split == "train" else (int(w * (1 - val_frac)), w)
    side = int(min(h, w) * rng.uniform(0.12, 0.4))
    side = min(side, x1 - x0, h)
    top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(x0, x1 - side + 1))
    x = _resize(photo[top:top + side, left:left + side], size, size)
    x = np.rot90(x, int(rng.integers(4)))
    if rng.random() < 0.5:
      x = x[:, ::-1]
    if rng.random() < 0.5:                                       # greyscale, then a random tint
      x = np.repeat(x.mean(-1, keepdims=True), 3, axis=-1) * rng.uniform(0.6, 1.0, 3)
    else:                                                        # channel gains (colour cast)
      x = x * rng.uniform(0.7, 1.3, 3)
    mean = x.mean()
    x = (x - mean) * rng.uniform(0.5, 1.5) + mean + rng.uniform(-0.25, 0.25)   # contrast, brightness
    x = x + rng.normal(0, 0.03, x.shape)
    return np.round(np.clip(x, 0, 1) * 255).astype(np.uint8), label

  classes = tuple(os.path.splitext(f)[0] for f in PHOTOS)
  counts = {s: n * len(photos) for s, n in per_class.items()}
  return Task(name, size, classes, counts, make,
              f"{size} px patches of {len(photos)} scikit-image photographs, labelled by photograph, "
              "with scale, position, flip / rotation, colour, contrast and noise nuisances")


TASKS: dict[str, Callable[[], Task]] = {
    "clutter_digits32": lambda: _clutter_digits(32, "clutter_digits32"),
    "clutter_digits64": lambda: _clutter_digits(64, "clutter_digits64"),
    "photo_patches32": lambda: _photo_patches(32, "photo_patches32"),
    "photo_patches64": lambda: _photo_patches(64, "photo_patches64"),
}


def get(name: str) -> Task:
  """The task called `name` (one of TASKS)."""
  if name not in TASKS:
    raise ValueError(f"benchmark task {name!r}; expected one of {tuple(TASKS)}")
  return TASKS[name]()


def write(name: str, out: str, limit: int = 0) -> dict[str, int]:
  """Writes task `name` to out/{train,val}/<class>/<split>_<index>.png; returns images per split.

  `limit` > 0 writes only the first `limit` images of each split (for quick tests); the images
  written are the same as in the full task.
  """
  from PIL import Image
  task = get(name)
  written = {}
  for split, count in task.counts.items():
    n = min(count, limit) if limit > 0 else count
    for cls in task.classes:
      os.makedirs(os.path.join(out, split, cls), exist_ok=True)
    for i in range(n):
      image, label = task.make(split, i)
      Image.fromarray(image).save(os.path.join(out, split, task.classes[label], f"{split}_{i:05d}.png"))
    written[split] = n
  return written


def raw_pixel_knn(path: str, image_size: int, k: int = 20, temperature: float = 0.07) -> float:
  """Held-out top-1 of the Trainer's kNN (cosine, k, T) on raw normalised pixels of `path`'s
  centre views: `path/train` is the bank, `path/val` the queries."""
  from ssljax import config as config_lib
  from ssljax.data import pipeline, sources
  from ssljax.evaluate.knn import knn_top1
  aug = config_lib.base_config().data.augment
  train = sources.ImageFolderSource(os.path.join(path, "train"))
  val = sources.ImageFolderSource(os.path.join(path, "val"))
  tx, ty = pipeline.eval_arrays(train, image_size, aug, len(train))
  vx, vy = pipeline.eval_arrays(val, image_size, aug, len(val))
  tx, vx = tx.reshape(len(tx), -1), vx.reshape(len(vx), -1)
  mu = tx.mean(0)
  return knn_top1(tx - mu, ty, vx - mu, vy, train.num_classes, k=k, temperature=temperature)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="python -m ssljax.data.benchmarks", description=__doc__.split("\n")[0])
  parser.add_argument("--task", choices=tuple(TASKS))
  parser.add_argument("--out", help="folder to write (train/ and val/ go inside)")
  parser.add_argument("--limit", type=int, default=0, help="at most this many images per split")
  parser.add_argument("--raw-knn", action="store_true", help="then print the raw-pixel kNN top-1")
  parser.add_argument("--list", action="store_true", help="list the tasks")
  args = parser.parse_args(argv)
  if args.list:
    for name in TASKS:
      t = get(name)
      print(f"{name}: {t.counts['train']} train / {t.counts['val']} val, {len(t.classes)} classes, "
            f"{t.image_size} px; {t.about}")
    return 0
  if not args.task or not args.out:
    parser.error("--task and --out are required (or --list)")
  n = write(args.task, args.out, args.limit)
  print(f"wrote {n['train']} train and {n['val']} val images of {args.task} to {args.out}")
  if args.raw_knn:
    print(f"raw-pixel kNN top-1: {raw_pixel_knn(args.out, get(args.task).image_size):.4f}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
