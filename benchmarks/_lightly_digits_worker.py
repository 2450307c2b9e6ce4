"""The lightly (PyTorch) side of benchmarks/time_to_accuracy.py; runs under .venv-peer/bin/python.

  .venv-peer/bin/python benchmarks/_lightly_digits_worker.py --data /tmp/x/digits.npz --threads 2

Everything comes from the parent in one .npz (written by `time_to_accuracy.export_peer_inputs`):
the digits train images (uint8 [N, 8, 8, 1], ssljax's split) for training, the centre-view eval
arrays (float32 [N, 16, 16, 1], ssljax's `pipeline.eval_arrays`) of the kNN bank and the held-out
queries, the recipe (JSON: ViT sizes, augmentations, batch, optimiser, temperature), the learning
rate of every step (ssljax's optax schedule evaluated step by step) and ssljax's initial weights,
converted to this module's state dict, so both sides start from the very same network.

Model: the ssljax ViT (pre-LN blocks, LayerNorm eps 1e-6, exact GELU, separate q/k/v projections,
fixed 2-D sin-cos position embedding (the parent's array), [CLS] pooled after the final LayerNorm)
written in torch, with lightly's `ProjectionHead` (Linear-BN-ReLU-Linear, as ssljax's MLPHead),
`NTXentLoss` and torchvision transforms (RandomResizedCrop, flip, RandomApply(ColorJitter),
RandomGrayscale, RandomApply(GaussianBlur)) with the recipe's parameters; torch AdamW with weight
decay on the kernels only (biases, norms and the [CLS] token excluded, as `ssljax.optim.decay_mask`),
batches from a DataLoader over an endless random sampler, `drop_last`.

Line protocol (the parent interleaves the two frameworks and evaluates both the same way):
  parent -> worker: "train N\\n"        N train steps (data loading included), answers
                                        {"seconds": wall s, "loss": last loss, "step": steps done}
  parent -> worker: "features PATH\\n"  writes {"train": [N, D], "eval": [M, D]} backbone features
                                        (eval mode) of the two eval arrays to PATH (.npz), answers {}
  parent -> worker: "quit\\n"
The first line is {"ready": true, "versions": {...}, "params": n, "torch_threads": t, ...}.

Threads: the process is pinned to the parent's CPUs; torch's intra-op thread count is the faster of
1 and --threads for this model (`pick_threads`, timed at start-up), so the peer gets its better
setting on a loaded machine as on a quiet one.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import _peer  # noqa: E402  (stdlib-only imports: no jax)
from benchmarks.peer_throughput import pin_threads  # noqa: E402


def build_model(recipe: dict, posemb):
  """(backbone, head) torch modules with the parameter names `time_to_accuracy.torch_state_dict` fills."""
  import torch
  from torch import nn
  import torch.nn.functional as F
  from lightly.models.modules.heads import ProjectionHead

  width, depth, heads = recipe["width"], recipe["depth"], recipe["num_heads"]
  p, channels = recipe["patch_size"], recipe["channels"]
  mlp_dim = int(round(width * recipe["mlp_ratio"]))
  eps = 1e-6

  class Attention(nn.Module):
    def __init__(self):
      super().__init__()
      self.query, self.key, self.value = (nn.Linear(width, width) for _ in range(3))
      self.out = nn.Linear(width, width)

    def forward(self, x):
      b, n, _ = x.shape
      split = lambda t: t.view(b, n, heads, width // heads).transpose(1, 2)  # noqa: E731
      o = F.scaled_dot_product_attention(split(self.query(x)), split(self.key(x)),
                                         split(self.value(x)))
      return self.out(o.transpose(1, 2).reshape(b, n, width))

  class MLP(nn.Module):
    def __init__(self):
      super().__init__()
      self.fc1, self.fc2 = nn.Linear(width, mlp_dim), nn.Linear(mlp_dim, width)

    def forward(self, x):
      return self.fc2(F.gelu(self.fc1(x)))

  class Block(nn.Module):
    def __init__(self):
      super().__init__()
      self.norm1, self.attn = nn.LayerNorm(width, eps=eps), Attention()
      self.norm2, self.mlp = nn.LayerNorm(width, eps=eps), MLP()

    def forward(self, x):
      x = x + self.attn(self.norm1(x))
      return x + self.mlp(self.norm2(x))

  class ViT(nn.Module):
    def __init__(self):
      super().__init__()
      self.patch_embed = nn.Conv2d(channels, width, p, stride=p)
      self.cls = nn.Parameter(torch.zeros(1, 1, width))
      self.register_buffer("pos", torch.as_tensor(posemb, dtype=torch.float32)[None],
                           persistent=False)   # fixed sin-cos: not a weight
      self.blocks = nn.ModuleList(Block() for _ in range(depth))
      self.norm = nn.LayerNorm(width, eps=eps)

    def forward(self, images):                      # [N, C, H, W] -> [N, D] ([CLS] features)
      x = self.patch_embed(images).flatten(2).transpose(1, 2) + self.pos
      x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1)
      for block in self.blocks:
        x = block(x)
      return self.norm(x)[:, 0]

  hidden, out = recipe["proj_hidden_dim"], recipe["proj_dim"]
  head = ProjectionHead([(width, hidden, nn.BatchNorm1d(hidden), nn.ReLU()),
                         (hidden, out, None, None)])
  return ViT(), head


def pick_threads(net, criterion, recipe: dict, max_threads: int, reps: int = 3):
  """The faster torch thread count (1 or `max_threads`) for this model's forward + backward.

  `_peer.fastest_torch_threads` on a random batch, without an optimizer step; the weights and BN
  statistics are restored after. Returns (threads, {n: median s}).
  """
  import torch
  b, s, c = recipe["batch_size"], recipe["image_size"], recipe["channels"]
  x = torch.randn(2 * b, c, s, s, generator=torch.Generator().manual_seed(1))
  saved = {k: v.clone() for k, v in net.state_dict().items()}
  net.train()

  def fwd_bwd():
    z = net["head"](net["backbone"](x))
    criterion(z[:b], z[b:]).backward()

  best, medians = _peer.fastest_torch_threads(fwd_bwd, max_threads, reps)
  net.zero_grad(set_to_none=True)
  net.load_state_dict(saved)
  return best, medians


def make_loader(images, recipe: dict):
  """Endless iterator of ([B, 2, C, S, S] float32) batches of two augmented views."""
  import numpy as np
  import torch
  from PIL import Image
  from benchmarks._torch_pipeline_worker import build_transform

  two_views = build_transform(recipe["image_size"], recipe["augment"])
  mode = "L" if images.shape[-1] == 1 else "RGB"

  class Digits(torch.utils.data.Dataset):
    def __len__(self):
      return len(images)

    def __getitem__(self, i):
      img = images[i][..., 0] if mode == "L" else images[i]
      return two_views(Image.fromarray(np.ascontiguousarray(img), mode))

  ds = Digits()
  sampler = torch.utils.data.RandomSampler(ds, num_samples=10 ** 9,
                                           generator=torch.Generator().manual_seed(recipe["seed"]))
  loader = torch.utils.data.DataLoader(ds, batch_size=recipe["batch_size"], sampler=sampler,
                                       drop_last=True, num_workers=recipe["worker_count"],
                                       persistent_workers=recipe["worker_count"] > 0)
  return iter(loader)


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--data", required=True, help=".npz from time_to_accuracy.export_peer_inputs")
  parser.add_argument("--threads", type=int, default=2)
  args = parser.parse_args()
  pin_threads(args.threads)
  import numpy as np
  import torch
  torch.set_num_threads(args.threads)
  torch.set_num_interop_threads(1)
  import lightly
  import torchvision
  from lightly.loss import NTXentLoss

  data = np.load(args.data)
  recipe = json.loads(str(data["recipe"]))
  torch.manual_seed(recipe["seed"])
  backbone, head = build_model(recipe, data["posemb"])
  state = {k[len("w/"):]: torch.as_tensor(data[k]) for k in data.files if k.startswith("w/")}
  net = torch.nn.ModuleDict({"backbone": backbone, "head": head})
  net.load_state_dict(state, strict=True)
  criterion = NTXentLoss(temperature=recipe["temperature"])
  threads, calibration = pick_threads(net, criterion, recipe, args.threads)
  # Weight decay on kernels only, as ssljax.optim.decay_mask (the [CLS] token: no decay).
  decay = [p for n, p in net.named_parameters() if p.ndim > 1 and not n.endswith(".cls")]
  no_decay = [p for n, p in net.named_parameters() if not (p.ndim > 1 and not n.endswith(".cls"))]
  opt = torch.optim.AdamW([{"params": decay}, {"params": no_decay, "weight_decay": 0.0}], lr=0.0,
                          betas=(recipe["b1"], recipe["b2"]), eps=1e-8,
                          weight_decay=recipe["weight_decay"])
  lrs = data["lrs"]
  batches = make_loader(data["train_images"], recipe)
  train_x = torch.as_tensor(data["eval_train_x"]).permute(0, 3, 1, 2).contiguous()
  eval_x = torch.as_tensor(data["eval_eval_x"]).permute(0, 3, 1, 2).contiguous()
  versions = {"torch": torch.__version__, "torchvision": torchvision.__version__,
              "lightly": lightly.__version__, "python": sys.version.split()[0]}
  print(json.dumps({"ready": True, "versions": versions,
                    "params": sum(p.numel() for p in net.parameters()), "torch_threads": threads,
                    "thread_calibration": calibration}), flush=True)
  step, loss = 0, float("nan")
  for line in sys.stdin:
    cmd = line.split()
    if not cmd or cmd[0] == "quit":
      break
    if cmd[0] == "train":
      net.train()
      t0 = time.perf_counter()
      for _ in range(int(cmd[1])):
        views = next(batches)                                   # [B, 2, C, S, S]
        b = views.shape[0]
        x = torch.cat([views[:, 0], views[:, 1]])               # view 1 of all, then view 2
        z = head(backbone(x))
        out = criterion(z[:b], z[b:])
        for group in opt.param_groups:
          group["lr"] = float(lrs[min(step, len(lrs) - 1)])
        opt.zero_grad(set_to_none=True)
        out.backward()
        opt.step()
        step += 1
      loss = float(out.detach())
      seconds = time.perf_counter() - t0
      if not math.isfinite(loss):
        print(f"non-finite loss at step {step}", file=sys.stderr, flush=True)
      print(json.dumps({"seconds": seconds, "loss": loss, "step": step}), flush=True)
    elif cmd[0] == "features":
      net.eval()
      with torch.no_grad():
        feats = {name: torch.cat([backbone(x[i:i + 256]) for i in range(0, len(x), 256)]).numpy()
                 for name, x in (("train", train_x), ("eval", eval_x))}
      np.savez(cmd[1], **feats)
      print(json.dumps({}), flush=True)


if __name__ == "__main__":
  main()
