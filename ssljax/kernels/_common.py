"""Helpers shared by the kernels: the `impl=` switch, padding, Pallas call options.

Conventions used by every kernel in this package:
  * `impl='reference'` is plain jnp (the spec, differentiated by autodiff);
  * `impl='xla'` is the tiled algorithm written with lax loops over tiles, with a custom_vjp
    whose backward recomputes tiles;
  * `impl='pallas'` is the same algorithm as Pallas kernels (Triton lowering on GPU; run with
    `interpret=True` on CPU), with the same custom_vjp;
  * `impl='auto'` picks 'pallas' where a Pallas lowering is implemented (GPU) and 'xla' elsewhere.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

IMPLS = ("auto", "pallas", "xla", "reference")


def resolve_impl(impl: str) -> str:
  """Maps `impl` to one of 'pallas' | 'xla' | 'reference' for the current default backend.

  'auto' is 'pallas' on GPU and 'xla' on CPU and TPU (the Pallas kernels here have a GPU/Triton
  lowering only; on TPU the blockwise XLA path is used until a Mosaic-TPU lowering exists).
  """
  if impl not in IMPLS:
    raise ValueError(f"impl={impl!r}; expected one of {IMPLS}")
  if impl != "auto":
    return impl
  return "pallas" if jax.default_backend() == "gpu" else "xla"


def default_interpret() -> bool:
  """Pallas interpret mode is needed wherever no Pallas lowering is available (CPU)."""
  return jax.default_backend() not in ("gpu",)


def round_up(x: int, multiple: int) -> int:
  return -(-x // multiple) * multiple


def next_pow2(x: int) -> int:
  return 1 << max(0, (int(x) - 1).bit_length())


def pad_axis(x: jax.Array, axis: int, size: int, value=0) -> jax.Array:
  """Pads `x` along `axis` (at the end) up to `size` with `value`; no-op if already that size."""
  extra = size - x.shape[axis]
  if extra == 0:
    return x
  widths = [(0, 0)] * x.ndim
  widths[axis] = (0, extra)
  return jnp.pad(x, widths, constant_values=value)


def pallas_compiler_params(interpret: bool, num_warps: int = 4, num_stages: int = 2):
  """Triton compiler params on GPU (this also picks the Triton backend); None when interpreting."""
  if interpret:
    return None
  from jax.experimental.pallas import triton as pl_triton  # pylint: disable=g-import-not-at-top
  return pl_triton.CompilerParams(num_warps=num_warps, num_stages=num_stages)


def _varying_axes(x) -> frozenset:
  aval = jax.typeof(x)
  mat = getattr(aval, "manual_axis_type", None)
  if mat is not None:
    return frozenset(getattr(mat, "varying", ()) or ())
  return frozenset(getattr(aval, "vma", ()) or ())  # older spelling of the same set


def match_vma(tree, *refs):
  """Marks the fresh arrays in `tree` as varying over every manual axis any of `refs` varies over.

  Inside `shard_map` (check_vma=True) a loop carry initialised with a constant is 'invariant'
  while the loop body, fed with per-device data, returns a 'varying' value; lax loops reject the
  mismatch. Kernels call this on their initial carries; outside shard_map it is a no-op.
  """
  axes = frozenset().union(*(_varying_axes(r) for r in jax.tree_util.tree_leaves(refs)))
  if not axes:
    return tree
  from jax import lax  # pylint: disable=g-import-not-at-top

  def cast(leaf):
    missing = tuple(sorted(axes - _varying_axes(leaf)))
    return lax.pcast(leaf, missing, to="varying") if missing else leaf

  return jax.tree_util.tree_map(cast, tree)


def out_struct(shape, dtype, like) -> jax.ShapeDtypeStruct:
  """ShapeDtypeStruct for a pallas_call output that varies over the same manual axes as `like`."""
  mat = getattr(jax.typeof(like), "manual_axis_type", None)
  if mat is None or not getattr(mat, "varying", None):
    return jax.ShapeDtypeStruct(shape, dtype)
  return jax.ShapeDtypeStruct(shape, dtype, manual_axis_type=mat)
