"""Trains every method's digits config and tabulates held-out kNN: learned vs random-init backbone.

  python -m benchmarks.methods_digits [--methods simclr,byol] [--steps N]

Each configs/<method>_digits.py is run as `python -m ssljax.main` would run it (in this process, one
method after the other, in fresh workdirs under a temp dir). Each measured row is kept, with its date,
in benchmarks/results/methods_digits.json, so `--methods` re-measures a subset and the others keep
their last figures. The full table goes to BENCHMARKS.md (section "Methods on digits") and into
README.md between the `methods-table` markers; nothing is typed by hand. About 2-4 minutes per method
on 2 CPU cores.
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
RESULTS = os.path.join(ROOT, "benchmarks", "results", "methods_digits.json")
START, END = "<!-- methods-table:start -->", "<!-- methods-table:end -->"
HEADER = ["method", "config", "backbone", "steps", "kNN top-1", "kNN random-init", "linear top-1",
          "wall s", "measured"]


def digits_configs() -> dict[str, str]:
  """method name -> path of configs/<method>_digits.py, for every method that has one."""
  from ssljax import methods
  out = {}
  for name in methods.available():
    path = os.path.join(ROOT, "configs", f"{name}_digits.py")
    # Image methods on the plain digits; the image-text ones: benchmarks/image_text_digits.py.
    if os.path.exists(path) and load(path).data.source == "digits":
      out[name] = path
  return out


def load(path: str):
  return report.load_config(path)


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
  parser.add_argument("--table-only", action="store_true",
                      help="train nothing: rewrite the tables from the stored results")
  args = parser.parse_args()
  configs = digits_configs()
  wanted = [] if args.table_only else ([m for m in args.methods.split(",") if m] or list(configs))
  unknown = [m for m in wanted if m not in configs]
  if unknown:
    raise SystemExit(f"no configs/<method>_digits.py for {unknown}; methods with one: {sorted(configs)}")
  store = _load_results()
  for name in wanted:
    row = run_one(name, configs[name], args.steps or None)
    row.append(time.strftime("%Y-%m-%d"))
    store[name] = row
    _save_results(store)  # one method at a time: an interrupted sweep keeps what it measured
    print(report.markdown_table(HEADER, [row]).splitlines()[-1], flush=True)
  rows = [store[m] if m in store else [m, f"`configs/{m}_digits.py`"] + ["not measured"] + [""] * 6
          for m in configs]
  table = report.markdown_table(HEADER, rows)
  print(table)
  report.write_section("Methods on digits", table, {
      "command": "python -m benchmarks.methods_digits [--methods ...] (rows keep the date they were measured)",
      "what": "held-out kNN top-1 (k=20, T=0.07) of the learned backbone vs the same backbone at init; "
              "wall s includes compilation and evaluation"})
  _write_readme(table)


def _load_results() -> dict:
  if not os.path.exists(RESULTS):
    return {}
  with open(RESULTS) as f:
    return json.load(f)


def _save_results(store: dict) -> None:
  os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
  with open(RESULTS + ".tmp", "w") as f:
    json.dump(store, f, indent=1)
  os.replace(RESULTS + ".tmp", RESULTS)


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
  from ssljax.cpu import host_memory
  host_memory.reexec_with_host_defaults()   # as the ssljax command lines do (ssljax/cpu)
  from ssljax.cpu import xla_flags
  xla_flags.apply_cpu_defaults()              # its XLA:CPU flags too, before JAX starts
  main()
