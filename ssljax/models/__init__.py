"""Backbones (ViT, ResNet) and heads, built from an ml_collections model config.

    cfg = default_model_config('vit'); cfg.variant = 'b'; cfg.patch_size = 16
    model = build_backbone(cfg)                     # nn.Module
    variables = model.init(rng, images)             # images [N, H, W, C]
    feats = model.apply(variables, images)          # [N, model.num_features] float32

`dtype` is the compute dtype ('float32' | 'bfloat16'); params are always float32 and
features are returned in float32. `cpu_tuning` ('auto' | 'on' | 'off', every backbone) decides
once, here, whether the model gets ssljax.cpu's XLA:CPU ops ('auto': when JAX's default backend
is CPU); off, the model is plain Flax on every platform.
"""
from __future__ import annotations

from typing import Any, Mapping

import jax.numpy as jnp
import ml_collections

from ssljax import cpu
from ssljax.cpu import conv as cpu_conv
from ssljax.cpu import remat as cpu_remat
from ssljax.models import resnet as resnet_lib
from ssljax.models import small_cnn as small_cnn_lib
from ssljax.models import vit as vit_lib
from ssljax.models.heads import DINOHead, MLPHead, Prototypes, WeightNormDense
from ssljax.models.resnet import ResNet
from ssljax.models.vit import ViT

BACKBONES = ("vit", "resnet", "small_cnn")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
CPU_TUNINGS = cpu.SETTINGS   # model config `cpu_tuning`: 'auto' | 'on' | 'off'
REMAT_POLICIES = tuple(vit_lib.REMAT_POLICIES)   # model config `remat_policy` (ViT and ResNet)

__all__ = [
    "BACKBONES", "CPU_TUNINGS", "DTYPES", "REMAT_POLICIES", "DINOHead", "MLPHead", "Prototypes", "ResNet", "ViT",
    "WeightNormDense", "build_backbone", "default_model_config", "parse_dtype",
]


def default_model_config(name: str) -> ml_collections.ConfigDict:
  """The full set of keys, with defaults, of backbone `name` ('vit' | 'resnet')."""
  if name == "vit":
    cfg = vit_lib.default_config()
  elif name == "resnet":
    cfg = resnet_lib.default_config()
  elif name == "small_cnn":
    cfg = small_cnn_lib.default_config()
  else:
    raise ValueError(f"model name={name!r}; expected one of {BACKBONES}")
  cfg.cpu_tuning = "auto"   # 'auto' | 'on' | 'off': ssljax.cpu's XLA:CPU ops (see ssljax/cpu)
  cfg.init_from = ""        # continued pretraining: a timm / torchvision / transformers file or
                            # folder, or an ssljax export (ssljax.interop.init_from)
  return cfg


def parse_dtype(dtype: Any) -> Any:
  """'float32' | 'bfloat16' (or the jnp dtype itself) -> jnp dtype."""
  for key, value in DTYPES.items():
    if dtype == key or dtype is value:
      return value
  raise ValueError(f"model dtype={dtype!r}; expected one of {tuple(DTYPES)}")


def _complete(model_cfg: Mapping[str, Any]) -> dict[str, Any]:
  """Defaults of `model_cfg.name` overlaid with model_cfg; unknown keys are an error."""
  if "name" not in model_cfg:
    raise ValueError(f"model config has no 'name'; expected one of {BACKBONES}")
  full = default_model_config(model_cfg["name"]).to_dict()
  unknown = sorted(set(model_cfg.keys()) - set(full))
  if unknown:
    raise ValueError(f"unknown key(s) {unknown} in model config for {model_cfg['name']!r}; "
                     f"expected keys {sorted(full)}")
  full.update(dict(model_cfg.items()))
  return full


def build_backbone(model_cfg: Mapping[str, Any]):
  """Builds the backbone module of a model config.

  Args:
    model_cfg: ConfigDict (or mapping) with `name` and any subset of the keys of
      `default_model_config(name)`; missing keys take their defaults.

  Returns:
    An `nn.Module` whose `__call__(images [N, H, W, C], train=False)` returns pooled
    features [N, D] float32, with D = module.num_features (known without init).

  Raises:
    ValueError: naming the bad value and the expected choices, for an unknown name,
      key, variant, depth, norm, pool, posemb, attention_impl, dtype or cpu_tuning.
  """
  cfg = _complete(model_cfg)
  dtype = parse_dtype(cfg["dtype"])
  cpu.check_setting(cfg["cpu_tuning"])
  if cfg["name"] == "small_cnn":
    return small_cnn_lib.SmallCNN(
        widths=tuple(int(w) for w in cfg["widths"]), convs_per_stage=int(cfg["convs_per_stage"]),
        norm=cfg["norm"], input_norm=cfg["input_norm"], conv_init=cfg["conv_init"],
        dtype=dtype,
        **(cpu_conv.resnet_ops() if cpu.enabled(cfg["cpu_tuning"]) else {}))
  if cfg["name"] == "vit":
    width, depth, num_heads = vit_lib.resolve_variant(
        cfg["variant"], int(cfg["width"]), int(cfg["depth"]), int(cfg["num_heads"]))
    return ViT(
        patch_size=int(cfg["patch_size"]), width=width, depth=depth, num_heads=num_heads,
        mlp_ratio=float(cfg["mlp_ratio"]), num_registers=int(cfg["num_registers"]),
        pool=cfg["pool"], posemb=cfg["posemb"], image_size=int(cfg["image_size"]),
        attention_impl=cfg["attention_impl"], drop_path=float(cfg["drop_path"]),
        remat=bool(cfg["remat"]), remat_policy=cfg["remat_policy"], dtype=dtype,
        full_remat=cpu_remat.remat if cpu.enabled(cfg["cpu_tuning"]) else None)
  ops = cpu_conv.resnet_ops() if cpu.enabled(cfg["cpu_tuning"]) else {}   # the ViT has none
  return ResNet(depth=int(cfg["depth"]), width_multiplier=float(cfg["width_multiplier"]),
                cifar_stem=bool(cfg["cifar_stem"]), norm=cfg["norm"], dtype=dtype,
                remat=bool(cfg["remat"]), remat_policy=cfg["remat_policy"],
                full_remat=cpu_remat.remat if cpu.enabled(cfg["cpu_tuning"]) else None, **ops)
