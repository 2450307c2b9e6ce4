"""Kernels under `shard_map`: the one place that wraps a kernel call for the mesh it is traced in.

XLA cannot partition a custom call: a Mosaic (TPU) kernel in a GSPMD-sharded program is refused
("Mosaic kernels cannot be automatically partitioned"), and a Triton (GPU) call would be gathered
and computed whole on every device. So every kernel entry point of this package asks
`kernel_mesh()` for the mesh it is being traced under (`ssljax.parallel.tracing`, which the trainer
and `ssljax.plan` put around the train step) and, on more than one device, runs its per-shard body
through `shard_map` over that mesh:

  * the batch dimension is split over the data-like axes (`ssljax.parallel.BATCH_AXES`) when every
    batch dimension involved divides by their size, else the kernel runs replicated (only
    compiled kernels need that; the plain-HLO 'xla' / 'reference' paths are then left to XLA);
  * attention heads are split over the 'model' axis when the head count divides by its size (the
    tensor-parallel partition rules of `ssljax.parallel` split q / k / v projections that way);
  * axes that are already manual (the call sits inside a user's own `shard_map`) are left alone.

Methods and models never see any of this; outside `tracing` (a plain `jax.jit` on one device, a
test) the kernels run as they are.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import jax
from jax.sharding import AbstractMesh
from jax.sharding import PartitionSpec as P

from ssljax.parallel import BATCH_AXES, MODEL_AXIS


def _free_axes(mesh: AbstractMesh) -> dict[str, int]:
  manual = set(getattr(mesh, "manual_axes", ()) or ())
  return {a: s for a, s in mesh.shape.items() if a not in manual}


def kernel_mesh() -> AbstractMesh | None:
  """The abstract mesh being traced under, or None when there is none or it spans one device."""
  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty or math.prod(_free_axes(mesh).values()) == 1:
    return None
  return mesh


def batch_axes(mesh: AbstractMesh, sizes: Sequence[int]) -> tuple[str, ...]:
  """The data-like axes to split batch dimensions of `sizes` over; () if one does not divide."""
  free = _free_axes(mesh)
  axes = tuple(a for a in BATCH_AXES if free.get(a, 1) > 1)
  n = math.prod(free[a] for a in axes)
  return axes if all(s % n == 0 for s in sizes) else ()


def model_axis(mesh: AbstractMesh, heads: int) -> str | None:
  """'model' when the mesh splits it (> 1) and `heads` divides by its size, else None."""
  size = _free_axes(mesh).get(MODEL_AXIS, 1)
  return MODEL_AXIS if size > 1 and heads % size == 0 else None


def axis_spec(axes: tuple[str, ...]) -> Any:
  """A PartitionSpec entry for a dimension split over `axes` (None when empty)."""
  if not axes:
    return None
  return axes[0] if len(axes) == 1 else axes


def shard_mapped(fn: Callable, mesh: AbstractMesh, in_specs, out_specs) -> Callable:
  """`fn` under `jax.shard_map` over all of `mesh` (axes not named in a spec are replicated).

  check_vma is off: Pallas' interpreter (CPU) slices per-device buffers with replicated grid
  indices, which the checker rejects; the transpose then sums the cotangents of replicated inputs
  over the devices, which is what their gradients need.
  """
  return jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False)


def batch_spec(axes: tuple[str, ...], ndim: int, extra: dict[int, Any] | None = None) -> P:
  """P(axes, None, ...) for an array of rank `ndim`, with `extra` {dim: axis} entries."""
  spec = [None] * ndim
  spec[0] = axis_spec(axes)
  for dim, ax in (extra or {}).items():
    spec[dim] = ax
  return P(*spec)
