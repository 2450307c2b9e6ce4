"""Interchange with PyTorch: ssljax backbones as timm / torchvision weights, and back.

    python -m ssljax.export --workdir W --out O --format timm   # ViT: timm, ResNet: torchvision

    module, variables = ssljax.import_weights("vit_small.safetensors", model=config.model)
    feats = module.apply(variables, images)                        # [N, H, W, C] -> [N, D]

    state = ssljax.interop.init_from(config.model, state)   # continued pretraining from
                                                            # config.model.init_from's backbone

The files are safetensors in torch's layout, written and read with numpy only: ssljax never
imports torch. A ViT maps to timm's `VisionTransformer` (`ssljax.interop.timm_vit`), a ResNet to
torchvision's `resnet18` / `resnet50`, whose keys timm's ResNets share
(`ssljax.interop.torchvision_resnet`). An export directory in the timm format is also a Hugging
Face-layout folder: `model.safetensors` + timm's `config.json` (architecture, model_args,
pretrained_cfg), so `timm.create_model("local-dir:" + O, pretrained=True)` builds it.

What `import_weights` reads (PATH):
- a `.safetensors` file of a timm ViT or a torchvision / timm ResNet-18/50 state dict (a classifier
  head, `head.*` / `fc.*`, is dropped; a leading `module.` is stripped);
- a folder with `model.safetensors` and `config.json`: timm's Hugging Face layout (the config gives
  the attention heads and the image size that a state dict does not hold), or transformers'
  `ViTModel` / `Dinov2Model` / `Dinov2WithRegistersModel` layout, as the released DINOv2 weights
  are (`ssljax.interop.hf_transformers`);
- an ssljax export directory (`model_card.json`; both formats).
"""
from __future__ import annotations

import json
import os
from typing import Any, Mapping, Optional

import numpy as np

from ssljax.interop import hf_transformers, timm_vit, torchvision_resnet

FORMATS = ("ssljax", "timm", "torchvision")
WEIGHTS = "model.safetensors"
CONFIG = "config.json"


# ---------------------------------------------------------------------------------------------
# Export: an ssljax backbone as a torch-layout state dict (+ timm config.json).
# ---------------------------------------------------------------------------------------------


def torch_layout(module, variables: Mapping[str, Any], image_shape, feature_pool: str,
                 fmt: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
  """(state dict, timm config.json) of an ssljax backbone in format `fmt` ('timm' | 'torchvision').

  A ViT maps to timm's VisionTransformer ('timm' only: torchvision's ViT has another layout), a
  ResNet to torchvision's resnet18/50 (for 'timm' too: timm's ResNets have the same keys).

  Raises:
    ValueError: one line, for a format this backbone has no mapping to.
  """
  from ssljax import models
  h, w, c = (int(s) for s in image_shape)
  if isinstance(module, models.ViT):
    if fmt != "timm":
      raise ValueError(f"format {fmt!r} has no ViT layout; a ViT exports with --format timm")
    sd, args = timm_vit.to_timm(module, variables, image_shape, feature_pool)
    arch = timm_vit.architecture(args)
  elif isinstance(module, models.ResNet):
    if feature_pool != "backbone":
      raise ValueError(f"feature_pool={feature_pool!r} for a ResNet; expected 'backbone'")
    sd = torchvision_resnet.to_torchvision(module, variables)
    arch = f"resnet{module.depth}"
    args = {"num_classes": 0, "in_chans": c}
  else:
    raise ValueError(f"a {type(module).__name__} backbone has no {fmt} layout; expected a ViT or "
                     f"a ResNet")
  config = {
      "architecture": arch,
      "num_classes": 0,
      "num_features": int(module.num_features),
      "global_pool": args.get("global_pool", "avg"),
      "model_args": args,
      "pretrained_cfg": {
          "input_size": [c, h, w], "fixed_input_size": isinstance(module, models.ViT),
          "num_classes": 0, "first_conv": "patch_embed.proj" if arch.startswith("vit") else "conv1",
          "classifier": "head" if arch.startswith("vit") else "fc"},
  }
  return sd, config


# ---------------------------------------------------------------------------------------------
# Import: torch-layout files -> ssljax backbone variables.
# ---------------------------------------------------------------------------------------------


def _read_safetensors(path: str) -> dict[str, np.ndarray]:
  from ssljax import export
  return export.load_safetensors(path)[0]


def read_state_dict(path: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
  """({key: array}, config.json dict or {}) of a .safetensors file or a folder holding
  model.safetensors (+ config.json)."""
  if os.path.isdir(path):
    weights = os.path.join(path, WEIGHTS)
    if not os.path.exists(weights):
      raise FileNotFoundError(f"{weights} does not exist; expected a folder with {WEIGHTS} (and "
                              f"{CONFIG}), a .safetensors file or an ssljax export directory")
    config = {}
    if os.path.exists(os.path.join(path, CONFIG)):
      with open(os.path.join(path, CONFIG)) as f:
        config = json.load(f)
    return _read_safetensors(weights), config
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} does not exist; expected a .safetensors file or a folder "
                            f"with {WEIGHTS}")
  if not path.endswith(".safetensors"):
    raise ValueError(f"{path}: expected a .safetensors file (ssljax reads no pickled torch "
                     f"checkpoints: save one with safetensors.torch.save_file)")
  return _read_safetensors(path), {}


def _model_dict(model) -> Optional[dict[str, Any]]:
  if model is None:
    return None
  d = model.to_dict() if hasattr(model, "to_dict") else dict(model)
  d.pop("init_from", None)
  return d


def _vit_hints(config: Mapping[str, Any], model: Optional[dict]) -> dict[str, Any]:
  args = dict(config.get("model_args") or {})
  heads = args.get("num_heads")
  if heads is None and model is not None and model.get("name") == "vit":
    from ssljax.models import vit as vit_lib
    heads = vit_lib.resolve_variant(model.get("variant", ""), int(model.get("width", 384)),
                                    int(model.get("depth", 12)), int(model.get("num_heads", 6)))[2]
  if heads is None and config.get("architecture"):
    heads = timm_vit.heads_from_architecture(str(config["architecture"]).split(".")[0])
  grid = None
  size = args.get("img_size") or (config.get("pretrained_cfg") or {}).get("input_size", [None])[1:]
  patch = args.get("patch_size")
  if size and patch:
    hw = (size, size) if isinstance(size, int) else tuple(size)
    grid = (int(hw[0]) // int(patch), int(hw[1]) // int(patch))
  return {"num_heads": heads, "grid": grid, "no_embed_class": args.get("no_embed_class")}


def _flat(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
  out = {}
  for k, v in tree.items():
    name = f"{prefix}/{k}" if prefix else str(k)
    if isinstance(v, Mapping):
      out.update(_flat(v, name))
    else:
      out[name] = v
  return out


def _unflat(flat: Mapping[str, Any]) -> dict[str, Any]:
  tree: dict[str, Any] = {}
  for name, v in flat.items():
    *parents, leaf = name.split("/")
    node = tree
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = v
  return tree


def _check_fields(module, fields: Mapping[str, Any], path: str) -> None:
  """One-line ValueError naming the first model config field that disagrees with the file (the
  positional embeddings are reconciled by `_vit_posemb`)."""
  for key, value in fields.items():
    if key in ("posemb", "image_size"):
      continue
    have = getattr(module, key)
    if key == "mlp_ratio":
      same = int(round(module.width * have)) == int(round(module.width * value))
    else:
      same = have == value
    if not same:
      raise ValueError(f"model.{key}={have!r} but {path} holds a backbone with {key}={value!r}")


def _vit_posemb(module, fields: Mapping[str, Any], variables: dict, path: str) -> dict:
  """The file's positional embeddings as `module` (an ssljax ViT) keeps them: a learned table
  (its shape is checked with the other variables), or nothing for sincos2d when the file's are
  exactly the ones ssljax computes at the file's grid."""
  from ssljax.models.patches import sincos_2d_posemb
  params = dict(variables["params"])
  if module.posemb == "learned":
    return {"params": params}
  grid = fields["image_size"] // fields["patch_size"]
  want = np.asarray(sincos_2d_posemb(grid, grid, module.width,
                                     ref_grid=module.image_size // module.patch_size))
  pos = params.pop("pos_embedding")
  if pos.shape == want.shape and np.allclose(pos, want, atol=1e-6):
    return {"params": params}
  if fields["posemb"] == "sincos2d":
    raise ValueError(f"{path} holds ssljax's sincos2d positional embeddings for a {grid}x{grid} "
                     f"grid; set model.image_size={fields['image_size']}")
  raise ValueError(f"{path} holds learned positional embeddings (pos_embed); set "
                   f"model.posemb='learned' and model.image_size={fields['image_size']}")


def _init_shapes(module, channels: int) -> dict[str, Any]:
  import jax
  import jax.numpy as jnp
  side = module.image_size if hasattr(module, "image_size") else 32
  x = jax.ShapeDtypeStruct((1, side, side, channels), jnp.float32)
  shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros(x.shape, x.dtype)))
  return jax.tree_util.tree_map(lambda s: tuple(s.shape), dict(shapes))


def _conform(module, variables: dict, path: str, channels: int) -> dict:
  """`variables` with exactly the keys and shapes of `module`'s: a one-line ValueError naming
  the key and both shapes where they differ; 'mask_token' (timm has none) starts at zeros."""
  want = _flat(_init_shapes(module, channels))
  have = _flat(variables)
  if "params/mask_token" in want and "params/mask_token" not in have:
    have["params/mask_token"] = np.zeros(want["params/mask_token"], np.float32)
  for key in sorted(want):
    if key not in have:
      raise ValueError(f"{path} has no weights for the model's {key} {list(want[key])}")
    if tuple(np.shape(have[key])) != tuple(want[key]):
      raise ValueError(f"{key}: {path} holds shape {list(np.shape(have[key]))}, the model expects "
                       f"{list(want[key])}")
  extra = sorted(set(have) - set(want))
  if extra:
    raise ValueError(f"{path} holds {extra[0]} {list(np.shape(have[extra[0]]))}, which the model "
                     f"does not have")
  return _unflat({k: np.asarray(v, np.float32) for k, v in have.items()})


def import_weights(path: str, model: Any = None):
  """(module, variables) of the ssljax backbone that a timm / torchvision file holds.

  Args:
    path: a timm ViT or torchvision / timm ResNet-18/50 `.safetensors` file, a Hugging Face-layout
      folder (model.safetensors + config.json), or an ssljax export directory.
    model: the ssljax model config (`config.model`) the weights must fit, or None to build the
      backbone the file describes. With a config, every field the file determines is checked
      (one-line ValueError naming the field), and so is every variable's shape (naming the key and
      both shapes).

  Returns:
    The backbone (`ssljax.models.ViT` / `ResNet`) and its variables {'params': ..., 'batch_stats':
    ...} as float32 numpy arrays: `module.apply(variables, images [N, H, W, C])` -> [N, D], the
    pooled features (a ViT's final cls token after the last norm, or the patch-token mean for
    pool='gap'; a ResNet's average-pooled last stage). For timm, that is
    `model.forward_head(model.forward_features(x), pre_logits=True)` with global_pool 'token'
    ('avg' for a gap ViT; a cls ViT with global_pool='avg' pools the patch tokens, which is
    `module.apply(variables, x, return_tokens=True)['patches'].mean(1)`).
  """
  from ssljax import models
  model = _model_dict(model)
  if os.path.isdir(path) and os.path.exists(os.path.join(path, "model_card.json")) \
      and not os.path.exists(os.path.join(path, WEIGHTS)):
    from ssljax import export
    module, variables = export.load_backbone(path)
    if not isinstance(module, (models.ViT, models.ResNet)):
      module, variables = module.vit, {k: v["vit"] for k, v in variables.items()}
    variables = dict(variables)
    channels = _channels_of(variables)
    if model is None:
      return module, variables
    target = models.build_backbone(model)
    from ssljax.export import module_spec
    _check_fields(target, {k: v for k, v in module_spec(module)["fields"].items()
                           if k in _STRUCTURAL}, path)
    return target, _conform(target, variables, path, channels)
  sd, config = read_state_dict(path)
  sd = {k[len("module."):] if k.startswith("module.") else k: v for k, v in sd.items()}
  hf_hints = None
  if hf_transformers.is_transformers(sd, config):
    sd, hf_hints = hf_transformers.to_timm(sd, config)
  if timm_vit.is_timm_vit(sd):
    hints = _vit_hints(config, model)
    if hf_hints is not None:
      hints.update({k: v for k, v in hf_hints.items() if v is not None})
    fields, variables = timm_vit.from_timm(sd, **hints)
    if model is not None and model.get("name") != "vit":
      raise ValueError(f"{path} holds a ViT; model.name={model.get('name')!r}")
    module = models.build_backbone(model) if model is not None else models.ViT(**fields)
    if model is not None:
      _check_fields(module, fields, path)
    variables = _vit_posemb(module, fields, variables, path)
  elif torchvision_resnet.is_torchvision_resnet(sd):
    fields, variables = torchvision_resnet.from_torchvision(sd)
    if model is not None and model.get("name") != "resnet":
      raise ValueError(f"{path} holds a ResNet; model.name={model.get('name')!r}")
    module = models.build_backbone(model) if model is not None else models.ResNet(**fields)
    if model is not None:
      _check_fields(module, fields, path)
  else:
    some = sorted(sd)[:3]
    raise ValueError(f"{path} is neither a timm ViT (patch_embed.proj.weight), a transformers "
                     f"ViT / DINOv2 (embeddings.patch_embeddings.*) nor a torchvision ResNet "
                     f"(conv1.weight, layer1.0.conv1.weight) state dict; its keys begin {some}")
  return module, _conform(module, variables, path, _channels_of(variables))


# Model fields that decide the variables' structure (the rest, e.g. attention_impl, do not).
_STRUCTURAL = ("patch_size", "width", "depth", "num_heads", "mlp_ratio", "num_registers", "pool",
               "width_multiplier", "cifar_stem", "norm")


def _channels_of(variables: Mapping[str, Any]) -> int:
  p = variables["params"]
  if "patch_embed" in p:
    return int(np.shape(p["patch_embed"]["kernel"])[2])
  return int(np.shape(p["stem_conv"]["kernel"])[2])


# ---------------------------------------------------------------------------------------------
# model.init_from: continued pretraining.
# ---------------------------------------------------------------------------------------------


def merge_into(tree: Any, variables: Mapping[str, Any], collection: str = "params"
               ) -> tuple[Any, int]:
  """(tree with every sub-dict shaped like `variables[collection]` replaced, count replaced).

  A sub-dict matches when it has exactly the same keys and leaf shapes (a method's student
  backbone, its EMA teacher's, ...). Leaves keep their dtype and (for jax.Arrays) their sharding.
  """
  import jax
  src = _flat(variables[collection])
  shapes = {k: tuple(np.shape(v)) for k, v in src.items()}
  count = 0

  def put(old, new):
    new = np.asarray(new, dtype=old.dtype)
    if isinstance(old, jax.Array):
      return jax.make_array_from_callback(old.shape, old.sharding, lambda idx: new[idx])
    return new

  def visit(node):
    nonlocal count
    if not isinstance(node, Mapping):
      return node
    flat = _flat(node)
    if set(flat) == set(shapes) and all(tuple(np.shape(v)) == shapes[k] for k, v in flat.items()):
      count += 1
      return _unflat({k: put(v, src[k]) for k, v in flat.items()})
    return {k: visit(v) for k, v in node.items()}

  return visit(tree), count


def check_init_from(model_config: Any) -> None:
  """One-line ValueError / FileNotFoundError unless `model_config.init_from` is unset or names a
  file `import_weights` can read (a .safetensors file, a folder with model.safetensors, or an
  ssljax export); reads only the file's header, so config validation can call it cheaply."""
  path = (model_config.get("init_from", "") if hasattr(model_config, "get") else "") or ""
  if not path:
    return
  if os.path.isdir(path) and not os.path.exists(os.path.join(path, WEIGHTS)):
    if os.path.exists(os.path.join(path, "model_card.json")):
      return
    raise FileNotFoundError(f"model.init_from={path!r}: no {WEIGHTS} or model_card.json in it; "
                            f"expected a .safetensors file, a Hugging Face-layout folder or an "
                            f"ssljax export")
  weights = os.path.join(path, WEIGHTS) if os.path.isdir(path) else path
  if not os.path.exists(weights):
    raise FileNotFoundError(f"model.init_from={path!r} does not exist; expected a .safetensors "
                            f"file, a Hugging Face-layout folder or an ssljax export")
  if not weights.endswith(".safetensors"):
    raise ValueError(f"model.init_from={path!r}: expected a .safetensors file (ssljax reads no "
                     f"pickled torch checkpoints: save one with safetensors.torch.save_file)")
  import safetensors
  try:
    with safetensors.safe_open(weights, framework="numpy") as f:
      f.keys()
  except safetensors.SafetensorError as e:
    raise ValueError(f"model.init_from={path!r}: {weights} is not a safetensors file: {e}") \
        from None


def init_from(model_config: Any, state: Any) -> Any:
  """`state` (a fresh TrainState) with its backbone(s) replaced by `model_config.init_from`'s.

  Every copy of the backbone in `state.params` and `state.method_state` (a student and its EMA
  teacher, BatchNorm statistics) starts from the file; heads, optimizer state and step stay. The
  identity when `init_from` is unset or ''.

  Raises:
    ValueError: one line, when the file does not fit `model_config` (see `import_weights`) or no
      backbone in the state has its structure.
  """
  path = (model_config.get("init_from", "") if hasattr(model_config, "get") else "") or ""
  if not path:
    return state
  _, variables = import_weights(path, model=model_config)
  params, method_state, total = state.params, state.method_state, 0
  for collection in variables:
    params, n1 = merge_into(params, variables, collection)
    method_state, n2 = merge_into(method_state, variables, collection)
    if collection == "params":
      total = n1 + n2
  if total == 0:
    raise ValueError(f"model.init_from={path!r}: no backbone in the method's parameters has the "
                     f"structure of the imported {sorted(variables['params'])[:4]}...")
  return state.replace(params=params, method_state=method_state)
