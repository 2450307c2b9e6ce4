"""Augmentation on the host or on the device: pipeline records/s and end-to-end train images/s.

For each recipe, the same config with `data.augment_on='host'` (numpy / PIL views in the grain
pipeline) and `'device'` (the pipeline crops to uint8; ssljax.data.augment_jax runs the photometric
half inside the jitted step), timed in alternating rounds in one process:
  - pipeline: records/s of `train_dataset` alone (what the host CPUs must sustain);
  - end to end: images/s of pipeline + `train_step` (what a run gets).
The ratio device / host on this machine decides `data.augment_on='auto'` on CPU
(`ssljax.build.AUTO_AUGMENT_ON`); on GPU / TPU 'auto' is the device. Writes the "Augmentation:
host vs device" section of BENCHMARKS.md.

  python -m benchmarks.augment_placement            # about 3 minutes on 2 cores
  python -m benchmarks.augment_placement --quick    # smoke run
"""
from __future__ import annotations

import argparse
import os
import time

import jax
import numpy as np

from benchmarks.report import markdown_table, write_section

# (label, config file, overrides)
RECIPES = [
    ("SimCLR ResNet-18, 32 px, batch 32", "configs/simclr_resnet18_cifar10.py",
     dict(batch_size=32, data=dict(source="synthetic", synthetic_size=32, synthetic_examples=512,
                                   image_size=32))),
    ("DINO ViT digits (2 x 16 px + 6 local)", "configs/dino_digits.py", dict(batch_size=64)),
]


def _config(path: str, overrides: dict, where: str):
  from benchmarks.report import load_config
  c = load_config(path)
  for key, value in overrides.items():
    if isinstance(value, dict):
      c[key].update(value)
    else:
      c[key] = value
  c.data.augment_on = where
  c.data.worker_count = 0
  c.progress_bar = False
  return c


class Setting:
  """One recipe at one placement (`c.data.augment_on`): its data iterator and compiled step, ready
  to time (also benchmarks/end_to_end_peer.py's ssljax side)."""

  def __init__(self, c):
    from ssljax import parallel, train
    from ssljax.data import pipeline, sources
    devices = jax.devices()[:1]
    src = sources.build_source(c.data, c.data.train_split)
    self.built = train.build(c, devices, src[0])
    self.data = iter(pipeline.train_dataset(src, self.built.spec, c.data.augment, seed=0,
                                            local_batch_size=c.batch_size))
    self.batch_size = c.batch_size
    self.state = self.built.init()
    self._global = lambda b: parallel.global_batch(b, self.built.batch_sharding)
    self._fixed = None   # step_alone's batch
    self.step(2)   # compile and warm up

  def pipeline(self, n: int) -> float:
    t = time.perf_counter()
    for _ in range(n):
      next(self.data)
    return n * self.batch_size / (time.perf_counter() - t)

  def step_alone(self, n: int, skip: int = 0) -> float:
    """Images/s of the train step on one batch, loaded once (`skip` untimed steps first)."""
    if self._fixed is None:
      self._fixed = self._global(next(self.data))
    metrics = None
    for i in range(skip + n):
      if i == skip:
        jax.block_until_ready(metrics)
        t = time.perf_counter()
      self.state, metrics = self.built.train_step(self.state, self._fixed)
    jax.block_until_ready(metrics)
    return n * self.batch_size / (time.perf_counter() - t)

  def step(self, n: int) -> float:
    t = time.perf_counter()
    metrics = None
    for _ in range(n):
      self.state, metrics = self.built.train_step(self.state, self._global(next(self.data)))
    jax.block_until_ready(metrics)
    return n * self.batch_size / (time.perf_counter() - t)


def main(argv=None) -> list[list]:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--rounds", type=int, default=3)
  p.add_argument("--steps", type=int, default=20)
  p.add_argument("--quick", action="store_true")
  p.add_argument("--no-write", action="store_true")
  args = p.parse_args(argv)
  rounds, steps = (1, 3) if args.quick else (args.rounds, args.steps)
  rows = []
  for label, path, overrides in RECIPES:
    settings = {w: Setting(_config(path, overrides, w)) for w in ("host", "device")}
    got = {w: {"pipeline": [], "end_to_end": []} for w in settings}
    for _ in range(rounds):
      for where, s in settings.items():   # alternating: drift hits both alike
        got[where]["pipeline"].append(s.pipeline(steps))
        got[where]["end_to_end"].append(s.step(steps))
    med = {w: {k: float(np.median(v)) for k, v in d.items()} for w, d in got.items()}
    rows.append([label, f"{med['host']['pipeline']:.0f}", f"{med['device']['pipeline']:.0f}",
                 f"{med['device']['pipeline'] / med['host']['pipeline']:.2f}x",
                 f"{med['host']['end_to_end']:.1f}", f"{med['device']['end_to_end']:.1f}",
                 f"{med['device']['end_to_end'] / med['host']['end_to_end']:.2f}x"])
    print(rows[-1], flush=True)
  table = markdown_table(
      ["recipe", "pipeline rec/s host", "pipeline rec/s device", "ratio",
       "end-to-end img/s host", "end-to-end img/s device", "ratio"], rows)
  print(table)
  load = os.getloadavg()[0]
  if not args.no_write and not args.quick:
    from ssljax import build
    write_section("Augmentation: host vs device", table + (
        f"\n\nLoad average when it finished: {load:.1f} on {os.cpu_count()} cores (other jobs "
        f"slow both columns alike, not necessarily by the same factor). `data.augment_on='auto'` "
        f"on CPU: {build.AUTO_AUGMENT_ON['cpu']!r}.") + (
        "\n\nMedians of alternating rounds in one process, 0 grain workers, one device. "
        "'pipeline': records/s of the grain pipeline alone (host: crops + photometric views in "
        "numpy / PIL; device: uint8 crops and the photometric draws only). 'end-to-end': "
        "pipeline + jitted train step (device: the photometric half runs inside the step, "
        "ssljax/data/augment_jax.py). `data.augment_on='auto'` takes the device on GPU and TPU; "
        "on CPU it takes what `ssljax.build.AUTO_AUGMENT_ON['cpu']` says, set from this table."),
        {"command": "python -m benchmarks.augment_placement"})
  return rows


if __name__ == "__main__":
  from ssljax.cpu import host_memory, xla_flags
  host_memory.reexec_with_host_defaults()   # as the ssljax command lines do (ssljax/cpu)
  xla_flags.apply_cpu_defaults()             # (its XLA:CPU flags too, before JAX starts)
  main()
