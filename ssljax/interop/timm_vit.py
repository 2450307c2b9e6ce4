"""ssljax ViT <-> timm `VisionTransformer` state dict (numpy, torch's layout; no torch import).

The two compute the same function (pre-LN blocks, LayerNorm eps 1e-6, exact GELU, softmax
attention scaled by head_dim^-0.5, a final LayerNorm) once the names and layouts are mapped:

  ssljax (Flax)                                  timm
  patch_embed/kernel [p, p, C, D] (HWIO)         patch_embed.proj.weight [D, C, p, p] (OIHW)
  cls [1, 1, D], registers [1, R, D]             cls_token, reg_token
  positional embeddings of the patches [P, D]    pos_embed [1, prefix + P, D] (zeros at the
    (sincos2d: computed; learned: pos_embedding)   prefix: ssljax adds none to cls / registers)
  block{i}/attn/{query,key,value}/kernel         blocks.i.attn.qkv.weight [3D, D]: rows
    [D, H, Dh], bias [H, Dh]                       q (head-major), then k, then v
  block{i}/attn/out/kernel [H, Dh, D]            blocks.i.attn.proj.weight [D, D]
  block{i}/norm{1,2}/{scale,bias}                blocks.i.norm{1,2}.{weight,bias}
  block{i}/mlp/fc{1,2}/kernel [in, out]          blocks.i.mlp.fc{1,2}.weight [out, in]
  norm/{scale,bias}                              norm.{weight,bias}

timm's model arguments for an export: `class_token` (pool 'cls'), `reg_tokens`, `no_embed_class
=False`, `fc_norm=False` (timm's 'avg' pool would otherwise move the final norm after the pool),
`global_pool` 'token' (cls features) or 'avg' (gap, or MAE's patch-token mean), `num_classes=0`.

Importing also takes timm layouts ssljax does not write: a pos_embed without prefix entries
(`no_embed_class=True`), prefix positional embeddings (folded into the cls / register tokens, to
which they are a constant), and LayerScale (`blocks.i.ls{1,2}.gamma`, timm's DINOv2 ViTs: folded
into attn.proj and mlp.fc2, the same function; timm's DINOv3 models are RoPE Eva ViTs, not mapped).
What ssljax's ViT cannot compute is refused in one line (q/k norms, a norm before the blocks, a
norm after the pool, attention-pool heads).
"""
from __future__ import annotations

import math
import re
from typing import Any, Mapping, Optional

import numpy as np

# timm ViT architectures by (width, depth, heads): the config.json 'architecture' of an export
# when its shape is one of them (timm's model args give every field either way).
_TIMM_NAMES = {(192, 12, 3): "vit_tiny", (384, 12, 6): "vit_small", (768, 12, 12): "vit_base",
               (1024, 24, 16): "vit_large"}
_STANDARD = {("vit_tiny", 16, 224), ("vit_small", 16, 224), ("vit_small", 8, 224),
             ("vit_base", 16, 224), ("vit_base", 8, 224), ("vit_base", 32, 224),
             ("vit_large", 16, 224), ("vit_small", 14, 518), ("vit_base", 14, 518),
             ("vit_large", 14, 518)}
# timm architecture name -> attention heads, for files whose config.json gives no num_heads.
_HEADS_BY_NAME = {"vit_tiny": 3, "vit_small": 6, "vit_base": 12, "vit_large": 16, "vit_huge": 16,
                  "vit_so150m": 12, "vit_giant": 24}


def _f32(x) -> np.ndarray:
  return np.require(np.asarray(x, dtype=np.float32), requirements="C")


def posemb_of(module, params: Mapping[str, Any], grid_h: int, grid_w: int) -> np.ndarray:
  """[grid_h * grid_w, D] float32: the positional embeddings `module` (an ssljax ViT) adds to the
  patches of a grid_h x grid_w input (`ViT._posemb`)."""
  import jax
  from ssljax.models.patches import sincos_2d_posemb
  ref = module.image_size // module.patch_size
  if module.posemb == "sincos2d":
    return _f32(sincos_2d_posemb(grid_h, grid_w, module.width, ref_grid=ref))
  table = np.asarray(params["pos_embedding"], np.float32)
  if (grid_h, grid_w) != (ref, ref):
    table = np.asarray(jax.image.resize(table.reshape(ref, ref, module.width),
                                        (grid_h, grid_w, module.width), method="bicubic"))
  return _f32(table.reshape(grid_h * grid_w, module.width))


def to_timm(module, variables: Mapping[str, Any], image_shape, feature_pool: str = "backbone"
            ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
  """(timm state dict, timm model args) of an ssljax ViT.

  Args:
    module: the ssljax `ViT`.
    variables: its {'params': ...}.
    image_shape: [H, W, C] of the input the export is for (the positional embeddings are those
      ssljax adds at this size).
    feature_pool: 'backbone' (the ViT's pooled output) or 'patch_mean' (mean of the final patch
      tokens, MAE): picks timm's global_pool so that timm's pooled features are ssljax's.

  Returns:
    {timm key: float32 array} for `timm.models.VisionTransformer(**model_args)`, and model_args.
  """
  p = variables["params"]
  h, w, c = (int(s) for s in image_shape)
  ps, d, heads = module.patch_size, module.width, module.num_heads
  if h % ps or w % ps:
    raise ValueError(f"image shape {list(image_shape)} is not a multiple of patch_size={ps}")
  prefix = (1 if module.pool == "cls" else 0) + module.num_registers
  sd = {"patch_embed.proj.weight": _f32(np.transpose(p["patch_embed"]["kernel"], (3, 2, 0, 1))),
        "patch_embed.proj.bias": _f32(p["patch_embed"]["bias"])}
  if module.pool == "cls":
    sd["cls_token"] = _f32(p["cls"])
  if module.num_registers:
    sd["reg_token"] = _f32(p["registers"])
  pos = posemb_of(module, p, h // ps, w // ps)
  sd["pos_embed"] = _f32(np.concatenate([np.zeros((prefix, d), np.float32), pos])[None])
  mlp_dim = None
  for i in range(module.depth):
    b, t = p[f"block{i}"], f"blocks.{i}."
    attn = b["attn"]
    sd[t + "attn.qkv.weight"] = _f32(np.concatenate(
        [np.reshape(attn[n]["kernel"], (d, d)).T for n in ("query", "key", "value")]))
    sd[t + "attn.qkv.bias"] = _f32(np.concatenate(
        [np.reshape(attn[n]["bias"], (d,)) for n in ("query", "key", "value")]))
    sd[t + "attn.proj.weight"] = _f32(np.reshape(attn["out"]["kernel"], (d, d)).T)
    sd[t + "attn.proj.bias"] = _f32(attn["out"]["bias"])
    for n in ("norm1", "norm2"):
      sd[t + n + ".weight"] = _f32(b[n]["scale"])
      sd[t + n + ".bias"] = _f32(b[n]["bias"])
    for n in ("fc1", "fc2"):
      sd[t + f"mlp.{n}.weight"] = _f32(np.transpose(b["mlp"][n]["kernel"]))
      sd[t + f"mlp.{n}.bias"] = _f32(b["mlp"][n]["bias"])
    mlp_dim = int(np.shape(b["mlp"]["fc1"]["kernel"])[1])
  sd["norm.weight"] = _f32(p["norm"]["scale"])
  sd["norm.bias"] = _f32(p["norm"]["bias"])
  cls_feature = module.pool == "cls" and feature_pool == "backbone"
  args = {
      "img_size": h if h == w else [h, w], "patch_size": ps, "in_chans": c, "num_classes": 0,
      "global_pool": "token" if cls_feature else "avg", "embed_dim": d, "depth": module.depth,
      "num_heads": heads, "mlp_ratio": _mlp_ratio(d, mlp_dim or int(round(d * module.mlp_ratio))),
      "qkv_bias": True, "class_token": module.pool == "cls", "reg_tokens": module.num_registers,
      "no_embed_class": False, "fc_norm": False, "pos_embed": "learn",
  }
  return sd, args


def _mlp_ratio(width: int, hidden: int) -> float:
  """A float r with int(width * r) == hidden (timm's hidden size), as close to hidden / width."""
  r = hidden / width
  while int(width * r) < hidden:
    r = float(np.nextafter(r, np.inf))
  return r


def architecture(model_args: Mapping[str, Any]) -> str:
  """The timm architecture name for config.json: the standard name of this shape when timm has
  one (e.g. 'vit_small_patch16_224'), else 'vit_base_patch16_224' (its model_args then give the
  shape; the name only picks timm's ViT builder)."""
  size = model_args["img_size"]
  base = _TIMM_NAMES.get((model_args["embed_dim"], model_args["depth"], model_args["num_heads"]))
  if base and isinstance(size, int) and (base, model_args["patch_size"], size) in _STANDARD:
    return f"{base}_patch{model_args['patch_size']}_{size}"
  return "vit_base_patch16_224"


def is_timm_vit(sd: Mapping[str, Any]) -> bool:
  return "patch_embed.proj.weight" in sd


def heads_from_architecture(name: str) -> Optional[int]:
  """Attention heads of a timm ViT architecture name ('vit_small_patch14_dinov2.lvd142m' -> 6)."""
  for base, heads in _HEADS_BY_NAME.items():
    if name == base or name.startswith(base + "_"):
      return heads
  return None


_IGNORED = re.compile(r"^(head|head_dist)\.")   # a classifier: not part of the backbone
_REFUSED = {
    "fc_norm.": "a norm after the pool (timm fc_norm, e.g. global_pool='avg' models)",
    "norm_pre.": "a norm before the blocks (timm pre_norm, CLIP-style)",
    "attn_pool.": "an attention-pool head (timm global_pool='map')",
    ".attn.q_norm.": "q/k normalisation (timm qk_norm)",
    ".attn.k_norm.": "q/k normalisation (timm qk_norm)",
    ".norm_attn.": "a norm inside attention (timm scale_attn_norm)",
    ".mlp.norm.": "a norm inside the MLP (timm scale_mlp_norm)",
}


def from_timm(sd: Mapping[str, np.ndarray], num_heads: Optional[int],
              grid: Optional[tuple[int, int]] = None, no_embed_class: Optional[bool] = None
              ) -> tuple[dict[str, Any], dict[str, Any]]:
  """(ssljax ViT fields, {'params': ...}) of a timm VisionTransformer state dict.

  Args:
    sd: {timm key: array}.
    num_heads: attention heads (a state dict does not hold them); None: an error.
    grid: (rows, cols) of patches the pos_embed is for, when known (config.json's img_size);
      else a square grid is inferred from its length.
    no_embed_class: timm's flag when known; else inferred from pos_embed's length.

  Returns:
    fields for `ssljax.models.ViT` (image_size = grid * patch; posemb 'sincos2d' where the
    positional embeddings are exactly ssljax's sincos2d ones for that grid, else 'learned') and
    the params, with the patches' positional embeddings as 'pos_embedding' [P, D] in both cases
    ('mask_token', which timm has not, is left out).

  Raises:
    ValueError: one line naming the key (and shapes) of what cannot be mapped.
  """
  sd = {k: np.asarray(v) for k, v in sd.items() if not _IGNORED.match(k)}
  for key in sorted(sd):
    for pattern, what in _REFUSED.items():
      if pattern in key if pattern.startswith(".") else key.startswith(pattern):
        raise ValueError(f"{key}: {what} has no ssljax ViT equivalent")
  used: set[str] = set()

  def take(key):
    if key not in sd:
      raise ValueError(f"{key} is missing from the timm ViT state dict")
    used.add(key)
    return np.asarray(sd[key], np.float32)

  pw = take("patch_embed.proj.weight")
  if pw.ndim != 4 or pw.shape[2] != pw.shape[3]:
    raise ValueError(f"patch_embed.proj.weight has shape {list(pw.shape)}; expected "
                     f"[D, C, p, p] with square patches")
  d, c, ps = pw.shape[0], pw.shape[1], pw.shape[2]
  if num_heads is None:
    raise ValueError("the number of attention heads is not in the file: give num_heads (or a "
                     "config.json with model_args.num_heads or a timm architecture name)")
  if d % num_heads:
    raise ValueError(f"num_heads={num_heads} does not divide the width {d} "
                     f"(patch_embed.proj.weight {list(pw.shape)})")
  dh = d // num_heads
  params: dict[str, Any] = {"patch_embed": {"kernel": np.transpose(pw, (2, 3, 1, 0)),
                                            "bias": take("patch_embed.proj.bias")}}
  prefix_tokens = []
  has_cls = "cls_token" in sd
  if has_cls:
    prefix_tokens.append(("cls", take("cls_token").reshape(1, 1, d)))
  regs = take("reg_token").reshape(1, -1, d) if "reg_token" in sd else None
  if regs is not None:
    prefix_tokens.append(("registers", regs))
  n_prefix = sum(t.shape[1] for _, t in prefix_tokens)

  pos = take("pos_embed").reshape(-1, d)
  length = pos.shape[0]
  if grid is not None:
    n_patch = grid[0] * grid[1]
    if no_embed_class is None:
      no_embed_class = length == n_patch
    want = n_patch + (0 if no_embed_class else n_prefix)
    if length != want:
      raise ValueError(f"pos_embed has shape [1, {length}, {d}]; expected [1, {want}, {d}] for a "
                       f"{grid[0]}x{grid[1]} patch grid with {n_prefix} prefix token(s)")
  else:
    if no_embed_class is None:
      no_embed_class = not (n_prefix and math.isqrt(length - n_prefix) ** 2 == length - n_prefix)
    n_patch = length - (0 if no_embed_class else n_prefix)
    side = math.isqrt(max(n_patch, 0))
    if side * side != n_patch or n_patch == 0:
      raise ValueError(f"pos_embed has shape [1, {length}, {d}]: not a square grid of patches "
                       f"after {0 if no_embed_class else n_prefix} prefix position(s); give the "
                       f"image size (config.json model_args.img_size)")
    grid = (side, side)
  if not no_embed_class and n_prefix:   # a constant added to each prefix token: fold it in
    offset = 0
    for i, (name, tok) in enumerate(prefix_tokens):
      k = tok.shape[1]
      prefix_tokens[i] = (name, tok + pos[None, offset:offset + k])
      offset += k
    pos = pos[n_prefix:]
  for name, tok in prefix_tokens:
    params[name] = tok

  depth = 0
  while f"blocks.{depth}.norm1.weight" in sd:
    depth += 1
  if depth == 0:
    raise ValueError("blocks.0.norm1.weight is missing: not a timm VisionTransformer state dict")
  mlp_dim = None
  for i in range(depth):
    t = f"blocks.{i}."
    qkv_w = take(t + "attn.qkv.weight")
    if qkv_w.shape != (3 * d, d):
      raise ValueError(f"{t}attn.qkv.weight has shape {list(qkv_w.shape)}; expected {[3 * d, d]}")
    qkv_b = take(t + "attn.qkv.bias") if t + "attn.qkv.bias" in sd else np.zeros(3 * d, np.float32)
    proj_w, proj_b = take(t + "attn.proj.weight"), take(t + "attn.proj.bias")
    fc1_w, fc1_b = take(t + "mlp.fc1.weight"), take(t + "mlp.fc1.bias")
    fc2_w, fc2_b = take(t + "mlp.fc2.weight"), take(t + "mlp.fc2.bias")
    if t + "ls1.gamma" in sd:        # LayerScale: x + g * proj(a) = x + (g * proj)(a)
      g = take(t + "ls1.gamma")
      proj_w, proj_b = proj_w * g[:, None], proj_b * g
    if t + "ls2.gamma" in sd:
      g = take(t + "ls2.gamma")
      fc2_w, fc2_b = fc2_w * g[:, None], fc2_b * g
    attn = {}
    for j, name in enumerate(("query", "key", "value")):
      attn[name] = {"kernel": qkv_w[j * d:(j + 1) * d].T.reshape(d, num_heads, dh),
                    "bias": qkv_b[j * d:(j + 1) * d].reshape(num_heads, dh)}
    attn["out"] = {"kernel": proj_w.T.reshape(num_heads, dh, d), "bias": proj_b}
    mlp_dim = fc1_w.shape[0]
    params[f"block{i}"] = {
        "norm1": {"scale": take(t + "norm1.weight"), "bias": take(t + "norm1.bias")},
        "attn": attn,
        "norm2": {"scale": take(t + "norm2.weight"), "bias": take(t + "norm2.bias")},
        "mlp": {"fc1": {"kernel": fc1_w.T, "bias": fc1_b},
                "fc2": {"kernel": fc2_w.T, "bias": fc2_b}},
    }
  params["norm"] = {"scale": take("norm.weight"), "bias": take("norm.bias")}
  if "mask_token" in sd:
    params["mask_token"] = take("mask_token").reshape(1, 1, d)
  left = sorted(set(sd) - used)
  if left:
    raise ValueError(f"{left[0]} of the timm state dict has no ssljax ViT equivalent"
                     + (f" (and {len(left) - 1} more key(s))" if len(left) > 1 else ""))

  from ssljax.models.patches import sincos_2d_posemb
  fields = {"patch_size": int(ps), "width": int(d), "depth": depth, "num_heads": int(num_heads),
            "mlp_ratio": float(mlp_dim) / d, "num_registers": 0 if regs is None else regs.shape[1],
            "pool": "cls" if has_cls else "gap", "image_size": int(grid[0] * ps)}
  sincos = (grid[0] == grid[1] and d % 4 == 0 and
            np.allclose(pos, np.asarray(sincos_2d_posemb(grid[0], grid[1], d)), atol=1e-6))
  if grid[0] != grid[1] and not sincos:
    raise ValueError(f"pos_embed is for a {grid[0]}x{grid[1]} patch grid; ssljax's learned "
                     f"positional embeddings are a square grid")
  fields["posemb"] = "sincos2d" if sincos else "learned"
  params["pos_embedding"] = pos   # dropped by the caller for a sincos2d model
  return fields, {"params": params}
