"""Trains the image-text digits configs and tabulates zero-shot and retrieval: learned vs random init.

  python -m benchmarks.image_text_digits [--methods clip,siglip,lit] [--steps N]

clip and siglip run configs/<method>_digits.py as `python -m ssljax.main` would; lit first
pretrains its image tower (configs/dino_digits.py on the same captioned digits, 24 px) and then
runs configs/lit_digits.py on it, and its row also gives that tower's linear probe (LiT's target:
zero-shot within a few points of it). Rows are kept with their date in
benchmarks/results/image_text_digits.json; the table goes to BENCHMARKS.md ("Image-text on
captioned digits") and into README.md between the `image-text-table` markers. Nothing is typed by
hand.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
import time

from benchmarks import report

ROOT = report.ROOT
README = os.path.join(ROOT, "README.md")
RESULTS = os.path.join(ROOT, "benchmarks", "results", "image_text_digits.json")
START, END = "<!-- image-text-table:start -->", "<!-- image-text-table:end -->"
METHODS = ("clip", "siglip", "lit")
HEADER = ["method", "config", "steps", "zero-shot top-1", "zero-shot random-init", "i2t R@1",
          "i2t R@1 random-init", "t2i R@1", "image kNN top-1", "image linear top-1", "wall s",
          "measured"]


def _config(name: str):
  return report.load_config(os.path.join(ROOT, "configs", f"{name}_digits.py"))


def dino_tower(workdir: str, steps: int | None = None) -> dict:
  """DINO digits recipe on the captioned digits (24 px canvases): LiT's locked image tower.

  Each canvas has one vivid colour, shared by both crops of a DINO pair: with the digits recipe's
  mild colour jitter (hue 0.1, no grayscale) DINO matches crops by colour and its features mostly
  encode colour and place (linear probe of the digit 0.314, 2026-12-04). Full hue jitter (0.5)
  and grayscale 0.2 (SimCLR's colour distortion, which exists to remove that shortcut) and crops
  of at least half the canvas (small digits sit near its edges) make it encode the digit."""
  from ssljax import train
  c = _config("dino")
  c.data.update(source="captioned_digits", synthetic_size=24, image_size=24)
  c.model.image_size = 24
  c.data.augment.update(hflip_prob=0.0, hue=0.5, grayscale_prob=0.2, crop_scale=(0.5, 1.0))
  c.eval.random_init = False
  c.progress_bar = False
  if steps:
    c.total_steps = steps
  return train.Trainer(c, workdir).run()


def run_one(name: str, steps: int | None, seed: int = 0) -> list:
  from ssljax import train
  with tempfile.TemporaryDirectory() as tmp:
    t0 = time.perf_counter()
    c = _config(name)
    c.seed = seed
    if steps:
      c.total_steps = steps
    c.progress_bar = False
    tower = {}
    if name == "lit":
      tower = dino_tower(os.path.join(tmp, "tower"), steps)
      c.lit.image_tower = os.path.join(tmp, "tower")
    result = train.Trainer(c, os.path.join(tmp, "run")).run()
    wall = time.perf_counter() - t0
  r = lambda k: round(float(result[k]), 4) if k in result else ""   # noqa: E731
  linear = round(float(tower["linear_top1"]), 4) if tower else r("linear_top1")
  return [name, f"`configs/{name}_digits.py`", c.total_steps, r("zeroshot_top1"),
          r("zeroshot_top1_random_init"), r("i2t_r1"), r("i2t_r1_random_init"), r("t2i_r1"),
          r("knn_top1"), linear, round(wall)]


def _load() -> dict:
  if not os.path.exists(RESULTS):
    return {}
  with open(RESULTS) as f:
    return json.load(f)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--methods", default=",".join(METHODS))
  parser.add_argument("--steps", type=int, default=0, help="override total_steps")
  parser.add_argument("--table-only", action="store_true", help="rewrite the tables only")
  args = parser.parse_args()
  wanted = [] if args.table_only else [m for m in args.methods.split(",") if m]
  bad = [m for m in wanted if m not in METHODS]
  if bad:
    raise SystemExit(f"--methods {bad}: expected a subset of {METHODS}")
  for name in wanted:
    row = run_one(name, args.steps or None) + [time.strftime("%Y-%m-%d")]
    store = _load()   # re-read: another sweep may have written rows meanwhile
    store[name] = row
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS + ".tmp", "w") as f:
      json.dump(store, f, indent=1)
    os.replace(RESULTS + ".tmp", RESULTS)
    print(report.markdown_table(HEADER, [row]).splitlines()[-1], flush=True)
  store = _load()
  rows = [store[m] for m in METHODS if m in store]
  table = report.markdown_table(HEADER, rows)
  print(table)
  report.write_section("Image-text on captioned digits", table, {
      "command": "python -m benchmarks.image_text_digits [--methods ...]",
      "what": "held-out zero-shot top-1 (10 digit classes, prompt ensemble; chance 0.1) and "
              "retrieval R@1 over 360 held-out canvases, learned vs the same towers at init; "
              "lit's image linear top-1 is its locked DINO tower's probe; wall s includes the "
              "tower's pretraining, compilation and evaluation"})
  text = open(README).read()
  block = f"{START}\n{table}\n{END}"
  if START in text:
    text = re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: block, text, flags=re.S)
    with open(README, "w") as f:
      f.write(text)


if __name__ == "__main__":
  from ssljax.cpu import host_memory
  host_memory.reexec_with_host_defaults()
  from ssljax.cpu import xla_flags
  xla_flags.apply_cpu_defaults()              # its XLA:CPU flags too, before JAX starts
  main()
