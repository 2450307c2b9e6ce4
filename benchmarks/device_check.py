"""The one-call GPU check: kernels, attention, contrastive losses, train steps and the quickstart on
this machine's accelerator, each written as a BENCHMARKS.md section that names the device.

  bash benchmarks/device_check.sh                 # on the GPU machine: <= 8 min, writes BENCHMARKS.md
  bash benchmarks/device_check.sh --smoke         # any machine, seconds: toy shapes, temp file
  python -m benchmarks.device_check --sections train --budget 200 --out /tmp/B.md

Sections (in this order; each runs in its own process with its share of --budget seconds, so one
that fails, hangs or is out of time loses only itself; rows are written as they finish):
  correctness   Triton / cuDNN attention and the contrastive kernels vs the references
  attention     TFLOP/s at ViT-B/16 and ViT-L/14 shapes (benchmarks/device_kernels.py)
  contrastive   CLIP / NT-Xent / SigLIP at N = 16k, 65k, 262k vs the naive loss
  train         train-step images/s and MFU of SimCLR R50, DINO ViT-S/16, MAE ViT-B/16 (bf16,
                224 px, batch 256): device-resident batch (pipeline off), grain with device
                augmentation, grain with host augmentation (benchmarks/device_train.py)
  quickstart    `python -m ssljax.main --config configs/simclr_digits.py` and its kNN top-1
                (benchmarks/device_train.py)

--smoke runs the same code at toy shapes (CPU, seconds) and writes to a temporary file unless
--out names one (`--out -` prints only). The summary section "Device check" lists what ran.
This file imports only the standard library at the top: the wheel installer
(`--install-wheels`, run by device_check.sh) must work before grain / ml-collections exist.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHMARKS = os.path.join(ROOT, "BENCHMARKS.md")
WHEEL_DIR = os.path.join(ROOT, ".whl")
SUMMARY_TITLE = "Device check"

# Section name -> (share of the budget, least seconds worth starting it with) on an accelerator,
# then the same with --smoke (on CPU compiling dominates: the train step and the quickstart).
SECTIONS = {
    "correctness": ((110, 20), (20, 8)),
    "attention": ((50, 20), (14, 8)),
    "contrastive": ((60, 25), (14, 8)),
    "train": ((170, 60), (40, 15)),
    "quickstart": ((50, 30), (30, 10)),
}
DEFAULT_BUDGET_S = 440       # the sections' total; device_check.sh's installs and start-up fit in 8 min
SMOKE_BUDGET_S = 110

# What the check imports beyond the machine's jax / flax / optax / orbax / chex, as
# (module, pip requirement), pinned as in requirements-lock.txt. Their dependencies come along.
NEEDED = [
    ("grain", "grain==0.2.18"), ("ml_collections", "ml-collections==1.1.0"),
    ("PIL", "pillow==13.0.0"), ("tqdm", "tqdm==4.70.1"), ("tensorboardX", "tensorboardX==2.6.5"),
    ("threadpoolctl", "threadpoolctl==3.8.0"), ("matplotlib", "matplotlib==3.11.2"),
]
# The digits data is the CSV scikit-learn ships: its wheel is installed without its dependencies
# (scipy alone is 35 MB), which is enough to read the file.
NO_DEPS = [("sklearn", "scikit-learn==1.9.1")]
# Wheels that jax itself requires, so the machine has them: dropped from .whl/ to keep it small.
ALREADY_THERE = ("numpy-",)
_PLATFORM = ["--only-binary=:all:", "--platform", "manylinux_2_28_x86_64", "--platform",
             "manylinux_2_17_x86_64", "--platform", "manylinux2014_x86_64"]


def download_commands(python_version: str, dest: str = ".whl") -> list[list[str]]:
  """The `pip download`s that fill `dest` with the wheels the check needs, for `python_version`:
  NEEDED with their dependencies, then NO_DEPS alone."""
  base = [sys.executable, "-m", "pip", "download", "--dest", dest, "--python-version",
          python_version, *_PLATFORM]
  return [base + [r for _, r in NEEDED], base + ["--no-deps"] + [r for _, r in NO_DEPS]]


def download_wheels(python_version: str, dest: str = WHEEL_DIR) -> int:
  for cmd in download_commands(python_version, dest):
    print(" ".join(cmd), flush=True)
    if subprocess.call(cmd):
      return 1
  for name in sorted(os.listdir(dest)):
    if name.startswith(ALREADY_THERE):
      os.remove(os.path.join(dest, name))
  size = sum(os.path.getsize(os.path.join(dest, n)) for n in os.listdir(dest))
  print(f"[device_check] {dest}: {len(os.listdir(dest))} wheels, {size / 2**20:.0f} MiB, "
        f"for Python {python_version}")
  return 0


def missing_modules(pairs) -> list[tuple[str, str]]:
  import importlib.util  # pylint: disable=import-outside-toplevel
  return [(m, r) for m, r in pairs if importlib.util.find_spec(m) is None]


def install_wheels(wheel_dir: str = WHEEL_DIR) -> int:
  """Installs what the check needs and this Python lacks from `wheel_dir`, offline. 0 when all is
  importable afterwards; otherwise prints one line per problem and returns 1 (the check still
  runs: the kernel sections need only jax)."""
  todo, no_deps = missing_modules(NEEDED), missing_modules(NO_DEPS)
  if not todo and not no_deps:
    print("[device_check] grain, ml-collections and the rest are importable: nothing to install")
    return 0
  names = [m for m, _ in todo + no_deps]
  if not os.path.isdir(wheel_dir) or not os.listdir(wheel_dir):
    print(f"[device_check] missing {names} and no wheels in {wheel_dir}; fill it where the "
          f"package registry is reachable with: bash benchmarks/device_check.sh --download-wheels "
          f"(PYVER=<this machine's python, e.g. 3.12>)")
    return 1
  base = [sys.executable, "-m", "pip", "install", "--no-index", "--find-links", wheel_dir,
          "--disable-pip-version-check", "-q"]
  for reqs, extra in (([r for _, r in todo], []), ([r for _, r in no_deps], ["--no-deps"])):
    if reqs:
      print(f"[device_check] installing from {wheel_dir}: {' '.join(reqs)}", flush=True)
      run = subprocess.run(base + extra + reqs, capture_output=True, text=True)
      if run.returncode:
        tail = (run.stderr or run.stdout).strip().splitlines()[-1:]
        print(f"[device_check] pip install failed ({tail}); are the wheels for Python "
              f"{sys.version_info.major}.{sys.version_info.minor}?")
  left = [m for m, _ in missing_modules(NEEDED + NO_DEPS)]
  if left:
    print(f"[device_check] still missing after install: {left}; sections needing them will fail")
    return 1
  return 0


# ----------------------------------------------------------------------------------------------
# A section's context: where to write, how much time is left, rows written as they finish.
# ----------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Context:
  smoke: bool
  out: str | None          # BENCHMARKS path, or None to print only
  deadline: float          # time.time() by which the section must be done
  command: str = "bash benchmarks/device_check.sh"
  rows: int = 0            # rows measured so far
  cases: tuple = ()        # --cases: only the train cases whose names contain one of these

  def time_left(self) -> float:
    return self.deadline - time.time()

  def out_of_time(self, reserve: float = 5.0) -> bool:
    """True when the next case should be skipped; never before the first row (every table gets
    at least one measured case: the section was started only with its least time left)."""
    return self.rows > 0 and self.time_left() < reserve

  def section(self, title, header) -> "Section":
    return Section(self, title, list(header))

  def guard(self, sec: "Section", cells, compute) -> None:
    """Adds `cells + compute()`, or `cells + ['error: ...']` when compute raises (the section
    goes on with its next row)."""
    try:
      sec.add(list(cells) + list(compute()))
    except Exception as e:  # pylint: disable=broad-except
      msg = " ".join(f"{type(e).__name__}: {e}".split())[:160].replace("|", "/")
      print(traceback.format_exc(), file=sys.stderr, flush=True)
      sec.add(list(cells) + [f"error: {msg}"] + [""] * (len(sec.header) - len(cells) - 1))


class Section:
  """One BENCHMARKS.md section whose rows are written (and printed) as they are measured."""

  def __init__(self, ctx: Context, title: str, header: list[str]):
    self.ctx, self.title, self.header, self.rows = ctx, title, header, []

  def table(self) -> str:
    from benchmarks import report  # pylint: disable=import-outside-toplevel
    return report.markdown_table(self.header, self.rows)

  def add(self, row) -> None:
    self.rows.append(row)
    self.ctx.rows += 1
    print(" | ".join(map(str, row)), flush=True)
    self._write("\n\n_Incomplete: this section was still running when it was written._")

  def finish(self, notes: str = "") -> None:
    skipped = ("\n\nSome cases were skipped: the section's share of the time budget ran out."
               if self.ctx.out_of_time() else "")
    self._write(("\n\n" + notes if notes else "") + skipped)
    print(f"\n## {self.title}\n\n{self.table()}\n", flush=True)

  def _write(self, notes: str) -> None:
    if not self.ctx.out:
      return
    from benchmarks import report  # pylint: disable=import-outside-toplevel
    import jax  # pylint: disable=import-outside-toplevel
    report.write_section(self.title, self.table() + notes,
                         {"device": jax.devices()[0].device_kind, "command": self.ctx.command
                          + (" --smoke" if self.ctx.smoke else "")}, path=self.ctx.out)


# ----------------------------------------------------------------------------------------------
# The orchestrator: one process per section, within the budget; a summary section at the end.
# ----------------------------------------------------------------------------------------------
DEVICE_LINE = "[device_check] device: "


def _run_child(name: str, args, timeout: float, seen: dict) -> tuple[str, float, list[str]]:
  """Runs one section in its own process group; (status, seconds, last output lines). The
  device the section ran on goes into seen['device']."""
  cmd = [sys.executable, "-m", "benchmarks.device_check", "--section", name,
         "--out", args.out or "-", "--deadline", str(time.time() + timeout - 2)]
  if args.smoke:
    cmd.append("--smoke")
  if args.cases:
    cmd += ["--cases", *args.cases]
  env = dict(os.environ)
  env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
  env.setdefault("PYTHONUNBUFFERED", "1")
  if args.smoke:
    # One CPU device, as the GPU machine has one GPU (a test runner's simulated devices would make
    # every toy step a sharded one), compiled with little optimisation: seconds, not minutes.
    env.setdefault("JAX_PLATFORMS", "cpu")
    flags = re.sub(r"--xla_force_host_platform_device_count=\S+", "", env.get("XLA_FLAGS", ""))
    env["XLA_FLAGS"] = (flags + " --xla_backend_optimization_level=0").strip()
  tail: list[str] = []
  t0 = time.perf_counter()
  proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, start_new_session=True)

  def pump():
    for line in proc.stdout:
      sys.stdout.write(f"[{name}] {line}")
      sys.stdout.flush()
      tail.append(line.rstrip())
      if line.startswith(DEVICE_LINE):
        seen["device"] = line[len(DEVICE_LINE):].strip()
      del tail[:-20]
  reader = threading.Thread(target=pump, daemon=True)
  reader.start()
  try:
    rc = proc.wait(timeout=timeout)
    status = "ok" if rc == 0 else f"failed (exit {rc})"
  except subprocess.TimeoutExpired:
    os.killpg(proc.pid, signal.SIGKILL)   # the section's own process group
    proc.wait()
    status = f"timed out after {timeout:.0f} s"
  reader.join(timeout=5)
  return status, time.perf_counter() - t0, tail


def replace_section(path: str, title: str, body: str) -> None:
  """Replaces (or appends) `## title` of `path` with `body`, without importing jax (this process
  must not take the accelerator from the sections' processes)."""
  from benchmarks import report  # pylint: disable=import-outside-toplevel  (stdlib only)
  section = f"## {title}\n\n{body.strip()}\n"
  text = open(path).read() if os.path.exists(path) else report.HEADER
  pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
  if pattern.search(text):
    text = pattern.sub(lambda _: section + "\n", text, count=1)
  else:
    text = text.rstrip("\n") + "\n\n" + section
  with open(path, "w") as f:
    f.write(text.rstrip("\n") + "\n")


def _mark_incomplete(path: str, name: str, status: str, tail: list[str]) -> None:
  """Appends what went wrong to the section the child wrote (or writes one saying so)."""
  title = _TITLES[name]
  text = open(path).read() if os.path.exists(path) else ""
  m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
  body = m.group(1).strip() if m else f"- status: {status}"
  body = body.replace("\n\n_Incomplete: this section was still running when it was written._", "")
  errors = [l for l in tail if l.strip()][-3:]
  note = (f"\n\n**This section did not finish: {status}.** Its last output:\n\n```\n"
          + "\n".join(errors) + "\n```\n")
  replace_section(path, title, body + note)


_TITLES = {"correctness": "Device check: kernel correctness",
           "attention": "Device check: attention TFLOP/s",
           "contrastive": "Device check: contrastive loss at large N",
           "train": "Device check: train-step throughput",
           "quickstart": "Device check: quickstart"}


def orchestrate(args) -> int:
  names = args.sections or list(SECTIONS)
  budget = args.budget or (SMOKE_BUDGET_S if args.smoke else DEFAULT_BUDGET_S)
  end = time.time() + budget
  results, seen = [], {"device": "unknown"}
  if args.out:
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  print(f"[device_check] sections {names}, budget {budget:.0f} s, writing "
        f"{args.out or 'stdout only'}", flush=True)
  for i, name in enumerate(names):
    left = end - time.time()
    shares = [SECTIONS[n][args.smoke][0] for n in names[i:]]
    least = SECTIONS[name][args.smoke][1]
    timeout = min(max(least, left * shares[0] / sum(shares)), left)
    if timeout < least:
      results.append((name, "skipped: out of time budget", 0.0))
      print(f"[device_check] {name}: skipped, {left:.0f} s left", flush=True)
      continue
    print(f"[device_check] {name}: starting ({timeout:.0f} s allowed)", flush=True)
    status, secs, tail = _run_child(name, args, timeout, seen)
    print(f"[device_check] {name}: {status} in {secs:.0f} s", flush=True)
    if status != "ok" and args.out:
      try:
        _mark_incomplete(args.out, name, status, tail)
      except Exception as e:  # pylint: disable=broad-except
        print(f"[device_check] could not mark {name} incomplete: {e}", flush=True)
    results.append((name, status, secs))
  summary = "\n".join(f"| {n} | {s} | {t:.0f} |" for n, s, t in results)
  table = "| section | status | seconds |\n|---|---|---|\n" + summary
  print(f"\n## {SUMMARY_TITLE}\n\n{table}\n", flush=True)
  if args.out:
    write_summary(args.out, table, args.smoke, seen["device"])
  failed = [n for n, s, _ in results if s != "ok"]
  return 1 if failed else 0


def write_summary(path: str, table: str, smoke: bool, device: str) -> None:
  import datetime  # pylint: disable=import-outside-toplevel
  stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
  body = (f"- date: {stamp}\n- device: {device}\n- command: bash benchmarks/device_check.sh"
          + (" --smoke" if smoke else "") + "\n\n" + table
          + "\n\nThe sections \"Device check: ...\" were written by this run. " + RUN_NOTE)
  replace_section(path, SUMMARY_TITLE, body)


RUN_NOTE = (
    "On a machine without network whose Python has jax (with its GPU plugin), flax, optax, "
    "orbax-checkpoint and chex, first fill `.whl/` (git-ignored) where the package registry is "
    "reachable: `PYVER=3.12 bash benchmarks/device_check.sh --download-wheels` (the GPU "
    "machine's Python version), carry `.whl/` with the checkout, then run "
    "`bash benchmarks/device_check.sh` there: it installs grain, ml-collections and the rest "
    "offline and runs every section in at most 8 minutes.")


def run_section(args) -> int:
  """Child mode: one section in this process."""
  import ssljax  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import  (quiet TPU probe)
  ctx = Context(smoke=args.smoke, out=None if args.out in (None, "-") else args.out,
                deadline=args.deadline or time.time() + 600, cases=tuple(args.cases or ()))
  import jax  # pylint: disable=import-outside-toplevel
  print(f"{DEVICE_LINE}{jax.devices()[0].device_kind} ({jax.default_backend()}, jax "
        f"{jax.__version__})", flush=True)
  from benchmarks import device_train  # pylint: disable=import-outside-toplevel
  if args.section in device_train.SECTIONS:
    device_train.SECTIONS[args.section](ctx)
  else:
    from benchmarks import device_kernels  # pylint: disable=import-outside-toplevel
    device_kernels.SECTIONS[args.section](ctx)
  return 0


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--smoke", action="store_true",
                      help="toy shapes on any machine (seconds); writes a temp file unless --out")
  parser.add_argument("--sections", nargs="+", choices=list(SECTIONS), help="default: all")
  parser.add_argument("--budget", type=float, help="seconds for all sections "
                      f"(default {DEFAULT_BUDGET_S}, {SMOKE_BUDGET_S} with --smoke)")
  parser.add_argument("--cases", nargs="+", metavar="NAME",
                      help="train section: only the cases whose names contain one of these "
                      "(e.g. MAE DINO); default: all")
  parser.add_argument("--out", help="the BENCHMARKS file to write ('-': print only); default "
                      "BENCHMARKS.md, or a temporary file with --smoke")
  parser.add_argument("--install-wheels", action="store_true",
                      help="install missing packages from .whl/ (offline) and exit")
  parser.add_argument("--download-wheels", metavar="PYVER",
                      help="fill .whl/ for Python PYVER (e.g. 3.12) from the registry and exit")
  parser.add_argument("--section", choices=list(SECTIONS), help=argparse.SUPPRESS)
  parser.add_argument("--deadline", type=float, help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.install_wheels:
    return install_wheels()
  if args.download_wheels:
    return download_wheels(args.download_wheels)
  if args.section:
    return run_section(args)
  if args.out is None:
    args.out = (os.path.join(tempfile.mkdtemp(prefix="ssljax-device-check-"), "BENCHMARKS.md")
                if args.smoke else BENCHMARKS)
  elif args.out == "-":
    args.out = None
  return orchestrate(args)


if __name__ == "__main__":
  sys.exit(main())
