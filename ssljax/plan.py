"""Compile the real train step for a TPU slice on any machine, and say what it would cost.

  python -m ssljax.plan --config configs/dino_vit_s16_imagenet.py --topology v5e:2x4 \
      --config.batch_size=64 --out /tmp/plan

libtpu's ahead-of-time compiler (`pip install -e .[tpu-aot]`) builds the step for the abstract
devices of `--topology` (any name `jax.experimental.topologies.get_topology_desc` accepts, e.g.
v5e:2x4, v5e:4x4, v4:2x2x4), over the config's mesh and partition rules, exactly as
`ssljax.main` would on that slice. Printed per chip, and written to `OUT/plan.json` (with the
compiled HLO as `OUT/compiled.hlo.txt`):

  hbm_per_chip_bytes       arguments + outputs - donated aliases + temporaries (XLA's memory
                           analysis), against the chip's HBM (`hbm_capacity_bytes`);
  flops_per_step           XLA's cost analysis of the compiled per-chip program, plus the FLOPs
                           of the Mosaic kernels that declare no cost to XLA (JAX's splash
                           attention: counted from each call's shapes, `kernel_flops_per_step`);
  collectives              every collective of the compiled program: kind, count, bytes;
  est_step_seconds         max(FLOPs / bf16 peak, bytes accessed / HBM bandwidth, XLA's own
                           `optimal_seconds` when it is positive): a lower bound, not a measurement;
  est_images_per_sec, est_mfu   from that estimate (MFU = FLOPs / (time x peak));
  mosaic_kernels           Pallas (Mosaic) kernels in the program;
  activation_all_gather_bytes   bytes of all-gathers that are neither parameter gathers (FSDP: the
                           result has a parameter's shape) nor the contrastive kernels' own
                           gather of the embeddings (an all_gather inside their shard_map).

No data is read: the batch shapes come from one synthetic record of the config's image size.
A config that does not fit in HBM ends with one line saying by how much and what to change, in
seconds and before compiling when it can be told:
  * the step's arguments alone (parameters, optimizer and method state, batch: each array's shard
    under its sharding) exceed the chip's HBM, e.g. DINO ViT-H at 4096 images per chip with host
    augmentation (a float32 batch);
  * or the temporaries estimated from the traced step (ssljax/plan_memory.py), divided by the
    estimate's worst measured overshoot, still leave no room beside the arguments: the same ViT-H
    step with the default uint8 batch,

  python -m ssljax.plan --config configs/dino_vit_s16_imagenet.py --topology v5e:2x4 \
      --config.model.variant=h --config.batch_size=32768

and otherwise from the compiled program's memory analysis (or XLA's out-of-memory error).
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
import time
from typing import Any

from absl import flags

from ssljax import commandline
from ssljax import plan_memory
from ssljax.plan_memory import (  # noqa: F401  (re-exported)
    GIB, _activations_overflow, _arguments_overflow, _oom_from_compiler, _overflow_message)
from ssljax.hlo_costs import collectives, mosaic_kernel_costs  # noqa: F401  (re-exported)

_CONFIG = flags.DEFINE_string("config", None, "A config file (configs/*.py) or a shipped config "
                              "name; keys are overridden with --config.<key>=<value>.")
_TOPOLOGY = flags.DEFINE_string("topology", "v5e:2x4", "TPU topology, e.g. v5e:2x4, v4:2x2x4.")
_OUT = flags.DEFINE_string("out", None, "Directory for plan.json and compiled.hlo.txt.")



@dataclasses.dataclass(frozen=True)
class Chip:
  """Per-chip peak numbers, from Google Cloud's TPU system-architecture pages."""
  name: str
  bf16_flops: float       # FLOP/s
  hbm_bytes_per_s: float
  hbm_bytes: int


CHIPS = {
    "v4": Chip("TPU v4", 275e12, 1228e9, 32 * GIB),
    "v5e": Chip("TPU v5e", 197e12, 819e9, 16 * GIB),
    "v5p": Chip("TPU v5p", 459e12, 2765e9, 95 * GIB),
    "v6e": Chip("TPU v6e", 918e12, 1640e9, 32 * GIB),
}

class PlanError(Exception):
  """A one-line reason why a plan cannot be made (bad topology, does not fit)."""


def chip_for(topology: str) -> Chip:
  kind = topology.split(":")[0].lower()
  if kind not in CHIPS:
    raise PlanError(f"--topology={topology!r}: unknown chip {kind!r}; expected a name starting "
                    f"with one of {tuple(CHIPS)}, e.g. v5e:2x4")
  return CHIPS[kind]


@contextlib.contextmanager
def _quiet_stderr():
  """Silences file descriptor 2: libtpu prints a dozen lines on load when no TPU is attached."""
  sys.stderr.flush()
  saved = os.dup(2)
  with open(os.devnull, "w") as null:
    os.dup2(null.fileno(), 2)
    try:
      yield
    finally:
      os.dup2(saved, 2)
      os.close(saved)


def topology_devices(topology: str) -> list[Any]:
  """The abstract TPU devices of `topology` (libtpu's AOT compiler; no TPU needed)."""
  os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")   # no metadata server to ask
  # Compiling needs no chip: several processes (test workers, plans) may load libtpu at once.
  os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
  from jax.experimental import topologies  # pylint: disable=import-outside-toplevel
  try:
    with _quiet_stderr():
      topo = topologies.get_topology_desc(topology_name=topology, platform="tpu")
    return list(topo.devices)
  except Exception as e:  # pylint: disable=broad-except
    msg = str(e).splitlines()[0] if str(e) else type(e).__name__
    if "libtpu" in msg.lower() or "tpu" not in msg.lower():
      msg += " (is libtpu installed? pip install -e .[tpu-aot])"
    raise PlanError(f"--topology={topology!r} cannot be compiled for: {msg}") from e


def estimate(flops: float, bytes_accessed: float, optimal_seconds: float, chip: Chip,
             global_batch: int) -> dict[str, float]:
  """Roofline step time (a lower bound), the implied images/s and MFU, and what bounds it: the
  step's FLOPs per byte against the chip's ridge point (peak FLOP/s over HBM bytes/s)."""
  compute, memory = flops / chip.bf16_flops, bytes_accessed / chip.hbm_bytes_per_s
  t = max(compute, memory, optimal_seconds if optimal_seconds > 0 else 0.0)
  t = max(t, 1e-12)
  return {"est_step_seconds": t, "est_images_per_sec": global_batch / t,
          "est_mfu": flops / (t * chip.bf16_flops),
          "flops_per_byte": flops / max(bytes_accessed, 1.0),
          "ridge_flops_per_byte": chip.bf16_flops / chip.hbm_bytes_per_s,
          "bound": "HBM bandwidth" if memory >= compute else "compute"}


def _for_plan(config):
  """The config for a TPU plan: a synthetic source of the same image size (plans read no data)
  and no CPU tuning."""
  config = config.copy_and_resolve_references()
  config.data.source = "synthetic"
  config.data.synthetic_size = int(config.data.image_size)
  if "cpu_tuning" in config.model:
    config.model.cpu_tuning = "off"   # the step is for TPU: no XLA:CPU workarounds (ssljax/cpu)
  return config


def per_chip_bytes(tree) -> int:
  """Bytes one chip holds of a pytree of ShapeDtypeStructs / arrays: each leaf's shard shape under
  its sharding (the whole leaf where it has none), times its item size, summed."""
  import jax  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  total = 0
  for leaf in jax.tree.leaves(tree):
    sharding = getattr(leaf, "sharding", None)
    shape = sharding.shard_shape(leaf.shape) if sharding is not None else leaf.shape
    total += int(np.prod(shape, dtype=np.int64)) * np.dtype(leaf.dtype).itemsize
  return total


def argument_bytes(abstract_state, abstract_batch) -> dict[str, int]:
  """Per-chip bytes of the train step's arguments by class, from their shardings (no compile):
  {'parameters', 'optimizer state', 'method state', 'batch'} (step, rng and counters are bytes)."""
  return {"parameters": per_chip_bytes(abstract_state.params),
          "optimizer state": per_chip_bytes(abstract_state.opt_state),
          "method state": per_chip_bytes(abstract_state.method_state),
          "batch": per_chip_bytes(abstract_batch)}


def _built_for(config, topology: str):
  """(chip, config for the plan, Built, abstract batch, images per chip) of `config` on the
  abstract devices of `topology`."""
  from ssljax import build as build_lib  # pylint: disable=import-outside-toplevel
  from ssljax.data import sources  # pylint: disable=import-outside-toplevel
  chip = chip_for(topology)
  devices = topology_devices(topology)
  config = _for_plan(config)
  processes = len({getattr(d, "process_index", 0) for d in devices})
  record = sources.build_source(config.data, config.data.train_split)[0]
  built = build_lib.build(config, devices, record, process_count=processes)
  batch = built.abstract_batch()
  images_per_chip = built.batch_sharding.shard_shape(next(iter(batch.values())).shape)[0]
  return chip, config, built, batch, images_per_chip


def _traced_temporaries(built, batch, images_per_chip: int):
  """(the traced train step, its compile-free temporaries estimate per chip)."""
  traced = built.train_step.trace(built.abstract_state, batch)
  shards = max(1, next(iter(batch.values())).shape[0] // max(1, images_per_chip))
  return traced, plan_memory.temporaries_per_chip(traced.jaxpr, shards)


def traced_temporaries(config, topology: str) -> int:
  """The compile-free estimate of `config`'s train-step temporaries per chip of `topology`
  (ssljax/plan_memory.py); seconds where a compile takes minutes."""
  _, _, built, batch, images_per_chip = _built_for(config, topology)
  return _traced_temporaries(built, batch, images_per_chip)[1]


def make_plan(config, topology: str) -> tuple[dict[str, Any], str]:
  """(plan dict, compiled HLO text) of `config`'s train step compiled for `topology`."""
  import jax  # pylint: disable=import-outside-toplevel
  chip, config, built, batch, images_per_chip = _built_for(config, topology)
  devices = built.mesh.devices.flatten()
  # Arguments that cannot fit need no compile to say so (a ViT-H step takes long to compile).
  parts = argument_bytes(built.abstract_state, batch)
  message = _arguments_overflow(parts, chip, config, images_per_chip)
  if message:
    raise PlanError(message)
  # So do activations far over the HBM: a compile-free estimate from the traced program.
  traced, traced_temps = _traced_temporaries(built, batch, images_per_chip)
  message = _activations_overflow(sum(parts.values()), traced_temps, chip, config, images_per_chip)
  if message:
    raise PlanError(message)
  t0 = time.perf_counter()
  lowered = traced.lower()
  try:
    compiled = lowered.compile()
  except Exception as e:  # pylint: disable=broad-except
    message = _oom_from_compiler(e, chip, bool(config.model.get("remat", False)))
    if message:
      raise PlanError(message) from e
    raise
  seconds = time.perf_counter() - t0
  mem = compiled.memory_analysis()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  hlo = compiled.as_text()
  args, outs = mem.argument_size_in_bytes, mem.output_size_in_bytes
  temps, alias = mem.temp_size_in_bytes, mem.alias_size_in_bytes
  hbm = args + outs - alias + temps + mem.generated_code_size_in_bytes
  param_shapes = {tuple(x.shape) for x in jax.tree.leaves(built.abstract_state)}
  colls, activation = collectives(hlo, param_shapes)
  plan = {
      "topology": topology, "chip": chip.name, "chips": len(devices),
      "mesh": dict(built.mesh.shape), "global_batch": int(config.batch_size),
      "hbm_per_chip_bytes": int(hbm), "hbm_capacity_bytes": chip.hbm_bytes,
      "argument_bytes": int(args), "output_bytes": int(outs), "alias_bytes": int(alias),
      "temp_bytes": int(temps), "xla_flops_per_step": float(cost.get("flops", 0.0)),
      "xla_bytes_accessed": float(cost.get("bytes accessed", 0.0)),
      "xla_optimal_seconds": float(cost.get("optimal_seconds", -1.0)),
      "collectives": colls, "mosaic_kernels": hlo.count('custom_call_target="tpu_custom_call"'),
      "activation_all_gather_bytes": int(activation), "compile_seconds": seconds,
      "traced_temp_bytes_estimate": int(traced_temps),
      "peaks": {"bf16_flops": chip.bf16_flops, "hbm_bytes_per_s": chip.hbm_bytes_per_s},
  }
  with_kernel_costs(plan, hlo)
  if hbm > chip.hbm_bytes:
    plan["does_not_fit"] = _overflow_message(
        hbm, chip.hbm_bytes, {"arguments": args, "temporaries": temps, "outputs": outs - alias},
        chip, bool(config.model.get("remat", False)))
  return plan, hlo


def with_kernel_costs(plan: dict[str, Any], hlo: str) -> dict[str, Any]:
  """`plan` (in place) with the Mosaic kernels' work that XLA's cost analysis leaves out added to
  its FLOPs and bytes (ssljax/hlo_costs.py), and its roofline estimate redone. Also takes a
  plan.json written before kernel costs were counted (its totals are then XLA's alone)."""
  plan.setdefault("xla_flops_per_step", plan.get("flops_per_step", 0.0))
  plan.setdefault("xla_bytes_accessed", plan.get("bytes_accessed", 0.0))
  kernels = mosaic_kernel_costs(hlo)
  plan["kernel_flops_per_step"] = kernels["flops"]
  plan["uncounted_kernels"] = sorted(set(kernels["uncounted"]))
  plan["flops_per_step"] = plan["xla_flops_per_step"] + kernels["flops"]
  plan["bytes_accessed"] = plan["xla_bytes_accessed"] + kernels["bytes"]
  plan.update(estimate(plan["flops_per_step"], plan["bytes_accessed"],
                       plan["xla_optimal_seconds"], chip_for(plan["topology"]),
                       plan["global_batch"]))
  return plan


def format_plan(plan: dict[str, Any]) -> str:
  """The human-readable table of a plan."""
  g = lambda b: f"{b / GIB:.2f} GiB"  # noqa: E731
  rows = [
      ("topology", f"{plan['topology']} ({plan['chips']} x {plan['chip']}), mesh {plan['mesh']}"),
      ("HBM per chip", f"{g(plan['hbm_per_chip_bytes'])} of {g(plan['hbm_capacity_bytes'])} "
                       f"(arguments {g(plan['argument_bytes'])}, temporaries "
                       f"{g(plan['temp_bytes'])})"),
      ("FLOPs per step per chip", f"{plan['flops_per_step'] / 1e12:.3f} TFLOP (attention "
                                  f"kernels {plan['kernel_flops_per_step'] / 1e12:.3f})"),
      ("bytes accessed per chip", f"{plan['bytes_accessed'] / 1e9:.2f} GB"),
      ("XLA optimal_seconds", f"{plan['xla_optimal_seconds']:.4g}"),
      ("est. step time", f"{plan['est_step_seconds'] * 1e3:.2f} ms (roofline lower bound; peaks "
                         f"{plan['peaks']['bf16_flops'] / 1e12:.0f} TFLOP/s bf16, "
                         f"{plan['peaks']['hbm_bytes_per_s'] / 1e9:.0f} GB/s HBM)"),
      ("est. images/s", f"{plan['est_images_per_sec']:.0f} (global batch {plan['global_batch']})"),
      ("est. MFU", f"{plan['est_mfu'] * 100:.1f}%, bound by {plan['bound']} "
                   f"({plan['flops_per_byte']:.0f} FLOP per HBM byte; the chip's ridge point "
                   f"is {plan['ridge_flops_per_byte']:.0f})"),
      ("Mosaic kernels", str(plan["mosaic_kernels"]) + (
          f" (FLOPs not counted: {', '.join(plan['uncounted_kernels'])})"
          if plan["uncounted_kernels"] else "")),
      ("activation all-gathers", f"{plan['activation_all_gather_bytes'] / 2 ** 20:.2f} MiB"),
  ]
  for kind, s in sorted(plan["collectives"].items()):
    rows.append((f"  {kind}", f"{s['count']} x, {s['bytes'] / 2 ** 20:.2f} MiB"))
  rows.append(("compile time", f"{plan['compile_seconds']:.1f} s"))
  width = max(len(k) for k, _ in rows)
  return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


def main(_, overrides) -> int:
  """The command on parsed flags and `--config.<key>` overrides (`ssljax.commandline.run`)."""
  if _CONFIG.value is None:
    commandline.fail("ssljax.plan", "--config is required, e.g. python -m ssljax.plan --config "
                     "configs/dino_vit_s16_imagenet.py --topology v5e:2x4 --out /tmp/plan")
  config = commandline.load_config("ssljax.plan", _CONFIG.value, overrides)
  from ssljax import config as config_lib  # pylint: disable=import-outside-toplevel
  try:
    plan, hlo = make_plan(config, _TOPOLOGY.value)
  except (PlanError, config_lib.ConfigError) as e:
    print(f"ssljax.plan: {e}", file=sys.stderr)
    return 2
  print(format_plan(plan))
  if _OUT.value:
    os.makedirs(_OUT.value, exist_ok=True)
    with open(os.path.join(_OUT.value, "plan.json"), "w") as f:
      json.dump(plan, f, indent=2)
    with open(os.path.join(_OUT.value, "compiled.hlo.txt"), "w") as f:
      f.write(hlo)
    print(f"wrote {os.path.join(_OUT.value, 'plan.json')} and compiled.hlo.txt")
  if "does_not_fit" in plan:
    print(f"ssljax.plan: {plan['does_not_fit']}", file=sys.stderr)
    return 3
  return 0


def run() -> None:
  # Plans compile for TPU devices that libtpu describes; this process itself computes on CPU.
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  commandline.run("ssljax.plan", lambda flag_values: None, main, config_overrides=True)


if __name__ == "__main__":
  run()
