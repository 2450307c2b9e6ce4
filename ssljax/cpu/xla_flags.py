"""ssljax's XLA:CPU flags, set by the command lines before JAX starts its backend.

XLA:CPU (jaxlib 0.10) hands convolutions to YNNPACK by default, and YNNPACK's convolutions were
several times slower than XLA's own (Eigen) ones in a ResNet train step on the machines ssljax
is developed on. The default below removes only the individual convolutions from YNNPACK's fusion
types: YNNPACK keeps dots, elementwise and reduce fusions, convolutions go back to Eigen. The
alternatives measured (YNNPACK off altogether, or without its reduce or dot fusions) and all the
numbers: BENCHMARKS.md, section "XLA:CPU library fusions" (benchmarks/xla_cpu_flags.py).

`python -m ssljax.main`, `ssljax.finetune`, `ssljax.evaluate`, `ssljax.export` and the benchmarks
call `apply_cpu_defaults()` first. In your own script or notebook, call it before the first JAX
computation:

  from ssljax.cpu import xla_flags; xla_flags.apply_cpu_defaults()

Without it, building a train step for the CPU backend (`ssljax.build.make_train_step`) warns once
(`MissingCpuFlagsWarning`): the slowdown would otherwise go unnoticed.

Nothing is added where JAX will compute on a GPU or TPU (`ssljax.cpu.accelerator_visible`), with
`setting='off'` (the config's `model.cpu_tuning`), or with SSLJAX_XLA_CPU_DEFAULTS=0. A flag you
set yourself in XLA_FLAGS always wins: a default is added only when XLA_FLAGS does not name that
flag. The flags change which library computes a convolution, so results differ from a run
without them in the last bits (and then, through training, more), as any backend change does.
"""
from __future__ import annotations

import os
import warnings
from typing import Mapping, MutableMapping

from ssljax import cpu

ENV_OPT_OUT = "SSLJAX_XLA_CPU_DEFAULTS"
CPU_DEFAULTS = (
    # YNNPACK keeps dots, elementwise and reduce fusions; convolutions go back to XLA's Eigen ones.
    "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution",
)


def _flag_name(flag: str) -> str:
  return flag.split("=", 1)[0]


def _not_named(xla_flags: str) -> list[str]:
  """The CPU_DEFAULTS whose flag the XLA_FLAGS string `xla_flags` does not name."""
  named = {_flag_name(f) for f in xla_flags.split()}
  return [f for f in CPU_DEFAULTS if _flag_name(f) not in named]


def apply_cpu_defaults(environ: MutableMapping[str, str] | None = None,
                       setting: str = "auto") -> list[str]:
  """Appends ssljax's XLA:CPU defaults to $XLA_FLAGS; returns the flags it added.

  Args:
    environ: the environment to edit (os.environ by default).
    setting: 'auto' (add them unless an accelerator is visible, `cpu.accelerator_visible`),
      'on' (add them) or 'off' (add nothing): the config's `model.cpu_tuning`.

  Nothing is added when SSLJAX_XLA_CPU_DEFAULTS=0, or for a flag that XLA_FLAGS already names.
  Warns (and still edits the environment) when JAX's backends are already running, because XLA
  reads XLA_FLAGS once, when the first backend starts.
  """
  env = os.environ if environ is None else environ
  cpu.check_setting(setting)
  if (setting == "off" or cpu.switched_off(env, ENV_OPT_OUT)
      or (setting == "auto" and cpu.accelerator_visible(env))):
    return []
  current = env.get("XLA_FLAGS", "")
  added = _not_named(current)
  if not added:
    return []
  env["XLA_FLAGS"] = " ".join([current.strip()] + added).strip()
  if environ is None and _backends_started():
    warnings.warn(f"ssljax.cpu.xla_flags.apply_cpu_defaults() was called after JAX started its "
                  f"backends, so {added} take effect only in new processes; call it before the "
                  f"first JAX computation.", stacklevel=2)
  return added


class MissingCpuFlagsWarning(UserWarning):
  """A train step built for XLA:CPU in a process that started JAX without ssljax's flags."""


_warned_missing = False


def warn_if_missing(setting: str = "auto", environ: Mapping[str, str] | None = None,
                    backend: str | None = None) -> list[str]:
  """Warns once per process when a CPU run goes without ssljax's XLA:CPU defaults; returns them.

  The command lines add the flags themselves; a script or notebook that builds a train step
  (`ssljax.build.make_train_step`) without calling `apply_cpu_defaults()` first would otherwise
  run its convolutions through YNNPACK silently (BENCHMARKS.md "XLA:CPU library fusions"). Quiet
  where `apply_cpu_defaults` would add nothing: another backend, `setting='off'`,
  SSLJAX_XLA_CPU_DEFAULTS=0, or XLA_FLAGS already naming each flag.
  """
  global _warned_missing
  env = os.environ if environ is None else environ
  if not cpu.enabled(setting, backend) or cpu.switched_off(env, ENV_OPT_OUT):
    return []
  missing = _not_named(env.get("XLA_FLAGS", ""))
  if missing and not _warned_missing:
    _warned_missing = True
    warnings.warn(f"XLA:CPU runs without ssljax's flags {missing} (the command lines add them): "
                  f"convolutions go through YNNPACK, several times slower in ssljax's measurements. "
                  f"Call ssljax.cpu.xla_flags.apply_cpu_defaults() before the first JAX computation, "
                  f"or set {ENV_OPT_OUT}=0 to run without them quietly.",
                  MissingCpuFlagsWarning, stacklevel=3)
  return missing


def _backends_started() -> bool:
  try:
    from jax._src import xla_bridge  # pylint: disable=g-import-not-at-top
    return bool(xla_bridge.backends_are_initialized())
  except (ImportError, AttributeError):  # a JAX without this helper: cannot tell, do not warn
    return False
