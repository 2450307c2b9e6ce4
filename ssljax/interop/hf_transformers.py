"""Hugging Face transformers ViT / DINOv2 checkpoints -> timm's key layout (numpy; no torch).

The released DINOv2 weights on the Hugging Face hub (`facebook/dinov2-*`, `Dinov2Model`, and
`Dinov2WithRegistersModel`) and transformers' `ViTModel` folders hold `model.safetensors` with
these keys (the layout `save_pretrained` writes, transformers 4 and 5 alike) and a config.json
with `model_type`. `to_timm` renames them to timm's VisionTransformer keys, which
`ssljax.interop.timm_vit.from_timm` maps to ssljax:

  embeddings.cls_token / register_tokens / mask_token     cls_token / reg_token / mask_token
  embeddings.position_embeddings [1, 1 + P, D]            cls position folded into cls_token;
                                                          pos_embed [1, P, D] (no_embed_class)
  embeddings.patch_embeddings.projection                  patch_embed.proj
  encoder.layer.i.norm1 | layernorm_before                blocks.i.norm1
  encoder.layer.i.attention.attention.{query,key,value}   blocks.i.attn.qkv (concatenated)
  encoder.layer.i.attention.output.dense                  blocks.i.attn.proj
  encoder.layer.i.layer_scale{1,2}.lambda1                blocks.i.ls{1,2}.gamma (folded later)
  encoder.layer.i.norm2 | layernorm_after                 blocks.i.norm2
  encoder.layer.i.mlp.fc1 | intermediate.dense            blocks.i.mlp.fc1
  encoder.layer.i.mlp.fc2 | output.dense                  blocks.i.mlp.fc2
  layernorm                                               norm

A `dinov2.` / `vit.` prefix (the *ForImageClassification checkpoints) is stripped, and the
`classifier` and `pooler` weights are dropped (not part of the backbone). DINOv2's registers sit
after the cls token without positional embeddings, as ssljax's do. ssljax computes LayerNorm with
eps 1e-6 (DINOv2's and timm's); a transformers ViT saved with its default 1e-12 imports with the
normalised values off by about 1e-6 / (2 variance) relative: ~1e-4 on a small random ViT, nothing
that matters for continued pretraining, but not the same function to 1e-4. SwiGLU MLPs (DINOv2
giant) and activations other than the exact GELU are refused in one line.
"""
from __future__ import annotations

import re
from typing import Any, Mapping

import numpy as np

MODEL_TYPES = ("dinov2", "dinov2_with_registers", "vit")

_BLOCK = [
    (r"norm1|layernorm_before", "norm1"),
    (r"norm2|layernorm_after", "norm2"),
    (r"attention\.output\.dense", "attn.proj"),
    (r"layer_scale1\.lambda1", "ls1.gamma"),
    (r"layer_scale2\.lambda1", "ls2.gamma"),
    (r"mlp\.fc1|intermediate\.dense", "mlp.fc1"),
    (r"mlp\.fc2|output\.dense", "mlp.fc2"),
]


def is_transformers(sd: Mapping[str, Any], config: Mapping[str, Any]) -> bool:
  return (config.get("model_type") in MODEL_TYPES
          or any(k.startswith(("embeddings.patch_embeddings.", "dinov2.embeddings.",
                               "vit.embeddings.")) for k in sd))


def to_timm(sd: Mapping[str, np.ndarray], config: Mapping[str, Any]
            ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
  """({timm key: array}, hints for `timm_vit.from_timm`) of a transformers ViT / DINOv2 state dict.

  Raises:
    ValueError: one line, for what ssljax's ViT cannot compute (SwiGLU, another activation) or a
      key it does not know.
  """
  act = config.get("hidden_act", "gelu")
  if act != "gelu":
    raise ValueError(f"config.json hidden_act={act!r}: ssljax's ViT computes the exact GELU "
                     f"('gelu')")
  if config.get("use_swiglu_ffn"):
    raise ValueError("config.json use_swiglu_ffn=True: ssljax's ViT has a GELU MLP, not SwiGLU")
  src = {}
  for key, value in sd.items():
    for prefix in ("dinov2.", "vit."):
      if key.startswith(prefix):
        key = key[len(prefix):]
    if key.startswith(("classifier.", "pooler.")):
      continue
    src[key] = np.asarray(value)
  out: dict[str, np.ndarray] = {}
  qkv: dict[tuple[int, str], dict[str, np.ndarray]] = {}
  for key, value in src.items():
    m = re.fullmatch(r"encoder\.layer\.(\d+)\.(.+)\.(weight|bias|lambda1)", key)
    if key == "embeddings.cls_token":
      out["cls_token"] = value
    elif key == "embeddings.register_tokens":
      out["reg_token"] = value
    elif key == "embeddings.mask_token":
      out["mask_token"] = value
    elif key == "embeddings.position_embeddings":
      out["pos_embed"] = value
    elif key.startswith("embeddings.patch_embeddings.projection."):
      out["patch_embed.proj." + key.rsplit(".", 1)[1]] = value
    elif key.startswith("layernorm."):
      out["norm." + key.rsplit(".", 1)[1]] = value
    elif m:
      i, name, kind = int(m.group(1)), m.group(2), m.group(3)
      if kind == "lambda1":
        name, kind = name + ".lambda1", ""
      qm = re.fullmatch(r"attention\.attention\.(query|key|value)", name)
      if qm:
        qkv.setdefault((i, kind), {})[qm.group(1)] = value
        continue
      for pattern, timm_name in _BLOCK:
        if re.fullmatch(pattern, name):
          out[f"blocks.{i}.{timm_name}" + (f".{kind}" if kind else "")] = value
          break
      else:
        raise ValueError(f"{key} of the transformers state dict has no ssljax ViT equivalent")
    else:
      raise ValueError(f"{key} of the transformers state dict has no ssljax ViT equivalent")
  for (i, kind), parts in qkv.items():
    missing = [n for n in ("query", "key", "value") if n not in parts]
    if missing:
      raise ValueError(f"encoder.layer.{i}.attention.attention.{missing[0]}.{kind} is missing")
    out[f"blocks.{i}.attn.qkv.{kind}"] = np.concatenate([parts[n] for n in ("query", "key",
                                                                            "value")])
  if "pos_embed" in out and "cls_token" in out:   # the cls position is a constant: fold it in
    pos = out["pos_embed"]
    out["cls_token"] = out["cls_token"] + pos[:, :1]
    out["pos_embed"] = pos[:, 1:]
  hints: dict[str, Any] = {"num_heads": config.get("num_attention_heads"), "no_embed_class": True}
  if config.get("image_size") and config.get("patch_size"):
    side = int(config["image_size"]) // int(config["patch_size"])
    hints["grid"] = (side, side)
  return out, hints
