"""Host memory of the online evaluator's banks, measured on a reduced bank and scaled.

The evaluator (ssljax/evaluate/online.py) keeps the eval inputs of the train bank (kNN memory,
probe training set) and of the held-out split in the view spec's stored form (uint8 centre crops
for images), each process only the rows its devices compute (`pipeline.eval_bank`). This script
builds both banks of each shipped ImageNet config on a reduced synthetic source at the config's
image size (`--records` records per split), measures the bytes they hold per process for 1 and 8
processes, scales to the config's `eval.max_examples`, and compares with the float32 copy of
every record in every process that the evaluator held before. Writes the "Evaluator host memory"
section of BENCHMARKS.md.

  python -m benchmarks.eval_memory            # about a minute
  python -m benchmarks.eval_memory --no-write
"""
from __future__ import annotations

import argparse
import glob
import os

import numpy as np

from benchmarks.report import ROOT, load_config, markdown_table, write_section


def _gib(n: float) -> str:
  return f"{n / 2 ** 30:.2f}"


def measure(path: str, records: int, processes: int) -> tuple[int, int, int, int]:
  """(max_examples, bytes per process of both banks at `records` records, image side, chunk)."""
  from ssljax import methods
  from ssljax.data import pipeline, sources
  c = load_config(path)
  c.data.source = "synthetic"
  spec = methods.get(c.method)(c).view_spec()
  src = sources.synthetic(records, spec.global_size + spec.global_size // 7, seed=0)
  chunk = -(-c.eval.batch_size // 8) * 8
  held = 0
  for _ in range(2):   # train bank and held-out bank
    inputs, labels, _ = pipeline.eval_bank(src, spec, c.data.augment, records, chunk=chunk,
                                           process_index=0, process_count=processes)
    held += inputs.nbytes + labels.nbytes
  return c.eval.max_examples, held, spec.global_size, chunk


def main(argv=None) -> list[list]:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--records", type=int, default=256)
  p.add_argument("--no-write", action="store_true")
  args = p.parse_args(argv)
  rows = []
  for path in sorted(glob.glob(os.path.join(ROOT, "configs", "*_imagenet.py"))):
    name = os.path.basename(path)[:-3]
    per_proc = {}
    for processes in (1, 8):
      max_examples, held, size, chunk = measure(path, args.records, processes)
      # A bank holds whole chunks: scale the measured bytes per row to the config's bank size.
      rows_measured = 2 * (-(-args.records // chunk) * chunk) // processes
      rows_full = 2 * (-(-max_examples // chunk) * chunk) // processes
      per_proc[processes] = held / rows_measured * rows_full
    before = 2 * max_examples * size * size * 3 * 4   # float32, every record, every process
    row = [max_examples, size, _gib(before), _gib(per_proc[1]), _gib(per_proc[8]),
           f"{before / per_proc[8]:.0f}x"]
    same = [r for r in rows if r[1:] == row]   # configs with the same bank share a row
    if same:
      same[0][0] += f", {name}"
    else:
      rows.append([name] + row)
    print(name, row, flush=True)
  table = markdown_table(["config", "eval.max_examples", "px", "before (GiB / process)",
                          "now, 1 process", "now, 8 processes", "saving at 8"], rows)
  print(table)
  if not args.no_write:
    write_section("Evaluator host memory", table + (
        f"\n\nBoth banks (train split and held-out split, `eval.max_examples` records each) per "
        f"process: measured with `pipeline.eval_bank` on a synthetic source of {args.records} "
        f"records per split at the config's size and scaled per row. 'before': the float32 copy "
        f"of every record that every process held before (the evaluator now stores uint8 crops "
        f"and each process only the rows its devices compute). Features [N, D] float32 come on "
        f"top: {_gib(2 * 10000 * 2048 * 4)} GiB for 10,000 records at D = 2048."),
        {"command": "python -m benchmarks.eval_memory"})
  return rows


if __name__ == "__main__":
  main()
