"""Modality-neutral batches: view specs declare fields by kind, and a method on a non-image modality
(spectrograms) trains through the unchanged trainer, from a registered source and method.
"""
import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from ssljax import config as config_lib
from ssljax import losses
from ssljax import methods
from ssljax import train
from ssljax.data import augment
from ssljax.data import crops
from ssljax.data import pipeline
from ssljax.data import sources
from ssljax.data import views
from ssljax.methods import common
from ssljax.models.heads import MLPHead

from conftest import make_tiny_config

# ---------------------------------------------------------------------------------------------
# A toy audio task: class c is a tone in frequency bin 3 + 4c that sounds in random bursts, under
# noise and a louder distractor tone that moves to a random bin every 16 frames. A crop's energy is
# mostly the distractors'; what two crops of one recording share is the class tone.
# ---------------------------------------------------------------------------------------------

F, T, CLASSES, SEGMENT = 24, 192, 5, 16


class ToneSource:
  def __init__(self, n: int, seed: int):
    rng = np.random.default_rng(seed)
    self.labels = rng.integers(0, CLASSES, size=n)
    specs = rng.gamma(1.0, 0.5, size=(n, F, T)).astype(np.float32)
    for i, c in enumerate(self.labels):
      specs[i, 3 + 4 * c] += 2.0 * (rng.random(T) < 0.5)
      for s in range(0, T, SEGMENT):   # a louder distractor, in a new random bin every segment
        specs[i, rng.integers(0, F), s:s + SEGMENT] += 4.0
    self.specs, self.num_classes = specs, CLASSES

  def __len__(self):
    return len(self.labels)

  def __getitem__(self, i):
    return {"spectrogram": self.specs[i], "label": int(self.labels[i])}


def _tone_source(data_cfg, split):
  return ToneSource(600, seed=0) if split == data_cfg.train_split else ToneSource(200, seed=1)


class Encoder(nn.Module):
  """[N, F, L] spectrogram crops -> [N, 64] features: per-bin MLP, pooled over time."""

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train
    h = nn.gelu(nn.Dense(64)(jnp.swapaxes(x, 1, 2)))      # [N, L, 64]: each frame's bins
    return nn.Dense(64)(jnp.mean(h, axis=1))


class SpecCLR(methods.Method):
  """Two time crops of a spectrogram, NT-Xent on their projections."""

  name = "test_specclr"

  @staticmethod
  def default_config():
    return ml_collections.ConfigDict(dict(temperature=0.2, length=32, loss_impl="auto"))

  def __init__(self, config):
    super().__init__(config)
    self.backbone = Encoder()
    self.modules = {"backbone": self.backbone, "head": MLPHead(hidden_dims=(64,), out_dim=32,
                                                               use_bn=False)}

  def view_spec(self):
    return views.SequenceViews(kind="spectrogram", length=self.cfg.length, num_views=2,
                               key="spectrogram", name="crops")

  def init(self, rng, batch):
    return common.init_chain(rng, batch["crops"][:, 0], self.modules)

  def loss(self, params, state, batch, rng, step):
    del step
    z, state = common.apply_chain(self.modules, params, state, common.merge_views(batch["crops"]),
                                  train=True, rng=rng)
    z1, z2 = common.split_views(z, 2)
    return losses.nt_xent(z1, z2, self.cfg.temperature, impl=self.cfg.loss_impl), ({}, state)


@pytest.fixture(scope="module")
def registered():
  try:
    sources.register("test_tones", _tone_source)
    methods.register(SpecCLR)
  except ValueError:  # registered by an earlier test in this process
    pass
  return True


def _spec_config(seed: int):
  c = make_tiny_config("simclr", "vit")
  del c["simclr"]
  c.method = "test_specclr"
  c.test_specclr = SpecCLR.default_config()
  c.data.source = "test_tones"
  c.seed = seed
  c.batch_size = 64
  c.total_steps = 400
  c.eval_every = 1000
  c.checkpoint_every = 1000
  c.log_every = 50
  c.eval.max_examples = 600
  c.eval.linear_epochs = 5
  c.eval.random_init = True
  c.optimizer.base_lr = 5e-3
  c.optimizer.warmup_steps = 10
  c.mesh.data = 1
  return c


def test_registered_source_and_method_validate(registered):
  c = _spec_config(0)
  config_lib.validate(c, device_count=1)
  assert "test_tones" in sources.available() and "test_specclr" in methods.available()
  c.data.source = "test_tone"
  with pytest.raises(config_lib.ConfigError, match="test_tones"):
    config_lib.validate(c, device_count=1)


def test_register_refuses_a_taken_name(registered):
  with pytest.raises(ValueError, match="already registered"):
    sources.register("digits", _tone_source)
  with pytest.raises(ValueError, match="already registered"):
    methods.register(type("Other", (SpecCLR,), {"name": "simclr"}))


@pytest.mark.parametrize("seed", [0, pytest.param(1, marks=pytest.mark.slow)])
def test_spectrogram_method_learns_through_the_trainer(registered, tmp_path, seed):
  """The unchanged trainer carries [B, 2, F, L] spectrogram crops, evaluates on centre crops, and
  the method beats its random-init encoder on the held-out kNN."""
  c = _spec_config(seed)
  trainer = train.Trainer(c, str(tmp_path / "run"), devices=jax.devices()[:1])
  assert trainer.evaluator.eval_x.shape == (200, F, 32)
  result = trainer.run()
  assert result["knn_top1"] > result["knn_top1_random_init"] + 0.1, result
  assert result["knn_top1"] > 0.7, result


# ---------------------------------------------------------------------------------------------
# The spec protocol.
# ---------------------------------------------------------------------------------------------


def test_every_registered_image_method_makes_the_fields_it_declares():
  from conftest import load_config
  import glob
  import os
  names = sorted(os.path.basename(p)[:-len("_digits.py")]
                 for p in glob.glob(os.path.join(os.path.dirname(__file__), "..", "configs",
                                                 "*_digits.py")))
  assert len(names) >= 20
  for name in names:
    if name == "lit":   # needs a pretrained image tower: tests/test_image_text.py
      continue
    c = load_config(f"{name}_digits")
    record = sources.build_source(c.data, c.data.train_split)[0]
    spec = methods.get(c.method)(c).view_spec()
    out = pipeline.MakeViews(spec, c.data.augment)(record, np.random.default_rng(0))
    views.check_example(spec.fields(), out, where=name)
    assert spec.eval_kind == "image"
    assert spec.fields()["global"].kind == "image"


def test_check_example_names_the_field_and_kind():
  spec = views.ViewSpec(global_crops=2, global_size=8)
  good = {"global": np.zeros((2, 8, 8, 1), np.float32), "label": np.int32(0)}
  views.check_example(spec.fields(), good)
  with pytest.raises(ValueError, match=r"field 'global' has shape \(8, 8, 1\); expected image"):
    views.check_example(spec.fields(), dict(good, **{"global": np.zeros((8, 8, 1))}))
  with pytest.raises(ValueError, match=r"undeclared \['extra'\]"):
    views.check_example(spec.fields(), dict(good, extra=np.zeros(3)))
  with pytest.raises(ValueError, match=r"expected image \[V=2"):
    views.check_example(spec.fields(), dict(good, **{"global": np.zeros((3, 8, 8, 1))}))


def test_sequence_views_crop_the_time_axis():
  x = np.arange(4 * 10, dtype=np.float32).reshape(4, 10)
  spec = views.SequenceViews(kind="spectrogram", length=6, num_views=3, key="s", name="v")
  out = spec.make({"s": x}, np.random.default_rng(0), None)["v"]
  assert out.shape == (3, 4, 6) and out.dtype == np.float32
  for crop in out:   # each crop is a contiguous window of the same record
    start = int(crop[0, 0])
    np.testing.assert_array_equal(crop, x[:, start:start + 6])
  np.testing.assert_array_equal(spec.eval_input({"s": x}, None), x[:, 2:8])
  tokens = views.SequenceViews(kind="tokens", length=4, num_views=1, key="t", name="ids")
  ids = tokens.make({"t": np.arange(9)}, np.random.default_rng(1), None)["ids"]
  assert ids.dtype == np.int32 and ids.shape == (1, 4) and np.all(np.diff(ids[0]) == 1)
  clip = views.SequenceViews(kind="clip", length=2, num_views=2, key="c", name="frames")
  frames = clip.make({"c": np.zeros((5, 4, 4, 3))}, np.random.default_rng(0), None)["frames"]
  assert frames.shape == (2, 2, 4, 4, 3)
  with pytest.raises(ValueError, match=r"record\['s'\] has 10 steps; SequenceViews needs at least "
                                       r"length=12"):
    views.SequenceViews(length=12, key="s").make({"s": x}, np.random.default_rng(0), None)
  with pytest.raises(ValueError, match=r"expected spectrogram \[F, T\]"):
    spec.make({"s": np.zeros(10)}, np.random.default_rng(0), None)


def test_joint_spec_makes_every_part_and_refuses_clashes():
  image = views.ViewSpec(global_crops=1, global_size=8)
  text = views.SequenceViews(kind="tokens", length=5, num_views=1, key="text", name="tokens")
  joint = views.Joint((image, text))
  record = {"image": np.full((8, 8, 3), 128, np.uint8), "text": np.arange(7), "label": 1}
  out = pipeline.MakeViews(joint, augment.default_augment_config())(record, np.random.default_rng(0))
  views.check_example(joint.fields(), out)
  assert set(out) == {"global", "tokens", "label"}
  assert joint.eval_kind == "image"
  with pytest.raises(ValueError, match="field 'global' is made by parts 0 and 1"):
    views.Joint((image, image))


def test_normalize_uint8_is_center_view_bit_for_bit():
  rng = np.random.default_rng(0)
  cfg = augment.default_augment_config()
  cfg.mean, cfg.std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
  for shape in [(8, 8, 3), (13, 9, 3)]:
    image = rng.integers(0, 256, size=shape, dtype=np.uint8)
    want = augment.center_view(image, 16, cfg)
    got = crops.normalize_uint8(crops.center_crop_uint8(image, 16)[None], cfg)[0]
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, want)


def test_eval_bank_processes_hold_disjoint_rows_that_reassemble_the_bank():
  src = sources.digits("val")                      # 360 records
  spec = views.ViewSpec(global_size=16)
  cfg = augment.default_augment_config()
  whole, labels, n = pipeline.eval_bank(src, spec, cfg, 100, chunk=32)
  assert n == 100 and whole.dtype == np.uint8 and whole.shape == (128, 16, 16, 1)
  parts = [pipeline.eval_bank(src, spec, cfg, 100, chunk=32, process_index=p, process_count=4)
           for p in range(4)]
  assert all(part[0].shape == (32, 16, 16, 1) for part in parts)   # a quarter each
  # Chunk c of the bank is process 0's rows of chunk c, then process 1's, ...
  stacked = np.stack([part[0].reshape(4, 8, 16, 16, 1) for part in parts], axis=1)
  np.testing.assert_array_equal(stacked.reshape(128, 16, 16, 1), whole)
  stacked_labels = np.stack([part[1].reshape(4, 8) for part in parts], axis=1).ravel()
  np.testing.assert_array_equal(stacked_labels, labels)
  idx = pipeline.bank_indices(len(src), 100)
  np.testing.assert_array_equal(labels[:n], [src[int(i)]["label"] for i in idx])
  assert np.all(labels[n:] == -1)
  images, _ = pipeline.eval_arrays(src, 16, cfg, 100)
  np.testing.assert_array_equal(spec.prepare(whole[:n], cfg), images)
