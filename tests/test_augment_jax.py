"""Device-side photometric augmentation (ssljax.data.augment_jax) against the host path.

For fixed parameters each op matches the numpy / PIL host version within float rounding; with
the host's draws the whole view does; with random keys the ops fire at their probabilities; and
the trainer gives the same first losses and a bitwise resume with `data.augment_on='device'`.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssljax import train
from ssljax.data import augment
from ssljax.data import crops
from ssljax.data import augment_jax
from ssljax.data import views

from conftest import make_tiny_config

_OFF = dict(hflip_prob=0.0, color_jitter_prob=0.0, grayscale_prob=0.0, blur_prob=0.0,
            solarize_prob=0.0)

# One op at a time: (name, overrides that make exactly it fire).
_OPS = [
    ("flip", dict(hflip_prob=1.0)),
    ("brightness", dict(color_jitter_prob=1.0, brightness=0.8, contrast=0.0, saturation=0.0, hue=0.0)),
    ("contrast", dict(color_jitter_prob=1.0, brightness=0.0, contrast=0.8, saturation=0.0, hue=0.0)),
    ("saturation", dict(color_jitter_prob=1.0, brightness=0.0, contrast=0.0, saturation=0.8, hue=0.0)),
    ("hue", dict(color_jitter_prob=1.0, brightness=0.0, contrast=0.0, saturation=0.0, hue=0.5)),
    ("jitter", dict(color_jitter_prob=1.0)),
    ("grayscale", dict(grayscale_prob=1.0)),
    ("blur", dict(blur_prob=1.0, blur_sigma=(0.1, 3.0))),
    ("solarize", dict(solarize_prob=1.0, solarize_threshold=0.4)),
    ("normalise", dict(mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3))),
]


def _cfg(**overrides):
  cfg = augment.default_augment_config()
  cfg.update(dict(_OFF, **overrides))
  return cfg


def _both(image, cfg, spec, seed):
  host = augment.multicrop_views(image, np.random.default_rng(seed), spec, cfg)
  dev = crops.multicrop_uint8(image, np.random.default_rng(seed), spec, cfg)
  return host, dev


@pytest.mark.parametrize("name,overrides", _OPS, ids=[n for n, _ in _OPS])
@pytest.mark.parametrize("channels", [1, 3])
def test_each_op_matches_the_host_version(name, overrides, channels):
  if channels == 1 and name in ("saturation", "hue", "grayscale"):
    pytest.skip("RGB-only op")
  if channels == 1 and name == "normalise":
    overrides = dict(mean=(0.4,), std=(0.2,))
  image = np.random.default_rng(7).integers(0, 256, size=(30, 26, channels), dtype=np.uint8)
  spec = views.ViewSpec(global_crops=2, global_size=20, local_crops=2, local_size=9)
  cfg = _cfg(**overrides)
  plain = _cfg(**({k: v for k, v in overrides.items() if k in ("mean", "std")}))
  changed = False
  for seed in range(8):
    host, dev = _both(image, cfg, spec, seed)
    for view in ("global", "local"):
      got = augment_jax.photometric(jnp.asarray(dev[view]), jnp.asarray(dev[view + "_aug"]), cfg)
      np.testing.assert_allclose(np.asarray(got), host[view], atol=2e-5, rtol=0)
      # The op did something (the crops alone, normalised, differ from the result).
      bare = augment_jax.photometric(jnp.asarray(dev[view]), jnp.asarray(dev[view + "_aug"]), plain)
      changed |= bool(np.abs(np.asarray(bare) - host[view]).max() > 1e-3) or name == "normalise"
  assert changed, name


def test_full_recipe_matches_with_the_host_draws():
  cfg = augment.default_augment_config()
  cfg.solarize_prob = 0.2
  for channels in (1, 3):
    image = np.random.default_rng(channels).integers(0, 256, size=(40, 30, channels), dtype=np.uint8)
    spec = views.ViewSpec(global_crops=2, global_size=24, local_crops=4, local_size=12)
    for seed in range(20):
      host, dev = _both(image, cfg, spec, seed)
      for view in ("global", "local"):
        np.testing.assert_array_equal(dev[view].shape[:-1], host[view].shape[:-1])
        got = augment_jax.photometric_views(jnp.asarray(dev[view])[None],
                                            jnp.asarray(dev[view + "_aug"])[None], cfg)[0]
        np.testing.assert_allclose(np.asarray(got), host[view], atol=2e-5, rtol=0)


def test_random_keys_fire_each_op_at_its_probability():
  n = 4000
  cfg = _cfg(hflip_prob=0.5, grayscale_prob=0.2)
  u = augment_jax.random_uniforms(jax.random.split(jax.random.PRNGKey(0), n))
  assert u.shape == (n, augment_jax.NUM_UNIFORMS) and float(u.min()) >= 0 and float(u.max()) < 1
  # An image whose left half is red and right half blue: flips and grays are visible.
  img = np.zeros((n, 4, 4, 3), np.uint8)
  img[:, :, :2, 0] = 255
  img[:, :, 2:, 2] = 255
  out = np.asarray(augment_jax.photometric(jnp.asarray(img), u, _cfg(**dict(cfg, mean=(0.0,),
                                                                             std=(1.0,)))))
  gray = np.all(np.abs(out[..., 0] - out[..., 2]) < 1e-6, axis=(1, 2))
  flipped = out[:, 0, 0, 2] > out[:, 0, 0, 0]
  assert abs(gray.mean() - 0.2) < 0.03
  assert abs(flipped[~gray].mean() - 0.5) < 0.04


def test_bad_shapes_are_one_line_errors():
  with pytest.raises(ValueError, match=r"square \[B, S, S, C\]"):
    augment_jax.photometric(jnp.zeros((2, 8, 6, 3), jnp.uint8), jnp.zeros((2, 14)), _cfg())
  with pytest.raises(ValueError, match=r"uniforms have shape \(2, 13\)"):
    augment_jax.photometric(jnp.zeros((2, 8, 8, 3), jnp.uint8), jnp.zeros((2, 13)), _cfg())


def test_spec_fields_and_the_device_half_in_jit():
  spec = views.ViewSpec(global_crops=2, global_size=8, local_crops=2, local_size=4,
                        augment_on="device")
  fields = spec.fields()
  assert fields["global_aug"] == views.Field("params", 2) and fields["local_aug"].views == 2
  record = {"image": np.full((10, 10, 1), 99, np.uint8), "label": 3}
  out = spec.make(record, np.random.default_rng(0), augment.default_augment_config())
  views.check_example(fields, dict(out, label=np.int32(3)))
  assert out["global"].dtype == np.uint8
  batch = {k: jnp.stack([jnp.asarray(v)] * 8) for k, v in out.items()}
  done = jax.jit(lambda b: spec.on_device(b, augment.default_augment_config(), jnp.bfloat16))(batch)
  assert set(done) == {"global", "local"}
  assert done["global"].shape == (8, 2, 8, 8, 1) and done["global"].dtype == jnp.bfloat16
  with pytest.raises(ValueError, match="augment_on='gpu'"):
    views.ViewSpec(augment_on="gpu")


def _tiny(where):
  c = make_tiny_config("simclr", "vit")
  c.data.augment_on = where
  c.total_steps = 6
  return c


def test_trainer_device_augmentation_matches_host_and_resumes_bitwise(tmp_path):
  """Same seed: the first losses of host and device augmentation agree to float rounding; a run
  stopped at step 3 and resumed gives the uninterrupted run's losses bit for bit."""
  def losses(where, path, until=None, devices=8):
    trainer = train.Trainer(_tiny(where), str(path), devices=jax.devices()[:devices])
    trainer.run(until_step=until)
    import json
    rows = [json.loads(l) for l in open(path / "metrics.jsonl")]
    return [r["loss"] for r in rows if "loss" in r]

  host = losses("host", tmp_path / "host")
  device = losses("device", tmp_path / "device")
  np.testing.assert_allclose(device[:3], host[:3], rtol=1e-4)
  losses("device", tmp_path / "resumed", until=3)
  resumed = losses("device", tmp_path / "resumed")
  assert resumed == device
  one = losses("device", tmp_path / "one", devices=1)
  np.testing.assert_allclose(one, device, rtol=1e-4)


def test_auto_resolves_per_platform():
  c = _tiny("auto")

  class Dev:
    def __init__(self, platform):
      self.platform = platform

  assert train.augment_on(c, [Dev("tpu")]) == "device"
  assert train.augment_on(c, [Dev("gpu")]) == "device"
  assert train.augment_on(c, [Dev("cpu")]) == train.AUTO_AUGMENT_ON["cpu"]
  c.data.augment_on = "host"
  assert train.augment_on(c, [Dev("tpu")]) == "host"


@pytest.mark.slow
@pytest.mark.parametrize("name,seed", [("simclr", 0), ("simclr", 1), ("dino", 0), ("byol", 1)])
def test_digits_learning_with_device_augmentation(tmp_path, name, seed):
  """The digits recipes learn as well with the photometric half on the device."""
  from conftest import learn_on_digits, load_config
  c = load_config(f"{name}_digits")
  c.data.augment_on = "device"
  c.seed = seed
  learn_on_digits(c, tmp_path, margin=0.05)


def test_per_view_overrides_apply_on_host_and_device_alike():
  """BYOL's asymmetric views: crop 0 always blurred, crop 1 never blurred but always solarised
  (probabilities 1 / 0 to make it visible); local crops blurred always."""
  from ssljax import config as config_lib
  c = make_tiny_config("byol", "vit")
  c.data.global_view_blur_prob = (1.0, 0.0)
  c.data.global_view_solarize_prob = (0.0, 1.0)
  c.data.local_view_blur_prob = 1.0
  config_lib.validate(c)
  overrides, local = train.view_overrides(c.data)
  assert overrides == ((("blur_prob", 1.0), ("solarize_prob", 0.0)),
                       (("blur_prob", 0.0), ("solarize_prob", 1.0)))
  assert local == (("blur_prob", 1.0),)
  cfg = _cfg(mean=(0.0,), std=(1.0,))
  spec = views.ViewSpec(global_crops=2, global_size=16, local_crops=2, local_size=8,
                        view_overrides=overrides, local_overrides=local)
  image = np.random.default_rng(0).integers(0, 256, size=(20, 20, 3), dtype=np.uint8)
  host = augment.multicrop_views(image, np.random.default_rng(1), spec, cfg)
  dev = crops.multicrop_uint8(image, np.random.default_rng(1), spec, cfg)
  on_dev = spec.with_augment_on("device").on_device(
      {k: jnp.asarray(v)[None] for k, v in dev.items()}, cfg, jnp.float32)
  for name in ("global", "local"):
    np.testing.assert_allclose(np.asarray(on_dev[name][0]), host[name], atol=2e-5)
  unit = dev["global"].astype(np.float32) / 255
  assert np.abs(host["global"][1] - unit[1]).max() > 0.1            # solarised
  # Blurred crops are smoother than their crops; the unblurred solarised one is not blurred.
  rough = lambda x: np.abs(np.diff(x, axis=0)).mean()
  assert rough(host["global"][0]) < 0.8 * rough(unit[0])
  assert rough(host["local"][0]) < 0.8 * rough(dev["local"][0].astype(np.float32) / 255)
  c.data.global_view_blur_prob = (1.5,)
  with pytest.raises(config_lib.ConfigError, match="global_view_blur_prob=\\(1.5,\\)"):
    config_lib.validate(c)
