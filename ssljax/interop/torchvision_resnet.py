"""ssljax ResNet <-> torchvision `resnet18` / `resnet50` state dict (numpy, torch's layout).

timm's `resnet18` / `resnet50` use the same keys, so the same file loads into both.

  ssljax (Flax)                                   torchvision
  stem_conv/kernel [k, k, C, 64] (HWIO)           conv1.weight [64, C, k, k] (OIHW)
  stem_norm/bn/{scale,bias}, batch_stats          bn1.{weight,bias,running_mean,running_var,
    stem_norm/bn/{mean,var}                          num_batches_tracked}
  stage{s}_block{b}/conv{j}, norm{j}              layer{s}.{b}.conv{j}, bn{j}
  stage{s}_block{b}/proj_conv, proj_norm          layer{s}.{b}.downsample.0, downsample.1

Both are "v1.5" ResNets (the stride on the bottleneck's 3x3 conv), torch-style symmetric padding,
BatchNorm eps 1e-5, and global-average-pooled features: torchvision's `model.fc = nn.Identity()`
gives ssljax's features (timm: `num_classes=0`). Variants, and what torchvision needs for them:
- `cifar_stem=True` (3x3 stride-1 stem, no max-pool): `model.conv1 = nn.Conv2d(C, 64, 3, 1, 1,
  bias=False); model.maxpool = nn.Identity()` before loading (the file's conv1 is 3x3).
- inputs with C != 3 channels: `model.conv1 = nn.Conv2d(C, 64, ...)` likewise.
- `norm='group'`: `resnet50(norm_layer=lambda c: nn.GroupNorm(math.gcd(32, c), c))` (eps 1e-5);
  the file has no running statistics then.
- `width_multiplier != 1` has no torchvision equivalent (its wide ResNets widen only the
  bottleneck) and is refused.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

DEPTHS = {18: ("basic", (2, 2, 2, 2)), 50: ("bottleneck", (3, 4, 6, 3))}


def _f32(x) -> np.ndarray:
  return np.require(np.asarray(x, dtype=np.float32), requirements="C")


def _conv_to_torch(kernel) -> np.ndarray:
  return _f32(np.transpose(kernel, (3, 2, 0, 1)))


def to_torchvision(module, variables: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """{torchvision key: array} of an ssljax ResNet (no 'fc.*': the features are the pooled ones).

  Raises:
    ValueError: for a width_multiplier other than 1.
  """
  if module.width_multiplier != 1.0:
    raise ValueError(f"ResNet width_multiplier={module.width_multiplier} has no torchvision "
                     f"equivalent; expected 1.0")
  params, stats = variables["params"], variables.get("batch_stats", {})
  sd: dict[str, np.ndarray] = {}

  def norm(src: str, dst: str, p, s):
    if "bn" in p:
      sd[dst + ".weight"], sd[dst + ".bias"] = _f32(p["bn"]["scale"]), _f32(p["bn"]["bias"])
      if "bn" not in (s or {}):
        raise ValueError(f"batch_stats of {src} are missing: a BatchNorm ResNet's export needs its "
                         f"running statistics")
      sd[dst + ".running_mean"] = _f32(s["bn"]["mean"])
      sd[dst + ".running_var"] = _f32(s["bn"]["var"])
      sd[dst + ".num_batches_tracked"] = np.array(0, np.int64)   # 0-d, as torch keeps it
    else:
      sd[dst + ".weight"], sd[dst + ".bias"] = _f32(p["gn"]["scale"]), _f32(p["gn"]["bias"])

  sd["conv1.weight"] = _conv_to_torch(params["stem_conv"]["kernel"])
  norm("stem_norm", "bn1", params["stem_norm"], stats.get("stem_norm"))
  kind, blocks = DEPTHS[module.depth]
  n_convs = 3 if kind == "bottleneck" else 2
  for s, n_blocks in enumerate(blocks):
    for b in range(n_blocks):
      name, dst = f"stage{s + 1}_block{b}", f"layer{s + 1}.{b}."
      p, st = params[name], stats.get(name, {})
      for j in range(1, n_convs + 1):
        sd[dst + f"conv{j}.weight"] = _conv_to_torch(p[f"conv{j}"]["kernel"])
        norm(f"{name}/norm{j}", dst + f"bn{j}", p[f"norm{j}"], st.get(f"norm{j}"))
      if "proj_conv" in p:
        sd[dst + "downsample.0.weight"] = _conv_to_torch(p["proj_conv"]["kernel"])
        norm(f"{name}/proj_norm", dst + "downsample.1", p["proj_norm"], st.get("proj_norm"))
  return sd


def is_torchvision_resnet(sd: Mapping[str, Any]) -> bool:
  return "conv1.weight" in sd and "layer1.0.conv1.weight" in sd


def from_torchvision(sd: Mapping[str, np.ndarray]) -> tuple[dict[str, Any], dict[str, Any]]:
  """(ssljax ResNet fields, {'params': ..., 'batch_stats': ...}) of a torchvision / timm
  resnet18 / resnet50 state dict ('fc.*' is ignored).

  Raises:
    ValueError: one line naming the key (and shapes) of what cannot be mapped.
  """
  sd = {k: np.asarray(v) for k, v in sd.items() if not k.startswith("fc.")}
  used: set[str] = set()

  def take(key):
    if key not in sd:
      raise ValueError(f"{key} is missing from the torchvision ResNet state dict")
    used.add(key)
    return sd[key]

  def conv(key):
    w = np.asarray(take(key), np.float32)
    if w.ndim != 4:
      raise ValueError(f"{key} has shape {list(w.shape)}; expected [out, in, kh, kw]")
    return {"kernel": np.transpose(w, (2, 3, 1, 0))}

  batch = "bn1.running_mean" in sd

  def norm(key):
    for extra in (".num_batches_tracked",):
      if key + extra in sd:
        used.add(key + extra)
    p = {"scale": np.asarray(take(key + ".weight"), np.float32),
         "bias": np.asarray(take(key + ".bias"), np.float32)}
    if not batch:
      return {"gn": p}, None
    s = {"mean": np.asarray(take(key + ".running_mean"), np.float32),
         "var": np.asarray(take(key + ".running_var"), np.float32)}
    return {"bn": p}, {"bn": s}

  counts = []
  for s in range(1, 5):
    n = 0
    while f"layer{s}.{n}.conv1.weight" in sd:
      n += 1
    counts.append(n)
  bottleneck = "layer1.0.conv3.weight" in sd
  matches = [d for d, (k, c) in DEPTHS.items()
             if tuple(counts) == c and (k == "bottleneck") == bottleneck]
  if not matches:
    raise ValueError(f"a ResNet with {'bottleneck' if bottleneck else 'basic'} blocks {counts} per "
                     f"stage has no ssljax equivalent; expected resnet18 (basic [2, 2, 2, 2]) or "
                     f"resnet50 (bottleneck [3, 4, 6, 3])")
  depth = matches[0]
  params: dict[str, Any] = {"stem_conv": conv("conv1.weight")}
  stats: dict[str, Any] = {}
  stem_k = params["stem_conv"]["kernel"].shape
  if stem_k[-1] != 64:
    raise ValueError(f"conv1.weight has {stem_k[-1]} output channels; ssljax's ResNet maps only "
                     f"width 64 (width_multiplier 1)")
  if stem_k[:2] not in ((7, 7), (3, 3)):
    raise ValueError(f"conv1.weight is {stem_k[0]}x{stem_k[1]}; expected 7x7 (standard stem) or "
                     f"3x3 (cifar_stem)")
  params["stem_norm"], st = norm("bn1")
  if st:
    stats["stem_norm"] = st
  n_convs = 3 if bottleneck else 2
  for s, n_blocks in enumerate(counts):
    for b in range(n_blocks):
      src, name = f"layer{s + 1}.{b}.", f"stage{s + 1}_block{b}"
      p, bst = {}, {}
      for j in range(1, n_convs + 1):
        p[f"conv{j}"] = conv(src + f"conv{j}.weight")
        p[f"norm{j}"], st = norm(src + f"bn{j}")
        if st:
          bst[f"norm{j}"] = st
      if src + "downsample.0.weight" in sd:
        p["proj_conv"] = conv(src + "downsample.0.weight")
        p["proj_norm"], st = norm(src + "downsample.1")
        if st:
          bst["proj_norm"] = st
      params[name] = p
      if bst:
        stats[name] = bst
  left = sorted(set(sd) - used)
  if left:
    raise ValueError(f"{left[0]} of the torchvision state dict has no ssljax ResNet equivalent"
                     + (f" (and {len(left) - 1} more key(s))" if len(left) > 1 else ""))
  fields = {"depth": depth, "width_multiplier": 1.0, "cifar_stem": stem_k[:2] == (3, 3),
            "norm": "batch" if batch else "group"}
  variables = {"params": params}
  if stats:
    variables["batch_stats"] = stats
  return fields, variables
