"""Config validation: every bad value stops with one line naming the key, the value and the expectation."""
import os

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
