"""The "Small images vs lightly" table of BENCHMARKS.md: rows from runs' curves, and the section as
last written read back (the curve lines and rows of pairs a run does not re-measure are kept).
Used by benchmarks/small_images.py."""
from __future__ import annotations

import os
import re
from typing import Any, Sequence

import numpy as np

from benchmarks import report
from benchmarks.time_to_accuracy import time_to

SECTION = "Small images vs lightly"
BENCHMARKS_MD = os.path.join(report.ROOT, "BENCHMARKS.md")


def mean_result(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
  """The seeds' curves averaged point by point (kNN and seconds; the runs evaluate at the same steps)."""
  out = {}
  for side in ("ssljax", "lightly"):
    curves = [r["curves"][side] for r in results]
    steps = [p["step"] for p in curves[0]]
    if any([p["step"] for p in c] != steps for c in curves):
      raise ValueError(f"{side} curves of the seeds evaluate at different steps; expected {steps}")
    out[side] = [{"step": s, "knn": float(np.mean([c[i]["knn"] for c in curves])),
                  "seconds": float(np.mean([c[i]["seconds"] for c in curves]))}
                 for i, s in enumerate(steps)]
  return {"curves": out}


def _verdict(ours: list[dict], peer: list[dict]) -> str:
  """Whether the ssljax curve reaches the lightly curve's final kNN - 0.01 in less time."""
  target = peer[-1]["knn"] - 0.01
  # Only trained points count: a target at or below a side's step-0 kNN is no learning to time.
  if target <= peer[0]["knn"]:
    return "- (lightly did not learn: target <= kNN at step 0)"
  if target <= ours[0]["knn"]:
    return "- (ssljax's kNN at step 0 is already >= target: nothing learned to time)"
  hit_ours, hit_peer = time_to(ours[1:], target), time_to(peer[1:], target)
  return "yes" if hit_ours and hit_peer and hit_ours["seconds"] <= hit_peer["seconds"] else "no"


def summary_row(task: str, method: str, results, raw_knn: float) -> list[Any]:
  """One table row from one run's result or several seeds' (a list): final kNN of both sides (the
  seeds' mean, each seed's in brackets), time to lightly's final kNN - 0.01 on the mean curves, and
  whether ssljax gets there sooner on the mean curves (and at each seed)."""
  results = list(results) if isinstance(results, (list, tuple)) else [results]
  seeds = [r.get("seed", 0) for r in results]
  mean = mean_result(results)
  ours, peer = mean["curves"]["ssljax"], mean["curves"]["lightly"]
  target = peer[-1]["knn"] - 0.01
  hit_ours, hit_peer = time_to(ours[1:], target), time_to(peer[1:], target)
  cell = lambda h: f"{h['seconds']:.0f} (step {h['step']})" if h else "not reached"  # noqa: E731
  verdict = _verdict(ours, peer)
  if len(results) > 1 and verdict in ("yes", "no"):
    each = [_verdict(r["curves"]["ssljax"], r["curves"]["lightly"]).split(" ")[0] for r in results]
    verdict += f" ({', '.join(each)})"

  def final(side):
    text = f"{mean['curves'][side][-1]['knn']:.3f}"
    if len(results) > 1:
      text += " (" + ", ".join(f"{r['curves'][side][-1]['knn']:.3f}" for r in results) + ")"
    return text

  return [task, method, ", ".join(map(str, seeds)), f"{raw_knn:.3f}",
          f"{ours[0]['knn']:.3f} / {peer[0]['knn']:.3f}", final("ssljax"), final("lightly"),
          f"{target:.3f}", cell(hit_ours), cell(hit_peer), f"{ours[-1]['seconds']:.0f}",
          f"{peer[-1]['seconds']:.0f}", verdict]


HEADER = ["task", "method", "seeds", "raw-pixel kNN", "kNN at step 0 (ssljax / lightly)", "ssljax kNN",
          "lightly kNN", "target (lightly - 0.01)", "ssljax s to target (step)",
          "lightly s to target (step)", "ssljax train s", "lightly train s", "ssljax >= target sooner"]


def _section(path: str) -> str:
  """The text of BENCHMARKS.md's section SECTION at `path` ('' if the file or section is missing)."""
  text = open(path).read() if os.path.exists(path) else ""
  m = re.search(rf"^## {re.escape(SECTION)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
  return m.group(1) if m else ""


def earlier_curves(path: str = BENCHMARKS_MD) -> dict:
  """{(task, method): [(curve line, parsed) per seed]} of the section as last written, each line
  ending with the date and command of the run that measured it."""
  section = _section(path)
  meta = dict(re.findall(r"^- (date|command): (.*)$", section, re.M))
  out = {}
  for line in section.splitlines():
    parsed = parse_curve_line(line)
    if parsed:
      line = line.strip()
      if "(earlier run:" not in line:
        line += f" (earlier run: {meta.get('date', '?')}, `{meta.get('command', '?')}`)"
      task, method = parsed[0], parsed[1].replace(" (earlier run)", "")
      out.setdefault((task, method), []).append((line, parsed[2]))
  return out


def earlier_rows(path: str = BENCHMARKS_MD) -> dict:
  """{(task, method): table row's cells, method marked '(earlier run)'} of the section as written."""
  rows = [[c.strip() for c in line.strip().strip("|").split("|")]
          for line in _section(path).splitlines() if line.startswith("| ")]
  return {(r[0], r[1].replace(" (earlier run)", "")): [r[0], r[1].replace(" (earlier run)", "")
          + " (earlier run)"] + r[2:] for r in rows if len(r) == len(HEADER) and r[0] != HEADER[0]}


def parse_curve_line(line: str):
  """(task, method, {'curves': ..., 'seed': ...}) from a '- task method seed 0: ssljax 0: 0.327 @ 16
  s, ...; lightly ...' line of a run's output, or None. Lines of runs before the benchmark took
  several seeds have no 'seed N' (then the seed of their command, else 0)."""
  m = re.match(r"^- (\S+) (\S+)(?: seed (\d+))?: ssljax (.*); lightly (.*)$", line.strip())
  if not m:
    return None
  if m.group(3) is not None:
    seed = int(m.group(3))
  else:
    given = re.search(r"--seeds? (\d+)", line)
    seed = int(given.group(1)) if given else 0
  def points(text):
    return [{"step": int(a), "knn": float(b), "seconds": float(c), "loss": float("nan")}
            for a, b, c in re.findall(r"(\d+): ([\d.]+) @ ([\d.]+) s", text)]
  return m.group(1), m.group(2), {"curves": {"ssljax": points(m.group(4)),
                                             "lightly": points(m.group(5))}, "seed": seed}
