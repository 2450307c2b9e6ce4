"""Keeps JAX from probing for a TPU that is not there (run at `import ssljax`, before JAX starts).

With libtpu installed (the `[tpu-aot]` / `[test]` extras, so that `ssljax.plan` can compile for a
TPU slice on any machine), every JAX start on a machine without a TPU tries to bring the TPU
runtime up and prints a dozen warning lines. When JAX_PLATFORMS is unset, libtpu is importable
and no TPU chip is attached (no /dev/accel* or /dev/vfio/<n> device), JAX_PLATFORMS is set to the
platforms this machine can have: 'cuda,cpu' where an NVIDIA device and JAX's CUDA plugin exist,
else 'cpu'. An explicit JAX_PLATFORMS is never changed.
"""
from __future__ import annotations

import glob
import importlib.util
import os


def _has(module: str) -> bool:
  try:
    return importlib.util.find_spec(module) is not None
  except (ImportError, ValueError):
    return False


def tpu_attached() -> bool:
  """Whether a TPU chip's device node exists (how libtpu itself finds chips)."""
  return bool(glob.glob("/dev/accel*") or glob.glob("/dev/vfio/[0-9]*"))


def quiet_tpu_probe(environ=os.environ) -> str | None:
  """Sets JAX_PLATFORMS as the module doc says; returns the value set, or None if untouched."""
  if "JAX_PLATFORMS" in environ or not _has("libtpu") or tpu_attached():
    return None
  cuda = (os.path.exists("/dev/nvidiactl") and
          (_has("jax_plugins.xla_cuda12") or _has("jax_cuda12_plugin")))
  environ["JAX_PLATFORMS"] = "cuda,cpu" if cuda else "cpu"
  return environ["JAX_PLATFORMS"]
