"""The embedded benchmark tasks (ssljax.data.benchmarks): deterministic image folders, hard for raw pixels."""
import hashlib
import os

import numpy as np
import pytest

from ssljax.data import benchmarks, sources

pytest.importorskip("skimage", reason="the photo_patches tasks read scikit-image's photographs")


def _digest(root):
  h = hashlib.sha256()
  for split in ("train", "val"):
    for cls in sorted(os.listdir(os.path.join(root, split))):
      for name in sorted(os.listdir(os.path.join(root, split, cls))):
        h.update(f"{split}/{cls}/{name}".encode())
        h.update(sources.load_image(os.path.join(root, split, cls, name)).tobytes())
  return h.hexdigest()


@pytest.mark.parametrize("task", sorted(benchmarks.TASKS))
def test_task_is_deterministic_image_folder(task, tmp_path):
  t = benchmarks.get(task)
  a, b = tmp_path / "a", tmp_path / "b"
  assert benchmarks.write(task, str(a), limit=12) == {"train": 12, "val": 12}
  benchmarks.main(["--task", task, "--out", str(b), "--limit", "12"])   # the command line
  assert _digest(a) == _digest(b)
  train = sources.ImageFolderSource(str(a / "train"))
  assert train.classes == sorted(t.classes) and len(train) == 12
  image = train[0]["image"]
  assert image.shape == (t.image_size, t.image_size, 3) and image.dtype == np.uint8
  assert len(np.unique(image.reshape(-1, 3), axis=0)) > 50      # not a flat picture
  labels = [t.make("train", i)[1] for i in range(120)]   # every class occurs early
  assert len(set(labels)) == len(t.classes)


# Measured on the full tasks (centred raw pixels, the Trainer's kNN: k 20, T 0.07): photo patches
# 0.267 / 0.231 (2026-12-04), clutter digits 0.415 / 0.406 (grey redesign, 2026-12-05). The bound
# leaves room for float differences, not for a task that got easier.
RAW_KNN = {"clutter_digits32": 0.45, "clutter_digits64": 0.45, "photo_patches32": 0.35,
           "photo_patches64": 0.35}


@pytest.mark.slow
@pytest.mark.parametrize("task", sorted(benchmarks.TASKS))
def test_task_is_hard_for_raw_pixels(task, tmp_path):
  benchmarks.write(task, str(tmp_path))
  t = benchmarks.get(task)
  acc = benchmarks.raw_pixel_knn(str(tmp_path), t.image_size)
  chance = 1.0 / len(t.classes)
  assert chance < acc < RAW_KNN[task], (task, acc)


@pytest.mark.parametrize("task", ["clutter_digits32", "clutter_digits64"])
def test_clutter_digits_are_grey_with_light_strokes(task):
  """The redesign's two properties: no colour (channels equal up to the pixel noise) and strokes
  lighter than the ground (the brightest pixels are the digit's, far above the median ground)."""
  t = benchmarks.get(task)
  for i in range(8):
    x = t.make("train", i)[0].astype(np.float32) / 255
    assert np.abs(x - x.mean(-1, keepdims=True)).mean() < 0.05, (task, i)
    grey = x.mean(-1)
    assert np.percentile(grey, 99) - np.median(grey) > 0.25, (task, i)
