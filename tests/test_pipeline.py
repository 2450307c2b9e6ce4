"""The grain pipeline and the data sources: determinism, checkpointable position, sharding, folders."""
import os

import numpy as np
import pytest
from PIL import Image

from ssljax.data import pipeline
from ssljax.data import sources
from ssljax.data.augment import ViewSpec
from ssljax.data.augment import default_augment_config

SPEC = ViewSpec(global_crops=2, global_size=8, global_scale=(0.3, 1.0))


def _iter(seed=0, process_index=0, process_count=1, source=None, batch=16):
  source = source or sources.digits("train")
  return iter(pipeline.train_dataset(source, SPEC, default_augment_config(), seed=seed,
                                     local_batch_size=batch, process_index=process_index,
                                     process_count=process_count))


def test_digits_split_is_fixed_and_disjoint():
  train, val = sources.digits("train"), sources.digits("val")
  assert (len(train), len(val)) == (1437, 360)
  assert train.images.dtype == np.uint8 and train.images.shape[1:] == (8, 8, 1)
  assert train.images.max() == 255
  flat_train = {x.tobytes() for x in train.images}
  assert sum(x.tobytes() in flat_train for x in val.images) < 10  # load_digits has a few duplicates


def test_digits_read_without_sklearn_import_equal_load_digits():
  """The CSV read that skips importing scikit-learn gives exactly `load_digits()`."""
  from sklearn.datasets import load_digits
  pixels, target = sources._digits_arrays()  # pylint: disable=protected-access
  d = load_digits()
  np.testing.assert_array_equal(pixels, d.images)
  np.testing.assert_array_equal(target, d.target)


def test_same_seed_same_batches_and_different_seed_differs():
  a, b, c = _iter(0), _iter(0), _iter(1)
  for _ in range(3):
    x, y, z = next(a), next(b), next(c)
    np.testing.assert_array_equal(x["global"], y["global"])
    np.testing.assert_array_equal(x["label"], y["label"])
  assert not np.array_equal(x["global"], z["global"])
  assert x["global"].shape == (16, 2, 8, 8, 1) and x["global"].dtype == np.float32
  assert not np.array_equal(x["global"][:, 0], x["global"][:, 1])  # two different views


def test_iterator_state_restores_the_exact_position():
  it = _iter(0)
  for _ in range(5):
    next(it)
  state = it.get_state()
  expected = [next(it)["global"] for _ in range(3)]
  fresh = _iter(0)
  fresh.set_state(state)
  for want in expected:
    np.testing.assert_array_equal(next(fresh)["global"], want)


def test_epochs_reshuffle_and_cover_the_data():
  src = sources.synthetic(32, 8, channels=1, seed=0)
  it = _iter(0, source=src, batch=8)
  labels_epoch = [np.concatenate([next(it)["label"] for _ in range(4)]) for _ in range(2)]
  assert sorted(labels_epoch[0].tolist()) == sorted(src.labels.tolist())
  assert not np.array_equal(labels_epoch[0], labels_epoch[1])


def test_processes_read_disjoint_shards_of_the_same_global_batches():
  src = sources.ArraySource(np.arange(64, dtype=np.uint8).reshape(64, 1, 1, 1).repeat(8, 1).repeat(8, 2),
                            np.arange(64), num_classes=64)
  one = _iter(0, source=src, batch=16)
  two = [_iter(0, p, 2, source=src, batch=8) for p in range(2)]
  for _ in range(6):  # past an epoch boundary
    want = next(one)
    parts = [next(it) for it in two]
    assert set(parts[0]["label"].tolist()).isdisjoint(parts[1]["label"].tolist())
    for key in ("label", "global"):  # process 0's rows, then process 1's: the 1-process global batch
      np.testing.assert_array_equal(np.concatenate([p[key] for p in parts]), want[key])


def _write_folder(root, sizes=((12, 12),) * 3, modes=("RGB",) * 3):
  for split in ("train", "val"):
    for c, cls in enumerate(("cat", "dog")):
      os.makedirs(os.path.join(root, split, cls), exist_ok=True)
      for i, (size, mode) in enumerate(zip(sizes, modes)):
        arr = np.full(size + ((3,) if mode == "RGB" else ()), 40 + 100 * c, np.uint8)
        if mode == "I;16":
          Image.fromarray(arr.astype(np.uint16) * 200).save(os.path.join(root, split, cls, f"{i}.png"))
        else:
          Image.fromarray(arr).convert(mode).save(os.path.join(root, split, cls, f"{i}.png"))


def test_image_folder_converts_modes_and_labels_by_class(tmp_path):
  _write_folder(str(tmp_path), sizes=((12, 12), (5, 7), (20, 9), (9, 9)),
                modes=("RGB", "L", "RGBA", "I;16"))
  src = sources.ImageFolderSource(str(tmp_path / "train"))
  assert src.classes == ["cat", "dog"] and len(src) == 8 and src.num_classes == 2
  for i in range(len(src)):
    rec = src[i]
    assert rec["image"].dtype == np.uint8 and rec["image"].ndim == 3 and rec["image"].shape[-1] == 3
  assert [src[i]["label"] for i in range(8)] == [0, 0, 0, 0, 1, 1, 1, 1]
  sixteen = src[src.files.index(str(tmp_path / "train" / "dog" / "3.png"))]["image"]
  assert sixteen.max() == 255 and (sixteen == sixteen[..., :1]).all()  # 16-bit gray -> RGB uint8
  batch = next(_iter(0, source=src, batch=4))
  assert batch["global"].shape == (4, 2, 8, 8, 3)  # small images are upsampled to the crop size


def test_unreadable_image_names_its_path(tmp_path):
  _write_folder(str(tmp_path))
  bad = tmp_path / "train" / "dog" / "broken.jpg"
  bad.write_bytes(b"not an image at all")
  src = sources.ImageFolderSource(str(tmp_path / "train"))
  index = src.files.index(str(bad))
  with pytest.raises(sources.ImageReadError, match=r"broken\.jpg"):
    src[index]


def test_eval_arrays_are_deterministic_center_views():
  src = sources.digits("val")
  x1, y1 = pipeline.eval_arrays(src, 16, default_augment_config(), max_examples=100)
  x2, _ = pipeline.eval_arrays(src, 16, default_augment_config(), max_examples=100)
  assert x1.shape == (100, 16, 16, 1) and y1.shape == (100,)
  np.testing.assert_array_equal(x1, x2)


def test_unreadable_image_skip_policy_counts_and_substitutes(tmp_path, capsys):
  _write_folder(str(tmp_path))
  bad = tmp_path / "train" / "cat" / "1.png"
  bad.write_bytes(b"\x89PNG truncated")
  src = sources.ImageFolderSource(str(tmp_path / "train"), on_bad_image="skip")
  index = src.files.index(str(bad))
  rec = src[index]
  np.testing.assert_array_equal(rec["image"], src[index + 1]["image"])
  assert src.bad_files == {str(bad)}
  assert "1.png" in capsys.readouterr().err
  batch = next(_iter(0, source=src, batch=6))
  assert batch["global"].shape[0] == 6
