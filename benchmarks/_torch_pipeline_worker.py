"""The torchvision side of benchmarks/data_pipeline_peer.py; runs under .venv-peer/bin/python.

  .venv-peer/bin/python benchmarks/_torch_pipeline_worker.py --folder F --size 32 --batch 64 \\
      --workers 2 --threads 2 --aug '{"crop_scale": [0.08, 1.0], ...}' [--blur pil]

Reads the image folder with `torchvision.datasets.ImageFolder` (PIL decode, RGB) and makes two views
per image with classic `torchvision.transforms` on PIL images (what lightly's transforms build on),
with the augmentation parameters the parent passes (ssljax's default augment config):
RandomResizedCrop(scale, ratio, bilinear, antialias) -> RandomHorizontalFlip -> RandomApply(ColorJitter)
-> RandomGrayscale -> RandomApply(GaussianBlur(kernel 10% of the side, odd, >= 3; sigma range))
[-> RandomSolarize] -> ToTensor -> Normalize; with --blur pil the blur is lightly's `GaussianBlur`
(PIL's ImageFilter, same probability and sigma range). The main process runs torch with one
intra-op thread (--torch-threads; DataLoader workers always use one): on this shared 2-core machine
two threads made the small per-image tensor ops (ToTensor, Normalize, the blur) 20-70x slower.
Batches come from a `torch.utils.data.DataLoader` with `num_workers` workers over an endless random
sampler (like grain's shuffled `repeat()`: no epoch boundary), `drop_last`, default collate ->
[B, 2, 3, S, S] float32.

Line protocol (the parent interleaves the two sides):
  parent -> worker: "run SKIP SECONDS\\n"   worker takes at least SKIP batches untimed, and more until
                                            one is not ready at once (`drain`: what its loader had
                                            prefetched is gone), then batches until SECONDS have
                                            passed; answers {"images": n, "seconds": t}
  parent -> worker: "quit\\n"
The first line is {"ready": true, "versions": {...}, "aug": {...}} once the first batch came out.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.peer_throughput import pin_threads  # noqa: E402  (stdlib-only imports: no jax)


def drain(it, min_batches: int, fast_s: float = 0.02, max_batches: int = 64) -> int:
  """Takes batches untimed until one is not ready at once (it took >= `fast_s`), at least
  `min_batches`: whatever a loader prefetched while it was not being read is gone, and timing starts
  in the steady state. Returns the number taken."""
  n = 0
  while n < max_batches:
    t0 = time.perf_counter()
    next(it)
    n += 1
    if n >= min_batches and time.perf_counter() - t0 >= fast_s:
      return n
  return n


def blur_kernel_size(size: int) -> int:
  """ssljax's blur kernel: 10% of the view side, made odd, at least 3 (23 for 224 px)."""
  k = max(3, int(0.1 * size))
  return k + 1 - k % 2


def build_transform(size: int, aug: dict, blur: str = "torchvision"):
  """The torchvision two-view transform with ssljax's augmentation parameters `aug`.

  `blur`: 'torchvision' (`T.GaussianBlur` with ssljax's kernel size: the same kernel) or 'pil'
  (lightly's `GaussianBlur`: PIL's `ImageFilter.GaussianBlur(radius=sigma)`, same probability and
  sigma range, PIL's own kernel extent; what lightly's SimCLRTransform uses, and faster).
  """
  from torchvision import transforms as T
  if blur == "torchvision":
    blur_op = T.RandomApply([T.GaussianBlur(blur_kernel_size(size), sigma=tuple(aug["blur_sigma"]))],
                            p=aug["blur_prob"])
  elif blur == "pil":
    from lightly.transforms import GaussianBlur
    blur_op = GaussianBlur(prob=aug["blur_prob"], sigmas=tuple(aug["blur_sigma"]))
  else:
    raise ValueError(f"blur={blur!r}; expected 'torchvision' or 'pil'")
  ops = [
      T.RandomResizedCrop(size, scale=tuple(aug["crop_scale"]), ratio=tuple(aug["crop_ratio"]),
                          interpolation=T.InterpolationMode.BILINEAR, antialias=True),
      T.RandomHorizontalFlip(p=aug["hflip_prob"]),
      T.RandomApply([T.ColorJitter(aug["brightness"], aug["contrast"], aug["saturation"],
                                   aug["hue"])], p=aug["color_jitter_prob"]),
      T.RandomGrayscale(p=aug["grayscale_prob"]),
      blur_op,
  ]
  if aug["solarize_prob"] > 0:
    ops.append(T.RandomSolarize(int(round(255 * aug["solarize_threshold"])), p=aug["solarize_prob"]))
  ops += [T.ToTensor(), T.Normalize(tuple(aug["mean"]), tuple(aug["std"]))]
  return TwoViews(T.Compose(ops))


class TwoViews:
  """image -> [2, C, S, S]: two independent draws of `view`."""

  def __init__(self, view):
    self.view = view

  def __call__(self, image):
    import torch
    return torch.stack([self.view(image), self.view(image)])


def make_loader(folder: str, size: int, batch: int, workers: int, aug: dict,
                blur: str = "torchvision"):
  """An endless iterator of ([B, 2, 3, S, S] float32, [B] int64) batches."""
  return endless_loader(folder, build_transform(size, aug, blur), batch, workers)


def endless_loader(folder: str, transform, batch: int, workers: int):
  """An endless iterator of (transform(image) batched, [B] int64) over the image folder."""
  import torch
  from torchvision import datasets
  ds = datasets.ImageFolder(folder, transform=transform)
  sampler = torch.utils.data.RandomSampler(ds, replacement=False, num_samples=10 ** 9,
                                           generator=torch.Generator().manual_seed(0))
  loader = torch.utils.data.DataLoader(ds, batch_size=batch, sampler=sampler, drop_last=True,
                                       num_workers=workers, persistent_workers=workers > 0)
  return iter(loader)


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--folder", required=True)
  parser.add_argument("--size", type=int, required=True)
  parser.add_argument("--batch", type=int, required=True)
  parser.add_argument("--workers", type=int, required=True)
  parser.add_argument("--threads", type=int, default=2)
  parser.add_argument("--aug", required=True, help="JSON: ssljax's augment config")
  parser.add_argument("--blur", default="torchvision", choices=["torchvision", "pil"])
  parser.add_argument("--torch-threads", type=int, default=1,
                      help="intra-op threads of the main process (DataLoader workers use 1)")
  args = parser.parse_args()
  pin_threads(args.threads)
  import torch
  import torchvision
  import PIL
  torch.set_num_threads(args.torch_threads)
  aug = json.loads(args.aug)
  it = make_loader(args.folder, args.size, args.batch, args.workers, aug, args.blur)
  views, _ = next(it)
  assert tuple(views.shape) == (args.batch, 2, 3, args.size, args.size), views.shape
  versions = {"torch": torch.__version__, "torchvision": torchvision.__version__,
              "pillow": PIL.__version__, "python": sys.version.split()[0]}
  print(json.dumps({"ready": True, "versions": versions, "aug": aug, "blur": args.blur,
                    "blur_kernel": blur_kernel_size(args.size),
                    "torch_threads": torch.get_num_threads()}), flush=True)
  for line in sys.stdin:
    cmd = line.split()
    if not cmd or cmd[0] == "quit":
      break
    skip, seconds = int(cmd[1]), float(cmd[2])
    drain(it, skip)
    n, t0 = 0, time.perf_counter()
    while True:
      views, _ = next(it)
      n += views.shape[0]
      elapsed = time.perf_counter() - t0
      if elapsed >= seconds:
        break
    print(json.dumps({"images": n, "seconds": elapsed}), flush=True)


if __name__ == "__main__":
  main()
