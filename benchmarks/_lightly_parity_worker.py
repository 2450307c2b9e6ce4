"""The lightly (PyTorch) side of benchmarks/peer_parity.py; runs under .venv-peer/bin/python.

  .venv-peer/bin/python benchmarks/_lightly_parity_worker.py --data IN.npz --out OUT.npz

IN.npz (written by peer_parity.py from ssljax's run): the recipe (JSON, as for
_lightly_small_worker), ssljax's initial parameters as 'init/<keystr>' (Flax layouts), the K
batches of two views 'views' [K, B, 2, S, S, C] float32 and the per-step learning rates 'lrs'.
The worker builds `_lightly_small_worker.Model` (the small CNN in torch, lightly's heads and losses),
copies ssljax's initial weights into it (and into its momentum copy), runs the K steps on those
batches and writes OUT.npz: 'losses' [K], 'grad/<keystr>' (the first step's gradients before
clipping, in ssljax's layouts), 'final/<keystr>' (the parameters after K steps), 'stats/<name>'
(the online backbone's BatchNorm running means and variances), 'unmapped' (the torch parameters
ssljax has no counterpart of: they keep torch's initial values). One JSON line on stdout: versions,
the number of tensors copied and the unmapped names.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.peer_throughput import pin_threads  # noqa: E402


def _of(module, kind):
  return [m for m in module.modules() if isinstance(m, kind)]


def pairs(model) -> list:
  """(torch parameter, ssljax keystr, layout) of every weight both sides have; layout 'conv'
  (HWIO <-> OIHW), 'dense' ([in, out] <-> [out, in]) or '' (same shape)."""
  from torch import nn
  out = []
  convs, norms = _of(model.backbone, nn.Conv2d), _of(model.backbone, nn.BatchNorm2d)
  for s, (conv, norm) in enumerate(zip(convs, norms)):
    out += [(conv.weight, f"['backbone']['conv{s}_0']['kernel']", "conv"),
            (norm.weight, f"['backbone']['norm{s}_0']['scale']", ""),
            (norm.bias, f"['backbone']['norm{s}_0']['bias']", "")]
  heads = [("head", model.head)] if model.method in ("simclr", "dino") else [("projector", model.head)]
  heads += [("predictor", model.predictor)] if model.method == "byol" else []
  linear = "mlp" if model.method == "dino" else "linear"
  for name, head in heads:
    stack = head.layers if model.method == "dino" else head
    for i, lin in enumerate(_of(stack, nn.Linear)):
      out.append((lin.weight, f"['{name}']['{linear}{i}']['kernel']", "dense"))
      if lin.bias is not None:
        out.append((lin.bias, f"['{name}']['{linear}{i}']['bias']", ""))
    for i, norm in enumerate(_of(stack, nn.BatchNorm1d)):
      out.append((norm.weight, f"['{name}']['bn{i}']['scale']", ""))
      out.append((norm.bias, f"['{name}']['bn{i}']['bias']", ""))
    if model.method == "dino":   # the weight-normalised last layer: direction v, gain fixed to 1
      out.append((head.last_layer.weight_v, f"['{name}']['last_layer']['kernel']", "dense"))
  return out


def to_torch(array, layout: str):
  import numpy as np
  if layout == "conv":
    array = np.transpose(array, (3, 2, 0, 1))
  elif layout == "dense":
    array = array.T
  return np.ascontiguousarray(array)


def to_ssljax(array, layout: str):
  import numpy as np
  if layout == "conv":
    return np.transpose(array, (2, 3, 1, 0))
  return array.T if layout == "dense" else array


def load_init(model, data) -> list:
  """Copies ssljax's initial weights ('init/<keystr>' arrays of `data`) into `model` and its
  momentum copy; returns the (tensor, key, layout) triples it copied."""
  import torch
  mapped = [(t, k, layout) for t, k, layout in pairs(model) if "init/" + k in data.files]
  with torch.no_grad():
    for tensor, key, layout in mapped:
      value = to_torch(data["init/" + key], layout)
      if tuple(tensor.shape) != value.shape:
        raise ValueError(f"{key}: ssljax {value.shape}, torch {tuple(tensor.shape)}")
      tensor.copy_(torch.as_tensor(value))
    if model.teacher is not None:
      model.teacher.load_state_dict(model.student.state_dict())
  return mapped


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--data", required=True)
  parser.add_argument("--out", required=True)
  parser.add_argument("--threads", type=int, default=1)
  args = parser.parse_args()
  pin_threads(args.threads)
  import lightly
  import numpy as np
  import torch
  from torch import nn

  from benchmarks._lightly_small_worker import Model
  torch.set_num_threads(args.threads)
  data = np.load(args.data)
  recipe = json.loads(str(data["recipe"]))
  torch.manual_seed(recipe["seed"])
  model = Model(recipe)
  mapped = load_init(model, data)
  ids = {id(t) for t, _, _ in mapped}
  unmapped = [n for mod in (model.student, getattr(model, "predictor", nn.Sequential()))
              for n, p in mod.named_parameters() if id(p) not in ids and p.requires_grad]
  views = torch.as_tensor(data["views"]).permute(0, 1, 2, 5, 3, 4).contiguous()  # K, B, 2, C, S, S
  grads, step_opt, clip = {}, model.opt.step, torch.nn.utils.clip_grad_norm_

  def record():   # the first step's gradients, before any clipping (ssljax's are compared raw)
    if not grads:
      grads.update({"grad/" + k: to_ssljax(t.grad.numpy().copy(), layout) for t, k, layout in mapped
                    if t.grad is not None})

  def record_then_clip(*a, **k):
    record()
    return clip(*a, **k)

  def record_then_step():
    record()
    step_opt()

  torch.nn.utils.clip_grad_norm_ = record_then_clip
  model.opt.step = record_then_step
  for module in model.modules():
    module.train()
  losses = [model.step(views[i], i, float(data["lrs"][i])) for i in range(views.shape[0])]
  out = {"losses": np.asarray(losses), "unmapped": np.asarray(unmapped, dtype=str), **grads}
  out.update({"final/" + k: to_ssljax(t.detach().numpy(), layout) for t, k, layout in mapped})
  for s, norm in enumerate(_of(model.backbone, nn.BatchNorm2d)):
    out[f"stats/norm{s}_0/mean"] = norm.running_mean.numpy()
    out[f"stats/norm{s}_0/var"] = norm.running_var.numpy()
  np.savez(args.out, **out)
  print(json.dumps({"versions": {"torch": torch.__version__, "lightly": lightly.__version__},
                    "mapped": len(mapped), "unmapped": unmapped}), flush=True)


if __name__ == "__main__":
  main()
