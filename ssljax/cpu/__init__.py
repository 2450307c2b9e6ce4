"""Everything that exists only to make XLA:CPU fast, applied only where the model runs on CPU.

None of it changes what is computed (float rounding aside):

- `xla_flags`: XLA:CPU flags, set by the command lines before JAX starts its backend.
- `host_memory`: glibc's huge-page tunable for XLA:CPU's per-call buffers (a re-exec at start-up).
- `conv`: ResNet's CPU ops: `Conv` (wide 3x3 stride-1 convs by Winograd, stride-2 convs with a
  phase-split input gradient) and `computed_once` (a conv input stored once).
- `winograd`: 3x3 stride-1 convolutions by Winograd's minimal filtering.
- `reductions`: sums over leading (batch) axes as matrix-vector products.

Whether a model gets them is decided once, when it is built, from the model config's
`cpu_tuning` ('auto' | 'on' | 'off', see `enabled`): `ssljax.models.build_backbone` hands the
CPU ops to the ResNet, and a method passes `enabled(...)` to the heads and losses that take a
`cpu_tuning` flag. With the tuning off a model is plain Flax: lax's convolutions and plain jnp
reductions, no `custom_vjp` and no conditional of this package in its program, so it lowers for
GPU / TPU as written and every autodiff mode (`jax.jvp` too) goes through it. Their measured
effect: BENCHMARKS.md, sections "ResNet CPU workarounds (each off vs all on)" and "XLA:CPU library
fusions".
"""
from __future__ import annotations

import os
from typing import Mapping, Optional

SETTINGS = ("auto", "on", "off")


def check_setting(setting: str) -> str:
  """`setting` if it is one of SETTINGS; else a one-line ValueError naming it."""
  if not isinstance(setting, str) or setting not in SETTINGS:
    raise ValueError(f"cpu_tuning={setting!r}; expected one of {SETTINGS}")
  return setting


def enabled(setting: str = "auto", backend: Optional[str] = None) -> bool:
  """Whether the CPU workarounds apply to a model built now.

  Args:
    setting: 'on' (always), 'off' (never) or 'auto' (when the model computes on the CPU backend).
    backend: the platform the model will run on, for 'auto' ('cpu', 'gpu', 'tpu'); None: JAX's
      default backend (`jax.default_backend()`, fixed once JAX has started). Pass the target
      platform when compiling ahead of time for another one (or use 'off').
  """
  if check_setting(setting) != "auto":
    return setting == "on"
  if backend is None:
    import jax  # pylint: disable=g-import-not-at-top  (the start-up helpers must not need it)
    backend = jax.default_backend()
  return backend == "cpu"


def switched_off(environ: Mapping[str, str], name: str) -> bool:
  """True when environment variable `name` turns an ssljax default off (0 / false / no / off)."""
  return environ.get(name, "1").strip().lower() in ("0", "false", "no", "off")


def accelerator_visible(environ: Mapping[str, str]) -> bool:
  """True when JAX will likely compute on a GPU or TPU rather than on this host's CPU.

  Decided before JAX starts (for the start-up settings): JAX_PLATFORMS names another platform
  first, or, without JAX_PLATFORMS, an NVIDIA or TPU device file exists.
  """
  platforms = environ.get("JAX_PLATFORMS", "").strip().lower()
  if platforms:
    return platforms.split(",")[0].strip() != "cpu"
  return any(os.path.exists(p) for p in ("/dev/nvidiactl", "/dev/accel0", "/dev/vfio/0"))
