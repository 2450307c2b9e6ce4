"""Export a pretrained backbone: weights (msgpack and safetensors) and a JSON model card.

    python -m ssljax.export --workdir workdirs/simclr_digits --out exports/simclr_digits [--step N]

    module, variables = ssljax.load_backbone("exports/simclr_digits")
    feats = module.apply(variables, images)        # images [N, H, W, C] normalised -> [N, D]

The exported backbone is the method's `pretrained_backbone(params, state)`, the one its
`features` applies (for DINO-style methods the EMA teacher, for MAE the patch-token mean when
`feature_pool='patch_mean'`, BatchNorm statistics included), so `load_backbone` gives the same
features as the trained method.

An export directory holds:
  backbone.msgpack       flax.serialization msgpack of {'params': ..., other collections}
  backbone.safetensors   the same arrays, flat names 'params.block0.attn.query.kernel'
  model_card.json        method, step, backbone class and fields, feature pooling, input
                         normalisation, the run's full config and its eval.json numbers
"""
from __future__ import annotations

import dataclasses
import json
import os
import struct
from typing import Any, Sequence

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np

MSGPACK = "backbone.msgpack"
SAFETENSORS = "backbone.safetensors"
MODEL_CARD = "model_card.json"
FORMAT = "ssljax-backbone/1"

# ---------------------------------------------------------------------------------------------
# The safetensors format: an 8-byte little-endian header length, a JSON header naming each
# tensor's dtype, shape and byte range, then the raw little-endian C-order bytes.
# ---------------------------------------------------------------------------------------------

_ST_DTYPES = {"float32": "F32", "float64": "F64", "float16": "F16", "bfloat16": "BF16",
              "int64": "I64", "int32": "I32", "int16": "I16", "int8": "I8", "uint8": "U8",
              "bool": "BOOL"}


def _np_dtype(st_name: str):
  name = {v: k for k, v in _ST_DTYPES.items()}.get(st_name)
  if name is None:
    raise ValueError(f"safetensors dtype {st_name!r} is not supported; expected one of "
                     f"{sorted(_ST_DTYPES.values())}")
  if name == "bfloat16":
    import ml_dtypes
    return np.dtype(ml_dtypes.bfloat16)
  return np.dtype(name)


def save_safetensors(path: str, tensors: dict[str, np.ndarray],
                     metadata: dict[str, str] | None = None) -> None:
  """Writes {name: array} in the safetensors format (names sorted, data 8-byte aligned)."""
  header: dict[str, Any] = {}
  chunks, offset = [], 0
  for name in sorted(tensors):
    arr = np.ascontiguousarray(np.asarray(tensors[name]))
    if arr.dtype.name not in _ST_DTYPES:
      raise ValueError(f"tensor {name!r} has dtype {arr.dtype}; expected one of {sorted(_ST_DTYPES)}")
    data = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
    header[name] = {"dtype": _ST_DTYPES[arr.dtype.name], "shape": list(arr.shape),
                    "data_offsets": [offset, offset + len(data)]}
    chunks.append(data)
    offset += len(data)
  if metadata:
    header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
  text = json.dumps(header, separators=(",", ":")).encode()
  text += b" " * (-len(text) % 8)
  with open(path, "wb") as f:
    f.write(struct.pack("<Q", len(text)))
    f.write(text)
    for data in chunks:
      f.write(data)


def load_safetensors(path: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
  """({name: array}, metadata) of a safetensors file."""
  with open(path, "rb") as f:
    blob = f.read()
  if len(blob) < 8:
    raise ValueError(f"{path} is not a safetensors file: {len(blob)} bytes")
  (size,) = struct.unpack("<Q", blob[:8])
  if 8 + size > len(blob):
    raise ValueError(f"{path} is not a safetensors file: header of {size} bytes past the end")
  header = json.loads(blob[8:8 + size])
  metadata = header.pop("__metadata__", {}) or {}
  base, tensors = 8 + size, {}
  for name, info in header.items():
    begin, end = info["data_offsets"]
    dtype = _np_dtype(info["dtype"])
    tensors[name] = np.frombuffer(blob[base + begin:base + end], dtype=dtype.newbyteorder("<")) \
        .astype(dtype).reshape(info["shape"])
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
    if f.name in ("parent", "name"):
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


def export_backbone(workdir: str, out_dir: str, step: int | None = None) -> dict[str, Any]:
  """Writes the backbone of `workdir`'s latest (or `step`) checkpoint into `out_dir`.

  Returns the model card (also written as out_dir/model_card.json).
  """
  from ssljax import workdir as workdir_lib
  from ssljax.evaluate.backbone import backbone_of
  run = workdir_lib.open_run(workdir, step=step)
  captured = backbone_of(run.method, run.params, run.method_state)
  return save_backbone(out_dir, captured, run.config, run.step, list(run.input_shape()),
                       _eval_numbers(workdir), source_workdir=run.workdir)


def save_backbone(out_dir: str, captured, config, step: int, image_shape: Sequence[int],
                  eval_numbers: dict[str, Any] | None = None,
                  source_workdir: str | None = None) -> dict[str, Any]:
  """Writes a backbone (`ssljax.evaluate.backbone.backbone_of`) into `out_dir`; returns its card.

  Args:
    captured: the backbone (module, numpy variables, pool) of a method's `pretrained_backbone`.
    config, step: the run's config and the checkpoint step, for the model card.
    image_shape: [H, W, C] of the model input.
    eval_numbers, source_workdir: the run's eval.json dict and workdir, for the card.
  """
  os.makedirs(out_dir, exist_ok=True)
  variables = jax.tree_util.tree_map(np.asarray, captured.variables)
  with open(os.path.join(out_dir, MSGPACK), "wb") as f:
    f.write(flax.serialization.msgpack_serialize(variables))
  save_safetensors(os.path.join(out_dir, SAFETENSORS), _flatten(variables),
                   metadata={"format": FORMAT, "method": config.method, "step": str(step)})
  aug = config.data.augment
  card = {
      "format": FORMAT,
      "method": config.method,
      "step": step,
      "total_steps": int(config.total_steps),
      "backbone": module_spec(captured.module),
      "feature_pool": captured.pool,
      "num_parameters": int(sum(np.size(x) for x in jax.tree_util.tree_leaves(variables.get("params", {})))),
      "input": {"shape": list(image_shape), "mean": list(aug.mean), "std": list(aug.std),
                "note": "images scaled to [0, 1], then (x - mean) / std per channel, [N, H, W, C]"},
      "files": {"msgpack": MSGPACK, "safetensors": SAFETENSORS},
      "source_workdir": source_workdir,
      "eval": eval_numbers or {},
      "config": json.loads(config.to_json_best_effort()),
  }
  with open(os.path.join(out_dir, MODEL_CARD), "w") as f:
    json.dump(card, f, indent=2)
  return card


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
    path: an export directory (or its model_card.json).
    weights: 'msgpack' or 'safetensors': which of the two (identical) weight files to read.

  Returns:
    A Flax module (the backbone, wrapped to pool as the method's features did) and its
    variables {'params': ..., other collections}; `module.apply(variables, images)` on
    normalised images [N, H, W, C] gives the trained method's features [N, D] float32.
  """
  from ssljax.evaluate.backbone import feature_module
  card = load_model_card(path)
  root = os.path.dirname(path) if path.endswith(".json") else path
  if weights == "msgpack":
    with open(os.path.join(root, card["files"]["msgpack"]), "rb") as f:
      variables = flax.serialization.msgpack_restore(f.read())
  elif weights == "safetensors":
    variables = _unflatten(load_safetensors(os.path.join(root, card["files"]["safetensors"]))[0])
  else:
    raise ValueError(f"weights={weights!r}; expected 'msgpack' or 'safetensors'")
  module = module_from_spec(card["backbone"])
  return feature_module(module, dict(variables), card["feature_pool"])


PROG = "ssljax.export"


def define_flags(flag_values) -> None:
  from absl import flags
  fv = flag_values
  flags.DEFINE_string("workdir", None, "A pretraining workdir (holds config.json).", flag_values=fv)
  flags.DEFINE_string("out", None, "The export directory to write.", flag_values=fv)
  flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).", flag_values=fv)


def _main(fv) -> dict[str, Any]:
  """The command on parsed flags; SystemExit with one line for a bad input."""
  from ssljax import commandline
  if not fv.workdir or not fv.out:
    raise SystemExit(f"{PROG}: error: --workdir and --out are required, e.g. python -m "
                     f"ssljax.export --workdir workdirs/simclr_digits --out exports/simclr_digits")
  try:
    card = export_backbone(fv.workdir, fv.out, step=fv.step)
  except (FileNotFoundError, ValueError) as e:   # ConfigError, IncompatibleCheckpointError too
    raise SystemExit(f"{PROG}: error: {commandline.one_line(e)}") from None
  except OSError as e:   # an --out that cannot be written
    raise SystemExit(f"{PROG}: error: cannot write {e.filename or fv.out!r}: {e.strerror}") from None
  print(f"exported {card['method']} backbone ({card['backbone']['class']}, "
        f"{card['num_parameters']:,} parameters) at step {card['step']} to {os.path.abspath(fv.out)}")
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
  run()
