"""Runs the slow learning tests at several seeds and tabulates each one's kNN gain per seed.

  python -m benchmarks.learning_seeds [--seeds 0 1 2] [--tests tests/test_byol.py ...]

A learning test (tests/conftest.py's `learn_on_digits`) trains a digits config and asserts that
held-out kNN beats the random-init backbone's by a stated margin. CI runs each at its config's seed
only; whether that holds at other seeds (and so under other floating-point rounding: XLA:CPU's
code differs between AVX2 and AVX-512 machines, which moves a trajectory as a seed does) is
what this script measures. It runs pytest once per seed with `SSLJAX_LEARN_SEED` and
`SSLJAX_LEARN_LOG` set, as CI's slow step runs it (one XLA device, full optimisation), and keeps
every row in benchmarks/results/learning_seeds.json, so `--tests` re-measures a subset and the
other rows keep their last figures. The table goes to BENCHMARKS.md ("Learning tests across
seeds"). About 8-10 minutes per seed on 2 CPU cores.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

from benchmarks import report

ROOT = report.ROOT
RESULTS = os.path.join(ROOT, "benchmarks", "results", "learning_seeds.json")
TITLE = "Learning tests across seeds"


def run_seed(seed: int, tests: list[str], workers: int) -> list[dict]:
  """Runs the learning tests in `tests` at `seed`; their logged rows (passed or not), each with
  `passed`: pytest's verdict on the whole test (an xfail counts as not passed)."""
  with tempfile.TemporaryDirectory() as tmp:
    log = os.path.join(tmp, "rows.jsonl")
    junit = os.path.join(tmp, "junit.xml")
    env = dict(os.environ, SSLJAX_LEARN_SEED=str(seed), SSLJAX_LEARN_LOG=log, PYTHONHASHSEED="0",
               XLA_FLAGS="--xla_force_host_platform_device_count=1")
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-m",
           "slow and not multiprocess", "-k", "learns", f"--junitxml={junit}", *tests]
    if workers > 1:
      cmd += ["-n", str(workers)]
    print(f"[learning_seeds] seed {seed}: {' '.join(cmd[2:])}", flush=True)
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    print(proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr[-2000:],
          flush=True)
    if not os.path.exists(log):
      raise RuntimeError(f"seed {seed}: pytest logged no learning run (rc {proc.returncode}):\n"
                         f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    verdicts = junit_verdicts(junit) if os.path.exists(junit) else {}
    with open(log) as f:
      rows = [json.loads(line) for line in f]
    for row in rows:
      if row["test"] in verdicts:
        row["passed"] = verdicts[row["test"]]
    return rows


def junit_verdicts(path: str) -> dict[str, bool]:
  """pytest node id ('tests/test_x.py::test_y') -> passed, from a --junitxml report."""
  out = {}
  for case in ET.parse(path).getroot().iter("testcase"):
    node = case.get("classname", "").replace(".", "/") + ".py::" + case.get("name", "")
    out[node] = not any(child.tag in ("failure", "error", "skipped") for child in case)
  return out


def passed(row: dict) -> bool:
  """pytest's verdict where recorded (a test may assert more than learn_on_digits), else what
  learn_on_digits asserts: loss down, kNN gain above the margin, no collapse."""
  if "passed" in row:
    return bool(row["passed"])
  return (row["loss_last"] < row["loss_first"] and not row["collapsed"]
          and row["knn_top1"] > row["knn_top1_random_init"] + row["margin"])


def table(store: dict, seeds: list[int]) -> str:
  header = ["test", "margin"] + [f"seed {s}" for s in seeds] + ["passes", "measured"]
  rows = []
  for test in sorted(store):
    by_seed = store[test]
    cells, ok, dates = [], 0, set()
    for s in seeds:
      r = by_seed.get(str(s))
      if r is None:
        cells.append("-")
        continue
      gain = r["knn_top1"] - r["knn_top1_random_init"]
      cells.append(f"{gain:+.3f}" + ("" if passed(r) else " (fails)"))
      ok += passed(r)
      dates.add(r["measured"])
    margin = next(iter(by_seed.values()))["margin"]
    measured = sum(str(s) in by_seed for s in seeds)
    rows.append([test.replace("tests/", ""), f"{margin:.2f}", *cells, f"{ok}/{measured}",
                 ", ".join(sorted(dates))])
  note = ("Each cell: held-out kNN top-1 minus the random-init backbone's at that seed (the random "
          "init is seeded too); '(fails)' where the test's assertion (gain above the margin, loss "
          "down, no collapse, and any check of its own) does not hold. CI runs each test at its "
          "config's seed.")
  return report.markdown_table(header, rows) + "\n\n" + note


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
  parser.add_argument("--tests", nargs="+", default=["tests"],
                      help="pytest paths (default: every slow learning test)")
  parser.add_argument("--workers", type=int, default=2, help="pytest-xdist workers per seed")
  parser.add_argument("--no-write", action="store_true", help="print only")
  parser.add_argument("--table-only", action="store_true",
                      help="run nothing: rewrite the section from the stored rows")
  args = parser.parse_args(argv)
  store = {}
  if os.path.exists(RESULTS):
    with open(RESULTS) as f:
      store = json.load(f)
  today = datetime.date.today().isoformat()
  for seed in ([] if args.table_only else args.seeds):
    for row in run_seed(seed, args.tests, args.workers):
      row["measured"] = today
      store.setdefault(row["test"], {})[str(row["seed"])] = row
  text = table(store, sorted({int(s) for runs in store.values() for s in runs}))
  print(text)
  if args.no_write:
    return
  os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
  with open(RESULTS, "w") as f:
    json.dump(store, f, indent=1, sort_keys=True)
  cmd = "python -m benchmarks.learning_seeds " + " ".join(argv if argv is not None else sys.argv[1:])
  report.write_section(TITLE, text, {"command": cmd.strip()})


if __name__ == "__main__":
  main()
