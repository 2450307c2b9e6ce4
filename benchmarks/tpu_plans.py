"""`python -m ssljax.plan` for the shipped ImageNet configs on TPU slices: the BENCHMARKS.md section
"Compiled for TPU (XLA's cost model, not measured on hardware)".

  python -m benchmarks.tpu_plans                       # every row below (hours on 2 CPU cores)
  python -m benchmarks.tpu_plans --only dino_vit_s16_imagenet@v5e:2x4 --set batch_size=64

Each plan runs in its own process (`python -m ssljax.plan ... --out DIR`, bounded by --timeout)
and its plan.json becomes one row; a config that does not fit gets its one-line message instead.
Rows already in the section are kept unless re-run, so the table can be filled in over several
sittings. The numbers are XLA's compile-time analysis of the per-chip program and a roofline
estimate from it (see ssljax/plan.py), not measurements.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import re
import subprocess
import sys
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")   # this process only writes the table (no TPU probe)

from benchmarks import report  # noqa: E402  pylint: disable=wrong-import-position

TITLE = "Compiled for TPU (XLA's cost model, not measured on hardware)"
# Every shipped ImageNet config (configs/*_imagenet.py).
CONFIGS = tuple(sorted(os.path.basename(p)[:-len(".py")]
                       for p in glob.glob(os.path.join(report.ROOT, "configs", "*_imagenet.py"))))
TOPOLOGIES = ("v5e:2x4", "v5e:4x4", "v4:2x2x4")
# A config that cannot fit: DINO ViT-H/16 at 4096 images per chip on v5e-8. With host
# augmentation (a float32 batch) its arguments alone are over 16 GiB, so ssljax.plan says so
# before compiling; with the default device augmentation (a uint8 batch) they fit and the one line
# comes from the compiler, after a full compile.
OVERFLOW = ("dino_vit_s16_imagenet", "v5e:2x4",
            ["--config.model.variant=h", "--config.batch_size=32768",
             "--config.data.augment_on=host"])
HEADER = ["config", "topology", "global batch", "HBM / chip (GiB)", "temporaries (GiB)",
          "TFLOP / chip / step", "est. step (ms)", "est. img/s", "est. MFU", "Mosaic kernels",
          "activation all-gather (MiB)", "compile (s)", "note"]


def run_plan(name: str, topology: str, extra: list[str], timeout: float,
             keep: str = "") -> list[str]:
  """One table row for `name` on `topology` (a subprocess running ssljax.plan); with `keep`, its
  plan.json and compiled HLO stay in KEEP/NAME@TOPOLOGY."""
  if keep:
    out = os.path.join(keep, f"{name}@{topology}")
    os.makedirs(out, exist_ok=True)
  else:
    out = tempfile.mkdtemp(prefix="ssljax-plan-")
  cmd = [sys.executable, "-m", "ssljax.plan", f"--config={report.ROOT}/configs/{name}.py",
         f"--topology={topology}", f"--out={out}", *extra]
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  try:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=report.ROOT, check=False)
  except subprocess.TimeoutExpired:
    return [name, topology] + [""] * 10 + [f"compile did not finish in {timeout:.0f} s"]
  label = name + ("".join(f" {e.replace('--config.', '')}" for e in extra) if extra else "")
  path = os.path.join(out, "plan.json")
  if not os.path.exists(path):
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("ssljax.plan: ")]
    note = lines[-1][len("ssljax.plan: "):] if lines else proc.stderr.strip()[-300:]
    return [label, topology] + [""] * 10 + [note.replace("|", "/")]
  return row_from_json(path, label)


def row_from_json(path: str, label: str) -> list:
  """One table row from a plan.json that `python -m ssljax.plan --out` wrote."""
  with open(path) as f:
    p = json.load(f)
  hlo = os.path.join(os.path.dirname(path), "compiled.hlo.txt")
  if "kernel_flops_per_step" not in p and os.path.exists(hlo):   # a plan.json from before
    from ssljax import plan  # pylint: disable=import-outside-toplevel
    with open(hlo) as f:
      plan.with_kernel_costs(p, f.read())
  topology = p["topology"]
  gib = 2 ** 30
  return [label, topology, p["global_batch"], f"{p['hbm_per_chip_bytes'] / gib:.2f}",
          f"{p['temp_bytes'] / gib:.2f}", f"{p['flops_per_step'] / 1e12:.2f}",
          f"{p['est_step_seconds'] * 1e3:.1f}", f"{p['est_images_per_sec']:.0f}",
          f"{p['est_mfu'] * 100:.0f}%", p["mosaic_kernels"],
          f"{p['activation_all_gather_bytes'] / 2 ** 20:.1f}", f"{p['compile_seconds']:.0f}",
          p.get("does_not_fit", "").replace("|", "/")]


def _noted(row: list, note: str) -> list:
  """`row` with `note` added to its note cell."""
  if note:
    row[-1] = "; ".join(c for c in (note.replace("|", "/"), str(row[-1])) if c)
  return row


def _existing_rows(path: str = report.DEFAULT_PATH) -> dict[tuple[str, str], list[str]]:
  if not os.path.exists(path):
    return {}
  text = open(path).read()
  m = re.search(rf"^## {re.escape(TITLE)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
  rows = {}
  for line in (m.group(1).splitlines() if m else []):
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if len(cells) == len(HEADER) and cells[0] not in ("config",) and not cells[0].startswith("-"):
      rows[(cells[0], cells[1])] = cells
  return rows


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--only", action="append", default=[],
                      help="CONFIG@TOPOLOGY to (re)run; default: every row")
  parser.add_argument("--overflow", action="store_true", help="the ViT-H overflow row")
  parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per plan")
  parser.add_argument("--from-json", action="append", default=[], metavar="LABEL=PLAN_JSON",
                      help="add a row from a plan.json written by `ssljax.plan --out` (no compile)")
  parser.add_argument("--drop", action="append", default=[], metavar="LABEL@TOPOLOGY",
                      help="remove a row of the section (e.g. one whose command changed)")
  parser.add_argument("--annotate", action="append", default=[], metavar="LABEL@TOPOLOGY=NOTE",
                      help="add NOTE to an existing row's note column (no compile)")
  parser.add_argument("--note", default="", help="text for the note column of the rows written "
                      "by this run (e.g. what was different when a --from-json plan was made)")
  parser.add_argument("--keep", default="", help="keep each plan's plan.json and compiled HLO "
                      "in KEEP/CONFIG@TOPOLOGY")
  parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="a config override for every row, e.g. --set batch_size=64")
  args = parser.parse_args(argv)
  extra = [f"--config.{kv}" for kv in args.set]
  todo = [(c, t, extra) for c in CONFIGS for t in TOPOLOGIES]
  if args.only or args.overflow or args.from_json or args.drop or args.annotate:   # just what was asked for
    wanted = {tuple(o.split("@", 1)) for o in args.only}
    todo = [x for x in todo if (x[0], x[1]) in wanted] + ([OVERFLOW] if args.overflow else [])
  else:
    todo.append(OVERFLOW)
  rows = _existing_rows()
  for item in args.drop:
    rows.pop(tuple(item.rsplit("@", 1)), None)
  for item in args.annotate:
    label, rest = item.rsplit("@", 1)
    topology, note = rest.split("=", 1)
    key = (label, topology)
    if key in rows and note not in rows[key][-1]:
      rows[key] = _noted(rows[key], note)
  for item in args.from_json:
    label, path = item.rsplit("=", 1)
    row = _noted(row_from_json(path, label), args.note)
    rows[(str(row[0]), str(row[1]))] = [str(c) for c in row]
  for name, topology, extra in todo:
    print(f"[tpu_plans] {name} on {topology} {' '.join(extra)}", flush=True)
    row = _noted(run_plan(name, topology, extra, args.timeout, args.keep), args.note)
    rows[(str(row[0]), str(row[1]))] = [str(c) for c in row]
    print("  " + " | ".join(str(c) for c in row), flush=True)
  table = report.markdown_table(HEADER, sorted(rows.values()))
  notes = ("Per chip, from `python -m ssljax.plan` (libtpu's ahead-of-time compiler on this CPU "
           "machine; no TPU was used). est. step = max(FLOPs / bf16 peak, bytes accessed / HBM "
           "bandwidth, XLA's optimal_seconds when positive): a lower bound that ignores "
           "collectives' latency and kernel efficiency; MFU follows from it. Peaks: v5e 197 "
           "TFLOP/s bf16, 819 GB/s HBM, 16 GiB; v4 275 TFLOP/s, 1228 GB/s, 32 GiB. The "
           "model.variant=h row is `python -m ssljax.plan --config configs/"
           f"{OVERFLOW[0]}.py --topology {OVERFLOW[1]} {' '.join(OVERFLOW[2])}`: it exits 2 with "
           "the note's one line, from the arguments' shardings, before compiling. Without "
           "data.augment_on=host the batch is uint8 and the arguments fit; the same command then "
           "stops in seconds, also before compiling, on the temporaries estimated from the traced "
           "step (benchmarks/plan_memory.py). ViT attention on TPU is JAX's splash attention, with "
           "plain XLA attention for sequences of at most 128 tokens (the rows noted 'flash' used "
           "JAX's flash attention at every length). Splash declares no cost to XLA: its FLOPs and "
           "bytes are counted from each call's shapes (ssljax/hlo_costs.py) and included in the "
           "TFLOP, step and MFU columns; ssljax's contrastive Mosaic kernels declare their cost. "
           "Rows noted 'kernels not counted' were compiled before either was done (their "
           "TFLOP and MFU leave those kernels out).")
  report.write_section(TITLE, table + "\n\n" + notes,
                       {"command": "python -m benchmarks.tpu_plans",
                        "libtpu": report.package_version("libtpu")})


if __name__ == "__main__":
  main()
