"""The lightly (PyTorch) side of benchmarks/end_to_end_peer.py; runs under .venv-peer/bin/python.

  .venv-peer/bin/python benchmarks/_lightly_e2e_worker.py --recipe simclr_r18 --folder F/train \
      --size 32 --batch 32 --aug '{...}' --threads 2

A training loop as a lightly user writes it: `torchvision.datasets.ImageFolder` with lightly's own
view transform (`SimCLRTransform` / `DINOTransform`, given the ssljax recipe's augmentation values),
a `DataLoader` (0 or more workers, endless random sampler), and one train step per batch:
- simclr_r18: the step of benchmarks/_lightly_worker.py (CIFAR-stem ResNet-18 below 64 px, the
  ImageNet stem at 64 px and above; SimCLRProjectionHead, NTXentLoss, LARS);
- dino_vit_tiny: ViT-Tiny/4 (torchvision's VisionTransformer inside lightly's
  `MaskedVisionTransformerTorchvision`, which interpolates the position embedding for the local
  crops), DINOProjectionHead, DINOLoss, a momentum teacher on the global crops, the student on the
  global and the local crops (one forward per crop size), AdamW, clipping 3.0.

Line protocol:
  parent -> worker: "run N SKIP\\n"   SKIP untimed steps, then N timed ones (batch + step each);
                                      answers {"seconds", "images", "loss"}
  parent -> worker: "step N SKIP\\n"  the same with the step alone, on one batch loaded once
  parent -> worker: "quit\\n"
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks._torch_pipeline_worker import endless_loader  # noqa: E402
from benchmarks.peer_throughput import pin_threads  # noqa: E402


def simclr_transform(size: int, aug: dict):
  """lightly's SimCLRTransform with ssljax's augmentation values (jitter = strength x factor)."""
  from lightly.transforms import SimCLRTransform
  return SimCLRTransform(
      input_size=size, cj_prob=aug["color_jitter_prob"], cj_strength=1.0,
      cj_bright=aug["brightness"], cj_contrast=aug["contrast"], cj_sat=aug["saturation"],
      cj_hue=aug["hue"], min_scale=aug["crop_scale"][0], random_gray_scale=aug["grayscale_prob"],
      gaussian_blur=aug["blur_prob"], sigmas=tuple(aug["blur_sigma"]), hf_prob=aug["hflip_prob"],
      normalize={"mean": _rgb(aug["mean"]), "std": _rgb(aug["std"])})


def dino_transform(size: int, aug: dict):
  """lightly's DINOTransform with the ssljax recipe's crops, per-view blur and solarisation."""
  from lightly.transforms import DINOTransform
  return DINOTransform(
      global_crop_size=size, global_crop_scale=tuple(aug["global_crops_scale"]),
      local_crop_size=aug["local_size"], local_crop_scale=tuple(aug["local_crops_scale"]),
      n_local_views=aug["local_crops"], hf_prob=aug["hflip_prob"], cj_prob=aug["color_jitter_prob"],
      cj_strength=1.0, cj_bright=aug["brightness"], cj_contrast=aug["contrast"],
      cj_sat=aug["saturation"], cj_hue=aug["hue"], random_gray_scale=aug["grayscale_prob"],
      gaussian_blur=tuple(aug["global_view_blur_prob"]) + (aug["local_view_blur_prob"],),
      sigmas=tuple(aug["blur_sigma"]), solarization_prob=aug["global_view_solarize_prob"][1],
      normalize={"mean": _rgb(aug["mean"]), "std": _rgb(aug["std"])})


def _rgb(values) -> list:
  values = [float(v) for v in values]
  return values * 3 if len(values) == 1 else values


def dino_vit_tiny_step(batch: int, size: int, tiny: bool = False):
  """step(views) for DINO ViT-Tiny/4 multi-crop: views = [global 1, global 2, local 1, ...]."""
  import torch

  from benchmarks._lightly_worker import dino_parts, dino_update
  torch.manual_seed(0)
  student, teacher, criterion, opt = dino_parts(batch, size, tiny, masked_vit=True)

  def step(views):
    globals_, locals_ = views[:2], views[2:]
    with torch.no_grad():
      t = teacher(torch.cat(globals_)).chunk(2)
    s = list(student(torch.cat(globals_)).chunk(2))
    if locals_:
      s += list(student(torch.cat(locals_)).chunk(len(locals_)))
    return dino_update(criterion(list(t), s, epoch=0), opt, student, teacher)

  return step


def simclr_r18_step(batch: int, size: int, tiny: bool = False):
  """step(views) of benchmarks/_lightly_worker.py's SimCLR ResNet-18 (ImageNet stem at >= 64 px)."""
  from benchmarks._lightly_worker import build
  step, _ = build("resnet18_simclr", batch, size, tiny=tiny, cifar_stem=size < 64)
  return step


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--recipe", required=True, choices=["simclr_r18", "dino_vit_tiny"])
  parser.add_argument("--folder", required=True)
  parser.add_argument("--size", type=int, required=True)
  parser.add_argument("--batch", type=int, required=True)
  parser.add_argument("--workers", type=int, default=0)
  parser.add_argument("--threads", type=int, default=2)
  parser.add_argument("--aug", required=True, help="JSON: the ssljax recipe's augmentation values")
  parser.add_argument("--tiny", action="store_true", help="tiny networks, for a smoke test")
  args = parser.parse_args()
  pin_threads(args.threads)
  import lightly
  import torch
  import torchvision
  torch.set_num_interop_threads(1)
  aug = json.loads(args.aug)
  if args.recipe == "simclr_r18":
    transform, step = simclr_transform(args.size, aug), simclr_r18_step(args.batch, args.size,
                                                                        args.tiny)
  else:
    transform, step = dino_transform(args.size, aug), dino_vit_tiny_step(args.batch, args.size,
                                                                          args.tiny)
  loader = endless_loader(args.folder, transform, args.batch, args.workers)

  def next_views():
    views, _ = next(loader)
    return torch.stack(views) if args.recipe == "simclr_r18" else views   # [2, B, 3, S, S]

  def one_step():
    return step(next_views())

  fixed = next_views()

  def fixed_step():                       # the step alone: one batch, loaded once
    return step(fixed)

  # torch's better intra-op thread count (1 or --threads) for the whole loop, as the peer worker.
  from benchmarks import _peer
  threads, calibration = ((1, {}) if args.threads == 1 else
                          _peer.fastest_torch_threads(one_step, args.threads, reps=2))
  versions = {"torch": torch.__version__, "torchvision": torchvision.__version__,
              "lightly": lightly.__version__, "python": sys.version.split()[0]}
  print(json.dumps({"ready": True, "versions": versions, "threads": threads,
                    "thread_medians_s": {str(n): t for n, t in calibration.items()},
                    "cpus": sorted(os.sched_getaffinity(0))}), flush=True)
  for line in sys.stdin:
    cmd = line.split()
    if not cmd or cmd[0] == "quit":
      break
    fn = fixed_step if cmd[0] == "step" else one_step
    n, skip = int(cmd[1]), int(cmd[2])
    for _ in range(skip):
      fn()
    t0 = time.perf_counter()
    for _ in range(n):
      loss = fn()
    seconds = time.perf_counter() - t0
    print(json.dumps({"seconds": seconds, "images": n * args.batch, "loss": float(loss.detach())}),
          flush=True)


if __name__ == "__main__":
  main()
