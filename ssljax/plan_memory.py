"""A compile-free estimate of a train step's temporary memory per chip (`ssljax.plan`).

Compiling a large step for a TPU slice takes minutes (a ViT-H step: about seven on two CPU cores);
tracing it takes seconds. `temporary_peak` walks the traced jaxpr in program order, keeps every
value it creates alive until its last use (the forward's activations until the backward pass
reads them), counts a nested jaxpr's own temporaries while its equation runs, and returns the
largest total. XLA fuses elementwise chains and may recompute cheap values instead of keeping them,
so the walk can overestimate what the compiled program needs, and replicated temporaries (gradients)
split over the batch's chips make it underestimate. BENCHMARKS.md, "Traced temporaries estimate vs
XLA" (benchmarks/plan_memory.py), compares it with XLA's memory analysis on every compiled plan;
`OVERESTIMATE` stays above the largest ratio there (the script checks), and `ssljax.plan` stops
before compiling only when the estimate divided by it still overflows the chip.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
  from ssljax.plan import Chip

GIB = 2 ** 30

# Kernel bodies work on on-chip memory (VMEM / shared memory refs), not on HBM buffers.
_OPAQUE = frozenset({"pallas_call"})
# Above every estimate / XLA ratio measured (see the module docstring).
OVERESTIMATE = 4.0


def value_bytes(var) -> int:
  """Bytes of one jaxpr value (0 for tokens and other values without a plain dtype)."""
  aval = getattr(var, "aval", None)
  shape, dtype = getattr(aval, "shape", None), getattr(aval, "dtype", None)
  if shape is None or dtype is None:
    return 0
  try:
    itemsize = np.dtype(dtype).itemsize
  except TypeError:
    itemsize = int(getattr(dtype, "itemsize", 0) or 0)   # e.g. typed PRNG keys
  return int(np.prod(shape, dtype=np.int64)) * itemsize


def temporary_peak(jaxpr) -> int:
  """Peak bytes alive at once among the values `jaxpr` creates (its inputs excluded)."""
  from jax.extend import core as jcore  # pylint: disable=import-outside-toplevel
  jaxpr = getattr(jaxpr, "jaxpr", jaxpr)   # a ClosedJaxpr's Jaxpr
  last_use: dict = {}
  for i, eqn in enumerate(jaxpr.eqns):
    for v in eqn.invars:
      if isinstance(v, jcore.Var):
        last_use[v] = i
  for v in jaxpr.outvars:
    if isinstance(v, jcore.Var):
      last_use[v] = len(jaxpr.eqns)
  inputs = set(jaxpr.invars) | set(jaxpr.constvars)
  live = peak = 0
  for i, eqn in enumerate(jaxpr.eqns):
    inner = 0
    if eqn.primitive.name not in _OPAQUE:
      for sub in jcore.jaxprs_in_params(eqn.params):
        inner = max(inner, temporary_peak(sub))
    outs = [v for v in eqn.outvars if not isinstance(v, jcore.DropVar)]
    made = sum(value_bytes(v) for v in outs)
    peak = max(peak, live + max(inner, made))
    live += sum(value_bytes(v) for v in outs if v in last_use)   # unused outputs die at once
    for v in {v for v in eqn.invars if isinstance(v, jcore.Var)}:
      if v not in inputs and last_use.get(v) == i:
        live -= value_bytes(v)
  return peak


def temporaries_per_chip(jaxpr, batch_shards: int) -> int:
  """`temporary_peak` of a step traced at global shapes, split over the chips that share its batch
  (activations are batch-sharded; this undercounts replicated temporaries such as gradients)."""
  return temporary_peak(jaxpr) // max(1, int(batch_shards))


# One-line messages for a step that does not fit a chip (`ssljax.plan`).


def _overflow_message(needed: int, capacity: int, parts: dict[str, int], chip: Chip,
                      remat: bool = False) -> str:
  """One line: what overflows a chip's HBM, by how much, and what to change (`remat`: the
  activations are recomputed already, so only a smaller per-chip batch or more chips help)."""
  worst = max(parts, key=parts.get)
  detail = ", ".join(f"{k} {v / GIB:.2f} GiB" for k, v in parts.items())
  fsdp = ("shard parameters and optimizer state with FSDP (--config.mesh.fsdp=N "
          "--config.param_sharding=fsdp)")
  smaller = ("lower the per-chip batch (--config.batch_size, or more chips; activations are "
             "recomputed already)" if remat else
             "lower the per-chip batch (--config.batch_size) or recompute activations "
             "(--config.model.remat=True)")
  hint = f"{fsdp}, or {smaller}" if "argument" in worst else f"{smaller}, or {fsdp}"
  return (f"does not fit: {needed / GIB:.2f} GiB per chip ({detail}) exceeds the "
          f"{capacity / GIB:.2f} GiB HBM of a {chip.name} chip by {(needed - capacity) / GIB:.2f} "
          f"GiB, mostly {worst}; {hint}")


def _arguments_overflow(parts: dict[str, int], chip: Chip, config,
                        images_per_chip: int) -> str | None:
  """The one-line message when the step's arguments alone exceed a chip's HBM, else None."""
  needed = sum(parts.values())
  if needed <= chip.hbm_bytes:
    return None
  worst = max(parts, key=parts.get)
  detail = ", ".join(f"{k} {v / GIB:.2f} GiB" for k, v in parts.items())
  fsdp = ("FSDP already shards them: use a slice with more chips" if
          "fsdp" in str(config.get("param_sharding", "")) else
          "shard parameters and optimizer state with FSDP (--config.param_sharding=fsdp "
          "--config.mesh.fsdp=N)")
  smaller = (f"lower the per-chip batch ({images_per_chip} images per chip now; "
             f"--config.batch_size={config.batch_size} is global)")
  remat = "then recompute activations (--config.model.remat=True) for the temporaries"
  hint = (f"{smaller}, or {fsdp}; {remat}" if worst == "batch" else
          f"{fsdp}, or {smaller}; {remat}")
  return (f"does not fit: the step's arguments alone are {needed / GIB:.2f} GiB per chip "
          f"({detail}), over the {chip.hbm_bytes / GIB:.2f} GiB HBM of a {chip.name} chip by "
          f"{(needed - chip.hbm_bytes) / GIB:.2f} GiB before any activation, mostly {worst} "
          f"(not compiled); {hint}")


def _activations_overflow(arguments: int, traced_temps: int, chip: Chip, config,
                          images_per_chip: int) -> str | None:
  """The one-line message when even the traced temporaries' estimate, divided by its worst
  overestimate (OVERESTIMATE), leaves no room beside the arguments; else None."""
  floor = traced_temps / OVERESTIMATE
  if arguments + floor <= chip.hbm_bytes:
    return None
  remat = bool(config.model.get("remat", False))
  hint = (f"lower the per-chip batch ({images_per_chip} images per chip now; "
          f"--config.batch_size={config.batch_size} is global)")
  if not remat:
    hint += " or recompute activations (--config.model.remat=True)"
  return (f"does not fit: arguments {arguments / GIB:.2f} GiB per chip plus temporaries estimated "
          f"at {traced_temps / GIB:.1f} GiB from the traced step (at least "
          f"{floor / GIB:.1f} GiB after its worst overestimate, x{OVERESTIMATE:g}) "
          f"exceed the {chip.hbm_bytes / GIB:.2f} GiB HBM of a {chip.name} chip (not compiled); "
          f"{hint}")


def _oom_from_compiler(e: Exception, chip: Chip, remat: bool = False) -> str | None:
  """The one-line overflow message for XLA's 'ran out of memory' compile error, else None."""
  text = str(e)
  if "out of memory" not in text.lower() and "exceeds available hbm" not in text.lower():
    return None
  scale = {"K": 2 ** 10, "M": 2 ** 20, "G": GIB, "T": 2 ** 40}
  m = re.search(r"required for (HLO [a-z ]+?) \(([0-9.]+)([KMGT])\) exceeds available HBM "
                r"\(([0-9.]+)([KMGT])\)", text)
  if m:
    need = int(float(m.group(2)) * scale[m.group(3)])
    cap = int(float(m.group(4)) * scale[m.group(5)])
    return _overflow_message(need, cap, {m.group(1): need}, chip, remat)
  return f"does not fit: {text.splitlines()[0][:300]}"
