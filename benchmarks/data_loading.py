"""Data loading: two-view augmented images/s of the grain pipeline on a folder of JPEGs.

Generates an image folder of random-content JPEGs at 32x32 (CIFAR-like) and at 224x224
(ImageNet-like, crops of 224) in a temporary directory, then times `ssljax.data.pipeline.
train_dataset` (decode -> two random-resized-crop views with colour jitter, blur, flip -> batch)
with grain worker_count 0 (in the main process), 1 and 2 (grain mp_prefetch worker processes). The
first batch (worker start-up) is not timed; each cell runs for about --seconds. The table is
printed and written into the "Data loading" section of BENCHMARKS.md.

  python benchmarks/data_loading.py            # the table (about 1-2 minutes)
  python benchmarks/data_loading.py --quick    # smoke run
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # pylint: disable=g-import-not-at-top

from benchmarks.report import markdown_table, write_section  # pylint: disable=g-import-not-at-top


def make_jpeg_folder(root: str, size: int, num_images: int, num_classes: int = 4) -> str:
  """root/train/<class>/<i>.jpg: smooth random-colour JPEGs [size, size, 3] (quality 90)."""
  from PIL import Image
  rng = np.random.default_rng(size)
  train = os.path.join(root, "train")
  for i in range(num_images):
    cdir = os.path.join(train, f"c{i % num_classes}")
    os.makedirs(cdir, exist_ok=True)
    low = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)   # upsampled: JPEG-like content, not noise
    img = Image.fromarray(low).resize((size, size), Image.BILINEAR)
    img.save(os.path.join(cdir, f"{i}.jpg"), quality=90)
  return train


def images_per_sec(folder: str, size: int, workers: int, batch_size: int, seconds: float) -> float:
  """Records/s (each = 2 augmented views of size x size) of the SimCLR two-view pipeline."""
  from ssljax.config import base_config
  from ssljax.data import pipeline
  from ssljax.data.augment import ViewSpec
  from ssljax.data.sources import ImageFolderSource
  aug = base_config(method="simclr", model="resnet").data.augment
  spec = ViewSpec(global_crops=2, global_size=size, global_scale=tuple(aug.crop_scale))
  ds = pipeline.train_dataset(ImageFolderSource(folder), spec, aug, seed=0,
                              local_batch_size=batch_size, worker_count=workers)
  it = iter(ds)
  first = next(it)
  assert first["global"].shape == (batch_size, 2, size, size, 3), first["global"].shape
  n, start = 0, time.perf_counter()
  while time.perf_counter() - start < seconds:
    next(it)
    n += batch_size
  rate = n / (time.perf_counter() - start)
  del it, ds
  return rate


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="short timings, no BENCHMARKS.md update")
  parser.add_argument("--seconds", type=float, default=6.0, help="timed seconds per cell")
  parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
  args = parser.parse_args()
  seconds = 2.0 if args.quick else args.seconds
  cases = [(32, 512, 64), (224, 192, 32)]   # (image side, images in the folder, batch size)
  rows = []
  with tempfile.TemporaryDirectory() as tmp:
    for size, num_images, batch in cases:
      folder = make_jpeg_folder(os.path.join(tmp, f"s{size}"), size, num_images)
      for workers in args.workers:
        rate = images_per_sec(folder, size, workers, batch, seconds)
        rows.append([f"{size}x{size} JPEG", batch, workers, round(rate, 1)])
        print(f"{size}x{size}  batch {batch}  workers {workers}: {rate:8.1f} images/s", flush=True)
  table = markdown_table(["images", "batch", "grain workers", "two-view images/s"], rows)
  print(table)
  if not args.quick:
    write_section("Data loading", table + "\n\nEach image/s is one decoded JPEG turned into two "
                  "augmented views (random resized crop at the image's own size, flip, colour "
                  "jitter, grayscale, blur) and batched. Workers are grain `mp_prefetch` processes; "
                  "with 0 the main process does the work (with up to 4 read threads). On a machine "
                  "shared with other jobs the numbers vary by a large factor.",
                  {"command": "python benchmarks/data_loading.py",
                   "timed": f"{seconds:g} s per cell after the first batch"})


if __name__ == "__main__":
  main()
