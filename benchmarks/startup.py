"""Time to first step of the quickstart: cold (empty compilation cache) and warm (cache filled).

  python -m benchmarks.startup [--repeats 2]

Runs `python -m ssljax.main --config configs/simclr_digits.py` in fresh workdirs, as a user would, and
measures the wall-clock time from launching the process to the first training step's row appearing in
metrics.jsonl (Python start-up and imports, data loading, initialisation and compilation included; the
random-init evaluation is switched off so that only the path to the first step is timed). 'cold' uses
an empty JAX persistent compilation cache directory, 'warm' the same directory again, filled by the cold
run: that is what a user's second start of a run sees (ssljax enables the cache by default, in
$XDG_CACHE_HOME/ssljax/jax). Writes the "Time to first step" section of BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from benchmarks import report

ROOT = report.ROOT
CONFIG = os.path.join(ROOT, "configs", "simclr_digits.py")


def time_to_first_step(cache_dir: str, workdir: str, timeout: float = 900.0) -> float:
  """Seconds from process launch to the step-1 row in workdir/metrics.jsonl (the process is then killed)."""
  env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=cache_dir,
             XLA_FLAGS="--xla_force_host_platform_device_count=1")
  cmd = [sys.executable, "-m", "ssljax.main", "--config", CONFIG, "--workdir", workdir,
         "--config.eval.random_init=False", "--config.log_every=1", "--config.progress_bar=False",
         "--config.total_steps=1000"]
  metrics = os.path.join(workdir, "metrics.jsonl")
  t0 = time.perf_counter()
  proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True)
  try:
    while time.perf_counter() - t0 < timeout:
      if os.path.exists(metrics):
        with open(metrics) as f:
          if any('"loss"' in line for line in f):
            return time.perf_counter() - t0
      if proc.poll() is not None:
        raise RuntimeError(f"ssljax.main exited {proc.returncode} before step 1:\n"
                           f"{proc.stderr.read()[-3000:]}")
      time.sleep(0.05)
    raise TimeoutError(f"no step 1 within {timeout} s")
  finally:
    proc.kill()
    proc.wait()


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--repeats", type=int, default=2, help="cold/warm pairs (fresh cache each pair)")
  args = parser.parse_args()
  cold, warm = [], []
  with tempfile.TemporaryDirectory() as tmp:
    for r in range(args.repeats):
      cache = os.path.join(tmp, f"cache{r}")
      cold.append(time_to_first_step(cache, os.path.join(tmp, f"cold{r}")))
      warm.append(time_to_first_step(cache, os.path.join(tmp, f"warm{r}")))
      print(f"pair {r}: cold {cold[-1]:.1f} s, warm {warm[-1]:.1f} s", flush=True)
  rows = [["cold (empty compilation cache)", round(statistics.median(cold), 1), round(min(cold), 1)],
          ["warm (persistent cache filled)", round(statistics.median(warm), 1), round(min(warm), 1)]]
  table = report.markdown_table(["start", "median s to step 1", "min s"], rows)
  table += (f"\n\nwarm/cold: {statistics.median(warm) / statistics.median(cold):.2f}. Seconds from "
            "launching `python -m ssljax.main --config configs/simclr_digits.py` to the first training "
            "step's row in metrics.jsonl (imports, data, init, compilation included; random-init eval "
            f"off), {args.repeats} cold/warm pairs, each pair with its own fresh cache directory.")
  print(table)
  report.write_section("Time to first step", table, {"command": "python -m benchmarks.startup",
                                                      "runs (s)": json.dumps({"cold": [round(x, 1) for x in cold],
                                                                   "warm": [round(x, 1) for x in warm]})})


if __name__ == "__main__":
  main()
