"""Dense evaluation: the linear segmentation probe on frozen ViT patch tokens (mIoU).

The embedded task (digit canvases with per-pixel masks) is deterministic; an image folder with a
mask folder is read with its ignore label; mIoU is checked by hand; `python -m ssljax.evaluate
--protocol segmentation` prints mIoU for the run and its random init, refuses a ResNet and a bad
folder in one line; and (slow) the trained digits ViT beats its random init.
"""
import os

import numpy as np
import pytest
from PIL import Image

from ssljax import models
from ssljax import train
from ssljax.data import segmentation as seg_data
from ssljax.evaluate import cli
from ssljax.evaluate import segmentation as seg


def test_digit_canvases_are_deterministic_and_labelled():
  a = seg_data.digits_canvases("train", 20, canvas=32, digit_size=16, seed=3)
  b = seg_data.digits_canvases("train", 20, canvas=32, digit_size=16, seed=3)
  np.testing.assert_array_equal(a.images, b.images)
  np.testing.assert_array_equal(a.masks, b.masks)
  assert a.images.shape == (20, 32, 32, 1) and a.masks.shape == (20, 32, 32)
  assert a.num_classes == 11 and a.class_names[0] == "background"
  assert a.masks.max() <= 10 and (a.masks == 0).mean() > 0.4
  # every labelled pixel is inked, each 16x16 slot holds one class at most
  assert np.all(a.images[..., 0][a.masks > 0] > 0)
  slots = a.masks.reshape(20, 2, 16, 2, 16).transpose(0, 1, 3, 2, 4).reshape(20, 4, -1)
  assert all(len(set(s[s > 0].tolist())) <= 1 for img in slots for s in img)
  held = seg_data.digits_canvases("val", 20, canvas=32, digit_size=16, seed=3)
  assert not np.array_equal(held.images, a.images)
  with pytest.raises(ValueError, match="digit_size a multiple of 8 that divides canvas"):
    seg_data.digits_canvases("train", 2, canvas=20, digit_size=16)


def _write_folder(root, n=4, size=12):
  rng = np.random.default_rng(0)
  for split in ("train", "val"):
    os.makedirs(root / split / "images")
    os.makedirs(root / split / "masks")
    for i in range(n):
      Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(
          root / split / "images" / f"im{i}.jpg")
      mask = np.zeros((size, size), np.uint8)
      mask[: size // 2] = 1 + i % 2
      mask[0, 0] = seg_data.IGNORE
      m = Image.fromarray(mask, mode="L").convert("P")   # a palette PNG, as VOC / ADE20K ship
      m.save(root / split / "masks" / f"im{i}.png")


def test_folder_split_reads_masks_with_ignore(tmp_path):
  _write_folder(tmp_path)
  s = seg_data.folder_split(str(tmp_path), "train", size=8)
  assert s.images.shape == (4, 8, 8, 3) and s.masks.shape == (4, 8, 8)
  assert s.num_classes == 3 and s.masks[0, 0, 0] == seg_data.IGNORE
  assert set(np.unique(s.masks).tolist()) == {0, 1, 2, seg_data.IGNORE}
  os.remove(tmp_path / "val" / "masks" / "im1.png")
  with pytest.raises(ValueError, match=r"im1.jpg' has no mask"):
    seg_data.folder_split(str(tmp_path), "val", size=8)
  with pytest.raises(ValueError, match="has no 'test/images'"):
    seg_data.folder_split(str(tmp_path), "test", size=8)


def test_miou_by_hand():
  labels = np.array([[0, 0, 1, 1], [2, 2, 255, 255]], np.uint8)
  pred = np.array([[0, 1, 1, 1], [2, 0, 1, 1]], np.uint8)
  conf = seg.confusion(pred, labels, 3)
  assert conf.sum() == 6        # the two ignored pixels are not scored
  value, iou = seg.miou(conf)
  # class 0: tp 1, fp 1, fn 1 -> 1/3; class 1: tp 2, fp 1 -> 2/3; class 2: tp 1, fn 1 -> 1/2
  np.testing.assert_allclose(iou, [1 / 3, 2 / 3, 1 / 2])
  np.testing.assert_allclose(value, (1 / 3 + 2 / 3 + 1 / 2) / 3)


def test_probe_learns_a_separable_task():
  """Tokens that hold the label (one-hot per patch) give a near-perfect probe."""
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 3, (40, 4, 4))
  feats = np.eye(3, dtype=np.float32)[labels] + 0.01 * rng.standard_normal((40, 4, 4, 3))
  masks = np.kron(labels, np.ones((4, 4), int)).astype(np.uint8)   # 16x16 pixels, 4x4 patches
  res = seg.linear_probe(feats[:30], masks[:30], feats[30:], masks[30:], 3, epochs=40, lr=0.05)
  assert res["miou"] > 0.6 and res["pixel_acc"] > 0.8, res


def test_protocol_needs_a_vit():
  with pytest.raises(seg.SegmentationError, match="needs a ViT backbone .* this run's backbone "
                                                  "is a ResNet"):
    seg.check_backbone(models.ResNet(depth=18))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
  from conftest import make_tiny_config
  c = make_tiny_config()
  workdir = str(tmp_path_factory.mktemp("seg") / "run")
  train.Trainer(c, workdir).run()
  return workdir


def test_cli_prints_miou_for_the_run_and_its_random_init(tiny_run, capsys, tmp_path):
  rows = cli.main(["--workdir", tiny_run, "--protocol", "segmentation", "--seg-epochs", "2",
                   "--no-write"])
  out = capsys.readouterr().out
  assert "miou " in out and "miou_random_init" in out
  row = rows[0]
  assert row["protocol"] == "segmentation" and row["seg_data"] == "digits_canvases8"
  assert 0.0 <= row["miou_random_init"] <= 1.0 and 0.0 <= row["miou"] <= 1.0
  assert len(row["iou_per_class"]) == 11
  _write_folder(tmp_path / "seg")
  rows = cli.main(["--workdir", tiny_run, "--protocol", "segmentation", "--seg-epochs", "1",
                   "--seg-data", str(tmp_path / "seg"), "--no-write"])
  assert rows[0]["seg_data"] == str(tmp_path / "seg") and len(rows[0]["iou_per_class"]) == 3


def test_cli_bad_folder_is_one_line(tiny_run, tmp_path):
  with pytest.raises(SystemExit, match=r"ssljax.evaluate: error: --seg-data='.*nope'; expected "
                                       r"'digits'"):
    cli.main(["--workdir", tiny_run, "--protocol", "segmentation",
              "--seg-data", str(tmp_path / "nope"), "--no-write"])


@pytest.mark.slow
def test_trained_digits_vit_beats_random_init(tmp_path):
  """simclr_digits (300 steps) then the CLI: mIoU on the embedded canvases beats the random init.

  Measured 2026-12-04 (seed 0): mIoU 0.54 trained vs 0.46 random-init (pixel accuracy 0.80 vs
  0.76); on 32x32 canvases with up to 4 digits (--seg-size 32) the tiny ViT transfers poorly
  (0.155 vs 0.147), hence the task at the trained scale.
  """
  from conftest import load_config
  c = load_config("simclr_digits")
  c.progress_bar = False
  c.eval.random_init = False
  train.Trainer(c, str(tmp_path / "run")).run()
  row = cli.main(["--workdir", str(tmp_path / "run"), "--protocol", "segmentation"])[0]
  assert row["miou"] > row["miou_random_init"] + 0.03, row

