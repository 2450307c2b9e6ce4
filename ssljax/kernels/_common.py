"""Helpers shared by the kernels: the `impl=` switch, the target platform, padding, Pallas options.

Conventions used by every kernel in this package:
  * `impl='reference'` is plain jnp (the spec, differentiated by autodiff);
  * `impl='xla'` is the tiled algorithm written with lax loops over tiles, with a custom_vjp
    whose backward recomputes tiles: plain HLO, so it runs (and XLA partitions it) everywhere;
  * `impl='pallas'` is a Pallas kernel: ssljax's Triton kernels on GPU, Mosaic kernels on TPU,
    and the same kernels in Pallas' interpreter on CPU (the only place where it interprets,
    unless `interpret=True` is asked for);
  * `impl='auto'` picks per platform (see `resolve_impl`).

The platform is the one being compiled for, not necessarily the one this process runs on: the
platform of the mesh the trainer traces under (`ssljax.parallel.tracing`, e.g. abstract TPU
devices when `ssljax.plan` compiles for a TPU slice on a CPU machine), else `lowering_for(...)`
when set, else JAX's default backend.
"""
from __future__ import annotations

import contextlib
import contextvars

import jax
import jax.numpy as jnp

IMPLS = ("auto", "pallas", "xla", "reference")
PLATFORMS = ("cpu", "gpu", "tpu")

_LOWERING_FOR: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "ssljax_kernels_lowering_for", default=None)


@contextlib.contextmanager
def lowering_for(platform: str):
  """Traces the kernels for `platform` ('cpu' | 'gpu' | 'tpu') whatever this machine has.

  For cross-lowering, e.g. `jax.jit(f).trace(...).lower(lowering_platforms=('cuda',))` on a CPU
  machine: within this context 'auto' resolves as it would on a GPU and Pallas does not interpret.
  """
  platform = _normalise(platform)
  token = _LOWERING_FOR.set(platform)
  try:
    yield
  finally:
    _LOWERING_FOR.reset(token)


def _normalise(platform: str) -> str:
  p = {"cuda": "gpu", "rocm": "gpu"}.get(platform, platform)
  if p not in PLATFORMS:
    raise ValueError(f"platform={platform!r}; expected one of {PLATFORMS} (or 'cuda' / 'rocm')")
  return p


def target_platform() -> str:
  """'cpu' | 'gpu' | 'tpu': the platform the kernels are being traced for (see the module doc)."""
  override = _LOWERING_FOR.get()
  if override is not None:
    return override
  mesh = jax.sharding.get_abstract_mesh()
  if not mesh.empty:
    device = getattr(mesh, "abstract_device", None)
    if device is not None and getattr(device, "platform", None):
      return _normalise(device.platform)
  return _normalise(jax.default_backend())


def resolve_impl(impl: str, pallas_on: tuple[str, ...] = ("gpu", "tpu")) -> str:
  """Maps `impl` to one of 'pallas' | 'xla' | 'reference' for the target platform.

  'auto' is 'pallas' on the platforms in `pallas_on` (those where the kernel has a compiled Pallas
  lowering) and 'xla' elsewhere: on CPU the blockwise lax loops beat Pallas' interpreter.
  """
  if impl not in IMPLS:
    raise ValueError(f"impl={impl!r}; expected one of {IMPLS}")
  if impl != "auto":
    return impl
  return "pallas" if target_platform() in pallas_on else "xla"


def default_interpret() -> bool:
  """Pallas interprets only where no compiled Pallas lowering exists: on CPU."""
  return target_platform() == "cpu"


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
