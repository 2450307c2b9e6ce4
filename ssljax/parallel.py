"""Meshes, parameter partition rules and batch sharding: every sharding decision lives here.

The mesh has named axes from `config.mesh` (e.g. data=-1, fsdp=1, model=1; -1 = all remaining
devices). The batch is sharded over the data-like axes ('data', 'fsdp'). Every leaf of the train
state (params, optimizer moments, teacher params, ...) is placed by the first regex rule that
matches its path:

  'replicate'        the full array on every device;
  'fsdp'             the largest dimension divisible by the 'fsdp' axis size is split over it
                     (arrays smaller than FSDP_MIN_SIZE elements stay replicated);
  a tuple            an explicit PartitionSpec, e.g. (None, 'model').
"""
from __future__ import annotations

import contextlib
import functools
import math
import re
from typing import Any, Callable, Sequence

import jax
import numpy as np
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

BATCH_AXES = ("data", "fsdp")
MODEL_AXIS = "model"
FSDP_MIN_SIZE = 2 ** 10

# Megatron-style tensor parallelism for the ViT (ssljax/models/vit.py parameter names): attention
# heads and the MLP hidden units are split over 'model'; q/k/v kernels are [D, H, Dh], the output
# projection [H, Dh, D], fc1 [D, M], fc2 [M, D]. The same rules place the optimizer moments and an
# EMA teacher, whose paths end the same way.
VIT_TENSOR_PARALLEL: tuple[tuple[str, Any], ...] = (
    (r".*/attn/(query|key|value)/kernel", (None, "model", None)),
    (r".*/attn/(query|key|value)/bias", ("model", None)),
    (r".*/attn/out/kernel", ("model", None, None)),
    (r".*/mlp/fc1/kernel", (None, "model")),
    (r".*/mlp/fc1/bias", ("model",)),
    (r".*/mlp/fc2/kernel", ("model", None)),
)

PRESETS: dict[str, tuple[tuple[str, Any], ...]] = {
    "replicated": ((".*", "replicate"),),
    "fsdp": ((".*", "fsdp"),),
    "tp": VIT_TENSOR_PARALLEL + ((".*", "replicate"),),
    "fsdp_tp": VIT_TENSOR_PARALLEL + ((".*", "fsdp"),),
}


def mesh_shape(mesh_cfg, device_count: int) -> dict[str, int]:
  """Resolves -1 in the axis sizes of `mesh_cfg` (ordered name -> size) for `device_count` devices."""
  from ssljax.config import ConfigError
  sizes = dict(mesh_cfg.items()) if hasattr(mesh_cfg, "items") else dict(mesh_cfg)
  for name, size in sizes.items():
    if not isinstance(size, int) or size == 0 or size < -1:
      raise ConfigError(f"config.mesh.{name}={size!r}; expected a positive int or -1 (= the rest)")
  free = [n for n, s in sizes.items() if s == -1]
  if len(free) > 1:
    raise ConfigError(f"config.mesh={sizes} has -1 on {free}; expected at most one -1 axis")
  fixed = math.prod(s for s in sizes.values() if s != -1)
  if free:
    if device_count % fixed:
      raise ConfigError(f"config.mesh={sizes}: the fixed axes multiply to {fixed}, which does not "
                        f"divide the {device_count} devices")
    sizes[free[0]] = device_count // fixed
  elif fixed != device_count:
    raise ConfigError(f"config.mesh={sizes} multiplies to {fixed} devices but {device_count} are "
                      f"available; expected a product of {device_count} (or use -1 on one axis)")
  return sizes


def make_mesh(mesh_cfg, devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A Mesh over `devices` (default: all) with the named axes of `mesh_cfg`."""
  devices = list(jax.devices() if devices is None else devices)
  shape = mesh_shape(mesh_cfg, len(devices))
  return Mesh(np.asarray(devices).reshape(tuple(shape.values())), tuple(shape.keys()))


def tracing(mesh: Mesh) -> contextlib.AbstractContextManager:
  """Context in which functions are traced for `mesh`: kernels run under shard_map over it.

  Used inside a jitted function's body (see `traced_under`); `ssljax.kernels.sharding` reads the
  mesh (and from it the target platform) while the kernels are traced.
  """
  return jax.sharding.use_abstract_mesh(mesh.abstract_mesh)


def traced_under(fn: Callable, mesh: Mesh) -> Callable:
  """`fn` whose body is traced under `tracing(mesh)`; jit the result."""

  @functools.wraps(fn)
  def wrapped(*args, **kwargs):
    with tracing(mesh):
      return fn(*args, **kwargs)

  return wrapped


def batch_axes(mesh: Mesh) -> tuple[str, ...]:
  return tuple(a for a in BATCH_AXES if a in mesh.axis_names)


def data_parallel_size(mesh: Mesh) -> int:
  return math.prod(mesh.shape[a] for a in batch_axes(mesh))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) dimension split over the data-like axes, the rest replicated."""
  return NamedSharding(mesh, P(batch_axes(mesh)))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def _path_str(path) -> str:
  parts = []
  for k in path:
    for attr in ("key", "name", "idx"):
      if hasattr(k, attr):
        parts.append(str(getattr(k, attr)))
        break
    else:
      parts.append(str(k))
  return "/".join(parts)


def _fsdp_spec(shape: tuple[int, ...], mesh: Mesh) -> P:
  n = mesh.shape.get("fsdp", 1)
  if n == 1 or math.prod(shape) < FSDP_MIN_SIZE:
    return P()
  for dim in sorted(range(len(shape)), key=lambda d: -shape[d]):
    if shape[dim] % n == 0:
      spec = [None] * len(shape)
      spec[dim] = "fsdp"
      return P(*spec)
  return P()


def spec_for(path: str, shape: tuple[int, ...], mesh: Mesh, rules) -> P:
  """The PartitionSpec of one leaf: the first rule whose regex matches `path` (full match)."""
  for pattern, rule in rules:
    if re.fullmatch(pattern, path):
      if rule == "replicate":
        return P()
      if rule == "fsdp":
        return _fsdp_spec(shape, mesh)
      spec = tuple(rule)
      if len(spec) != len(shape):
        raise ValueError(f"partition rule {pattern!r} -> {spec} has rank {len(spec)} but "
                         f"{path!r} has shape {shape}")
      return P(*spec)
  return P()


def tree_shardings(tree: Any, mesh: Mesh, rules) -> Any:
  """NamedShardings for every leaf of `tree` (arrays or ShapeDtypeStructs), by path rules."""
  rules = PRESETS[rules] if isinstance(rules, str) else rules

  def one(path, leaf):
    shape = tuple(getattr(leaf, "shape", ()))
    return NamedSharding(mesh, spec_for(_path_str(path), shape, mesh, rules))

  return jax.tree_util.tree_map_with_path(one, tree)


def global_batch(local: dict[str, np.ndarray], sharding: NamedSharding) -> dict[str, jax.Array]:
  """Assembles each process's local batch into global arrays sharded by `sharding`."""
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in local.items()}
