"""Config validation: every bad value stops with one line naming the key, the value and the expectation."""
import os
import re

import pytest

from ssljax import config as config_lib
from ssljax.config import ConfigError


def _validate(c, devices=8, processes=1):
  config_lib.validate(c, device_count=devices, process_count=processes)


def test_shipped_configs_are_valid(tiny_config):
  from conftest import load_config
  assert _validate(tiny_config()) is None
  for name in ("simclr_digits", "simclr_resnet18_cifar10"):
    assert _validate(load_config(name)) is None


def test_unknown_key_suggests_nearest(tiny_config):
  c = tiny_config()
  c.batch_sise = 32
  with pytest.raises(ConfigError, match=r"unknown config key 'batch_sise'.*did you mean 'batch_size'"):
    _validate(c)


def test_unknown_nested_key(tiny_config):
  c = tiny_config()
  c.optimizer.learning_rate = 0.1
  with pytest.raises(ConfigError, match=r"'optimizer.learning_rate'"):
    _validate(c)


def test_wrong_type(tiny_config):
  import ml_collections
  d = tiny_config().to_dict()   # a config written by hand, without the schema's type checks
  d["data"]["image_size"] = "16"
  c = ml_collections.ConfigDict(d)
  with pytest.raises(ConfigError, match=r"config.data.image_size='16' has type str; expected int"):
    _validate(c)


def test_unknown_method_and_choice(tiny_config):
  c = tiny_config()
  c.method = "simclrr"
  with pytest.raises(ConfigError, match=r"config.method='simclrr'; expected one of \(.*'simclr'"):
    _validate(c)
  c = tiny_config()
  c.optimizer.name = "adam"
  with pytest.raises(ConfigError, match=r"optimizer.name='adam'; expected one of \('lars', 'adamw', 'sgd'\)"):
    _validate(c)


def test_batch_not_divisible_by_data_parallel(tiny_config):
  c = tiny_config()
  c.batch_size = 12
  with pytest.raises(ConfigError, match=r"batch_size=12 is not divisible by the data-parallel size 8"):
    _validate(c)


def test_mesh_must_match_device_count(tiny_config):
  c = tiny_config()
  c.mesh.data = 3
  with pytest.raises(ConfigError, match=r"multiplies to 3 devices but 8 are available"):
    _validate(c)
  c.mesh.data, c.mesh.fsdp = -1, 3
  with pytest.raises(ConfigError, match=r"fixed axes multiply to 3, which does not divide the 8"):
    _validate(c)


def test_image_folder_path_checks(tiny_config, tmp_path):
  c = tiny_config()
  c.data.source = "image_folder"
  with pytest.raises(ConfigError, match=r"config.data.path='' with data.source='image_folder'"):
    _validate(c)
  c.data.path = str(tmp_path / "missing")
  with pytest.raises(ConfigError, match=r"does not exist"):
    _validate(c)
  os.makedirs(tmp_path / "root" / "train")
  os.makedirs(tmp_path / "root" / "val")
  c.data.path = str(tmp_path / "root")
  with pytest.raises(ConfigError, match=r"is empty; expected one sub-folder per class"):
    _validate(c)
  os.makedirs(tmp_path / "root" / "train" / "cat")
  os.makedirs(tmp_path / "root" / "val" / "cat")
  with pytest.raises(ConfigError, match=r"has class folders but no image files"):
    _validate(c)


def test_errors_are_one_line(tiny_config):
  c = tiny_config()
  c.batch_size = 12
  with pytest.raises(ConfigError) as e:
    _validate(c)
  assert "\n" not in str(e.value)


CONFIG_DIR = os.path.join(os.path.dirname(__file__), "..", "configs")
SHIPPED = sorted(f[:-3] for f in os.listdir(CONFIG_DIR)
                 if f.endswith(".py") and f != "common.py" and not f.startswith("_"))


@pytest.fixture(scope="module")
def image_root(tmp_path_factory):
  """A one-image, one-class folder with train/ and val/, for validating the image_folder configs."""
  root = tmp_path_factory.mktemp("images")
  for split in ("train", "val"):
    os.makedirs(root / split / "cls")
    (root / split / "cls" / "x.png").write_bytes(b"")
  return str(root)


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_config_validates_and_documents_itself(name, image_root):
  """Each configs/<name>.py loads by path, validates, and its docstring gives the command and
  either a measured result or says that none is measured yet."""
  from conftest import load_config
  c = load_config(name)
  if c.data.source in ("image_folder", "captions", "webdataset"):
    c.data.path = image_root
  if c.method == "lit":   # the locked image tower: a pretraining workdir or export folder
    c.lit.image_tower = image_root
  assert config_lib.validate(c) is None
  with open(os.path.join(CONFIG_DIR, f"{name}.py")) as f:
    doc = f.read().split('"""')[1]
  assert f"--config configs/{name}.py" in doc
  assert "Measured" in doc or re.search(r"\bnot\b[^.]{0,30}\b(measured|run)\b", doc, re.I), name


def test_config_recipes_by_family():
  """The shared blocks of configs/common.py give each family its recipe (the configs' resolved
  values were checked key by key against the pre-common.py files when the blocks were made)."""
  from conftest import load_config
  for name in (n for n in SHIPPED if n.endswith("_digits")):
    c = load_config(name)
    if c.method in ("clip", "siglip", "lit"):   # image-text: the captioned digits
      assert (c.batch_size, c.data.source, c.data.image_size) == (256, "captioned_digits", 24)
      assert (c.data.augment.hflip_prob, c.data.augment.color_jitter_prob) == (0.0, 0.0), name
      continue
    assert (c.batch_size, c.data.source, c.data.image_size) == (128, "digits", 16), name
    assert (c.model.width, c.model.depth, c.model.patch_size) == (64, 3, 4), name
    assert (c.data.augment.hflip_prob, c.optimizer.name, c.optimizer.warmup_steps) == (
        0.0, "adamw", 20), name
  for name in (n for n in SHIPPED if n.endswith("_imagenet")):
    c = load_config(name)
    assert (c.data.image_size, c.dtype) == (224, "bfloat16"), name
    assert c.data.augment.mean == (0.485, 0.456, 0.406), name
    assert c.data.source in ("tfds", "image_folder"), name
  for name in (n for n in SHIPPED if n.endswith("_cifar10")):
    c = load_config(name)
    assert (c.data.tfds_name, c.data.image_size, c.model.depth, c.model.cifar_stem) == (
        "cifar10", 32, 18, True), name
  simclr = load_config("simclr_digits")
  assert (simclr.simclr.temperature, simclr.optimizer.base_lr, simclr.total_steps) == (
      0.2, 2e-3, 300)
  mae = load_config("mae_digits")
  assert (mae.data.augment.color_jitter_prob, mae.optimizer.b2, mae.model.posemb) == (
      0.0, 0.95, "learned")
  dino = load_config("dino_digits")
  assert (dino.dino.out_dim, dino.dino.local_crops, dino.optimizer.grad_clip) == (1024, 0, 3.0)
  assert load_config("ibot_digits").ibot.shared_head is False
  r50 = load_config("simclr_resnet50_imagenet")
  assert (r50.total_steps, r50.optimizer.warmup_steps, r50.data.tfds_name) == (
      31_300, 3120, "imagenet2012")
  for name, wd_end in (("dino_vit_s16_imagenet", 0.4), ("ibot_vit_s16_imagenet", 0.4),
                       ("dinov2_vit_s14_imagenet", 0.2), ("msn_vit_s16_imagenet", 0.4)):
    opt = load_config(name).optimizer   # the references' weight-decay cosine from 0.04
    assert (opt.weight_decay, opt.weight_decay_end) == (0.04, wd_end), name
  swav = load_config("swav_resnet50_imagenet")
  assert (swav.total_steps, swav.data.augment.brightness, swav.swav.local_crops) == (
      249_600, 0.8, 6)


def test_configs_load_by_path_from_any_directory(tmp_path, monkeypatch):
  """configs/common.py is found beside the config file, not through the working directory or
  sys.path (which the load leaves as it was)."""
  import importlib.util
  import sys
  monkeypatch.chdir(tmp_path)
  path_before = list(sys.path)
  path = os.path.join(CONFIG_DIR, "byol_digits.py")
  spec = importlib.util.spec_from_file_location("cfg_any_dir", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  assert module.get_config().byol.tau_base == 0.996
  assert sys.path == path_before
  with pytest.raises(ConfigError, match=r"imports 'nope'"):
    config_lib.import_sibling(os.path.join(CONFIG_DIR, "byol_digits.py"), "nope")


# ---------------------------------------------------------------------------------------------
# Loading config files (ssljax.config_files): paths, shipped names, overrides.
# ---------------------------------------------------------------------------------------------


def test_config_takes_a_path_or_a_shipped_name(tmp_path, monkeypatch):
  from conftest import load_config
  from ssljax import config_files
  by_name = config_files.load("simclr_digits")
  by_path = config_files.load(os.path.join(CONFIG_DIR, "simclr_digits.py"))
  assert by_name.to_dict() == by_path.to_dict() == load_config("simclr_digits").to_dict()
  path, arg = config_files.resolve("simclr_digits")
  assert os.path.samefile(path, os.path.join(CONFIG_DIR, "simclr_digits.py")) and arg is None
  assert config_files.shipped_names() == SHIPPED
  monkeypatch.chdir(tmp_path)   # a name works from any directory; a relative path from its own
  assert config_files.load("byol_digits").method == "byol"
  with pytest.raises(ConfigError, match=r"config file 'configs/simclr_digits.py' does not exist; "
                                        r"the shipped config of that name is --config simclr_digits"):
    config_files.load("configs/simclr_digits.py")


def test_unknown_config_name_lists_the_nearest_shipped_names():
  from ssljax import config_files
  with pytest.raises(ConfigError, match=r"^--config='simclr_digit' is neither a file nor a shipped "
                                        r"config \(nearest: simclr_digits, "):
    config_files.load("simclr_digit")
  with pytest.raises(ConfigError, match=r"config file 'simclr_digit.py' does not exist"):
    config_files.load("simclr_digit.py")


def test_installed_ssljax_configs_package_comes_first(tmp_path, monkeypatch):
  """With the configs installed as the package `ssljax.configs`, names resolve there."""
  import importlib.machinery
  import sys
  import types
  from ssljax import config_files
  (tmp_path / "mine.py").write_text(
      "from ssljax.config import base_config\n"
      "def get_config(arg='4'):\n  c = base_config('simclr', 'vit')\n  c.batch_size = int(arg)\n"
      "  return c\n")
  package = types.ModuleType("ssljax.configs")
  package.__path__ = [str(tmp_path)]
  package.__spec__ = importlib.machinery.ModuleSpec("ssljax.configs", None, is_package=True)
  package.__spec__.submodule_search_locations = [str(tmp_path)]
  monkeypatch.setitem(sys.modules, "ssljax.configs", package)
  assert config_files.shipped_dir() == str(tmp_path) and config_files.shipped_names() == ["mine"]
  assert config_files.load("mine").batch_size == 4
  assert config_files.load("mine:32").batch_size == 32       # 'name:arg' -> get_config('32')
  with pytest.raises(ConfigError, match=r"nearest: mine;"):
    config_files.load("mien")


@pytest.mark.parametrize("text, message", [
    ("x = 1\n", r"does not define get_config\(\); expected a function returning an "
                r"ml_collections.ConfigDict"),
    ("def get_config(:\n", r"has a syntax error at line 1"),
    ("import no_such_module\n", r"failed to load \(line 1\): ModuleNotFoundError: No module named"),
    ("def get_config():\n  return {'batch_size': 1}\n", r"returned a dict; expected an "
                                                         r"ml_collections.ConfigDict"),
    ("def get_config():\n  raise KeyError('x')\n", r"get_config\(\) of .* failed \(line 2\): "
                                                   r"KeyError"),
])
def test_bad_config_files_are_one_line_errors(tmp_path, text, message):
  from ssljax import config_files
  path = tmp_path / "bad.py"
  path.write_text(text)
  with pytest.raises(ConfigError, match=message) as e:
    config_files.load(str(path))
  assert "\n" not in str(e.value) and "bad.py" in str(e.value)


def test_overrides_are_read_as_the_type_of_the_key(tiny_config):
  from ssljax import config_files
  c = tiny_config()
  rest, overrides = config_files.split_overrides([
      "--workdir", "/w", "--config.batch_size=64", "--config.optimizer.base_lr", "2",
      "--config.progress_bar", "--config.eval.random_init=True", "--noconfig.model.remat",
      "--config.simclr.proj_hidden_dims=(32,)", "--config.data.augment.crop_scale=0.3,1",
      "--config.data.source", "digits", "--config.model.patch_size=0x2", "--other=1"])
  assert rest == ["--workdir", "/w", "--other=1"]
  config_files.override(c, overrides)
  assert c.batch_size == 64 and c.optimizer.base_lr == 2.0 and isinstance(c.optimizer.base_lr, float)
  assert c.progress_bar is True and c.eval.random_init is True and c.model.remat is False
  assert c.simclr.proj_hidden_dims == (32,) and c.data.augment.crop_scale == (0.3, 1.0)
  assert isinstance(c.data.augment.crop_scale[1], float) and c.model.patch_size == 2
  # A repeated tuple key adds items, as ml_collections' flags did.
  config_files.override(c, [("simclr.proj_hidden_dims", "64"), ("simclr.proj_hidden_dims", "32")])
  assert c.simclr.proj_hidden_dims == (64, 32)


@pytest.mark.parametrize("override, message", [
    (("batch_sise", "64"), r"unknown config key 'batch_sise' in --config.batch_sise=64; did you "
                           r"mean 'batch_size'\?"),
    (("optimizer.base_lrr", "1"), r"unknown config key 'optimizer.base_lrr' .*did you mean "
                                  r"'optimizer.base_lr'\?"),
    (("optimiser.base_lr", "1"), r"unknown config key 'optimiser' .*did you mean 'optimizer'\?"),
    (("knn_k", "5"), r"unknown config key 'knn_k' in --config.knn_k=5; did you mean 'eval.knn_k'\?"),
    (("optimizer.learning_rate", "1"), r"unknown config key 'optimizer.learning_rate' in "
                                       r"--config.optimizer.learning_rate=1; config.optimizer has "
                                       r"the keys b1, b2, base_lr, "),
    (("batch_size", "1.5"), r"--config.batch_size=1.5 is a float; expected an integer"),
    (("batch_size", "abc"), r"--config.batch_size='abc' is not a number; expected an integer"),
    (("optimizer.base_lr", "fast"), r"--config.optimizer.base_lr='fast' is not a number"),
    (("progress_bar", "maybe"), r"--config.progress_bar='maybe': expected true or false"),
    (("simclr.proj_hidden_dims", "(32,"), r"'\(32,' is not a Python literal; expected a tuple"),
    (("data.augment.crop_scale", "('a', 1)"), r"holds 'a' \(str\); expected float items"),
    (("optimizer", "adam"), r"--config.optimizer is a block of keys \(.*\); set them one by one"),
    (("batch_size.x", "1"), r"config.batch_size is a value \(16\), not a block"),
    (("batch_size", None), r"--config.batch_size needs a value"),
])
def test_bad_overrides_are_one_line_errors(tiny_config, override, message):
  from ssljax import config_files
  c = tiny_config()
  with pytest.raises(ConfigError, match=message) as e:
    config_files.override(c, [override])
  assert "\n" not in str(e.value)
