"""The `tfds` source on an ArrayRecord dataset built here by TFDS's own builder, and grain workers.

The dataset (64 train / 16 test random 8x8 RGB images, 4 classes) is written by a tiny
`tfds.core.GeneratorBasedBuilder` with file_format='array_record' into a temporary data_dir; fresh
processes (the CLI) read it from its files without the builder class.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
NAME = "ssljax_test_shapes"
SIZES = {"train": 64, "test": 16}


def _examples(split: str):
  rng = np.random.default_rng(0 if split == "train" else 1)
  for i in range(SIZES[split]):
    yield i, {"image": rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), "label": (i * 7) % 4}


class SsljaxTestShapes(tfds.core.GeneratorBasedBuilder):
  """Random 8x8 RGB uint8 images with a 4-class label (stored as a Tensor: no TensorFlow needed)."""

  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
        "image": tfds.features.Tensor(shape=(8, 8, 3), dtype=np.uint8),
        "label": tfds.features.ClassLabel(num_classes=4)}))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {split: _examples(split) for split in SIZES}

  def _generate_examples(self, split):  # required by the base class; the splits above are generators
    yield from _examples(split)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  d = str(tmp_path_factory.mktemp("tfds"))
  SsljaxTestShapes(data_dir=d, file_format="array_record").download_and_prepare()
  return d


def _tfds_config(data_dir):
  from conftest import make_tiny_config
  c = make_tiny_config("simclr")
  c.data.source, c.data.tfds_name, c.data.path = "tfds", NAME, data_dir
  c.data.eval_split = "test"
  c.eval.max_examples = 32
  c.eval.batch_size = 16
  c.eval.linear_epochs = 1
  return c


def test_tfds_source_reads_the_records_tfds_wrote(data_dir):
  from ssljax.data.sources import TFDSSource
  assert any(f.endswith("array_record-00000-of-00001")
             for f in os.listdir(os.path.join(data_dir, NAME, "1.0.0")))
  src = TFDSSource(NAME, "train", data_dir)
  assert (len(src), src.num_classes, src.channels) == (64, 4, 3)
  # ArrayRecord keeps TFDS's shuffled order: compare as a set of (image bytes, label).
  got = {(src[i]["image"].tobytes(), src[i]["label"]) for i in range(len(src))}
  want = {(ex["image"].tobytes(), ex["label"]) for _, ex in _examples("train")}
  assert got == want
  rec = src[5]
  assert rec["image"].dtype == np.uint8 and rec["image"].shape == (8, 8, 3)
  assert len(TFDSSource(NAME, "test", data_dir)) == 16


def test_tfds_source_errors_name_the_problem(data_dir, tmp_path):
  from ssljax.data.sources import TFDSSource
  with pytest.raises(ValueError, match=r"no split 'validation'; expected one of \['test', 'train'\]"):
    TFDSSource(NAME, "validation", data_dir)
  with pytest.raises(FileNotFoundError, match="no_such_dataset_xyz"):
    TFDSSource("no_such_dataset_xyz", "train", str(tmp_path))


def test_trains_a_few_steps_on_tfds(data_dir, tmp_path):
  import jax
  from ssljax import train
  from ssljax.metrics_writer import read_jsonl
  c = _tfds_config(data_dir)
  c.total_steps = 3
  result = train.Trainer(c, str(tmp_path / "run"), devices=jax.devices()[:1]).run()
  assert result["step"] == 3 and 0.0 <= result["knn_top1"] <= 1.0
  losses = [r["loss"] for r in read_jsonl(str(tmp_path / "run" / "metrics.jsonl")) if "loss" in r]
  assert len(losses) == 3 and all(np.isfinite(losses))


def test_grain_workers_give_the_same_batches(data_dir):
  from ssljax.data import pipeline
  from ssljax.data.sources import TFDSSource
  from ssljax.methods import get
  c = _tfds_config(data_dir)
  spec = get("simclr")(c).view_spec()
  src = TFDSSource(NAME, "train", data_dir)

  def batches(workers):
    it = iter(pipeline.train_dataset(src, spec, c.data.augment, seed=3, local_batch_size=16,
                                     worker_count=workers))
    return [next(it) for _ in range(5)]   # 80 records: crosses an epoch boundary

  serial, parallel = batches(0), batches(2)
  for a, b in zip(serial, parallel):
    assert a.keys() == b.keys()
    for k in a:
      np.testing.assert_array_equal(a[k], b[k], err_msg=k)
  assert not np.array_equal(serial[0]["global"], serial[1]["global"])


@pytest.mark.slow
def test_cli_worker_count_0_and_2_train_identically(data_dir, tmp_path):
  """`python -m ssljax.main` with data.worker_count=2 (grain mp_prefetch) logs the same losses as 0."""
  from ssljax.metrics_writer import read_jsonl
  config = tmp_path / "tfds_tiny.py"
  config.write_text(f"import sys\nsys.path.insert(0, {HERE!r})\nimport test_tfds\n\n"
                    f"def get_config():\n  return test_tfds._tfds_config({data_dir!r})\n")
  losses = {}
  for workers in (0, 2):
    workdir = tmp_path / f"w{workers}"
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2 "
               "--xla_backend_optimization_level=0", JAX_PLATFORMS="cpu")
    proc = subprocess.run(
        [sys.executable, "-m", "ssljax.main", "--config", str(config), "--workdir", str(workdir),
         "--config.total_steps=4", f"--config.data.worker_count={workers}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    losses[workers] = [r["loss"] for r in read_jsonl(str(workdir / "metrics.jsonl")) if "loss" in r]
  assert len(losses[0]) == 4
  assert losses[2] == losses[0]
