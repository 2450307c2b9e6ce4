"""The lightly (PyTorch) side of benchmarks/small_images.py; runs under .venv-peer/bin/python.

  .venv-peer/bin/python benchmarks/_lightly_small_worker.py --data /tmp/x/inputs.npz --threads 2

Everything comes from the parent in one .npz (`small_images.export_peer_inputs`): the train images
(uint8 [N, S, S, 3], the task's image folder as ssljax reads it), the centre-view eval arrays
(float32, ssljax's `pipeline.eval_arrays`) of the kNN bank and the held-out queries, the recipe
(JSON: method, small-CNN widths, head sizes, augmentations, batch, optimiser, loss settings) and the
learning rate of every step (ssljax's optax schedule evaluated step by step); with
`small_images --peer-init ssljax` also ssljax's initial weights ('init/<keystr>'), which replace
torch's (`_lightly_parity_worker.load_init`).

Model: ssljax's small CNN (ssljax/models/small_cnn.py: per stage 3x3 conv without bias, BatchNorm
momentum 0.1 in torch's convention = 0.9 in Flax's, eps 1e-5, ReLU; 2x2 max-pool between stages;
global average pool) in torch with torch's default initialisation, and lightly's heads and losses:
- simclr: `SimCLRProjectionHead(D, hidden, out)` (BatchNorm on its output layer too, as
  ssljax's `simclr.proj_last_bn=True`, which `small_images.peer_recipe` requires), `NTXentLoss(temperature)`;
- byol: `BYOLProjectionHead`, `BYOLPredictionHead`, `NegativeCosineSimilarity`, a momentum copy
  updated with `update_momentum` at lightly's `cosine_schedule(step, total, tau, 1)`, symmetric loss;
  each view forwarded on its own (BatchNorm statistics per view) unless the recipe's
  `joint_view_bn` (ssljax's `byol.joint_view_bn`) says both views as one batch;
- dino: `DINOProjectionHead(D, hidden, bottleneck, out, batch_norm=True)`, `DINOLoss` (teacher /
  student temperatures, centre momentum), a momentum teacher as for BYOL, gradients clipped.
torch AdamW with weight decay on kernels only (as `ssljax.optim.decay_mask`), torchvision transforms
with the recipe's parameters (`_torch_pipeline_worker.build_transform`), a DataLoader over an
endless random sampler.

Line protocol (as benchmarks/_lightly_digits_worker.py):
  parent -> worker: "train N\\n"        N train steps, answers {"seconds", "loss", "step"}
  parent -> worker: "features PATH\\n"  writes {"train": [N, D], "eval": [M, D]} backbone features
                                        (eval mode; the teacher's for DINO, as ssljax's) to PATH
  parent -> worker: "quit\\n"
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.peer_throughput import pin_threads  # noqa: E402


def small_cnn(widths, channels: int = 3, input_norm: str = "none"):
  """ssljax.models.small_cnn.SmallCNN (one conv per stage) in torch: [N, C, H, W] -> [N, widths[-1]]."""
  from torch import nn

  class PerImage(nn.Module):
    """input_norm='per_image': each image minus its mean over (C, H, W), over its standard deviation."""

    def forward(self, x):
      x = x - x.mean(dim=(1, 2, 3), keepdim=True)
      return x * (x.square().mean(dim=(1, 2, 3), keepdim=True) + 1e-6).rsqrt()

  layers, cin = ([PerImage()] if input_norm == "per_image" else []), channels
  for s, w in enumerate(widths):
    if s:
      layers.append(nn.MaxPool2d(2))
    layers += [nn.Conv2d(cin, w, 3, padding=1, bias=False), nn.BatchNorm2d(w, eps=1e-5, momentum=0.1),
               nn.ReLU(inplace=True)]
    cin = w
  layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
  return nn.Sequential(*layers)


class Model:
  """The method's networks, its loss and what one step does, built from lightly's modules."""

  def __init__(self, recipe: dict):
    import torch
    from torch import nn
    r, d = recipe, recipe["widths"][-1]
    self.recipe, self.method = r, r["method"]
    self.backbone = small_cnn(r["widths"], input_norm=r["input_norm"])
    if self.method == "simclr":
      from lightly.loss import NTXentLoss
      from lightly.models.modules import SimCLRProjectionHead
      self.head = SimCLRProjectionHead(d, r["proj_hidden_dim"], r["proj_dim"])
      self.student = nn.Sequential(self.backbone, self.head)
      self.criterion = NTXentLoss(temperature=r["temperature"])
    elif self.method == "byol":
      from lightly.loss import NegativeCosineSimilarity
      from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead
      self.head = BYOLProjectionHead(d, r["proj_hidden_dim"], r["proj_dim"])
      self.predictor = BYOLPredictionHead(r["proj_dim"], r["pred_hidden_dim"], r["proj_dim"])
      self.student = nn.Sequential(self.backbone, self.head)
      self.criterion = NegativeCosineSimilarity()
    elif self.method == "dino":
      from lightly.loss import DINOLoss
      from lightly.models.modules import DINOProjectionHead
      self.head = DINOProjectionHead(d, r["hidden_dim"], r["bottleneck_dim"], r["out_dim"],
                                     batch_norm=True, freeze_last_layer=-1, norm_last_layer=True)
      self.student = nn.Sequential(self.backbone, self.head)
      self.criterion = DINOLoss(output_dim=r["out_dim"], warmup_teacher_temp=r["teacher_temp"],
                                teacher_temp=r["teacher_temp"], warmup_teacher_temp_epochs=0,
                                student_temp=r["student_temp"], center_momentum=r["center_momentum"])
    else:
      raise ValueError(f"method={self.method!r}; expected simclr, byol or dino")
    self.teacher = None
    if self.method in ("byol", "dino"):
      from lightly.models.utils import deactivate_requires_grad
      if self.method == "byol":
        self.teacher = copy.deepcopy(self.student)
      else:   # (deepcopy fails on the weight-normalised last layer: a fresh copy, same weights)
        self.teacher = nn.Sequential(
            small_cnn(r["widths"], input_norm=r["input_norm"]),
            DINOProjectionHead(d, r["hidden_dim"], r["bottleneck_dim"], r["out_dim"],
                               batch_norm=True, freeze_last_layer=-1, norm_last_layer=True))
        self.teacher.load_state_dict(self.student.state_dict())
      deactivate_requires_grad(self.teacher)
    trainable = list(self.student.named_parameters())
    if self.method == "byol":
      trainable += [("predictor." + n, p) for n, p in self.predictor.named_parameters()]
    self.params = [p for _, p in trainable]
    # ssljax's top-level param modules, for optimizer.lr_scales: one torch param group per module
    # and decay setting, its learning rate the schedule's times the module's factor.
    head = "head" if self.method == "dino" else "projector"
    module = {"0": "backbone", "1": head, "predictor": "predictor"}
    scales = r.get("lr_scales", {})
    unknown = sorted(set(scales) - set(module.values()))
    if unknown:
      raise ValueError(f"optimizer.lr_scales names {unknown}; the lightly side knows "
                       f"{sorted(set(module.values()))}")
    groups = {}
    for n, p in trainable:
      name = module[n.split(".")[0]]
      groups.setdefault((name, p.ndim > 1), []).append(p)
    self.opt = torch.optim.AdamW(
        [{"params": ps, "lr_scale": scales.get(name, 1.0),
          **({} if decay else {"weight_decay": 0.0})} for (name, decay), ps in groups.items()],
        lr=0.0, betas=(r["b1"], r["b2"]), eps=1e-8, weight_decay=r["weight_decay"])

  def modules(self):
    out = [self.student] + ([self.teacher] if self.teacher is not None else [])
    return out + ([self.predictor] if self.method == "byol" else [])

  def step(self, views, step: int, lr: float) -> float:
    """One optimizer step on views [B, 2, C, S, S]; returns the loss."""
    import torch
    from lightly.models.utils import update_momentum
    from lightly.utils.scheduler import cosine_schedule
    r, b = self.recipe, views.shape[0]
    x0, x1 = views[:, 0], views[:, 1]
    if self.method == "simclr":
      z = self.student(torch.cat([x0, x1]))
      loss = self.criterion(z[:b], z[b:])
    elif self.method == "byol":
      if r.get("joint_view_bn", True):    # both views as one batch, as lightly's examples do
        p = self.predictor(self.student(torch.cat([x0, x1])))
        with torch.no_grad():
          t = self.teacher(torch.cat([x0, x1]))
      else:                               # each view on its own (BatchNorm statistics per view)
        p = torch.cat([self.predictor(self.student(x)) for x in (x0, x1)])
        with torch.no_grad():
          t = torch.cat([self.teacher(x) for x in (x0, x1)])
      loss = 0.5 * (self.criterion(p[:b], t[b:]) + self.criterion(p[b:], t[:b]))
    else:
      with torch.no_grad():
        t = self.teacher(torch.cat([x0, x1]))
      s = self.student(torch.cat([x0, x1]))
      loss = self.criterion([t[:b], t[b:]], [s[:b], s[b:]], epoch=0)
    for group in self.opt.param_groups:
      group["lr"] = lr * group["lr_scale"]
    self.opt.zero_grad(set_to_none=True)
    loss.backward()
    if r.get("grad_clip", 0.0) > 0:
      torch.nn.utils.clip_grad_norm_(self.params, r["grad_clip"])
    self.opt.step()
    if self.teacher is not None:
      m = cosine_schedule(step, r["total_steps"], r["momentum"], 1.0)
      update_momentum(self.student, self.teacher, m=m)
    return float(loss.detach())

  def eval_backbone(self):
    """The backbone ssljax evaluates: the EMA teacher's for DINO, the online one otherwise."""
    return self.teacher[0] if self.method == "dino" else self.backbone


def make_loader(images, recipe: dict):
  """Endless iterator of ([B, 2, C, S, S] float32) batches of two augmented views."""
  import numpy as np
  import torch
  from PIL import Image
  from benchmarks._torch_pipeline_worker import build_transform

  two_views = build_transform(recipe["image_size"], recipe["augment"])

  class Images(torch.utils.data.Dataset):
    def __len__(self):
      return len(images)

    def __getitem__(self, i):
      return two_views(Image.fromarray(np.ascontiguousarray(images[i]), "RGB"))

  ds = Images()
  sampler = torch.utils.data.RandomSampler(ds, num_samples=10 ** 9,
                                           generator=torch.Generator().manual_seed(recipe["seed"]))
  loader = torch.utils.data.DataLoader(ds, batch_size=recipe["batch_size"], sampler=sampler,
                                       drop_last=True, num_workers=recipe["worker_count"],
                                       persistent_workers=recipe["worker_count"] > 0)
  return iter(loader)


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--data", required=True, help=".npz from small_images.export_peer_inputs")
  parser.add_argument("--threads", type=int, default=1)
  args = parser.parse_args()
  pin_threads(args.threads)
  import numpy as np
  import torch
  torch.set_num_threads(args.threads)
  torch.set_num_interop_threads(1)
  import lightly
  import torchvision

  data = np.load(args.data)
  recipe = json.loads(str(data["recipe"]))
  torch.manual_seed(recipe["seed"])
  model = Model(recipe)
  if any(k.startswith("init/") for k in data.files):   # small_images --peer-init ssljax
    from benchmarks._lightly_parity_worker import load_init
    load_init(model, data)
  lrs = data["lrs"]
  batches = make_loader(data["train_images"], recipe)
  train_x = torch.as_tensor(data["eval_train_x"]).permute(0, 3, 1, 2).contiguous()
  eval_x = torch.as_tensor(data["eval_eval_x"]).permute(0, 3, 1, 2).contiguous()
  versions = {"torch": torch.__version__, "torchvision": torchvision.__version__,
              "lightly": lightly.__version__, "python": sys.version.split()[0]}
  print(json.dumps({"ready": True, "versions": versions,
                    "params": sum(p.numel() for p in model.backbone.parameters()),
                    "torch_threads": torch.get_num_threads()}), flush=True)
  step, loss = 0, float("nan")
  for line in sys.stdin:
    cmd = line.split()
    if not cmd or cmd[0] == "quit":
      break
    if cmd[0] == "train":
      for m in model.modules():
        m.train()
      t0 = time.perf_counter()
      for _ in range(int(cmd[1])):
        loss = model.step(next(batches), step, float(lrs[min(step, len(lrs) - 1)]))
        step += 1
      seconds = time.perf_counter() - t0
      if not math.isfinite(loss):
        print(f"non-finite loss at step {step}", file=sys.stderr, flush=True)
      print(json.dumps({"seconds": seconds, "loss": loss, "step": step}), flush=True)
    elif cmd[0] == "features":
      backbone = model.eval_backbone()
      backbone.eval()
      with torch.no_grad():
        feats = {name: torch.cat([backbone(x[i:i + 256]) for i in range(0, len(x), 256)]).numpy()
                 for name, x in (("train", train_x), ("eval", eval_x))}
      np.savez(cmd[1], **feats)
      print(json.dumps({}), flush=True)


if __name__ == "__main__":
  main()
