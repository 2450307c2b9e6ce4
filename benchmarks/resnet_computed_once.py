"""ResNet weight-gradient transposes: `ssljax.models.resnet.computed_once` on and off, side by side.

  python -m benchmarks.resnet_computed_once            # batch 32 and 128, writes BENCHMARKS.md
  python -m benchmarks.resnet_computed_once --batches 32 --rounds 4 --no-write

XLA:CPU transposes every convolution input for its weight gradient and, unless the input is stored
once (`computed_once`), fuses the norm + ReLU (+ residual) chain that produced it into each such
transpose, where its loop emitter runs far slower than a plain transpose (the function's docstring
has the figures). This times the SimCLR CIFAR ResNet-18 train step of benchmarks/peer_throughput.py
(the same recipe, jitted as the Trainer does) compiled twice in one process: once as shipped and
once with `computed_once` replaced by the identity while tracing. The two compiled steps then run
in alternating chunks, so that the load of a shared machine hits both alike. Both start from the
same state and batch, so their losses must agree (checked). The table also counts, in each compiled
step, the fusions that transpose and also compute a maximum (a recomputed ReLU).
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import report  # noqa: E402

SECTION = "ResNet weight-gradient transposes (computed_once on / off)"
MODEL = "resnet18_simclr"


def transposes_with(hlo_text: str, opcode: str = "maximum") -> list[str]:
  """Names of the fusions in an optimized HLO module whose result is a transposed array (their
  root is a transpose, or a copy of one) and that also compute `opcode` on the way."""
  bodies = {m.group(1): m.group(0)
            for m in re.finditer(r"\n(%[\w.\-]+) \(.*?\n}\n", hlo_text, re.S)}

  def transposing(body: str) -> bool:
    root = re.search(r"ROOT %[\w.\-]+ = \S+ (\w+)\(", body)
    return bool(root) and root.group(1) in ("transpose", "copy") and " transpose(" in body

  fusions = re.finditer(r"%([\w.\-]+) = \S+ fusion\(.*?calls=(%[\w.\-]+)", hlo_text)
  return [m.group(1) for m in fusions
          if transposing(bodies.get(m.group(2), "")) and f" {opcode}(" in bodies[m.group(2)]]


def build_pair(batch: int, tiny: bool = False) -> dict[str, Any]:
  """{'on': step, 'off': step}: the recipe's step compiled with and without `computed_once`."""
  from benchmarks import peer_throughput as pt
  from ssljax.models import resnet
  real = resnet.computed_once
  steps = {}
  for name in ("off", "on"):
    resnet.computed_once = real if name == "on" else (lambda x: x)
    try:
      step = pt.SsljaxStep(pt.ssljax_config(MODEL, batch, tiny=tiny))
      step.compile()        # traces now, with this module-level function
    finally:
      resnet.computed_once = real
    steps[name] = step
  return steps


def measure(batch: int, rounds: int, chunk: int, tiny: bool = False, log=print) -> dict[str, Any]:
  from benchmarks.peer_throughput import interleave
  steps = build_pair(batch, tiny=tiny)
  times = interleave({name: s.run for name, s in steps.items()}, warmup=1, rounds=rounds,
                     chunk=chunk, settle=1)
  losses = {name: s.last_loss for name, s in steps.items()}
  row = {"batch": batch, **{f"{n}_ms": 1e3 * statistics.median(t) for n, t in times.items()},
         **{f"{n}_steps": len(t) for n, t in times.items()},
         **{f"{n}_relu_transposes": len(transposes_with(s.compiled.as_text()))
            for n, s in steps.items()},
         **{f"{n}_loss": losses[n] for n in steps}}
  row["speedup"] = row["off_ms"] / row["on_ms"]
  # Same state, same batch, same number of steps: the two compiled steps compute the same thing.
  row["losses_agree"] = abs(losses["on"] - losses["off"]) <= 1e-3 * max(1.0, abs(losses["off"]))
  log(row)
  return row


def format_table(rows) -> str:
  return report.markdown_table(
      ["batch", "without computed_once ms/step", "with computed_once ms/step", "speedup",
       "transposes recomputing a ReLU (without / with)", "losses agree", "steps timed (each)"],
      [[r["batch"], round(r["off_ms"]), round(r["on_ms"]), f"{r['speedup']:.2f}x",
        f"{r['off_relu_transposes']} / {r['on_relu_transposes']}",
        "yes" if r["losses_agree"] else "NO", r["on_steps"]] for r in rows])


def main(argv=None) -> list[dict[str, Any]]:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--batches", type=int, nargs="+", default=[32, 128])
  parser.add_argument("--rounds", type=int, default=6, help="alternating timed chunks per side")
  parser.add_argument("--chunk", type=int, default=2, help="steps per chunk (1 at batch >= 128)")
  parser.add_argument("--no-write", action="store_true")
  args = parser.parse_args(argv)
  from ssljax import xla_flags
  xla_flags.apply_cpu_defaults()    # as `python -m ssljax.main` does
  rows = [measure(b, args.rounds if b < 128 else max(2, args.rounds // 2),
                  args.chunk if b < 128 else 1) for b in args.batches]
  table = format_table(rows)
  print(table)
  if not args.no_write:
    notes = ("\n\nThe SimCLR CIFAR ResNet-18 step of the throughput table (B images x 2 views, "
             "32x32, fp32, LARS), compiled twice in one process: as shipped, and with "
             "`ssljax.models.resnet.computed_once` replaced by the identity while tracing. Median "
             "step times over alternating chunks (each after 1 untimed step), so both saw the same "
             "machine load; speedup > 1: computed_once is faster. 'Transposes recomputing a ReLU': "
             "fusions in the compiled step that transpose and also compute a maximum. 'Losses "
             "agree': after the same steps from the same state both compiled steps reported the "
             "same loss (within 1e-3).")
    report.write_section(SECTION, table + notes, {
        "command": "python -m benchmarks.resnet_computed_once " + " ".join(argv if argv is not None
                                                                          else sys.argv[1:])})
  return rows


if __name__ == "__main__":
  from ssljax import host_memory
  host_memory.reexec_with_host_defaults()   # as the ssljax command lines do
  main()
