"""Model configs: defaults, validation errors naming the bad value, partial configs.

ViT, ResNet and head tests are in test_vit.py, test_resnet.py and test_heads.py (helpers:
model_helpers.py).
"""
import pytest

from ssljax import models
from model_helpers import _vit_cfg, _resnet_cfg


def test_default_configs_have_all_keys():
  vit = models.default_model_config("vit")
  assert set(vit.keys()) >= {"name", "dtype", "patch_size", "width", "depth", "num_heads",
                             "mlp_ratio", "num_registers", "pool", "attention_impl", "drop_path",
                             "variant", "posemb"}
  assert (vit.name, vit.dtype, vit.variant, vit.pool, vit.posemb) == (
      "vit", "float32", "", "cls", "sincos2d")
  res = models.default_model_config("resnet")
  assert set(res.keys()) >= {"name", "dtype", "depth", "width_multiplier", "cifar_stem", "norm"}
  assert (res.name, res.depth, res.norm, res.cifar_stem) == ("resnet", 50, "batch", False)
  # Each call returns a fresh config (no shared mutable defaults).
  vit.width = 1
  assert models.default_model_config("vit").width == 384


@pytest.mark.parametrize("name,key,value", [
    ("vit", "variant", "xl"),
    ("vit", "pool", "max"),
    ("vit", "posemb", "rope"),
    ("vit", "attention_impl", "cudnn"),
    ("vit", "dtype", "float16"),
    ("resnet", "depth", 34),
    ("resnet", "norm", "layer"),
    ("resnet", "dtype", "int8"),
])
def test_bad_config_value_raises_naming_value(name, key, value):
  cfg = models.default_model_config(name)
  cfg[key] = value
  with pytest.raises(ValueError, match=repr(value) if isinstance(value, str) else str(value)):
    models.build_backbone(cfg)


def test_bad_name_and_unknown_key_raise():
  with pytest.raises(ValueError, match="'convnext'.*'vit'"):
    models.default_model_config("convnext")
  cfg = models.default_model_config("vit")
  cfg.name = "convnext"
  with pytest.raises(ValueError, match="convnext"):
    models.build_backbone(cfg)
  cfg = _resnet_cfg()
  cfg.patch_size = 4  # a ViT key on a ResNet config: a typo-like mistake
  with pytest.raises(ValueError, match="patch_size"):
    models.build_backbone(cfg)
  with pytest.raises(ValueError, match="num_heads=3"):
    models.build_backbone(_vit_cfg(num_heads=3))


def test_partial_config_takes_defaults():
  model = models.build_backbone({"name": "resnet", "depth": 18})
  assert (model.depth, model.width_multiplier, model.norm) == (18, 1.0, "batch")
  assert model.num_features == 512
