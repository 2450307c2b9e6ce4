"""Host memory for XLA:CPU: back large allocations with transparent huge pages.

XLA:CPU runs a jitted program in one temporary buffer that it allocates at every call and frees
at the end (gigabytes for a ViT train step). glibc serves a request that large with a fresh
`mmap` of 4 KiB pages and unmaps it on free, so every train step faults in the whole buffer again,
page by page, and elementwise ops writing into fresh pages run far below memory speed.

With glibc's tunable `glibc.malloc.hugetlb=1` (glibc >= 2.35), malloc asks the kernel for
transparent huge pages (madvise(MADV_HUGEPAGE)) on the memory it maps: the same buffer then takes
a few thousand faults of 2 MiB instead of about a million of 4 KiB. Resident memory is unchanged
(memory is still returned on free). PyTorch measured the same with and without the tunable, so the
peer benchmarks leave torch at its defaults (BENCHMARKS.md, section "Train-step throughput vs
lightly", runs ssljax with the tunable); tests/test_host_memory.py checks the page faults it saves.

glibc reads tunables only when a process starts, so the command lines (`python -m ssljax.main`,
`ssljax.finetune`, `ssljax.evaluate`, the benchmarks) call `reexec_with_host_defaults()` first:
when the tunable is missing it restarts the same command (same pid, `os.execve`) with it added to
GLIBC_TUNABLES. For your own script or notebook, start Python with it:

  GLIBC_TUNABLES=glibc.malloc.hugetlb=1 python train.py

Nothing is changed when SSLJAX_HOST_MALLOC=0, when GLIBC_TUNABLES already names the tunable (your
value wins), when the C library is not glibc >= 2.35, when the kernel's transparent huge pages are
off ("never"), or when an accelerator is visible (`ssljax.cpu.accelerator_visible`): there the
large buffers live in device memory.

(Also tried: keeping freed memory in the process with mallopt (no mmap, no trim, one arena): the
heap fragmented, some steps faulted the whole buffer again, and resident memory grew to up to
twice the temporary buffer.)
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from typing import Mapping, Optional

from ssljax import cpu

ENV_OPT_OUT = "SSLJAX_HOST_MALLOC"
TUNABLE = "glibc.malloc.hugetlb"
SETTING = f"{TUNABLE}=1"
# Set on the restarted process: GLIBC_TUNABLES as it was before (so that worker processes of
# other libraries, e.g. the PyTorch peers of the benchmarks, can be started with the original).
ENV_ORIGINAL = "SSLJAX_ORIGINAL_GLIBC_TUNABLES"
THP_SYSFS = "/sys/kernel/mm/transparent_hugepage/enabled"


def glibc_version() -> Optional[tuple[int, int]]:
  """(major, minor) of the running glibc, or None where the C library is not glibc."""
  fn = None
  # find_library runs ldconfig in a subprocess: only when libc.so.6 does not load.
  for find in (lambda: "libc.so.6", lambda: ctypes.util.find_library("c")):
    name = find()
    try:
      fn = ctypes.CDLL(name).gnu_get_libc_version if name else None
    except (OSError, AttributeError):
      fn = None
    if fn is not None:
      break
  if fn is None:
    return None
  fn.restype = ctypes.c_char_p
  try:
    major, minor = fn().decode().split(".")[:2]
    return int(major), int(minor)
  except ValueError:
    return None


def thp_mode(path: str = THP_SYSFS) -> Optional[str]:
  """The kernel's transparent huge page mode ('always', 'madvise', 'never'), or None if unknown."""
  try:
    with open(path) as f:
      text = f.read()
  except OSError:
    return None
  start, end = text.find("["), text.find("]")
  return text[start + 1:end] if 0 <= start < end else None


def tuned_environ(environ: Mapping[str, str], glibc: Optional[tuple[int, int]] = None,
                  thp: Optional[str] = None) -> Optional[dict[str, str]]:
  """`environ` with SETTING added to GLIBC_TUNABLES, or None when nothing should change.

  Args:
    environ: the environment the process was started with.
    glibc, thp: the C library version and THP mode (detected when None; given in tests).
  """
  if cpu.switched_off(environ, ENV_OPT_OUT):
    return None
  current = environ.get("GLIBC_TUNABLES", "")
  if ENV_ORIGINAL in environ or TUNABLE + "=" in current or cpu.accelerator_visible(environ):
    return None
  glibc = glibc_version() if glibc is None else glibc
  thp = thp_mode() if thp is None else thp
  if glibc is None or glibc < (2, 35) or thp in (None, "never"):
    return None
  env = dict(environ)
  env["GLIBC_TUNABLES"] = f"{current}:{SETTING}" if current else SETTING
  env[ENV_ORIGINAL] = current
  return env


def original_environ(environ: Optional[Mapping[str, str]] = None) -> dict[str, str]:
  """The environment without what `reexec_with_host_defaults` added (for other programs)."""
  env = dict(os.environ if environ is None else environ)
  if ENV_ORIGINAL in env:
    original = env.pop(ENV_ORIGINAL)
    if original:
      env["GLIBC_TUNABLES"] = original
    else:
      env.pop("GLIBC_TUNABLES", None)
  return env


def reexec_with_host_defaults() -> None:
  """Restarts this command with SETTING in GLIBC_TUNABLES when `tuned_environ` says so.

  Call it first in a command line's entry point, before anything else has run: the process image
  is replaced (same pid, same arguments, same standard streams). Returns when nothing changes.
  """
  env = tuned_environ(os.environ)
  if env is None:
    return
  argv = list(getattr(sys, "orig_argv", []))
  if not argv or not sys.executable:
    return
  sys.stdout.flush()
  sys.stderr.flush()
  os.execve(sys.executable, [sys.executable] + argv[1:], env)
