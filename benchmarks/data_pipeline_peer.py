"""Data pipeline vs torchvision: two-view augmented images/s, side by side (issue #10, item 2).

  bash benchmarks/peer_env.sh                        # once: .venv-peer/ with torch, torchvision
  python -m benchmarks.data_pipeline_peer            # full table (~3-4 min), writes its BENCHMARKS.md section
  python -m benchmarks.data_pipeline_peer --quick    # smoke run: 32x32 only, short chunks, no write

An image folder of random-content JPEGs (class sub-folders, made with Pillow in a temporary directory,
as benchmarks/data_loading.py makes them) at 32x32 and at 224x224 is read by:

- ssljax: `ssljax.data.pipeline.train_dataset(ImageFolderSource(folder), ViewSpec(2 crops), aug)`,
  the grain pipeline the Trainer uses (decode -> two augmented views -> batch), `worker_count` grain
  `mp_prefetch` processes (0: the main process, with a read thread);
- torchvision: `torchvision.datasets.ImageFolder` + classic `torchvision.transforms` on PIL images +
  `torch.utils.data.DataLoader(num_workers=...)`, in .venv-peer (benchmarks/_torch_pipeline_worker.py),
  once with torchvision's GaussianBlur (ssljax's kernel size: the same augmentation) and once with
  lightly's PIL-based GaussianBlur (same probability and sigma range; faster at 224 px),

with the SAME augmentations, namely ssljax's default augment config (`base_config('simclr')`, the one
benchmarks/data_loading.py times): RandomResizedCrop(scale (0.08, 1), ratio (3/4, 4/3), bilinear,
antialiased), horizontal flip p 0.5, colour jitter (0.4, 0.4, 0.4, 0.1) p 0.8, grayscale p 0.2,
Gaussian blur p 0.5 with sigma in (0.1, 2) and a kernel of 10% of the side (odd, >= 3), normalise; the
values are read from ssljax's config and passed to the worker (`torch_aug_params`), not retyped. Same
batch, same worker count (0 and 2), both processes pinned to the same CPUs (`pin_threads`).

Timing: after a warm-up, the sides run in chunks whose order rotates every round (ssljax, torch,
torch_pil; torch, torch_pil, ssljax; ...) so that the load of this shared machine hits all alike.
While one side runs, the other sides' worker processes are stopped (SIGSTOP / SIGCONT): otherwise
they refill their prefetch buffers on its CPUs (grain's `mp_prefetch` holds 8+ batches). A chunk
first takes batches untimed until one is not ready at once (`drain`: the prefetched ones are gone),
then counts images for about `--chunk` seconds; the table shows the median of the chunk rates and
the ratios ssljax / torch.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from typing import Any, Callable, Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import _peer  # noqa: E402
from benchmarks import report  # noqa: E402
from benchmarks.data_loading import make_jpeg_folder  # noqa: E402
from benchmarks.peer_throughput import PEER_PYTHON, pin_threads  # noqa: E402
from benchmarks._torch_pipeline_worker import drain  # noqa: E402

ROOT = report.ROOT
WORKER = os.path.join(ROOT, "benchmarks", "_torch_pipeline_worker.py")
SECTION = "Data pipeline vs torchvision"
# The torch sides: torchvision's GaussianBlur (ssljax's kernel: the same augmentation) and lightly's
# PIL-based GaussianBlur (same probability and sigma range; what lightly's SimCLRTransform uses).
TORCH_SIDES = ("torch", "torch_pil")
TORCH_LABELS = {"torch": "torchvision", "torch_pil": "torchvision + PIL blur"}
BLUR = {"torch": "torchvision", "torch_pil": "pil"}
# (image side, images in the folder, batch size)
CASES = ((32, 512, 64), (224, 256, 16))
# The augment keys the torch side needs (all of ssljax's augment config).
AUG_KEYS = ("crop_scale", "crop_ratio", "hflip_prob", "color_jitter_prob", "brightness", "contrast",
            "saturation", "hue", "grayscale_prob", "blur_prob", "blur_sigma", "solarize_prob",
            "solarize_threshold", "mean", "std")


def ssljax_aug_config():
  """ssljax's augment config for this benchmark: the SimCLR default (as benchmarks/data_loading.py)."""
  from ssljax.config import base_config
  return base_config(method="simclr", model="resnet").data.augment


def torch_aug_params(aug=None) -> dict[str, Any]:
  """ssljax's augment config as the plain JSON dict the torch worker builds its transforms from."""
  aug = ssljax_aug_config() if aug is None else aug
  out = {}
  for key in AUG_KEYS:
    v = aug[key]
    out[key] = [float(x) for x in v] if isinstance(v, (tuple, list)) else float(v)
  return out


def skip_batches(workers: int) -> int:
  """Batches taken untimed at the start of a chunk at least (then more until one is not ready at
  once: `drain`)."""
  return 1 + workers


def _children(pid: int) -> list[int]:
  """All descendant process ids of `pid` (from /proc)."""
  out, todo = [], [pid]
  while todo:
    p = todo.pop()
    try:
      for tid in os.listdir(f"/proc/{p}/task"):
        with open(f"/proc/{p}/task/{tid}/children") as f:
          kids = [int(x) for x in f.read().split()]
        out += kids
        todo += kids
    except (FileNotFoundError, ProcessLookupError, PermissionError):
      continue
  return out


def _signal(pids, sig) -> None:
  for pid in pids:
    try:
      os.kill(pid, sig)
    except ProcessLookupError:
      pass


def _state(pid: int) -> str:
  """The process state letter from /proc/pid/stat ('T': stopped), '' when it is gone."""
  try:
    with open(f"/proc/{pid}/stat") as f:
      return f.read().rsplit(")", 1)[1].split()[0]
  except (FileNotFoundError, ProcessLookupError, IndexError):
    return ""


def _stop(pids, timeout: float = 2.0) -> None:
  """SIGSTOP `pids` and wait (up to `timeout`) until they are stopped: the signal is asynchronous."""
  _signal(pids, signal.SIGSTOP)
  deadline = time.perf_counter() + timeout
  while any(_state(p) not in ("T", "t", "", "Z", "X") for p in pids):
    if time.perf_counter() > deadline:
      return
    time.sleep(0.001)


class SsljaxPipeline:
  """ssljax's grain two-view pipeline over an image folder; `run(skip, seconds)` -> (images, s)."""

  def __init__(self, folder: str, size: int, batch: int, workers: int, aug=None):
    from ssljax.data import pipeline
    from ssljax.data.augment import ViewSpec
    from ssljax.data.sources import ImageFolderSource
    aug = ssljax_aug_config() if aug is None else aug
    spec = ViewSpec(global_crops=2, global_size=size, global_scale=tuple(aug.crop_scale))
    self.batch = batch
    self.ds = pipeline.train_dataset(ImageFolderSource(folder), spec, aug, seed=0,
                                     local_batch_size=batch, worker_count=workers)
    self.it = iter(self.ds)
    first = next(self.it)   # worker start-up, not timed
    self.shape = tuple(first["global"].shape)
    if self.shape != (batch, 2, size, size, 3):
      raise AssertionError(f"ssljax batch shape {self.shape}")

  def run(self, skip: int, seconds: float) -> tuple[int, float]:
    drain(self.it, skip)
    n, t0 = 0, time.perf_counter()
    while True:
      n += next(self.it)["global"].shape[0]
      elapsed = time.perf_counter() - t0
      if elapsed >= seconds:
        return n, elapsed

  def pids(self, exclude=()) -> list[int]:
    """This process's grain worker processes (its other children, in `exclude`, left out)."""
    skip = set(exclude)
    out = []
    for pid in _children(os.getpid()):
      if pid in skip:
        continue
      try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
          if b"resource_tracker" in f.read():
            continue
      except FileNotFoundError:
        continue
      out.append(pid)
    return out

  def close(self) -> None:
    del self.it, self.ds


class TorchPipeline(_peer.LineWorker):
  """benchmarks/_torch_pipeline_worker.py under the peer venv, driven line by line."""

  def __init__(self, folder: str, size: int, batch: int, workers: int, threads: int,
               aug: dict[str, Any], blur: str = "torchvision", python: str = PEER_PYTHON):
    cmd = [python, WORKER, "--folder", folder, "--size", str(size), "--batch", str(batch),
           "--workers", str(workers), "--threads", str(threads), "--aug", json.dumps(aug),
           "--blur", blur]
    super().__init__(cmd, "torch pipeline worker")

  def pids(self) -> list[int]:
    """The worker process and its DataLoader workers."""
    return [self.proc.pid] + _children(self.proc.pid)

  def run(self, skip: int, seconds: float) -> tuple[int, float]:
    out = self._ask(f"run {skip} {seconds}")
    return out["images"], out["seconds"]


def interleave(runners: dict[str, Callable[[int, float], tuple[int, float]]], skip: int,
               rounds: int, seconds: float, warmup_s: float,
               pause: dict[str, Callable[[], list[int]]] | None = None) -> dict[str, list[float]]:
  """Warms each side up, then `rounds` x (one chunk of each side; the order rotates every round, so
  with two sides it alternates A B, B A, ...). Returns each side's chunk rates (images/s).

  `pause`: side -> its process ids; while one side runs, the others' processes are stopped
  (SIGSTOP, then SIGCONT), so that their workers do not refill their prefetch buffers on its CPUs.
  """
  pause = pause or {}

  def chunk(name, secs):
    stopped = [pid for other, pids in pause.items() if other != name for pid in pids()]
    _stop(stopped)
    try:
      return runners[name](skip, secs)
    finally:
      _signal(stopped, signal.SIGCONT)

  for name in runners:
    chunk(name, warmup_s)
  rates = {name: [] for name in runners}
  names = list(runners)
  for r in range(rounds):
    k = r % len(names)
    for name in names[k:] + names[:k]:
      n, t = chunk(name, seconds)
      rates[name].append(n / t)
  return rates


def summarize(size: int, batch: int, workers: int, rates: dict[str, list[float]]) -> dict[str, Any]:
  """Median images/s of each side and the ratio ssljax / each torch side."""
  row = {"size": size, "batch": batch, "workers": workers, "rates": rates}
  for side in rates:
    row[f"{side}_ips"] = statistics.median(rates[side])
  for side in TORCH_SIDES:
    if side in rates:
      row[f"ratio_{side}"] = row["ssljax_ips"] / row[f"{side}_ips"]
  row["chunks"] = min(len(v) for v in rates.values())
  return row


def format_table(rows: Sequence[dict[str, Any]]) -> str:
  """Markdown table of summarized rows (a torch side that did not run shows '-')."""
  header = ["images", "batch", "workers (each side)", "ssljax grain img/s"]
  for side in TORCH_SIDES:
    header += [f"{TORCH_LABELS[side]} img/s", f"ratio ssljax/{side}"]
  header.append("chunks (each)")
  body = []
  for r in rows:
    line = [f"{r['size']}x{r['size']} JPEG", r["batch"], r["workers"], f"{r['ssljax_ips']:.1f}"]
    for side in TORCH_SIDES:
      line += ([f"{r[f'{side}_ips']:.1f}", f"{r[f'ratio_{side}']:.2f}x"] if f"{side}_ips" in r
               else ["-", "-"])
    body.append(line + [r["chunks"]])
  return report.markdown_table(header, body)


def format_chunks(rows: Sequence[dict[str, Any]]) -> str:
  """One line per cell: every side's chunk rates (images/s), in time order."""
  return "\n".join(
      f"- {r['size']}x{r['size']}, {r['workers']} workers: " + "; ".join(
          f"{side} {', '.join(f'{x:.0f}' for x in rates)}" for side, rates in r["rates"].items())
      for r in rows)


def measure(folder: str, size: int, batch: int, workers: int, threads: int, rounds: int,
            seconds: float, warmup_s: float, sides: Sequence[str] = TORCH_SIDES,
            log=print) -> tuple[dict[str, Any], dict]:
  """One table row: ssljax's pipeline and the torch ones on `folder`, interleaved."""
  aug = torch_aug_params()
  peers = {}
  try:
    for side in sides:    # first: fails fast without the peer env
      peers[side] = TorchPipeline(folder, size, batch, workers, threads, aug, BLUR[side])
    ours = SsljaxPipeline(folder, size, batch, workers)
    try:
      torch_pids = lambda: [q for p in peers.values() for q in p.pids()]  # noqa: E731
      pause = {"ssljax": lambda: ours.pids(exclude=torch_pids()),
               **{k: p.pids for k, p in peers.items()}}
      rates = interleave({"ssljax": ours.run, **{k: p.run for k, p in peers.items()}},
                         skip_batches(workers), rounds, seconds, warmup_s, pause)
    finally:
      ours.close()
  finally:
    for p in peers.values():
      p.close()
  row = summarize(size, batch, workers, rates)
  log(f"{size}x{size} batch {batch} workers {workers}: " + ", ".join(
      f"{side} {row[f'{side}_ips']:.1f} img/s" for side in rates) + "; chunks: " +
      "; ".join(f"{side} {[round(x) for x in r]}" for side, r in rates.items()), flush=True)
  return row, next(iter(peers.values())).info


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="32x32 only, short chunks, no write")
  parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
  parser.add_argument("--sizes", type=int, nargs="+", default=[s for s, _, _ in CASES])
  parser.add_argument("--rounds", type=int, default=4, help="chunks per side (rotating order)")
  parser.add_argument("--chunk", type=float, default=2.0, help="timed seconds per chunk")
  parser.add_argument("--sides", nargs="+", default=list(TORCH_SIDES), choices=TORCH_SIDES,
                      help="torch sides to run")
  parser.add_argument("--warmup", type=float, default=1.0, help="untimed seconds per side first")
  parser.add_argument("--threads", type=int, default=2, help="CPUs both processes are pinned to")
  parser.add_argument("--no-write", action="store_true", help="print only")
  args = parser.parse_args(argv)
  cases = [c for c in CASES if c[0] in args.sizes]
  if args.quick:
    cases = [(32, 128, 32)]
    args.rounds, args.chunk, args.warmup, args.no_write = 2, 0.5, 0.2, True
  cpus = pin_threads(args.threads)
  rows, info = [], {}
  with tempfile.TemporaryDirectory() as tmp:
    for size, num_images, batch in cases:
      folder = make_jpeg_folder(os.path.join(tmp, f"s{size}"), size, num_images)
      for workers in args.workers:
        row, info = measure(folder, size, batch, workers, args.threads, args.rounds, args.chunk,
                            args.warmup, args.sides)
        rows.append(row)
  table = format_table(rows)
  print(table)
  print(format_chunks(rows))
  if not args.no_write:
    import grain
    versions = info.get("versions", {})
    aug = torch_aug_params()
    notes = (
        "\n\nImages/s: decoded JPEGs turned into 2 augmented views each and batched, median over "
        "the timed chunks. Ratio > 1: ssljax is faster. Same augmentations on both sides, from "
        f"ssljax's default augment config: {json.dumps(aug)}. torchvision: RandomResizedCrop("
        "bilinear, antialias), RandomHorizontalFlip, RandomApply(ColorJitter), RandomGrayscale, "
        "RandomApply(GaussianBlur(kernel = 10% of the side, odd, >= 3: ssljax's kernel)), ToTensor, "
        "Normalize, on PIL images. 'torchvision + PIL blur': the same, with lightly's "
        "`GaussianBlur` (PIL `ImageFilter.GaussianBlur(radius=sigma)`, same probability and sigma "
        "range, PIL's kernel extent), as lightly's SimCLRTransform does; torchvision's blur is a "
        "dense 23x23 depthwise convolution at 224 px and dominates its time. 'workers': grain "
        "`mp_prefetch` processes for ssljax (0: the main process with one read thread and a "
        "prefetch buffer of 2 batches) and `DataLoader(num_workers=...)` for torch (0: the main "
        "process, synchronous; an endless RandomSampler, so no epoch boundary, like grain's "
        "`repeat()`). torch runs one intra-op thread in its main process (its DataLoader workers "
        "always do): with 2 threads on this shared machine ToTensor / Normalize / the blur were "
        "20-70x slower, so 1 is the peer's better setting. The sides ran in rotating chunks "
        "after a warm-up, the idle sides' processes stopped (SIGSTOP) during each chunk and "
        "their prefetched batches drained untimed before their own, on a machine shared with "
        "other jobs: compare the ratios, not the absolute numbers. Chunk rates (images/s, in "
        "time order):\n\n" + format_chunks(rows))
    command = " ".join(["python -m benchmarks.data_pipeline_peer",
                        *(argv if argv is not None else sys.argv[1:])])
    meta = {"command": command,
            "threads": f"{args.threads} (all processes pinned to CPUs {cpus}; torch: "
                       f"torch.set_num_threads(1) in the main process and in each worker)",
            "peer": ", ".join(f"{k} {v}" for k, v in versions.items()),
            "ssljax side": f"grain {getattr(grain, '__version__', '?')}, "
                           f"Pillow {_peer.version('pillow')}, numpy {_peer.version('numpy')}",
            "timed per cell": f"{args.rounds} chunks of ~{args.chunk:g} s per side (each after "
                              f"draining the prefetched batches), after {args.warmup:g} s warm-up",
            "folder": ", ".join(f"{n} JPEGs of {s}x{s} (quality 90) in 4 class folders, batch {b}"
                                for s, n, b in cases)}
    report.write_section(SECTION, table + notes, meta)
  return rows


if __name__ == "__main__":
  main()
