"""Per-record augmentations: determinism, shapes, and that each augmentation does what it says."""
import colorsys

import numpy as np
import pytest
from PIL import Image

from ssljax.data import augment
from ssljax.data.augment import ViewSpec


def _img(shape, seed=0):
  return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _plain_cfg(**overrides):
  """Identity crop, no random augmentation; overrides switch single augmentations on."""
  cfg = augment.default_augment_config()
  cfg.crop_scale = (1.0, 1.0)
  cfg.crop_ratio = (1.0, 1.0)
  for k in ("hflip_prob", "color_jitter_prob", "grayscale_prob", "blur_prob", "solarize_prob"):
    cfg[k] = 0.0
  for k, v in overrides.items():
    cfg[k] = v
  return cfg


def _view(image, size, cfg, seed=0):
  return augment.augment_view(image, np.random.default_rng(seed), size, cfg)


def test_default_config_values_and_types():
  cfg = augment.default_augment_config()
  assert cfg.crop_scale == (0.08, 1.0) and cfg.crop_ratio == pytest.approx((0.75, 4 / 3))
  assert cfg.hflip_prob == 0.5 and cfg.color_jitter_prob == 0.8 and cfg.grayscale_prob == 0.2
  assert (cfg.brightness, cfg.contrast, cfg.saturation, cfg.hue) == (0.4, 0.4, 0.4, 0.1)
  assert cfg.blur_prob == 0.5 and cfg.blur_sigma == (0.1, 2.0)
  assert cfg.solarize_prob == 0.0 and cfg.solarize_threshold == 0.5
  assert cfg.mean == (0.5,) and cfg.std == (0.5,)
  with pytest.raises(TypeError):  # ml_collections type check: floats stay floats
    cfg.hflip_prob = "0.5"


@pytest.mark.parametrize("shape,size", [((8, 8, 1), 16), ((8, 8, 3), 32), ((8, 8), 16),
                                        ((40, 24, 3), 16), ((5, 7, 1), 8)])
def test_shapes_dtype_range(shape, size):
  image = _img(shape)
  c = shape[2] if len(shape) == 3 else 1
  for seed in range(10):
    v = _view(image, size, augment.default_augment_config(), seed)
    assert v.shape == (size, size, c) and v.dtype == np.float32
    assert v.flags.c_contiguous
    assert v.min() >= -1.0 - 1e-5 and v.max() <= 1.0 + 1e-5  # mean 0.5, std 0.5
  e = augment.center_view(image, size, augment.default_augment_config())
  assert e.shape == (size, size, c) and e.dtype == np.float32


@pytest.mark.parametrize("c", [1, 3])
def test_same_seed_same_view_different_seed_different(c):
  cfg = augment.default_augment_config()
  cfg.solarize_prob = 0.2
  image = _img((8, 8, c))
  for seed in range(5):
    a, b = _view(image, 16, cfg, seed), _view(image, 16, cfg, seed)
    np.testing.assert_array_equal(a, b)
  views = [_view(image, 16, cfg, seed) for seed in range(5)]
  for i in range(5):
    for j in range(i + 1, 5):
      assert not np.array_equal(views[i], views[j])


def test_no_global_random_state():
  image = _img((8, 8, 3))
  cfg = augment.default_augment_config()
  np.random.seed(0)
  state = np.random.get_state()[1].copy()
  a = _view(image, 16, cfg, 7)
  np.testing.assert_array_equal(np.random.get_state()[1], state)
  np.random.seed(123)
  np.testing.assert_array_equal(a, _view(image, 16, cfg, 7))


def test_fixed_number_of_draws_per_view():
  """The Generator advances the same amount whatever fires, so later records/views don't shift."""
  image = _img((8, 8, 3))
  on = augment.default_augment_config()
  for k in ("hflip_prob", "color_jitter_prob", "grayscale_prob", "blur_prob", "solarize_prob"):
    on[k] = 1.0
  nexts = []
  for cfg in (_plain_cfg(), on, augment.default_augment_config()):
    rng = np.random.default_rng(11)
    augment.augment_view(image, rng, 16, cfg)
    nexts.append(rng.random())
  assert nexts[0] == nexts[1] == nexts[2]


def test_identity_crop_same_size_is_normalised_input():
  image = _img((16, 16, 3))
  v = _view(image, 16, _plain_cfg())
  np.testing.assert_allclose(v, (image / 255.0 - 0.5) / 0.5, atol=1e-6)


@pytest.mark.parametrize("shape,size", [((8, 8, 1), 16), ((8, 8, 3), 32), ((20, 20, 3), 7)])
def test_full_crop_equals_resized_input(shape, size):
  image = _img(shape, 1)
  mode = "L" if shape[2] == 1 else "RGB"
  pil = Image.fromarray(image[:, :, 0] if shape[2] == 1 else image, mode)
  ref = np.asarray(pil.resize((size, size), Image.Resampling.BILINEAR), np.float32)
  ref = ref.reshape(size, size, shape[2]) / 255.0
  for seed in range(3):
    np.testing.assert_allclose(_view(image, size, _plain_cfg(), seed), (ref - 0.5) / 0.5, atol=1e-6)
  np.testing.assert_allclose(augment.center_view(image, size, _plain_cfg()), (ref - 0.5) / 0.5,
                             atol=1e-6)


def test_upsampling_is_bilinear_between_pixel_centres():
  """8 -> 16 px: a horizontal 2-pixel ramp [0, 255] interpolates linearly between the centres."""
  image = np.zeros((1, 2, 1), np.uint8)
  image[0, 1, 0] = 255
  cfg = _plain_cfg(mean=(0.0,), std=(1.0,), crop_ratio=(0.5, 2.0))
  row = augment.center_view(np.repeat(image, 2, axis=0), 4, cfg)[0, :, 0] * 255
  # output centres at 0.25, 0.75, 1.25, 1.75 px; input centres at 0.5, 1.5
  np.testing.assert_allclose(row, [0, 63.75, 191.25, 255], atol=1.0)


def test_crop_box_respects_scale_and_ratio():
  rng = np.random.default_rng(0)
  h, w = 64, 48
  for scale, ratio in [((0.08, 1.0), (0.75, 4 / 3)), ((0.4, 0.5), (1.0, 1.0)),
                       ((0.05, 0.1), (0.5, 2.0))]:
    for _ in range(200):
      left, top, right, bottom = augment._crop_box(h, w, rng.random(22), scale, ratio)
      assert 0 <= left < right <= w and 0 <= top < bottom <= h
      cw, ch = right - left, bottom - top
      # rounding each side to whole pixels moves the area by at most about one row + column
      assert scale[0] * h * w - (cw + ch) <= cw * ch <= scale[1] * h * w + (cw + ch)
      assert ratio[0] - 1.0 / ch - 1e-9 <= cw / ch <= ratio[1] + 1.0 / ch + 1e-9


def test_crop_box_fallback_is_centre_crop():
  # an aspect ratio of 2 at full area never fits a square image: centre crop at the ratio bound
  box = augment._crop_box(10, 10, np.zeros(22), (1.0, 1.0), (2.0, 2.0))
  assert box == (0, 2, 10, 7)
  box = augment._crop_box(10, 40, np.zeros(22), (1.0, 1.0), (1.0, 1.0))
  assert box == (15, 0, 25, 10)


def test_small_crop_scale_zooms_in():
  """A crop of <= 10% of the area of a smooth ramp covers a narrow value range."""
  ramp = np.tile(np.linspace(0, 255, 64).astype(np.uint8)[None, :, None], (64, 1, 1))
  cfg = _plain_cfg(crop_scale=(0.05, 0.1))
  for seed in range(10):
    v = _view(ramp, 16, cfg, seed)
    assert v.max() - v.min() < 0.7  # a side of <= sqrt(0.1) of 64 px: at most 21/64 of the range 2
  full = _view(ramp, 16, _plain_cfg())
  assert full.max() - full.min() > 1.8  # 64 -> 16 px averages 4 px at each edge


@pytest.mark.parametrize("c", [1, 3])
def test_hflip_prob_one_flips_exactly(c):
  image = _img((12, 12, c))
  base = augment.default_augment_config()
  base.hflip_prob = 0.0
  flip = augment.default_augment_config()
  flip.hflip_prob = 1.0
  for seed in range(5):
    np.testing.assert_array_equal(_view(image, 16, flip, seed),
                                  _view(image, 16, base, seed)[:, ::-1])


def test_grayscale_equal_channels():
  image = _img((8, 8, 3))
  v = _view(image, 16, _plain_cfg(grayscale_prob=1.0))
  np.testing.assert_array_equal(v[..., 0], v[..., 1])
  np.testing.assert_array_equal(v[..., 0], v[..., 2])
  x = image / 255.0
  luma = 0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]
  np.testing.assert_allclose(augment.center_view(image, 8, _plain_cfg()) * 0.5 + 0.5, x, atol=1e-6)
  np.testing.assert_allclose(_view(image, 8, _plain_cfg(grayscale_prob=1.0))[..., 0] * 0.5 + 0.5,
                             luma, atol=1e-6)
  colour = _view(image, 16, _plain_cfg())  # grayscale_prob 0: channels differ
  assert not np.array_equal(colour[..., 0], colour[..., 1])


@pytest.mark.parametrize("c", [1, 3])
def test_solarize_threshold_zero_inverts(c):
  image = _img((8, 8, c))
  plain = _view(image, 16, _plain_cfg())
  sol = _view(image, 16, _plain_cfg(solarize_prob=1.0, solarize_threshold=0.0))
  np.testing.assert_allclose(sol, -plain, atol=1e-6)  # (1 - x - 0.5) / 0.5 = -(x - 0.5) / 0.5
  never = _view(image, 16, _plain_cfg(solarize_prob=1.0, solarize_threshold=1.01))
  np.testing.assert_array_equal(never, plain)
  half = _view(image, 16, _plain_cfg(solarize_prob=1.0, solarize_threshold=0.5))
  assert np.all(half <= 1e-6)  # values >= 0.5 are mapped below 0.5


@pytest.mark.parametrize("size", [32, 96])
def test_blur_reduces_noise_variance(size):
  image = _img((size, size, 3), 2)
  plain = _view(image, size, _plain_cfg())
  blurred = _view(image, size, _plain_cfg(blur_prob=1.0, blur_sigma=(1.5, 2.0)))
  assert blurred.var() < 0.5 * plain.var()
  assert abs(blurred.mean() - plain.mean()) < 0.02
  flat = np.full((size, size, 3), 77, np.uint8)  # kernel sums to one, reflect padding: no edge loss
  np.testing.assert_allclose(_view(flat, size, _plain_cfg(blur_prob=1.0)), (77 / 255 - 0.5) / 0.5,
                             atol=1e-5)


def test_blur_matches_direct_convolution():
  for size_path in (1, 2, 20, 80):  # 1 and 2: every tap reflected
    x = np.random.default_rng(size_path).random((2, size_path, size_path)).astype(np.float32)
    k = max(3, int(0.1 * size_path))
    k += 1 - k % 2
    t = np.arange(k) - k // 2
    w = np.exp(-0.5 * (t / 1.3) ** 2)
    w /= w.sum()
    xp = np.pad(x, ((0, 0), (k // 2, k // 2), (k // 2, k // 2)), mode="reflect")
    ref = sum(w[i] * w[j] * xp[:, i:i + size_path, j:j + size_path]
              for i in range(k) for j in range(k))
    np.testing.assert_allclose(augment._blur(x, 1.3), ref, atol=1e-5)


def test_normalisation_maps_0_and_255():
  cfg = _plain_cfg(mean=(0.1, 0.2, 0.3), std=(0.5, 0.25, 0.2))
  for value, x in ((0, 0.0), (255, 1.0)):
    image = np.full((8, 8, 3), value, np.uint8)
    want = (x - np.array([0.1, 0.2, 0.3])) / np.array([0.5, 0.25, 0.2])
    np.testing.assert_allclose(_view(image, 16, cfg), np.broadcast_to(want, (16, 16, 3)), atol=1e-5)
    np.testing.assert_allclose(augment.center_view(image, 16, cfg),
                               np.broadcast_to(want, (16, 16, 3)), atol=1e-5)
  for value, want in ((0, -1.0), (255, 1.0)):
    image = np.full((8, 8, 1), value, np.uint8)
    np.testing.assert_allclose(_view(image, 16, _plain_cfg()), want, atol=1e-6)
  with pytest.raises(ValueError):
    _view(np.zeros((8, 8, 1), np.uint8), 16, cfg)  # 3 means for 1 channel


def test_rejects_bad_images():
  cfg = augment.default_augment_config()
  with pytest.raises(ValueError):
    _view(np.zeros((8, 8, 3), np.float32), 16, cfg)
  with pytest.raises(ValueError):
    _view(np.zeros((8, 8, 4), np.uint8), 16, cfg)


def test_hue_matches_colorsys():
  x = np.random.default_rng(0).random((3, 6, 7)).astype(np.float32)
  x[:, 0, 0] = 0.5  # grey pixel: hue undefined, must stay grey
  x[:, 0, 1] = (0.9, 0.9, 0.2)  # ties between max channels
  for shift in (0.0, 0.07, -0.1, 0.5):
    ref = np.empty_like(x)
    for i in range(x.shape[1]):
      for j in range(x.shape[2]):
        h, s, v = colorsys.rgb_to_hsv(*x[:, i, j].astype(np.float64))
        ref[:, i, j] = colorsys.hsv_to_rgb((h + shift) % 1.0, s, v)
    np.testing.assert_allclose(augment._adjust_hue(x, shift), ref, atol=1e-5)


def test_brightness_only_scales():
  image = _img((8, 8, 3))
  cfg = _plain_cfg(color_jitter_prob=1.0, contrast=0.0, saturation=0.0, hue=0.0, brightness=0.4)
  x = augment.center_view(image, 8, _plain_cfg()) * 0.5 + 0.5
  factors = set()
  for seed in range(5):
    y = _view(image, 8, cfg, seed) * 0.5 + 0.5
    ok = (x > 0.05) & (y < 0.999)
    f = y[ok] / x[ok]
    assert f.max() - f.min() < 1e-3 and 0.6 - 1e-3 <= f.mean() <= 1.4 + 1e-3
    factors.add(round(float(f.mean()), 4))
  assert len(factors) == 5


def test_jitter_changes_colour_but_not_gray_images_saturation_hue():
  image = _img((8, 8, 3))
  cfg = _plain_cfg(color_jitter_prob=1.0)
  assert not np.allclose(_view(image, 8, cfg), _view(image, 8, _plain_cfg()))
  # for C = 1 saturation and hue do not apply
  gray = _img((8, 8, 1))
  only_sat_hue = _plain_cfg(color_jitter_prob=1.0, brightness=0.0, contrast=0.0)
  np.testing.assert_array_equal(_view(gray, 8, only_sat_hue), _view(gray, 8, _plain_cfg()))
  # contrast on a 1-channel image keeps the mean (before clipping) and changes the spread
  only_contrast = _plain_cfg(color_jitter_prob=1.0, brightness=0.0, contrast=0.4)
  assert not np.array_equal(_view(gray, 8, only_contrast), _view(gray, 8, _plain_cfg()))


def test_view_spec_defaults_and_validation():
  spec = ViewSpec()
  assert (spec.global_crops, spec.local_crops, spec.global_scale, spec.local_size) == (
      2, 0, (0.08, 1.0), 0)
  assert spec.mask == ""
  with pytest.raises(ValueError):
    ViewSpec(local_crops=2)  # no local_size
  with pytest.raises(ValueError):
    ViewSpec(mask="bogus")
  with pytest.raises(ValueError):
    ViewSpec(global_size=30, mask="random", patch_size=4)
  with pytest.raises(ValueError, match="num_targets=0"):
    ViewSpec(global_size=32, mask="multiblock", patch_size=4, num_targets=0)
  with pytest.raises(ValueError, match=r"target_scale=\(0.3, 0.2\)"):
    ViewSpec(global_size=32, mask="multiblock", patch_size=4, target_scale=(0.3, 0.2))
  with pytest.raises(ValueError, match="context_scale"):
    ViewSpec(global_size=32, mask="multiblock", patch_size=4, context_scale=(0.0, 1.0))
  with pytest.raises(Exception):
    spec.global_crops = 3  # frozen
  assert ViewSpec(global_size=32, patch_size=4, mask="block").grid == (8, 8)


@pytest.mark.parametrize("c", [1, 3])
def test_multicrop_shapes_and_determinism(c):
  image = _img((8, 8, c))
  cfg = augment.default_augment_config()
  spec = ViewSpec(global_crops=2, global_size=16, global_scale=(0.4, 1.0), local_crops=6,
                  local_size=8, local_scale=(0.05, 0.4))
  out = augment.multicrop_views(image, np.random.default_rng(0), spec, cfg)
  assert set(out) == {"global", "local"}
  assert out["global"].shape == (2, 16, 16, c) and out["global"].dtype == np.float32
  assert out["local"].shape == (6, 8, 8, c) and out["local"].dtype == np.float32
  again = augment.multicrop_views(image, np.random.default_rng(0), spec, cfg)
  np.testing.assert_array_equal(out["global"], again["global"])
  np.testing.assert_array_equal(out["local"], again["local"])
  other = augment.multicrop_views(image, np.random.default_rng(1), spec, cfg)
  assert not np.array_equal(out["global"], other["global"])
  assert not np.array_equal(out["global"][0], out["global"][1])
  two = augment.multicrop_views(image, np.random.default_rng(0), ViewSpec(global_size=16), cfg)
  assert set(two) == {"global"} and two["global"].shape == (2, 16, 16, c)


def test_multicrop_uses_spec_scale_and_per_view_cfgs():
  ramp = np.tile(np.linspace(0, 255, 64).astype(np.uint8)[None, :, None], (64, 1, 1))
  plain = _plain_cfg(crop_ratio=(0.75, 4 / 3))
  spec = ViewSpec(global_crops=2, global_size=16, global_scale=(1.0, 1.0), local_crops=4,
                  local_size=8, local_scale=(0.02, 0.05))
  out = augment.multicrop_views(ramp, np.random.default_rng(0), spec, plain)
  assert np.all(np.ptp(out["global"], axis=(1, 2, 3)) > 1.5)
  assert np.all(np.ptp(out["local"], axis=(1, 2, 3)) < 0.7)
  # asymmetric recipes: view 0 solarised (threshold 0 inverts), view 1 not
  sol = _plain_cfg(solarize_prob=1.0, solarize_threshold=0.0)
  spec2 = ViewSpec(global_crops=2, global_size=16, global_scale=(1.0, 1.0))
  out2 = augment.multicrop_views(ramp, np.random.default_rng(0), spec2, plain,
                                 global_cfgs=[sol, plain])
  np.testing.assert_allclose(out2["global"][0], -out2["global"][1], atol=1e-6)


def test_views_of_a_record_differ_and_depend_on_order():
  """Two views drawn from one Generator are different crops (the SimCLR positive pair)."""
  image = _img((8, 8, 3))
  rng = np.random.default_rng(0)
  cfg = augment.default_augment_config()
  a = augment.augment_view(image, rng, 16, cfg)
  b = augment.augment_view(image, rng, 16, cfg)
  assert not np.array_equal(a, b)


@pytest.mark.parametrize("c,size", [(1, 16), (3, 16), (3, 96)])
def test_all_augmentations_on_stay_float32_and_in_range(c, size):
  cfg = augment.default_augment_config()
  for k in ("hflip_prob", "color_jitter_prob", "grayscale_prob", "blur_prob", "solarize_prob"):
    cfg[k] = 1.0
  image = _img((24, 20, c))
  for seed in range(4):
    v = _view(image, size, cfg, seed)
    assert v.dtype == np.float32 and v.shape == (size, size, c)
    assert np.all(np.isfinite(v)) and v.min() >= -1.0 - 1e-5 and v.max() <= 1.0 + 1e-5


def test_solarize_includes_the_threshold():
  black = np.zeros((8, 8, 1), np.uint8)
  out = _view(black, 8, _plain_cfg(solarize_prob=1.0, solarize_threshold=0.0))
  np.testing.assert_allclose(out, 1.0, atol=1e-6)  # 0 >= 0: inverted to 1, normalised to 1


def test_crop_positions_cover_the_image():
  rng = np.random.default_rng(0)
  boxes = np.array([augment._crop_box(16, 20, rng.random(22).tolist(), (0.2, 0.2), (1.0, 1.0))
                    for _ in range(400)])
  side = int(round(np.sqrt(0.2 * 16 * 20)))
  assert np.all(boxes[:, 2] - boxes[:, 0] == side) and np.all(boxes[:, 3] - boxes[:, 1] == side)
  assert set(boxes[:, 0]) == set(range(20 - side + 1))  # every left offset occurs
  assert set(boxes[:, 1]) == set(range(16 - side + 1))  # every top offset occurs


def test_contrast_blends_with_mean_luma():
  """Contrast only: y - m = f (x - m) with m the mean luma of x (torchvision adjust_contrast)."""
  image = np.random.default_rng(3).integers(0, 100, (8, 8, 3), dtype=np.uint8)  # dark: m ~ 0.2
  x = augment.center_view(image, 8, _plain_cfg()).astype(np.float64) * 0.5 + 0.5
  m = (x @ np.array([0.299, 0.587, 0.114])).mean()
  cfg = _plain_cfg(color_jitter_prob=1.0, brightness=0.0, saturation=0.0, hue=0.0, contrast=0.4)
  for seed in range(4):
    y = _view(image, 8, cfg, seed).astype(np.float64) * 0.5 + 0.5
    ok = (np.abs(x - m) > 0.05) & (y > 0.001) & (y < 0.999)  # not clipped
    f = (y[ok] - m) / (x[ok] - m)
    assert f.max() - f.min() < 1e-3 and 0.6 - 1e-3 <= f.mean() <= 1.4 + 1e-3


def test_saturation_blends_with_luma():
  """Saturation only: y = f x + (1 - f) luma(x) per pixel, so y - luma(x) = f (x - luma(x))."""
  image = _img((8, 8, 3), 4)
  x = augment.center_view(image, 8, _plain_cfg()).astype(np.float64) * 0.5 + 0.5
  luma = (x @ np.array([0.299, 0.587, 0.114]))[..., None]
  cfg = _plain_cfg(color_jitter_prob=1.0, brightness=0.0, contrast=0.0, hue=0.0, saturation=0.4)
  y = _view(image, 8, cfg, 0).astype(np.float64) * 0.5 + 0.5
  ok = (np.abs(x - luma) > 0.05) & (y > 0.001) & (y < 0.999)
  f = (y - luma)[ok] / (x - luma)[ok]
  assert f.max() - f.min() < 1e-3 and 0.6 - 1e-3 <= f.mean() <= 1.4 + 1e-3


def test_blur_sigma_is_drawn_from_the_range():
  image = _img((32, 32, 1), 5)
  plain = _view(image, 32, _plain_cfg())
  tiny = _view(image, 32, _plain_cfg(blur_prob=1.0, blur_sigma=(0.1, 0.1)))
  np.testing.assert_allclose(tiny, plain, atol=1e-4)  # sigma 0.1: the 3-tap kernel is ~[0, 1, 0]
  ratios = [_view(image, 32, _plain_cfg(blur_prob=1.0), seed).var() / plain.var()
            for seed in range(12)]
  assert max(ratios) - min(ratios) > 0.3
