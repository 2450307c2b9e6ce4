"""What `import ssljax` checks about the machine's accelerators, before anything imports JAX.

Two things, both decided from device nodes and installed packages (no JAX import, no device query):

1. `quiet_tpu_probe`: with libtpu installed (the `[tpu-aot]` / `[test]` extras, so that
   `ssljax.plan` can compile for a TPU slice on any machine), every JAX start on a machine without
   a TPU tries to bring the TPU runtime up and prints a dozen warning lines. When JAX_PLATFORMS is
   unset, libtpu is importable and no TPU chip is attached, JAX_PLATFORMS is set to the platforms
   this machine can have: 'cuda,cpu' where an NVIDIA device and JAX's CUDA plugin exist, else 'cpu'.
2. `accelerator_hint`: an NVIDIA GPU (/dev/nvidiactl, /dev/nvidia<N>) without JAX's CUDA plugin, or
   a TPU chip (/dev/accel<N>, /dev/vfio/<N>) without libtpu, means JAX would quietly run on the CPU;
   `import ssljax` then prints one line to stderr with the command that fixes it.

An explicit JAX_PLATFORMS is a choice: it is never changed, and no hint is printed.
"""
from __future__ import annotations

import dataclasses
import glob
import importlib.util
import os
import sys

NVIDIA_NODES = ("/dev/nvidiactl", "/dev/nvidia[0-9]*")
TPU_NODES = ("/dev/accel*", "/dev/vfio/[0-9]*")   # how libtpu itself finds chips
CUDA_PLUGINS = ("jax_plugins.xla_cuda12", "jax_cuda12_plugin",
                "jax_plugins.xla_cuda13", "jax_cuda13_plugin")


def _has(module: str) -> bool:
  try:
    return importlib.util.find_spec(module) is not None
  except (ImportError, ValueError):
    return False


@dataclasses.dataclass(frozen=True)
class Devices:
  """The accelerator device nodes found (paths; empty when none)."""
  nvidia: tuple[str, ...] = ()
  tpu: tuple[str, ...] = ()


def probe(nvidia_globs=NVIDIA_NODES, tpu_globs=TPU_NODES) -> Devices:
  """The device nodes matching the globs on this machine."""
  find = lambda globs: tuple(sorted(p for g in globs for p in glob.glob(g)))
  return Devices(nvidia=find(nvidia_globs), tpu=find(tpu_globs))


def tpu_attached(devices: Devices | None = None) -> bool:
  """Whether a TPU chip's device node exists."""
  return bool((devices or probe()).tpu)


def cuda_plugin(has=_has) -> bool:
  """Whether JAX's CUDA plugin (CUDA 12 or 13) is installed."""
  return any(has(m) for m in CUDA_PLUGINS)


def quiet_tpu_probe(environ=os.environ, devices: Devices | None = None, has=_has) -> str | None:
  """Sets JAX_PLATFORMS as the module doc says; returns the value set, or None if untouched."""
  if "JAX_PLATFORMS" in environ or not has("libtpu"):
    return None
  devices = devices or probe()
  if devices.tpu:
    return None
  environ["JAX_PLATFORMS"] = "cuda,cpu" if devices.nvidia and cuda_plugin(has) else "cpu"
  return environ["JAX_PLATFORMS"]


def _jax_version() -> str | None:
  try:
    from importlib import metadata  # pylint: disable=g-import-not-at-top
    return metadata.version("jax")
  except Exception:  # pylint: disable=broad-except
    return None


def accelerator_hint(environ=os.environ, devices: Devices | None = None, has=_has,
                     jax_version=_jax_version) -> str | None:
  """One line naming an accelerator that JAX cannot use and the install that fixes it, or None."""
  if "JAX_PLATFORMS" in environ:
    return None
  devices = devices or probe()
  if devices.tpu and not has("libtpu"):
    found, what, missing, extra = devices.tpu[0], "a TPU is attached", "libtpu is not installed", "tpu"
  elif devices.nvidia and not devices.tpu and not cuda_plugin(has):
    found, what, missing, extra = (devices.nvidia[0], "an NVIDIA GPU is present",
                                   "JAX has no CUDA plugin", "cuda12")
  else:
    return None
  version = jax_version()
  jax_req = f"jax[{extra}]=={version}" if version else f"jax[{extra}]"
  return (f"ssljax: {what} ({found}) but {missing}, so JAX will run on the CPU; fix: "
          f"pip install '{jax_req}' (in a checkout: pip install -e '.[{extra}]')")


def _worker_process() -> bool:
  """Whether this is a multiprocessing child (a grain data worker): its parent said it already."""
  import multiprocessing  # pylint: disable=g-import-not-at-top
  return multiprocessing.parent_process() is not None


def check(environ=os.environ, stream=None, devices: Devices | None = None, has=_has,
          jax_version=_jax_version, worker_process=_worker_process) -> str | None:
  """What `import ssljax` runs: prints the accelerator hint (if any, once: not in the data worker
  processes), then quiets the TPU probe. Returns the hint."""
  devices = devices or probe()
  hint = accelerator_hint(environ, devices, has, jax_version)
  if hint and not worker_process():
    print(hint, file=stream or sys.stderr)
  quiet_tpu_probe(environ, devices, has)
  return hint
