"""Writes one benchmark's section of BENCHMARKS.md (at the repository root).

Each benchmark script owns one `## title` section and replaces it on every run, leaving the other
sections alone; a new title is appended at the end. The section is stamped with the date, the
machine (platform, CPU count, accelerator) and the JAX version.

  from benchmarks.report import markdown_table, write_section
  table = markdown_table(["N", "time (ms)"], [[1024, 3.2], [4096, 41.0]])
  write_section("Contrastive loss memory", table, {"command": "python -m benchmarks.x"})
"""
from __future__ import annotations

import datetime
import importlib.util
import os
import platform
import re
from typing import Any, Mapping, Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_PATH = os.path.join(ROOT, "BENCHMARKS.md")
HEADER = ("# ssljax benchmarks\n\nWritten by the scripts in `benchmarks/` (each owns one section; "
          "re-run a script to refresh its section).\n")


def load_config(path: str):
  """`get_config()` of a config file (e.g. configs/simclr_digits.py), loaded by path."""
  spec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(path))[0], path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def package_version(name: str) -> str:
  """The installed version of distribution `name`, or 'not installed'."""
  from importlib.metadata import PackageNotFoundError, version  # pylint: disable=g-import-not-at-top
  try:
    return version(name)
  except PackageNotFoundError:
    return "not installed"


def cpu_simd(cpuinfo: str = "/proc/cpuinfo") -> str:
  """The widest x86 vector extension the CPU has (XLA:CPU's code and rounding depend on it)."""
  try:
    with open(cpuinfo) as f:
      flags = set(f.read().split())
  except OSError:
    return "unknown"
  return next((name for flag, name in (("avx512f", "AVX-512"), ("avx2", "AVX2"), ("avx", "AVX"))
               if flag in flags), "no AVX")


def machine() -> dict[str, Any]:
  """Date, platform, CPU count and vector extension, JAX version and backend/devices, for stamping a
  section."""
  import jax  # pylint: disable=g-import-not-at-top
  devices = jax.devices()
  return {
      "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
      "platform": f"{platform.system()} {platform.machine()} ({platform.processor() or 'cpu'})",
      "cpu_count": os.cpu_count(),
      # XLA:CPU's code (speed and rounding) depends on it: DINO ViT-Tiny/4 ran 1.05x lightly on
      # an AVX2 machine and 1.7-1.9x on an AVX-512 one.
      "cpu_simd": cpu_simd(),
      "jax": jax.__version__,
      "backend": jax.default_backend(),
      "devices": f"{len(devices)} x {devices[0].device_kind}",
  }


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
  """A GitHub markdown table; floats are printed with up to 4 significant digits."""
  def cell(x):
    if isinstance(x, float):
      return f"{x:.4g}"
    return str(x)
  lines = ["| " + " | ".join(map(str, header)) + " |",
           "|" + "|".join("---" for _ in header) + "|"]
  lines += ["| " + " | ".join(cell(x) for x in row) + " |" for row in rows]
  return "\n".join(lines)


def write_section(title: str, markdown_table: str, meta: Mapping[str, Any] | None = None,
                  path: str = DEFAULT_PATH) -> str:
  """Replaces (or appends) the `## title` section of `path` and returns the section text.

  Args:
    title: section title (without the leading '## ').
    markdown_table: the body: a table and any notes, as markdown.
    meta: extra key/values shown under the title (the command line, sizes, notes); the machine
      stamp (date, platform, cpu count, jax version, devices) is added automatically.
    path: the markdown file, BENCHMARKS.md at the repository root by default.
  """
  stamp = {**machine(), **(meta or {})}
  meta_lines = "\n".join(f"- {k}: {str(v).strip()}" for k, v in stamp.items())
  section = f"## {title}\n\n{meta_lines}\n\n{markdown_table.strip()}\n"
  text = open(path).read() if os.path.exists(path) else HEADER
  pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
  if pattern.search(text):
    text = pattern.sub(lambda _: section + "\n", text, count=1)
  else:
    text = text.rstrip("\n") + "\n\n" + section
  text = text.rstrip("\n") + "\n"
  with open(path, "w") as f:
    f.write(text)
  return section
