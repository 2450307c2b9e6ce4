"""Export a pretrained backbone: weights (msgpack and safetensors), a JSON model card and README.md.

    python -m ssljax.export --workdir workdirs/simclr_digits --out exports/simclr_digits [--step N]
    python -m ssljax.export --workdir W --out O --format timm     # torch layout (ssljax.interop)

    module, variables = ssljax.load_backbone("exports/simclr_digits")
    feats = module.apply(variables, images)        # images [N, H, W, C] normalised -> [N, D]

The exported backbone is the method's `pretrained_backbone(params, state)`, the one its
`features` applies (for DINO-style methods the EMA teacher, for MAE the patch-token mean when
`feature_pool='patch_mean'`, BatchNorm statistics included), so `load_backbone` gives the same
features as the trained method.

An export directory ('ssljax' format, the default) holds:
  backbone.msgpack       flax.serialization msgpack of {'params': ..., other collections}
  backbone.safetensors   the same arrays, flat names 'params.block0.attn.query.kernel'
  model_card.json        method, step, backbone class and fields, feature pooling, input
                         normalisation, the run's full config and its eval.json numbers
  README.md              the card as a Hugging Face model card (YAML front matter, Markdown)
In the 'timm' / 'torchvision' formats, model.safetensors (a timm VisionTransformer or torchvision
ResNet state dict) and timm's config.json replace the first two (`ssljax.interop`); both files are
written by the `safetensors` library, which keeps every shape (0-d included).
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Sequence

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np

MSGPACK = "backbone.msgpack"
SAFETENSORS = "backbone.safetensors"
MODEL_CARD = "model_card.json"
README = "README.md"
FORMAT = "ssljax-backbone/1"

# ---------------------------------------------------------------------------------------------
# safetensors files, through the `safetensors` library (numpy arrays; no torch).
# ---------------------------------------------------------------------------------------------


def save_safetensors(path: str, tensors: dict[str, np.ndarray],
                     metadata: dict[str, str] | None = None) -> None:
  """Writes {name: array} as a safetensors file (`safetensors.numpy.save_file`); every shape,
  0-d included, is kept."""
  import safetensors.numpy
  # np.require keeps 0-d arrays 0-d (np.ascontiguousarray would make them [1]).
  arrays = {name: np.require(np.asarray(value), requirements="C")
            for name, value in tensors.items()}
  safetensors.numpy.save_file(arrays, path, metadata={str(k): str(v) for k, v in
                                                      (metadata or {}).items()} or None)


def load_safetensors(path: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
  """({name: array}, metadata) of a safetensors file; ValueError (one line) if it is not one."""
  import safetensors
  import safetensors.numpy
  try:
    with safetensors.safe_open(path, framework="numpy") as f:
      metadata = dict(f.metadata() or {})
      tensors = {name: f.get_tensor(name) for name in f.keys()}
  except safetensors.SafetensorError as e:
    raise ValueError(f"{path} is not a safetensors file: {e}") from None
  return tensors, metadata


def _flatten(tree: dict, prefix: str = "") -> dict[str, np.ndarray]:
  out = {}
  for key, value in tree.items():
    name = f"{prefix}.{key}" if prefix else str(key)
    if "." in str(key):
      raise ValueError(f"variable name {key!r} contains '.', which the flat names use as separator")
    if isinstance(value, dict):
      out.update(_flatten(value, name))
    else:
      out[name] = np.asarray(value)
  return out


def _unflatten(flat: dict[str, np.ndarray]) -> dict:
  tree: dict = {}
  for name, value in flat.items():
    *parents, leaf = name.split(".")
    node = tree
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = value
  return tree


# ---------------------------------------------------------------------------------------------
# The module, described by its class and dataclass fields.
# ---------------------------------------------------------------------------------------------


def module_spec(module) -> dict[str, Any]:
  """{'class': 'ViT' | 'ResNet', 'fields': {...}} of an ssljax backbone (dtype as its name)."""
  from ssljax import models
  cls = type(module).__name__
  if cls not in ("ViT", "ResNet") or not isinstance(module, getattr(models, cls)):
    raise ValueError(f"cannot describe a {cls} backbone; expected ssljax.models.ViT or ResNet")
  fields = {}
  for f in dataclasses.fields(module):
    # Ops (a ResNet's conv_general_dilated, store_once: XLA:CPU tuning) are not part of the model.
    if f.name in ("parent", "name") or callable(getattr(module, f.name)):
      continue
    value = getattr(module, f.name)
    fields[f.name] = jnp.dtype(value).name if f.name == "dtype" else value
  return {"class": cls, "fields": json.loads(json.dumps(fields))}


def module_from_spec(spec: dict[str, Any]):
  """The backbone module that `module_spec` described."""
  from ssljax import models
  cls = spec.get("class")
  if cls not in ("ViT", "ResNet"):
    raise ValueError(f"model card backbone class {cls!r}; expected 'ViT' or 'ResNet'")
  fields = dict(spec["fields"])
  fields["dtype"] = models.parse_dtype(fields.get("dtype", "float32"))
  for key, value in fields.items():
    if isinstance(value, list):
      fields[key] = tuple(value)
  return getattr(models, cls)(**fields)


# ---------------------------------------------------------------------------------------------
# Export and load.
# ---------------------------------------------------------------------------------------------


def _eval_numbers(workdir: str) -> dict[str, Any]:
  path = os.path.join(workdir, "eval.json")
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    return json.load(f)


def export_backbone(workdir: str, out_dir: str, step: int | None = None,
                    fmt: str = "ssljax") -> dict[str, Any]:
  """Writes the backbone of `workdir`'s latest (or `step`) checkpoint into `out_dir`.

  Args:
    fmt: 'ssljax' (msgpack + safetensors of the Flax variables), 'timm' (a ViT as timm's
      VisionTransformer, a ResNet as torchvision's / timm's resnet18/50) or 'torchvision' (ResNets).

  Returns the model card (also written as out_dir/model_card.json, and as text in README.md).
  """
  from ssljax import workdir as workdir_lib
  from ssljax.evaluate.backbone import backbone_of
  _check_format(fmt)
  run = workdir_lib.open_run(workdir, step=step)
  captured = backbone_of(run.method, run.params, run.method_state)
  card = save_backbone(out_dir, captured, run.config, run.step, list(run.input_shape()),
                       _eval_numbers(workdir), source_workdir=run.workdir, fmt=fmt)
  if hasattr(run.method, "text_tower"):   # image-text: the text side too (ssljax.export_text)
    from ssljax import export_text
    card["text"] = export_text.save_text_side(out_dir, run.method, run.params)
    with open(os.path.join(out_dir, MODEL_CARD), "w") as f:
      json.dump(card, f, indent=2)
  return card


def _check_format(fmt: str) -> None:
  from ssljax import interop
  if fmt not in interop.FORMATS:
    raise ValueError(f"format {fmt!r}; expected one of {interop.FORMATS}")


def save_backbone(out_dir: str, captured, config, step: int, image_shape: Sequence[int],
                  eval_numbers: dict[str, Any] | None = None,
                  source_workdir: str | None = None, fmt: str = "ssljax") -> dict[str, Any]:
  """Writes a backbone (`ssljax.evaluate.backbone.backbone_of`) into `out_dir`; returns its card.

  Args:
    captured: the backbone (module, numpy variables, pool) of a method's `pretrained_backbone`.
    config, step: the run's config and the checkpoint step, for the model card.
    image_shape: [H, W, C] of the model input.
    eval_numbers, source_workdir: the run's eval.json dict and workdir, for the card.
    fmt: see `export_backbone`.
  """
  from ssljax import interop
  _check_format(fmt)
  variables = jax.tree_util.tree_map(np.asarray, captured.variables)
  meta = {"method": config.method, "step": str(step)}
  if fmt == "ssljax":
    files = {"msgpack": MSGPACK, "safetensors": SAFETENSORS}
  else:   # mapped (and checked) before anything is written
    state_dict, timm_config = interop.torch_layout(captured.module, variables, image_shape,
                                                   captured.pool, fmt)
    files = {"safetensors": interop.WEIGHTS, "config": interop.CONFIG}
    # timm's data config: [0, 1] images normalised per channel, as ssljax's input.
    timm_config["pretrained_cfg"].update(mean=list(config.data.augment.mean),
                                         std=list(config.data.augment.std))
  os.makedirs(out_dir, exist_ok=True)
  if fmt == "ssljax":
    with open(os.path.join(out_dir, MSGPACK), "wb") as f:
      f.write(flax.serialization.msgpack_serialize(variables))
    save_safetensors(os.path.join(out_dir, SAFETENSORS), _flatten(variables),
                     metadata={"format": FORMAT, **meta})
  else:
    # 'pt': the metadata torch-side loaders (transformers) expect of a torch state dict.
    save_safetensors(os.path.join(out_dir, interop.WEIGHTS), state_dict,
                     metadata={"format": "pt", "ssljax_format": FORMAT, **meta})
    with open(os.path.join(out_dir, interop.CONFIG), "w") as f:
      json.dump(timm_config, f, indent=2)
  aug = config.data.augment
  card = {
      "format": FORMAT,
      "layout": fmt,
      "method": config.method,
      "step": step,
      "total_steps": int(config.total_steps),
      "backbone": module_spec(captured.module),
      "feature_pool": captured.pool,
      "num_parameters": int(sum(np.size(x) for x in jax.tree_util.tree_leaves(variables.get("params", {})))),
      "input": {"shape": list(image_shape), "mean": list(aug.mean), "std": list(aug.std),
                "note": "images scaled to [0, 1], then (x - mean) / std per channel, [N, H, W, C]"},
      "files": files,
      "source_workdir": source_workdir,
      "eval": eval_numbers or {},
      "config": json.loads(config.to_json_best_effort()),
  }
  with open(os.path.join(out_dir, MODEL_CARD), "w") as f:
    json.dump(card, f, indent=2)
  with open(os.path.join(out_dir, README), "w") as f:
    f.write(model_card_text(card, timm_config if fmt != "ssljax" else None))
  return card


def model_card_text(card: dict[str, Any], timm_config: dict[str, Any] | None = None) -> str:
  """The README.md (Hugging Face model card: YAML front matter, then Markdown) of an export."""
  bb = card["backbone"]
  fields = bb["fields"]
  if bb["class"] == "ViT":
    shape = (f"ViT, patch {fields['patch_size']}, width {fields['width']}, depth "
             f"{fields['depth']}, {fields['num_heads']} heads, {fields['num_registers']} registers, "
             f"pool {fields['pool']!r}, posemb {fields['posemb']!r}")
  else:
    shape = (f"ResNet-{fields['depth']}, width x{fields['width_multiplier']}, norm "
             f"{fields['norm']!r}, cifar_stem {fields['cifar_stem']}")
  inp = card["input"]
  library = "timm" if card["layout"] != "ssljax" else "ssljax"
  lines = ["---", f"library_name: {library}",
           "tags: [image-feature-extraction, self-supervised, ssljax, " + card["method"] + "]",
           "pipeline_tag: image-feature-extraction", "---", "",
           f"# {card['method']} {bb['class']} backbone (ssljax)", "",
           f"Self-supervised {card['method']} pretraining with ssljax, step {card['step']} of "
           f"{card['total_steps']}: a {shape}; {card['num_parameters']:,} parameters.", "",
           "## Input", "",
           f"[N, H, W, C] = [N, {', '.join(str(s) for s in inp['shape'])}]: images scaled to "
           f"[0, 1], then (x - mean) / std per channel with mean {inp['mean']} and std "
           f"{inp['std']}.", "",
           "## Features", "",
           f"feature_pool {card['feature_pool']!r}: "
           + ("the mean of the final patch tokens after the last norm." if card["feature_pool"]
              == "patch_mean" else "the backbone's pooled output (a ViT's final cls token after "
              "the last norm, or its patch-token mean for pool 'gap'; a ResNet's average-pooled "
              "last stage)."), "", "## Files and loading", ""]
  if card["layout"] == "ssljax":
    lines += ["`backbone.msgpack` / `backbone.safetensors` (Flax variables, names like "
              "`params.block0.attn.query.kernel`), `model_card.json` (this card, with the full "
              "config).", "", "```python", "import ssljax",
              "module, variables = ssljax.load_backbone('THIS_FOLDER')",
              "features = module.apply(variables, images)   # [N, H, W, C] -> [N, D]", "```"]
  elif bb["class"] == "ViT":
    lines += ["`model.safetensors`: a timm `VisionTransformer` state dict; `config.json`: timm's "
              "model config (architecture, model_args). The channels-first input is [N, C, H, W].",
              "", "```python", "import timm",
              "model = timm.create_model('local-dir:THIS_FOLDER', pretrained=True).eval()",
              "features = model(images)                      # pooled features [N, D]",
              "tokens = model.forward_features(images)       # [N, prefix + patches, D]",
              "# or: timm.models.VisionTransformer(**config['model_args']).load_state_dict(",
              "#          safetensors.torch.load_file('THIS_FOLDER/model.safetensors'))", "```", "",
              f"model_args: `{json.dumps(timm_config['model_args'])}`"]
  else:
    stem = ("model.conv1 = torch.nn.Conv2d({c}, 64, 3, 1, 1, bias=False); "
            "model.maxpool = torch.nn.Identity()" if fields["cifar_stem"] else
            "model.conv1 = torch.nn.Conv2d({c}, 64, 7, 2, 3, bias=False)   # only if C != 3")
    lines += ["`model.safetensors`: a torchvision ResNet state dict (timm's resnet uses the same "
              "keys); `config.json`: timm's model config.", "", "```python",
              "import safetensors.torch, torch, torchvision",
              f"model = torchvision.models.resnet{fields['depth']}()"
              + ("" if fields["norm"] == "batch" else
                 "   # norm_layer=lambda c: torch.nn.GroupNorm(math.gcd(32, c), c)"),
              "model.fc = torch.nn.Identity()",
              stem.format(c=inp["shape"][-1]),
              "model.load_state_dict(safetensors.torch.load_file('THIS_FOLDER/model.safetensors'))",
              "features = model.eval()(images)                # [N, C, H, W] -> [N, D]", "```"]
  lines += ["", "## Evaluation at export", ""]
  numbers = {k: v for k, v in (card["eval"] or {}).items() if isinstance(v, (int, float))}
  lines += [f"- {k}: {v:.4g}" for k, v in sorted(numbers.items())] or ["(none recorded)"]
  lines += ["", "The full training config is in `model_card.json`.", ""]
  return "\n".join(lines)


def load_model_card(path: str) -> dict[str, Any]:
  """The model card of an export directory (or of the model_card.json path itself)."""
  card_path = path if path.endswith(".json") else os.path.join(path, MODEL_CARD)
  if not os.path.exists(card_path):
    raise FileNotFoundError(f"{card_path} does not exist; expected a directory written by "
                            f"ssljax.export.export_backbone")
  with open(card_path) as f:
    card = json.load(f)
  if card.get("format") != FORMAT:
    raise ValueError(f"{card_path} has format {card.get('format')!r}; expected {FORMAT!r}")
  return card


def load_backbone(path: str, weights: str = "msgpack"):
  """(module, variables) of an exported backbone: `module.apply(variables, images)` -> [N, D].

  Args:
    path: an export directory (or its model_card.json), of any format.
    weights: 'msgpack' or 'safetensors': which of the two (identical) weight files of an
      'ssljax'-format export to read (a timm / torchvision export has only its safetensors).

  Returns:
    A Flax module (the backbone, wrapped to pool as the method's features did) and its
    variables {'params': ..., other collections}; `module.apply(variables, images)` on
    normalised images [N, H, W, C] gives the trained method's features [N, D] float32.
  """
  from ssljax.evaluate.backbone import feature_module
  card = load_model_card(path)
  root = os.path.dirname(path) if path.endswith(".json") else path
  if weights not in ("msgpack", "safetensors"):
    raise ValueError(f"weights={weights!r}; expected 'msgpack' or 'safetensors'")
  module = module_from_spec(card["backbone"])
  if card.get("layout", "ssljax") != "ssljax":
    from ssljax import interop
    _, variables = interop.import_weights(os.path.join(root, card["files"]["safetensors"]),
                                          model=_model_config_of(module))
  elif weights == "msgpack":
    with open(os.path.join(root, card["files"]["msgpack"]), "rb") as f:
      variables = flax.serialization.msgpack_restore(f.read())
  else:
    variables = _unflatten(load_safetensors(os.path.join(root, card["files"]["safetensors"]))[0])
  return feature_module(module, dict(variables), card["feature_pool"])


def _model_config_of(module) -> dict[str, Any]:
  """The model config (`config.model`) keys of an ssljax backbone module."""
  spec = module_spec(module)["fields"]
  name = "vit" if spec.get("patch_size") else "resnet"
  from ssljax import models
  keys = set(models.default_model_config(name).keys())
  return {"name": name, **{k: v for k, v in spec.items() if k in keys}}


PROG = "ssljax.export"


def define_flags(flag_values) -> None:
  from absl import flags
  fv = flag_values
  flags.DEFINE_string("workdir", None, "A pretraining workdir (holds config.json).", flag_values=fv)
  flags.DEFINE_string("out", None, "The export directory to write.", flag_values=fv)
  flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).", flag_values=fv)
  flags.DEFINE_string("format", "ssljax", "ssljax (Flax msgpack + safetensors) | timm (a ViT as "
                      "timm's VisionTransformer, a ResNet as torchvision's/timm's resnet18/50) | "
                      "torchvision (ResNets).", flag_values=fv)


def _main(fv) -> dict[str, Any]:
  """The command on parsed flags; SystemExit with one line for a bad input."""
  from ssljax import commandline
  if not fv.workdir or not fv.out:
    raise SystemExit(f"{PROG}: error: --workdir and --out are required, e.g. python -m "
                     f"ssljax.export --workdir workdirs/simclr_digits --out exports/simclr_digits")
  try:
    card = export_backbone(fv.workdir, fv.out, step=fv.step, fmt=fv.format)
  except (FileNotFoundError, ValueError) as e:   # ConfigError, IncompatibleCheckpointError too
    raise SystemExit(f"{PROG}: error: {commandline.one_line(e)}") from None
  except OSError as e:   # an --out that cannot be written
    raise SystemExit(f"{PROG}: error: cannot write {e.filename or fv.out!r}: {e.strerror}") from None
  print(f"exported {card['method']} backbone ({card['backbone']['class']}, "
        f"{card['num_parameters']:,} parameters) at step {card['step']} in the {fv.format} format "
        f"to {os.path.abspath(fv.out)}")
  return card


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
  """The CLI from Python: `argv` without the program name (default sys.argv[1:]); returns the
  model card. A bad flag or input raises SystemExit (one line)."""
  import sys
  from ssljax import commandline
  return _main(commandline.parse(PROG, define_flags, sys.argv[1:] if argv is None else argv))


def run() -> None:
  """`python -m ssljax.export`."""
  from ssljax import commandline

  def command(fv, _):
    commandline.quiet_logging(fv)
    _main(fv)
    return 0

  commandline.run(PROG, define_flags, command)


if __name__ == "__main__":
  from ssljax.cpu import xla_flags
  xla_flags.apply_cpu_defaults()   # before JAX starts, as ssljax.main (ssljax/cpu/xla_flags.py)
  run()
