"""`python -m ssljax.data.prepare --from image_folder` and the ArrayRecord source that reads it."""
import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from ssljax.data import array_record as ar
from ssljax.data import prepare

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSES = ("cat", "dog", "eel")


def _smooth_image(rng, h, w):
  """A smooth RGB uint8 image (gradients + a blob), so that JPEG at quality 95 is near-lossless."""
  y, x = np.mgrid[0:h, 0:w] / max(h, w)
  a, b, c = rng.uniform(0.2, 1.0, 3)
  img = np.stack([a * x, b * y, c * np.exp(-((x - 0.5) ** 2 + (y - 0.5) ** 2) * 8)], -1)
  return np.round(img * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
  """SRC/{train,val}/{cat,dog,eel}/*.png (24 + 9 PNGs of varied sizes) and one JPEG; returns
  (SRC, {path: pixels})."""
  src = tmp_path_factory.mktemp("src")
  rng = np.random.default_rng(0)
  pixels = {}
  for split, per_class in (("train", 8), ("val", 3)):
    for cls in CLASSES:
      os.makedirs(src / split / cls)
      for i in range(per_class):
        img = _smooth_image(rng, int(rng.integers(12, 40)), int(rng.integers(12, 40)))
        path = str(src / split / cls / f"{i:02d}.png")
        Image.fromarray(img).save(path)
        pixels[path] = img
  jpg = str(src / "train" / "dog" / "zz.jpg")
  Image.fromarray(_smooth_image(rng, 20, 30)).save(jpg, quality=90)
  pixels[jpg] = np.asarray(Image.open(jpg).convert("RGB"))
  return str(src), pixels


def _expected(src, split, pixels):
  """[(pixels, label)] in the order the prepared split stores them (class, then file name)."""
  out = []
  for label, cls in enumerate(CLASSES):
    d = os.path.join(src, split, cls)
    out += [(pixels[os.path.join(d, f)], label) for f in sorted(os.listdir(d))]
  return out


@pytest.mark.parametrize("encoding", ["png", "raw"])
def test_lossless_formats_round_trip_exactly(folder, tmp_path, encoding):
  src, pixels = folder
  info = prepare.prepare_image_folder(src, str(tmp_path), encoding=encoding, examples_per_shard=7,
                                      log=lambda _: None)
  assert info["classes"] == list(CLASSES)
  for split in ("train", "val"):
    source = ar.ArrayRecordSource(str(tmp_path), split)
    want = _expected(src, split, pixels)
    assert len(source) == len(want)
    # Random access across shard boundaries, in a scrambled order.
    for i in np.random.default_rng(1).permutation(len(want)):
      rec = source[int(i)]
      assert rec["label"] == want[i][1], (split, i)
      assert rec["image"].dtype == np.uint8 and rec["image"].shape == want[i][0].shape
      np.testing.assert_array_equal(rec["image"], want[i][0], err_msg=f"{split}[{i}]")


def test_jpeg_keeps_jpeg_files_and_encodes_others_near_lossless(folder, tmp_path):
  src, pixels = folder
  prepare.prepare_image_folder(src, str(tmp_path), encoding="jpeg", quality=95, log=lambda _: None)
  source = ar.ArrayRecordSource(str(tmp_path), "train")
  want = _expected(src, "train", pixels)
  errors = []
  for i, (img, label) in enumerate(want):
    rec = source[i]
    assert rec["label"] == label and rec["image"].shape == img.shape
    errors.append(np.abs(rec["image"].astype(int) - img.astype(int)).mean())
  assert max(errors) < 2.0, f"JPEG q95 mean abs error {max(errors):.2f}; expected < 2 on smooth images"
  assert min(errors) == 0.0, "the JPEG file's own bytes should have been kept (decodes exactly)"
  # The stored record of the .jpg is the file's bytes.
  from array_record.python import array_record_data_source
  shard = os.path.join(str(tmp_path), "train", "train-00000-of-00001.array_record")
  raw = array_record_data_source.ArrayRecordDataSource([shard])
  jpg_index = [i for i, (img, _) in enumerate(want) if img is pixels[os.path.join(src, "train", "dog", "zz.jpg")]][0]
  with open(os.path.join(src, "train", "dog", "zz.jpg"), "rb") as f:
    assert raw[jpg_index].endswith(f.read())


def test_json_counts_and_deterministic_bytes(folder, tmp_path):
  src, _ = folder
  a, b = tmp_path / "a", tmp_path / "b"
  for d in (a, b):
    prepare.prepare_image_folder(src, str(d), examples_per_shard=10, log=lambda _: None)
  info = json.loads((a / ar.INFO_FILE).read_text())
  assert info["splits"]["train"]["num_examples"] == 25
  assert info["splits"]["train"]["class_counts"] == {"cat": 8, "dog": 9, "eel": 8}
  assert info["splits"]["val"]["class_counts"] == {"cat": 3, "dog": 3, "eel": 3}
  assert [s["num_examples"] for s in info["splits"]["train"]["shards"]] == [10, 10, 5]
  for shard in info["splits"]["train"]["shards"] + info["splits"]["val"]["shards"]:
    assert (a / shard["file"]).read_bytes() == (b / shard["file"]).read_bytes(), shard["file"]
  source = ar.ArrayRecordSource(str(a), "train")
  np.testing.assert_array_equal(source[13]["image"], source[13]["image"])


def test_source_pickles_for_grain_workers(folder, tmp_path):
  src, _ = folder
  prepare.prepare_image_folder(src, str(tmp_path), encoding="png", log=lambda _: None)
  source = ar.ArrayRecordSource(str(tmp_path), "val")
  first = source[4]           # opens a reader, which must not travel in the pickle
  clone = pickle.loads(pickle.dumps(source))
  assert len(clone) == len(source) == 9
  np.testing.assert_array_equal(clone[4]["image"], first["image"])
  assert clone.num_classes == 3 and clone.channels == 3


def test_source_errors_name_the_bad_value(folder, tmp_path):
  src, _ = folder
  with pytest.raises(FileNotFoundError, match="ssljax_dataset.json"):
    ar.ArrayRecordSource(str(tmp_path), "train")
  prepare.prepare_image_folder(src, str(tmp_path), splits=["val"], log=lambda _: None)
  with pytest.raises(ValueError, match=r"no split 'train'.*\['val'\]"):
    ar.ArrayRecordSource(str(tmp_path), "train")
  with pytest.raises(IndexError, match="index 9 out of range for 9"):
    ar.ArrayRecordSource(str(tmp_path), "val")[9]


def test_cli_writes_shards_the_source_reads(folder, tmp_path):
  src, pixels = folder
  out = tmp_path / "out"
  cmd = [sys.executable, "-m", "ssljax.data.prepare", "--from", "image_folder", src, "--to",
         str(out), "--format", "png", "--examples-per-shard", "4", "--workers", "2"]
  run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert run.returncode == 0, run.stderr
  assert "data.source=array_record" in run.stdout
  assert sorted(os.listdir(out / "val")) == [f"val-{i:05d}-of-00003.array_record" for i in range(3)]
  source = ar.ArrayRecordSource(str(out), "val")
  for i, (img, label) in enumerate(_expected(src, "val", pixels)):
    assert source[i]["label"] == label
    np.testing.assert_array_equal(source[i]["image"], img)
  again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert again.returncode == 2 and "--overwrite" in again.stderr, again.stderr


def test_cli_refuses_a_folder_of_class_folders_without_as_split(folder, tmp_path):
  src, _ = folder
  with pytest.raises(ValueError, match="--as-split"):
    prepare.prepare_image_folder(os.path.join(src, "val"), str(tmp_path), log=lambda _: None)
  info = prepare.prepare_image_folder(os.path.join(src, "val"), str(tmp_path), as_split="test",
                                      log=lambda _: None)
  assert list(info["splits"]) == ["test"] and info["splits"]["test"]["num_examples"] == 9


def test_trainer_runs_two_steps_on_a_prepared_dataset(folder, tmp_path, tiny_config):
  from ssljax import train
  from ssljax.data import sources
  src, _ = folder
  data = tmp_path / "data"
  prepare.prepare_image_folder(src, str(data), examples_per_shard=10, log=lambda _: None)
  assert "array_record" in sources.available()
  config = tiny_config("simclr", "vit")
  config.data.update(source="array_record", path=str(data), worker_count=0)
  config.update(batch_size=8, total_steps=2, checkpoint_every=2)
  config.eval.update(max_examples=9, batch_size=9, linear_epochs=1)
  trainer = train.Trainer(config, str(tmp_path / "work"))
  assert len(trainer.train_source) == 25 and trainer.train_source.num_classes == 3
  result = trainer.run()
  assert result["step"] == 2 and 0.0 <= result["knn_top1"] <= 1.0, result


def test_grain_pipeline_shards_the_source_by_process(folder, tmp_path, tiny_config):
  """Two processes' local batches of the ArrayRecord source are the halves of one process's global
  batch: the source needs only len/getitem for multi-host runs."""
  from ssljax import methods
  from ssljax.data import pipeline
  src, _ = folder
  prepare.prepare_image_folder(src, str(tmp_path), encoding="png", log=lambda _: None)
  source = ar.ArrayRecordSource(str(tmp_path), "train")
  config = tiny_config("simclr", "vit")
  spec = methods.get("simclr")(config).view_spec()

  def first_batch(local, index, count):
    ds = pipeline.train_dataset(source, spec, config.data.augment, seed=3, local_batch_size=local,
                                process_index=index, process_count=count)
    return next(iter(ds))

  whole = first_batch(8, 0, 1)
  halves = [first_batch(4, p, 2) for p in range(2)]
  for key in whole:
    np.testing.assert_array_equal(np.concatenate([h[key] for h in halves]), whole[key], err_msg=key)
  assert len(set(whole["label"].tolist())) > 1


def test_array_record_is_a_registered_source_without_importing_it(tmp_path):
  """The main CLI's process never imports ssljax.data.array_record: the registry does, lazily."""
  import subprocess
  import sys
  code = ("from ssljax.data import sources; import sys; "
          "assert 'array_record' in sources.available(); "
          "assert 'ssljax.data.array_record' not in sys.modules; "
          "from ssljax import config; c = config.base_config('simclr', 'vit'); "
          "c.data.source = 'array_record'; c.data.path = %r\n"
          "try:\n  config.validate(c)\nexcept config.ConfigError as e:\n  print(e)") % str(tmp_path / "nope")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       env={**__import__("os").environ, "JAX_PLATFORMS": "cpu"})
  assert "data.path=" in out.stdout and "ssljax.data.prepare" in out.stdout
