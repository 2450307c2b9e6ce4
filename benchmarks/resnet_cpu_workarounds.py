"""ResNet's three XLA:CPU workarounds, each switched off alone, side by side with all on.

  python -m benchmarks.resnet_cpu_workarounds            # batch 32 and 128, writes BENCHMARKS.md
  python -m benchmarks.resnet_cpu_workarounds --batches 32 --rounds 4 --no-write

All live in ssljax/cpu/conv.py; `ssljax.models.build_backbone` gives them to the ResNet when the
model config's `cpu_tuning` is on ('auto': on the CPU backend):
  * `computed_once` (the ResNet's `store_once`): every conv input is stored once. Without it
    XLA:CPU fuses the norm + ReLU (+ residual) chain that produced the input into each
    weight-gradient transpose, where its loop emitter runs far slower than a plain transpose.
  * the stride-2 input gradient (`Conv(stride2_input_grad=True)` -> `stride2_input_grad`): four
    small stride-1 convs, one per parity class of input positions, instead of XLA's conv over the
    output gradient dilated by 2 (three quarters zeros).
  * Winograd (`Conv(winograd_min_channels=128)` -> `ssljax.cpu.winograd.conv3x3`): the 3x3
    stride-1 convs with at least that many channels as batched matrix products in the F(4x4, 3x3)
    or F(2x2, 3x3) transformed domain instead of Eigen's convolution.
This times the SimCLR CIFAR ResNet-18 train step of benchmarks/peer_throughput.py (the same recipe,
jitted as the Trainer does), compiled in one process with all workarounds and with each one
switched off in the ResNet's op fields; the compiled steps run in alternating chunks, so the
load of a shared machine hits all alike. All start from the same state and batch, so their losses
must agree (checked, to 1e-4 relative: the stride-2 gradient and Winograd sum in another order).
The table also counts, in each compiled step, the fusions that transpose and also compute a maximum
(a recomputed ReLU), the convolutions over a dilated input, and all convolutions.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import report  # noqa: E402
from benchmarks._xla_costs import dilated_convolutions, transposes_with  # noqa: E402

SECTION = "ResNet CPU workarounds (each off vs all on)"
MODEL = "resnet18_simclr"
VARIANTS = ("all on", "without computed_once", "without the stride-2 input gradient",
            "without Winograd")


def _ops(variant: str, winograd_min_channels: int) -> dict[str, Any]:
  """The ResNet's op fields for `variant` (`ssljax.cpu.conv.resnet_ops` with one part off)."""
  from ssljax.cpu import conv
  from benchmarks._xla_costs import plain_resnet_ops
  on = dict(winograd_min_channels=winograd_min_channels)
  return {"all on": conv.resnet_ops(**on),
          "without computed_once": {**conv.resnet_ops(**on),
                                    "store_once": plain_resnet_ops()["store_once"]},
          "without the stride-2 input gradient": conv.resnet_ops(stride2_input_grad=False, **on),
          "without Winograd": conv.resnet_ops(winograd_min_channels=None)}[variant]


def build(batch: int, tiny: bool = False, winograd_min_channels: int = 128) -> dict[str, Any]:
  """{variant: compiled step} for the recipe at `batch` (model.cpu_tuning='on')."""
  import jax

  from benchmarks import peer_throughput as pt
  from benchmarks._xla_costs import resnet_ops_replaced
  from ssljax import optim
  from ssljax import train
  steps = {}
  for variant in VARIANTS:
    config = pt.ssljax_config(MODEL, batch, tiny=tiny)
    config.model.cpu_tuning = "on"
    step = pt.SsljaxStep(config)
    # The same step, its method's ResNet with this variant's ops (traced when compiled).
    step.method = resnet_ops_replaced(step.method, **_ops(variant, winograd_min_channels))
    tx, lr_fn = optim.build(config)
    step.step_fn = jax.jit(train.make_train_step(step.method, tx, lr_fn), donate_argnums=(0,))
    step.compile()
    steps[variant] = step
  return steps


def measure(batch: int, rounds: int, chunk: int, tiny: bool = False, log=print,
            winograd_min_channels: int = 128) -> list[dict[str, Any]]:
  from benchmarks.peer_throughput import interleave
  steps = build(batch, tiny=tiny, winograd_min_channels=winograd_min_channels)
  times = interleave({v: s.run for v, s in steps.items()}, warmup=1, rounds=rounds, chunk=chunk,
                     settle=1)
  base_ms = 1e3 * statistics.median(times["all on"])
  base_loss = steps["all on"].last_loss
  rows = []
  for variant, step in steps.items():
    hlo = step.compiled.as_text()
    ms = 1e3 * statistics.median(times[variant])
    rows.append({"batch": batch, "variant": variant, "ms": ms, "steps": len(times[variant]),
                 "slowdown": ms / base_ms, "relu_transposes": len(transposes_with(hlo)),
                 "dilated_convs": dilated_convolutions(hlo), "convs": hlo.count(" convolution("),
                 "loss": step.last_loss,
                 "loss_agrees": abs(step.last_loss - base_loss) <= 1e-4 * max(1.0, abs(base_loss))})
    log(rows[-1])
  return rows


def format_table(rows) -> str:
  return report.markdown_table(
      ["batch", "variant", "ms/step", "time vs all on", "transposes recomputing a ReLU",
       "convs over a dilated input", "convolutions", "loss agrees", "steps timed"],
      [[r["batch"], r["variant"], round(r["ms"]), f"{r['slowdown']:.2f}x", r["relu_transposes"],
        r["dilated_convs"], r["convs"], "yes" if r["loss_agrees"] else "NO", r["steps"]]
       for r in rows])


def main(argv=None) -> list[dict[str, Any]]:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--batches", type=int, nargs="+", default=[32, 128])
  parser.add_argument("--rounds", type=int, default=6, help="alternating timed chunks per variant")
  parser.add_argument("--chunk", type=int, default=2, help="steps per chunk (1 at batch >= 128)")
  parser.add_argument("--no-write", action="store_true")
  args = parser.parse_args(argv)
  from ssljax.cpu import xla_flags
  xla_flags.apply_cpu_defaults()    # as `python -m ssljax.main` does
  rows = []
  for b in args.batches:
    rows += measure(b, args.rounds if b < 128 else max(2, args.rounds // 2),
                    args.chunk if b < 128 else 1)
  table = format_table(rows)
  print(table)
  if not args.no_write:
    notes = ("\n\nThe SimCLR CIFAR ResNet-18 step of the throughput table (B images x 2 views, "
             "32x32, fp32, LARS), compiled in one process with all of ssljax/cpu/conv.py's "
             "ResNet workarounds and with each switched off in the ResNet's op fields "
             "(`computed_once` by the identity, the stride-2 conv and the Winograd conv by "
             "`lax.conv_general_dilated`). Median step times over alternating chunks (each after 1 "
             "untimed step), so all saw the same machine load; 'time vs all on' > 1: that "
             "workaround saves time. 'Convolutions': convolution ops in the compiled step "
             "(forward and backward). 'Loss agrees': after the same steps from the same state the "
             "step reported the same loss as with all on (within 1e-4 relative).")
    report.write_section(SECTION, table + notes, {
        "command": "python -m benchmarks.resnet_cpu_workarounds " + " ".join(
            argv if argv is not None else sys.argv[1:])})
  return rows


if __name__ == "__main__":
  from ssljax.cpu import host_memory
  host_memory.reexec_with_host_defaults()   # as the ssljax command lines do
  main()
