"""End to end vs lightly: images/s of data pipeline + train step, side by side (issue #29, item 5).

  bash benchmarks/peer_env.sh                          # once: .venv-peer/ with torch, lightly
  python -m benchmarks.end_to_end_peer                 # all cases (~15 min on 2 cores), writes its section
  python -m benchmarks.end_to_end_peer --cases simclr_r18_32 --rounds 3
  python -m benchmarks.end_to_end_peer --quick         # smoke run: tiny networks, no write

Each case reads the same folder of JPEGs (benchmarks/data_loading.make_jpeg_folder) on three sides:
- ssljax, host augmentation: the grain pipeline (decode, crops and the photometric views in numpy /
  PIL) feeding the jitted train step (`data.augment_on='host'`);
- ssljax, device augmentation: the pipeline decodes and crops to uint8, the photometric half runs
  inside the jitted step (`data.augment_on='device'`, ssljax/data/augment_jax.py);
- lightly: `ImageFolder` with lightly's `SimCLRTransform` / `DINOTransform` and a `DataLoader`, the
  step built from lightly's heads and losses (benchmarks/_lightly_e2e_worker.py, .venv-peer),
with the recipe's augmentation values on all three, 0 loader workers each, both processes pinned to
the same CPUs. The sides run in chunks whose order rotates every round; each chunk first takes
`--skip` untimed steps (the batches a side's read thread buffered while another side ran), then
times `--steps` steps of batch + step. The table shows the median chunk rate per side and the
ratios to lightly.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import tempfile
from typing import Any, Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import _peer  # noqa: E402
from benchmarks import report  # noqa: E402
from benchmarks.data_loading import make_jpeg_folder  # noqa: E402
from benchmarks.peer_throughput import PEER_PYTHON, pin_threads, ssljax_config  # noqa: E402

WORKER = os.path.join(report.ROOT, "benchmarks", "_lightly_e2e_worker.py")
SECTION = "End to end vs lightly (pipeline + step)"
SIDES = ("ssljax host", "ssljax device", "lightly")
# The step alone (one batch, loaded once, again and again): where the end-to-end time goes.
STEP_SIDES = ("ssljax step", "lightly step")
# name -> (label, recipe, image side, batch, JPEGs in the folder)
CASES = {
    "simclr_r18_32": ("SimCLR ResNet-18 (CIFAR stem), 32 px", "simclr_r18", 32, 32, 512),
    "dino_vit_tiny_32": ("DINO ViT-Tiny/4, 2 x 32 px + 6 x 16 px", "dino_vit_tiny", 32, 32, 512),
    "simclr_r18_224": ("SimCLR ResNet-18, 224 px", "simclr_r18", 224, 32, 256),
}
LOCAL_CROPS, LOCAL_SIZE = 6, 16


def case_config(recipe: str, size: int, batch: int, root: str, where: str, tiny: bool = False):
  """The ssljax side of a case: peer_throughput's recipe on the JPEG folder `root`/train."""
  model = {"simclr_r18": "resnet18_simclr", "dino_vit_tiny": "vit_tiny_dino"}[recipe]
  c = ssljax_config(model, batch, size, tiny=tiny)
  c.data.update(source="image_folder", path=root, eval_split="train", worker_count=0,
                augment_on=where)
  if recipe == "simclr_r18":
    c.model.cifar_stem = size < 64
  else:   # DINO's crops and asymmetric views (configs/common.byol_jitter), lightly's defaults
    from ssljax import config as config_lib
    common = config_lib.import_sibling(os.path.join(report.ROOT, "configs", "x.py"))
    common.byol_jitter(c, blur_prob=0.5, local_blur_prob=0.5)
    c.dino.update(local_crops=LOCAL_CROPS, local_size=LOCAL_SIZE, global_crops_scale=(0.4, 1.0),
                  local_crops_scale=(0.05, 0.4))
  return c


def peer_aug(c) -> dict[str, Any]:
  """The config's augmentation values as the plain JSON the lightly worker builds its transform
  from (augment, per-view probabilities, DINO's crops)."""
  def plain(v):
    return [float(x) for x in v] if isinstance(v, (tuple, list)) else v
  out = {k: plain(v) for k, v in c.data.augment.to_dict().items()}
  for key in ("global_view_blur_prob", "global_view_solarize_prob", "local_view_blur_prob"):
    out[key] = plain(c.data.get(key))
  if c.method == "dino":
    out.update(local_crops=c.dino.local_crops, local_size=c.dino.local_size,
               global_crops_scale=plain(c.dino.global_crops_scale),
               local_crops_scale=plain(c.dino.local_crops_scale))
  return out


class LightlyE2E(_peer.LineWorker):
  """benchmarks/_lightly_e2e_worker.py under the peer venv."""

  def __init__(self, recipe: str, folder: str, size: int, batch: int, aug: dict, threads: int,
               tiny: bool = False, python: str = PEER_PYTHON):
    cmd = [python, WORKER, "--recipe", recipe, "--folder", folder, "--size", str(size),
           "--batch", str(batch), "--threads", str(threads), "--aug", json.dumps(aug)]
    super().__init__(cmd + (["--tiny"] if tiny else []), "lightly end-to-end worker")

  def rate(self, steps: int, skip: int, step_alone: bool = False) -> float:
    out = self._ask(f"{'step' if step_alone else 'run'} {steps} {skip}")
    return out["images"] / out["seconds"]


def measure(name: str, root: str, threads: int, rounds: int, steps: int, skip: int,
            tiny: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
  """One case: {case, label, batch, rates: {side: [img/s per chunk]}} and the worker's info."""
  from benchmarks.augment_placement import Setting
  label, recipe, size, batch, _ = CASES[name]
  settings = {f"ssljax {w}": Setting(case_config(recipe, size, batch, root, w, tiny))
              for w in ("host", "device")}
  peer = LightlyE2E(recipe, os.path.join(root, "train"), size, batch,
                    peer_aug(case_config(recipe, size, batch, root, "host", tiny)), threads, tiny)
  def ssljax_chunk(setting) -> float:
    setting.step(skip)            # untimed: what its read thread buffered while another side ran
    return setting.step(steps)
  run = {side: functools.partial(ssljax_chunk, s) for side, s in settings.items()}
  run["lightly"] = lambda: peer.rate(steps, skip)
  run["ssljax step"] = lambda: settings["ssljax host"].step_alone(steps, skip)
  run["lightly step"] = lambda: peer.rate(steps, skip, step_alone=True)
  sides = SIDES + STEP_SIDES
  rates = {side: [] for side in sides}
  try:
    for r in range(rounds):
      for side in sides[r % len(sides):] + sides[:r % len(sides)]:     # rotating order
        rates[side].append(run[side]())
      print(f"[{name}] round {r + 1}/{rounds}: " +
            ", ".join(f"{s} {v[-1]:.1f}" for s, v in rates.items()), flush=True)
  finally:
    peer.close()
  return {"case": name, "label": label, "batch": batch, "rates": rates}, peer.info


def format_table(rows: Sequence[dict[str, Any]]) -> str:
  out = []
  for row in rows:
    med = {s: statistics.median(v) for s, v in row["rates"].items()}
    step = (f"{med['ssljax step']:.1f} / {med['lightly step']:.1f} "
            f"({med['ssljax step'] / med['lightly step']:.2f}x)" if "ssljax step" in med else "")
    out.append([row["label"], row["batch"], f"{med['ssljax host']:.1f}",
                f"{med['ssljax device']:.1f}", f"{med['lightly']:.1f}",
                f"{med['ssljax host'] / med['lightly']:.2f}x",
                f"{med['ssljax device'] / med['lightly']:.2f}x", step,
                len(row["rates"]["lightly"])])
  return report.markdown_table(
      ["recipe", "batch", "ssljax host-aug img/s", "ssljax device-aug img/s", "lightly img/s",
       "host / lightly", "device / lightly", "step alone img/s: ssljax / lightly",
       "chunks (each)"], out)


def format_chunks(rows: Sequence[dict[str, Any]]) -> str:
  return "\n".join(f"- {row['label']}: " + "; ".join(
      f"{side} " + ", ".join(f"{v:.1f}" for v in row["rates"][side])
      for side in SIDES + STEP_SIDES if side in row["rates"])
      for row in rows)


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
  parser.add_argument("--rounds", type=int, default=3, help="chunks per side (rotating order)")
  parser.add_argument("--steps", type=int, default=8, help="timed steps per chunk")
  parser.add_argument("--skip", type=int, default=2, help="untimed steps at a chunk's start")
  parser.add_argument("--threads", type=int, default=2, help="CPUs both processes are pinned to")
  parser.add_argument("--quick", action="store_true", help="tiny networks, 1 round, no write")
  parser.add_argument("--no-write", action="store_true", help="print only")
  args = parser.parse_args(argv)
  if args.quick:
    args.cases = [c for c in args.cases if CASES[c][2] < 64]
    args.rounds, args.steps, args.skip, args.no_write = 1, 2, 1, True
  cpus = pin_threads(args.threads)
  from ssljax.cpu import xla_flags
  xla_flags.apply_cpu_defaults()   # as `python -m ssljax.main` does (ssljax/cpu/xla_flags.py)
  rows, info = [], {}
  with tempfile.TemporaryDirectory() as tmp:
    for name in args.cases:
      _, _, size, _, count = CASES[name]
      root = os.path.join(tmp, name)
      make_jpeg_folder(root, size, count)
      row, info = measure(name, root, args.threads, args.rounds, args.steps, args.skip,
                          tiny=args.quick)
      rows.append(row)
  table = format_table(rows)
  print(table)
  print(format_chunks(rows))
  if not args.no_write:
    versions = info.get("versions", {})
    notes = (
        "\n\nImages/s: batch / seconds per step, where a step is taking the next batch from the "
        "data pipeline (JPEG decode, crops, augmentation, batching; 0 loader workers) and one "
        "train step on it; median of the timed chunks; ratio > 1: ssljax is faster. Recipes as in "
        "'Train-step throughput vs lightly' (same networks, losses, optimisers on both sides), "
        "now fed by their pipelines: SimCLR with ssljax's default augmentation (crop scale "
        "0.08-1, jitter 0.4 / 0.4 / 0.4 / 0.1 at p 0.8, grayscale 0.2, blur p 0.5), lightly's "
        "`SimCLRTransform` given the same values; DINO with BYOL's asymmetric views "
        "(configs/common.byol_jitter: blur 1.0 / 0.1 on the global crops, 0.5 on the locals, "
        "solarisation 0.2 on global crop 2), global crops 0.4-1, "
        f"{LOCAL_CROPS} local crops of {LOCAL_SIZE} px at 0.05-0.4, lightly's `DINOTransform` "
        "given the same values; the 224 px case uses the ImageNet stem. 'step alone': each "
        "side's train step repeated on one batch loaded once (ssljax: the host-aug step), "
        "timed in the same rotation: the share of the end-to-end time the pipeline takes. ssljax's read thread "
        "(grain, 0 workers) prepares the next batches while the step runs; lightly's "
        "DataLoader with 0 workers loads synchronously (its better thread count, 1 or 2, picked "
        f"at start-up: {info.get('threads', '?')} in the last case). The sides ran in rotating "
        "chunks on one machine: compare the ratios. Chunk rates (images/s, in time order):\n\n"
        + format_chunks(rows))
    command = " ".join(["python -m benchmarks.end_to_end_peer",
                        *(argv if argv is not None else sys.argv[1:])])
    import flax
    import grain
    import jax
    report.write_section(SECTION, table + notes, {
        "command": command,
        "threads": f"both processes pinned to CPUs {cpus}",
        "XLA_FLAGS": os.environ.get("XLA_FLAGS", "") or "(none)",
        "peer": ", ".join(f"{k} {v}" for k, v in versions.items()),
        "ssljax side": f"jax {jax.__version__}, flax {flax.__version__}, "
                       f"grain {getattr(grain, '__version__', _peer.version('grain'))}",
        "timed per side": f"{args.rounds} chunks of {args.steps} steps, each after "
                          f"{args.skip} untimed steps",
        "load average at the end": f"{os.getloadavg()[0]:.1f}"})
  return rows


if __name__ == "__main__":
  from ssljax.cpu import host_memory
  host_memory.reexec_with_host_defaults()   # as the ssljax command lines do (ssljax/cpu)
  main()
