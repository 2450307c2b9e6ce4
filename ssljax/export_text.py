"""The text side of an exported image-text model (CLIP, SigLIP, LiT).

`python -m ssljax.export` writes, next to the image tower (`backbone.*`, `ssljax.load_backbone`):
  text.safetensors   the text tower's params ('text.*'), the image projection ('image_proj.*';
                     none for LiT, whose image embedding is the locked tower's features) and the
                     loss's learned scalars, through the `safetensors` library
  tokenizer.model    the sentencepiece model the captions were tokenised with
and a 'text' entry in model_card.json (the tower's fields, max_len, the file names).

    model = ssljax.load_text_encoder("exports/siglip_digits")
    t = model.encode_texts(["a red seven", "a blue two"])       # [2, E], normalised
    x = model.encode_images(images)                              # [N, E], normalised
    probs = x @ t.T                                              # cosine similarities
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

TEXT_WEIGHTS = "text.safetensors"
TOKENIZER = "tokenizer.model"


def save_text_side(out_dir: str, method, params: Any) -> dict[str, Any]:
  """Writes the text side of an image-text `method` (module doc); returns the card's 'text' entry."""
  from ssljax import export  # pylint: disable=import-outside-toplevel
  params = jax.tree_util.tree_map(np.asarray, jax.device_get(dict(params)))
  tensors = {k: v for k, v in params.items() if k not in ("backbone",)}
  export.save_safetensors(os.path.join(out_dir, TEXT_WEIGHTS), export._flatten(tensors),  # pylint: disable=protected-access
                          metadata={"format": export.FORMAT, "method": method.name})
  for name, data in method.artifacts().items():
    with open(os.path.join(out_dir, name), "wb") as f:
      f.write(data)
  tower = method.text_tower
  fields = {f.name: getattr(tower, f.name) for f in dataclasses.fields(tower)
            if f.name not in ("parent", "name")}
  fields["dtype"] = jnp.dtype(fields["dtype"]).name
  return {"tower": fields, "files": {"weights": TEXT_WEIGHTS, "tokenizer": TOKENIZER},
          "image_projection": "image_proj" in params}


@dataclasses.dataclass
class TextEncoder:
  """An exported image-text model's encoders (see the module doc)."""
  module: Any
  variables: dict
  tokenizer: Any
  image_backbone: tuple      # (module, variables) of `ssljax.load_backbone`
  image_proj: dict | None    # {'params': ...} of the image projection, or None (LiT)

  @property
  def max_len(self) -> int:
    return self.module.max_len

  def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
    ids, mask = self.tokenizer.encode_batch(list(texts), self.max_len)
    out = self.module.apply(self.variables, ids, mask)
    return np.asarray(out / jnp.linalg.norm(out, axis=-1, keepdims=True).clip(1e-12))

  def encode_images(self, images: np.ndarray) -> np.ndarray:
    """Normalised image embeddings of normalised images [N, H, W, C] (the card's 'input')."""
    module, variables = self.image_backbone
    feats = module.apply(variables, images)
    if self.image_proj is not None:
      feats = feats @ self.image_proj["params"]["dense"]["kernel"]
    return np.asarray(feats / jnp.linalg.norm(feats, axis=-1, keepdims=True).clip(1e-12))


def load_text_encoder(path: str) -> TextEncoder:
  """The text tower, tokenizer and image projection of an image-text export (module doc)."""
  from ssljax import export  # pylint: disable=import-outside-toplevel
  from ssljax.data import text as text_data  # pylint: disable=import-outside-toplevel
  from ssljax.models import text as text_model  # pylint: disable=import-outside-toplevel
  card = export.load_model_card(path)
  root = os.path.dirname(path) if path.endswith(".json") else path
  if "text" not in card:
    raise ValueError(f"the export in {root!r} holds a {card.get('method')!r} backbone without a "
                     f"text tower; expected an image-text export (clip, siglip, lit)")
  entry = card["text"]
  fields = dict(entry["tower"])
  fields["dtype"] = jnp.dtype(fields["dtype"])
  module = text_model.TextEncoder(**fields)
  flat, _ = export.load_safetensors(os.path.join(root, entry["files"]["weights"]))
  tree = export._unflatten(flat)  # pylint: disable=protected-access
  tokenizer = text_data.Tokenizer.load(os.path.join(root, entry["files"]["tokenizer"]))
  proj = {"params": tree["image_proj"]} if entry.get("image_projection") else None
  return TextEncoder(module, {"params": tree["text"]}, tokenizer, export.load_backbone(root), proj)
