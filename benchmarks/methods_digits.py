"""Trains every method's digits config and tabulates held-out kNN: learned vs random-init backbone.

  python -m benchmarks.methods_digits [--methods simclr,byol] [--steps N]

Each configs/<method>_digits.py is run as `python -m ssljax.main` would run it (in this process, one
method after the other, in fresh workdirs under a temp dir). The table goes to BENCHMARKS.md (section
"Methods on digits") and into README.md between the `methods-table` markers; nothing is typed by hand.
About 2-4 minutes per method on 2 CPU cores.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import re
import tempfile
import time

from benchmarks import report

ROOT = report.ROOT
README = os.path.join(ROOT, "README.md")
START, END = "<!-- methods-table:start -->", "<!-- methods-table:end -->"


def digits_configs() -> dict[str, str]:
  """method name -> path of configs/<method>_digits.py, for every method that has one."""
  from ssljax import methods
  out = {}
  for name in methods.available():
    path = os.path.join(ROOT, "configs", f"{name}_digits.py")
    if os.path.exists(path):
      out[name] = path
  return out


def load(path: str):
  spec = importlib.util.spec_from_file_location("cfg", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def run_one(name: str, path: str, steps: int | None) -> list:
  from ssljax import train
  config = load(path)
  if steps:
    config.total_steps = steps
  config.progress_bar = False
  config.eval.random_init = True
  with tempfile.TemporaryDirectory() as workdir:
    t0 = time.perf_counter()
    result = train.Trainer(config, workdir).run()
    wall = time.perf_counter() - t0
  backbone = f"{config.model.name}" + (f" w{config.model.width} d{config.model.depth}"
                                       if config.model.name == "vit" else f"{config.model.depth}")
  return [name, f"`configs/{os.path.basename(path)}`", backbone, config.total_steps,
          round(result["knn_top1"], 4), round(result["knn_top1_random_init"], 4),
          round(result["linear_top1"], 4), round(wall)]


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--methods", default="", help="comma-separated subset (default: all)")
  parser.add_argument("--steps", type=int, default=0, help="override total_steps (default: the config's)")
  args = parser.parse_args()
  configs = digits_configs()
  wanted = [m for m in args.methods.split(",") if m] or list(configs)
  header = ["method", "config", "backbone", "steps", "kNN top-1", "kNN random-init", "linear top-1", "wall s"]
  rows = []
  for name in wanted:
    if name not in configs:
      raise SystemExit(f"no configs/{name}_digits.py; methods with one: {sorted(configs)}")
    rows.append(run_one(name, configs[name], args.steps or None))
    print(report.markdown_table(header, rows[-1:]).splitlines()[-1], flush=True)
  table = report.markdown_table(header, rows)
  print(table)
  report.write_section("Methods on digits", table, {
      "command": "python -m benchmarks.methods_digits" + (f" --steps {args.steps}" if args.steps else ""),
      "what": "held-out kNN top-1 (k=20, T=0.07) of the learned backbone vs the same backbone at init"})
  if not args.methods:
    _write_readme(table)


def _write_readme(table: str) -> None:
  text = open(README).read()
  block = f"{START}\n{table}\n{END}"
  if START in text:
    text = re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: block, text, flags=re.S)
  else:
    text = text.rstrip("\n") + "\n\n" + block + "\n"
  with open(README, "w") as f:
    f.write(text)


if __name__ == "__main__":
  main()
