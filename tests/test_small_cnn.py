"""The small CNN backbone for 32-64 px images, and the size check of the recipes (ssljax.recipes)."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssljax import config as config_lib
from ssljax import config_files, models, recipes

CONFIG_DIR = os.path.join(os.path.dirname(__file__), "..", "configs")


def test_small_cnn_shapes_params_and_batch_stats():
  cfg = models.default_model_config("small_cnn")
  model = models.build_backbone(cfg)
  assert model.num_features == 256
  for size in (32, 64):
    x = jnp.zeros((2, size, size, 3))
    variables = model.init(jax.random.PRNGKey(0), x)
    feats, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
    assert feats.shape == (2, 256) and feats.dtype == jnp.float32
    assert "batch_stats" in updates
  n = sum(int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(variables["params"]))
  assert 380_000 < n < 400_000, n   # the module docstring's 0.39 M
  gn = models.build_backbone({"name": "small_cnn", "norm": "group", "widths": (8, 16)})
  assert gn.apply(gn.init(jax.random.PRNGKey(0), x), x).shape == (2, 16)
  with pytest.raises(ValueError, match="small_cnn norm='layer'"):
    models.build_backbone({"name": "small_cnn", "norm": "layer"})
  with pytest.raises(ValueError, match="small_cnn input_norm='batch'.*'per_image'"):
    models.build_backbone({"name": "small_cnn", "input_norm": "batch"})


def test_small_cnn_per_image_input_norm_removes_brightness_and_contrast():
  """input_norm='per_image': an image's features do not move when its pixels are scaled and shifted
  (brightness and contrast), and they do without it."""
  x = jax.random.uniform(jax.random.PRNGKey(1), (4, 32, 32, 3))
  moved = 0.3 * x - 0.7
  for input_norm, same in (("per_image", True), ("none", False)):
    model = models.build_backbone({"name": "small_cnn", "widths": (8, 16), "input_norm": input_norm})
    variables = model.init(jax.random.PRNGKey(0), x)
    a, b = model.apply(variables, x), model.apply(variables, moved)
    assert np.allclose(a, b, atol=1e-4) == same, np.abs(a - b).max()


def test_small_cnn_conv_init_torch_matches_pytorch_conv2d_default():
  """conv_init='torch': PyTorch's Conv2d default, kaiming-uniform with a = sqrt(5), i.e. uniform on
  +-1/sqrt(fan_in) (variance 1 / (3 fan_in)); 'he': normal with variance 2 / fan_out."""
  x = jnp.zeros((1, 32, 32, 3))
  kernels = {}
  for init in ("he", "torch"):
    model = models.build_backbone({"name": "small_cnn", "widths": (64, 128), "conv_init": init})
    kernels[init] = model.init(jax.random.PRNGKey(0), x)["params"]["conv1_0"]["kernel"]
  k = np.asarray(kernels["torch"])          # [3, 3, 64, 128]: fan_in 9 * 64, fan_out 9 * 128
  bound = 1.0 / np.sqrt(9 * 64)
  assert np.abs(k).max() <= bound and np.abs(k).max() > 0.99 * bound
  assert np.isclose(k.var(), bound ** 2 / 3, rtol=0.05), k.var()
  assert np.isclose(np.asarray(kernels["he"]).var(), 2 / (9 * 128), rtol=0.05)
  with pytest.raises(ValueError, match="small_cnn conv_init='xavier'.*'torch'"):
    models.build_backbone({"name": "small_cnn", "conv_init": "xavier"})


def _folder(root, side):
  from PIL import Image
  for split in ("train", "val"):
    os.makedirs(os.path.join(root, split, "a"), exist_ok=True)
    Image.fromarray(np.zeros((side, side, 3), np.uint8)).save(os.path.join(root, split, "a", "x.png"))
  return str(root)


def test_quickstart_recipe_warns_on_other_image_sizes_and_names_the_config(tmp_path):
  folder32 = _folder(tmp_path / "f32", 32)
  c = config_files.load(os.path.join(CONFIG_DIR, "simclr_digits.py"))
  assert recipes.check_recipe(c) is None                      # the digits, as tuned
  c.data.update(source="image_folder", path=folder32)
  line = recipes.check_recipe(c)
  assert "\n" not in line and "tuned for 8-24 px" in line and "are 32 px" in line
  assert line.endswith("start from configs/simclr_small.py instead")
  c.data.image_size = 32
  assert "data.image_size=32" in recipes.check_recipe(c)
  for method in ("simclr", "byol", "dino"):
    s = config_files.load(os.path.join(CONFIG_DIR, f"{method}_small.py"))
    s.data.path = folder32
    assert recipes.check_recipe(s) is None
    s.data.path = _folder(tmp_path / "f224", 224)
    s.data.image_size = 224
    assert f"start from configs/{method}_" in recipes.check_recipe(s)
  big = config_files.load(os.path.join(CONFIG_DIR, "dino_vit_s16_imagenet.py"))
  big.data.update(source="image_folder", path=folder32, image_size=32)
  assert recipes.check_recipe(big).endswith("start from configs/dino_small.py instead")


@pytest.mark.parametrize("arg", ["", "resnet18", "vit", "vit,64", "64"])
def test_small_configs_take_a_backbone_and_size(arg, tmp_path):
  folder = _folder(tmp_path, 32)
  for method in ("simclr", "byol", "dino"):
    c = config_files.load(os.path.join(CONFIG_DIR, f"{method}_small.py") + (f":{arg}" if arg else ""))
    c.data.path = folder
    config_lib.validate(c)
    assert c.data.image_size == (64 if "64" in arg else 32)
    assert c.model.name == {"": "small_cnn", "64": "small_cnn", "resnet18": "resnet"}.get(arg, "vit")
    if c.model.name == "resnet":
      assert (c.model.depth, c.model.cifar_stem) == (18, True)
    if c.model.name == "vit":
      assert c.data.image_size // c.model.patch_size == 8    # 64 tokens at 32 and 64 px


@pytest.mark.parametrize("method", ["simclr", "byol", "dino"])
def test_small_configs_glyphs_argument_drops_flips_and_small_crops(method, tmp_path):
  """':glyphs' (digits, letters) turns flips off and crops to 0.4-1, the crops the method's views
  are cut with (DINO's global crops), and combines with a backbone and size; anything else is
  named in the error."""
  default = config_files.load(os.path.join(CONFIG_DIR, f"{method}_small.py"))
  c = config_files.load(os.path.join(CONFIG_DIR, f"{method}_small.py:vit,64,glyphs"))
  c.data.path = _folder(tmp_path, 64)
  config_lib.validate(c)
  assert default.data.augment.hflip_prob == 0.5 and c.data.augment.hflip_prob == 0.0
  assert (c.model.name, c.data.image_size) == ("vit", 64)
  scale = c.dino.global_crops_scale if method == "dino" else c.data.augment.crop_scale
  before = default.dino.global_crops_scale if method == "dino" else default.data.augment.crop_scale
  assert tuple(before) == (0.2, 1.0) and tuple(scale) == (0.4, 1.0)
  with pytest.raises(ValueError, match="'glyph'.*'glyphs'"):
    config_files.load(os.path.join(CONFIG_DIR, f"{method}_small.py:glyph"))
