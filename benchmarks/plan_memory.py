"""The compile-free temporaries estimate (ssljax/plan_memory.py) against XLA's memory analysis:
the BENCHMARKS.md section "Traced temporaries estimate vs XLA".

  python -m benchmarks.plan_memory          # minutes: traces, never compiles

For every row of the "Compiled for TPU" section (written by benchmarks/tpu_plans.py from full
compiles), the same config is traced for the same topology and its temporaries estimated from the
jaxpr. The largest ratio estimate / XLA bounds how far the estimate overshoots; `ssljax.plan` stops
before compiling only when the estimate divided by `plan_memory.OVERESTIMATE` still overflows, so
that constant must stay above every ratio here (checked below).
"""
from __future__ import annotations

import os
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")   # traces for TPU topologies; computes nothing

from benchmarks import report  # noqa: E402  pylint: disable=wrong-import-position
from benchmarks import tpu_plans  # noqa: E402  pylint: disable=wrong-import-position

TITLE = "Traced temporaries estimate vs XLA"


def _config(label: str):
  """The config of a tpu_plans row label ('name key=value ...'), or None for a noted variant."""
  from ssljax import config_files  # pylint: disable=import-outside-toplevel
  if "(" in label:
    return None
  name, *sets = label.split()
  config = config_files.load(os.path.join(report.ROOT, "configs", f"{name}.py"))
  config_files.override(config, [tuple(s.split("=", 1)) for s in sets])
  return config


def main() -> None:
  from ssljax import plan, plan_memory  # pylint: disable=import-outside-toplevel
  rows, ratios = [], []
  for (label, topology), cells in sorted(tpu_plans._existing_rows().items()):  # pylint: disable=protected-access
    temps = cells[tpu_plans.HEADER.index("temporaries (GiB)")]
    config = _config(label)
    if config is None or not temps:
      continue
    t0 = time.perf_counter()
    estimate = plan.traced_temporaries(config, topology) / plan.GIB
    ratio = estimate / float(temps)
    ratios.append(ratio)
    rows.append([label, topology, temps, f"{estimate:.2f}", f"{ratio:.2f}",
                 f"{time.perf_counter() - t0:.0f}"])
    print(" | ".join(str(c) for c in rows[-1]), flush=True)
  worst = max(ratios)
  assert worst < plan_memory.OVERESTIMATE, (worst, plan_memory.OVERESTIMATE)
  table = report.markdown_table(["config", "topology", "XLA temporaries (GiB)",
                                 "traced estimate (GiB)", "estimate / XLA", "trace (s)"], rows)
  notes = (f"Per chip. The estimate walks the traced train step's jaxpr in program order, each value "
           f"alive until its last use, divided over the chips that share the batch; XLA's figure is "
           f"the compiled program's temporaries (the \"Compiled for TPU\" section). Ratios run "
           f"from {min(ratios):.2f} to {worst:.2f}: fusion and recomputation make XLA need less "
           f"than the walk, and replicated temporaries (gradients) make it need more. "
           f"`ssljax.plan` stops before compiling when arguments + estimate / "
           f"{plan_memory.OVERESTIMATE:g} exceed the chip's HBM.")
  report.write_section(TITLE, table + "\n\n" + notes,
                       {"command": "python -m benchmarks.plan_memory",
                        "libtpu": report.package_version("libtpu")})


if __name__ == "__main__":
  main()
