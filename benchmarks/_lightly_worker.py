"""The lightly (PyTorch) side of benchmarks/peer_throughput.py; runs under .venv-peer/bin/python.

  .venv-peer/bin/python benchmarks/_lightly_worker.py --model resnet18_simclr --batch 32 --threads 2

Builds one train step from lightly's SimCLR / DINO building blocks with the same sizes, optimizer and
fp32 synthetic in-memory data as the ssljax side, then serves a tiny line protocol on stdin/stdout so
that the parent can interleave the two frameworks (A B A B ...):

  parent -> worker: "run N\\n"    worker runs N train steps, answers one JSON line {"times": [s, ...]}
  parent -> worker: "quit\\n"
The first line the worker prints is {"ready": true, "versions": {...}, "params": n} once the model is
built, with the torch intra-op thread count in use: the faster of 1 and --threads for this step,
timed at start-up (`_peer.fastest_torch_threads`; --fixed-threads keeps --threads), so that the
peer gets its better setting on a loaded machine. Only the step itself is timed (forward,
backward, optimizer, EMA teacher update); the batch is a fixed random tensor made once (no
augmentation, no data loading).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _pin(threads: int) -> None:
  """Same thread budget as the ssljax side: the first `threads` CPUs and `threads` intra-op threads."""
  for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[var] = str(threads)
  cpus = sorted(os.sched_getaffinity(0))[:threads]
  os.sched_setaffinity(0, cpus)


def _vit_tiny(size: int, tiny: bool = False):
  """torchvision's ViT-Tiny/4 (width 192, depth 12, 3 heads; tiny: 32, 1, 2) with [CLS] features."""
  from torch import nn
  from torchvision.models.vision_transformer import VisionTransformer
  width, depth, heads = (32, 1, 2) if tiny else (192, 12, 3)
  net = VisionTransformer(image_size=size, patch_size=4, num_layers=depth, num_heads=heads,
                          hidden_dim=width, mlp_dim=4 * width)
  net.heads = nn.Identity()
  return net


def dino_parts(batch: int, size: int, tiny: bool = False, masked_vit: bool = False):
  """(student, teacher, criterion, optimizer) of the DINO ViT-Tiny/4 recipe, in train mode.

  `masked_vit`: the backbone inside lightly's `MaskedVisionTransformerTorchvision`, which
  interpolates the position embedding for crops of another size (multi-crop).
  """
  import torch
  from lightly.loss import DINOLoss
  from lightly.models.modules import DINOProjectionHead, MaskedVisionTransformerTorchvision
  from lightly.models.utils import deactivate_requires_grad
  from torch import nn

  width = 32 if tiny else 192      # the ViT-Tiny width (_vit_tiny), the head's input
  out_dim, hidden, bottleneck = (64, 32, 16) if tiny else (65536, 2048, 256)

  class Student(nn.Module):
    def __init__(self):
      super().__init__()
      vit = _vit_tiny(size, tiny)
      self.backbone = MaskedVisionTransformerTorchvision(vit=vit) if masked_vit else vit
      # DINO head (Caron et al., 2021): 3 layers, hidden 2048, bottleneck 256, weight-normed last
      # layer with the gain fixed (norm_last_layer=True), no BN; last layer never frozen here.
      self.head = DINOProjectionHead(width, hidden, bottleneck, out_dim, batch_norm=False,
                                     freeze_last_layer=-1, norm_last_layer=True)

    def forward(self, x):
      return self.head(self.backbone(x))

  student = Student()
  # (copy.deepcopy fails on the head's weight-normalised layer: a fresh copy with the same weights.)
  teacher = Student()
  teacher.load_state_dict(student.state_dict())
  deactivate_requires_grad(teacher)
  criterion = DINOLoss(output_dim=out_dim, warmup_teacher_temp=0.04, teacher_temp=0.04,
                       warmup_teacher_temp_epochs=0, student_temp=0.1, center_momentum=0.9)
  # As configs/dino_vit_s16_imagenet.py: AdamW lr 5e-4 x batch/256, wd 0.04 (not on biases / norms /
  # tokens), gradient clipping 3.0 on the global norm (dino_update).
  tokens = ("pos_embedding", "class_token")
  decay, no_decay = [], []
  for n, p in student.named_parameters():
    (decay if p.ndim > 1 and not any(t in n for t in tokens) else no_decay).append(p)
  opt = torch.optim.AdamW([{"params": decay}, {"params": no_decay, "weight_decay": 0.0}],
                          lr=5e-4 * batch / 256, betas=(0.9, 0.999), weight_decay=0.04)
  student.train()
  teacher.train()
  return student, teacher, criterion, opt


def dino_update(loss, opt, student, teacher):
  """DINO's update after the loss: backward, global-norm clipping at 3.0, AdamW step, the
  teacher's EMA (m 0.996); returns the loss."""
  import torch
  from lightly.models.utils import update_momentum
  opt.zero_grad(set_to_none=True)
  loss.backward()
  torch.nn.utils.clip_grad_norm_(student.parameters(), 3.0)
  opt.step()
  update_momentum(student, teacher, m=0.996)
  return loss


def build(model: str, batch: int, size: int, tiny: bool = False, cifar_stem: bool = True):
  """(step_fn, n_params) for `model`: a train step ('resnet18_simclr', 'vit_tiny_dino') or the
  ViT backbone alone ('vit_tiny_backbone_fwd' / '_grad', for peer_throughput --breakdown).
  `step_fn(views=None)` trains on `views` ([2, B, 3, S, S]) or, by default, a fixed random batch;
  `cifar_stem=False` keeps torchvision's ImageNet stem on the ResNet."""
  import torch
  from torch import nn
  import torchvision

  torch.manual_seed(0)
  views = torch.randn(2, batch, 3, size, size)   # two "augmented" views, NCHW, fp32

  if model == "resnet18_simclr":
    from lightly.loss import NTXentLoss
    from lightly.models.modules import SimCLRProjectionHead
    from lightly.utils.lars import LARS

    backbone = torchvision.models.resnet18(num_classes=10)
    if cifar_stem:   # (SimCLR paper, appendix B.9): 3x3 stride-1 first conv, no max-pool.
      backbone.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
      backbone.maxpool = nn.Identity()
    backbone.fc = nn.Identity()
    # SimCLR v1 projection: 512 -> 2048 (BN, ReLU) -> 128, as ssljax's MLPHead((2048,), 128).
    head = SimCLRProjectionHead(512, 2048, 128)
    net = nn.Sequential(backbone, head)
    criterion = NTXentLoss(temperature=0.5)
    # As configs/simclr_resnet18_cifar10.py: LARS, lr 0.3 x batch/256, momentum 0.9, wd 1e-6,
    # trust coefficient 1e-3; biases and normalisation params excluded from decay and adaptation.
    decay = [p for p in net.parameters() if p.ndim > 1]
    no_decay = [p for p in net.parameters() if p.ndim <= 1]
    # (lightly's LARS skips the trust ratio of a group with weight_decay 0.)
    opt = LARS([{"params": decay}, {"params": no_decay, "weight_decay": 0.0}], lr=0.3 * batch / 256, momentum=0.9, weight_decay=1e-6, trust_coefficient=1e-3)
    net.train()

    def step(v=views):
      x = v.reshape(2 * batch, 3, size, size)
      z = net(x)
      loss = criterion(z[:batch], z[batch:])
      opt.zero_grad(set_to_none=True)
      loss.backward()
      opt.step()
      return loss

    return step, sum(p.numel() for p in net.parameters())

  if model.startswith("resnet18_conv_"):      # peer_throughput --convs: one convolution alone
    from benchmarks import _peer
    side, channels = _peer.conv_part_shape(model, tiny)
    xs, ks = _peer.conv_part_inputs(2 * batch, side, channels)        # NHWC, HWIO: the ssljax side's
    x = torch.from_numpy(xs).permute(0, 3, 1, 2).contiguous().requires_grad_(True)   # NCHW
    conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
    with torch.no_grad():
      conv.weight.copy_(torch.from_numpy(ks).permute(3, 2, 0, 1))                    # OIHW

    def step():
      x.grad = None
      conv.zero_grad(set_to_none=True)
      loss = (conv(x) ** 2).sum()
      loss.backward()
      return loss

    return step, conv.weight.numel()

  if model.startswith("vit_tiny_backbone"):   # peer_throughput --breakdown: the backbone alone
    net = _vit_tiny(size, tiny)
    net.train()
    x = views.reshape(2 * batch, 3, size, size)

    def step():
      if model.endswith("_fwd"):
        with torch.no_grad():
          return net(x).sum()
      net.zero_grad(set_to_none=True)
      loss = (net(x) ** 2).sum()
      loss.backward()
      return loss

    return step, sum(p.numel() for p in net.parameters())

  if model == "vit_tiny_dino":
    student, teacher, criterion, opt = dino_parts(batch, size, tiny)

    def step():
      x = views.reshape(2 * batch, 3, size, size)
      with torch.no_grad():
        t = teacher(x)
      s = student(x)
      loss = criterion([t[:batch], t[batch:]], [s[:batch], s[batch:]], epoch=0)
      return dino_update(loss, opt, student, teacher)

    return step, sum(p.numel() for p in student.parameters())

  raise ValueError(f"model={model!r}; expected resnet18_simclr, vit_tiny_dino, "
                   "vit_tiny_backbone_fwd / _grad or resnet18_conv_<side>x<channels>")


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--model", required=True)
  parser.add_argument("--batch", type=int, required=True)
  parser.add_argument("--size", type=int, default=32)
  parser.add_argument("--threads", type=int, default=2)
  parser.add_argument("--tiny", action="store_true", help="tiny ViT/head, for a smoke test")
  parser.add_argument("--fixed-threads", action="store_true",
                      help="always use --threads torch threads (no start-up pick of 1 vs --threads)")
  args = parser.parse_args()
  _pin(args.threads)
  import torch
  torch.set_num_threads(args.threads)
  torch.set_num_interop_threads(1)
  import lightly
  import torchvision

  step, n_params = build(args.model, args.batch, args.size, args.tiny)
  calibration = {}
  if not args.fixed_threads and args.threads > 1:
    from benchmarks import _peer
    _, calibration = _peer.fastest_torch_threads(step, args.threads, reps=2)   # (also warms up)
  versions = {"torch": torch.__version__, "torchvision": torchvision.__version__,
              "lightly": lightly.__version__, "python": sys.version.split()[0]}
  print(json.dumps({"ready": True, "versions": versions, "params": n_params,
                    "threads": torch.get_num_threads(),
                    "thread_medians_s": {str(n): t for n, t in calibration.items()},
                    "cpus": sorted(os.sched_getaffinity(0))}),
        flush=True)
  for line in sys.stdin:
    cmd = line.split()
    if not cmd or cmd[0] == "quit":
      break
    times, losses = [], []
    for _ in range(int(cmd[1])):
      t0 = time.perf_counter()
      loss = step()
      times.append(time.perf_counter() - t0)
      losses.append(float(loss.detach()))
    print(json.dumps({"times": times, "loss": losses[-1]}), flush=True)


if __name__ == "__main__":
  main()
