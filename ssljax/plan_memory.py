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

import numpy as np

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
