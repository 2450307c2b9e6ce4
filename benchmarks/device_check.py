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
                224 px, batch 256), device-resident batch vs the grain pipeline
  quickstart    `python -m ssljax.main --config configs/simclr_digits.py` and its kNN top-1

--smoke runs the same code at toy shapes (CPU, seconds) and writes to a temporary file unless
--out names one (`--out -` prints only). The summary section "Device check" lists what ran.
This file imports only the standard library at the top: the wheel installer
(`--install-wheels`, run by device_check.sh) must work before grain / ml-collections exist.
"""
from __future__ import annotations

import argparse
import atexit
import dataclasses
import functools
import gc
import os
import re
import shutil
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
    "correctness": ((70, 20), (20, 8)),
    "attention": ((40, 20), (14, 8)),
    "contrastive": ((70, 25), (14, 8)),
    "train": ((200, 60), (40, 15)),
    "quickstart": ((60, 30), (30, 10)),
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
# Section: train-step throughput.
# ----------------------------------------------------------------------------------------------
# Dense bf16 peak FLOP/s by device kind (substring), for MFU.
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "GH200": 989e12, "B200": 2250e12, "A100": 312e12,
             "L40S": 362e12, "L4": 121e12, "A10G": 70e12, "v5e": 197e12, "v5 lite": 197e12,
             "v4": 275e12, "v5p": 459e12, "v6": 918e12}

TRAIN_CASES = {
    # name: (shipped config, overrides at full size). MAE first: its MFU is the goal, and
    # a section short of time drops its last cases.
    "MAE ViT-B/16": ("mae_vit_b16_imagenet", {}),
    "DINO ViT-S/16 2x224+10x96": ("dino_vit_s16_imagenet", {"dino.local_crops": 10,
                                                            "dino.local_size": 96}),
    "SimCLR ResNet-50": ("simclr_resnet50_imagenet", {}),
}
SMOKE_TRAIN_CASES = ("DINO ViT-S/16 2x224+10x96",)


def peak_flops(device_kind: str) -> float | None:
  hits = [v for k, v in PEAK_BF16.items() if k.lower() in device_kind.lower()]
  return max(hits) if hits else None


def _set(config, dotted: str, value) -> None:
  *path, last = dotted.split(".")
  node = config
  for p in path:
    node = node[p]
  node[last] = value


def make_jpeg_dataset(directory: str, count: int, size: int, workers: int) -> str:
  """`count` smooth random RGB JPEGs (size x size, quality 90, 10 classes) prepared as an
  ArrayRecord dataset (ssljax.data.prepare) in directory/ds; returns that path."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  from PIL import Image  # pylint: disable=import-outside-toplevel
  from ssljax.data import prepare  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(0)
  src = os.path.join(directory, "jpeg")
  for i in range(count):
    cls = os.path.join(src, f"class{i % 10}")
    os.makedirs(cls, exist_ok=True)
    small = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
    Image.fromarray(small).resize((size, size), Image.BICUBIC).save(
        os.path.join(cls, f"{i:05d}.jpg"), quality=90)
  out = os.path.join(directory, "ds")
  prepare.prepare_image_folder(src, out, as_split="train", examples_per_shard=max(count // 8, 1),
                               workers=workers, log=lambda _: None)
  return out


def train_config(name: str, smoke: bool, workers: int, data_path: str):
  """The shipped config of TRAIN_CASES[name] at batch 256, 224 px, bf16, reading the JPEG
  ArrayRecord dataset at `data_path` (make_jpeg_dataset); toy sizes with `smoke`."""
  from benchmarks import report  # pylint: disable=import-outside-toplevel
  from ssljax.data import array_record  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import  (registers the source)
  file, overrides = TRAIN_CASES[name]
  c = report.load_config(os.path.join(ROOT, "configs", f"{file}.py"))
  c.batch_size = 256
  c.dtype = "bfloat16"
  c.data.update(source="array_record", path=data_path, worker_count=workers, prefetch=4)
  c.progress_bar = False
  for k, v in overrides.items():
    _set(c, k, v)
  if smoke:
    c.batch_size = 8
    c.data.update(image_size=32, worker_count=0)
    if c.model.name == "resnet":
      c.model.update(depth=18, width_multiplier=0.125)
    else:
      c.model.update(variant="", patch_size=8, width=32, depth=1, num_heads=2, image_size=32)
    if "dino" in c:
      c.dino.update(local_crops=2, local_size=16, out_dim=64)
    if "mae" in c:
      c.mae.update(decoder_width=32, decoder_depth=1, decoder_heads=2)
  return c


def _flops(cost) -> float | None:
  """The 'flops' of a `cost_analysis()` (a dict, or a list of one dict in some jax versions)."""
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else {}
  flops = (cost or {}).get("flops")
  return float(flops) if flops else None


def flops_per_step(config, compiled, devices, record) -> float | None:
  """FLOPs of one train step from XLA's cost analysis. Custom calls (cuDNN / Triton attention)
  count none, so a model with attention is counted on the same step with attention as plain
  einsums, traced and lowered (not compiled); other models on the compiled step itself."""
  from ssljax import train as train_lib  # pylint: disable=import-outside-toplevel
  if "attention_impl" not in config.model:
    return _flops(compiled.cost_analysis())
  c = config.copy_and_resolve_references()
  c.model.attention_impl = "reference"
  ref = train_lib.build(c, devices, record)
  return _flops(ref.train_step.lower(ref.abstract_state, ref.abstract_batch()).cost_analysis())


def _reraise(e: Exception):
  raise e


def train(ctx: Context) -> None:
  """Images/s and MFU of three train steps, with a device-resident batch and with grain."""
  import jax  # pylint: disable=import-outside-toplevel
  from ssljax import parallel  # pylint: disable=import-outside-toplevel
  from ssljax import train as train_lib  # pylint: disable=import-outside-toplevel
  from ssljax.data import pipeline, sources  # pylint: disable=import-outside-toplevel
  sec = ctx.section("Device check: train-step throughput",
                    ["method (batch)", "data", "images/s", "step (ms)", "TFLOP/step", "MFU"])
  devices = jax.devices()
  peak = peak_flops(devices[0].device_kind)
  workers = 0 if ctx.smoke else min(16, os.cpu_count() or 1)
  steps = 1 if ctx.smoke else 10
  # Real JPEG decoding in the data path: two batches of 384 px JPEGs as ArrayRecord shards.
  data_dir = tempfile.mkdtemp(prefix="ssljax-device-check-data-")
  atexit.register(shutil.rmtree, data_dir, True)
  t = time.perf_counter()
  count, size = (32, 40) if ctx.smoke else (512, 384)
  data_path = make_jpeg_dataset(data_dir, count, size, workers=1 if ctx.smoke else min(8, workers))
  print(f"[train] {count} JPEGs of {size} px prepared in {time.perf_counter() - t:.1f} s",
        flush=True)
  # A smoke run compiles one case (XLA:CPU takes ~15 s per train step even at toy sizes): DINO,
  # which has the most parts (multi-crop views, ViT, teacher).
  cases = [(name, where) for name in (SMOKE_TRAIN_CASES if ctx.smoke else TRAIN_CASES)
           for where in ("device", "host")]
  flops_of = {}
  for name, where in cases:
    if ctx.out_of_time(reserve=30 if not ctx.smoke else 3):
      break
    config = train_config(name, ctx.smoke, workers, data_path)
    config.data.augment_on = where
    label = f"{name} ({config.batch_size})"
    aug = f"{where} aug"
    state = {}

    def compile_case(config=config, state=state, name=name, where=where):
      source = sources.build_source(config.data, config.data.train_split)
      built = train_lib.build(config, devices, source[0])
      t = time.perf_counter()
      state["step"] = built.train_step.lower(built.abstract_state, built.abstract_batch()).compile()
      state["compile_s"] = time.perf_counter() - t
      if name not in flops_of:   # the model's FLOPs, counted once (on the device-aug step)
        try:
          flops_of[name] = flops_per_step(config, state["step"], devices, source[0])
        except Exception as e:  # pylint: disable=broad-except
          print(f"[train] FLOP count failed for {name}: {e}", file=sys.stderr)
          flops_of[name] = None
      state["flops"] = flops_of[name]
      state["built"], state["source"] = built, source
      state["train"] = built.init()
      it = iter(pipeline.train_dataset(
          source, built.spec, config.data.augment, seed=config.seed,
          local_batch_size=config.batch_size, worker_count=config.data.worker_count,
          prefetch=config.data.prefetch))
      state["iter"] = it
      state["batch"] = parallel.global_batch(next(it), built.batch_sharding)
      return state

    def measure(fetch: bool, state=state, config=config):
      step, built = state["step"], state["built"]
      ts, batch = state["train"], state["batch"]
      for _ in range(2):  # warm-up
        ts, metrics = step(ts, batch)
      jax.block_until_ready(metrics)
      t = time.perf_counter()
      for _ in range(steps):
        if fetch:
          batch = parallel.global_batch(next(state["iter"]), built.batch_sharding)
        ts, metrics = step(ts, batch)
      jax.block_until_ready(metrics)
      state["train"] = ts
      dt = (time.perf_counter() - t) / steps
      flops = state["flops"]
      mfu = f"{100 * flops / dt / peak:.1f}%" if (flops and peak) else "n/a"
      return [f"{config.batch_size / dt:,.0f}", f"{dt * 1e3:.1f}",
              f"{flops / 1e12:.3g}" if flops else "n/a", mfu]

    try:
      compile_case()
      print(f"[train] {name}, {aug}: compiled in {state['compile_s']:.1f} s", flush=True)
    except Exception as e:  # pylint: disable=broad-except
      ctx.guard(sec, [label, f"build and compile ({aug})"], functools.partial(_reraise, e))
      continue
    if where == "device":   # pipeline off: the same batch again, on the device
      ctx.guard(sec, [label, "device-resident batch"], lambda: measure(False))
    if ctx.out_of_time(reserve=10 if not ctx.smoke else 2):
      continue

    def pipeline_alone(state=state, config=config):
      # Batches buffered while the steps ran come out at once: read well past the buffer.
      n = steps + 2 * config.data.prefetch
      t = time.perf_counter()
      for _ in range(n):
        next(state["iter"])
      dt = (time.perf_counter() - t) / n
      return [f"{config.batch_size / dt:,.0f}", f"{dt * 1e3:.1f}", "", ""]
    ctx.guard(sec, [label, f"grain alone ({workers} workers, {aug})"], pipeline_alone)
    ctx.guard(sec, [label, f"grain ({workers} workers, {aug}) + step"], lambda: measure(True))
    state.clear()   # frees the device buffers and stops the grain workers before the next case
    gc.collect()
  peak_note = (f"MFU = FLOPs per step / step time / {peak / 1e12:.0f} TFLOP/s (dense bf16 peak of "
               f"{devices[0].device_kind})" if peak else
               f"MFU: n/a (no bf16 peak known for {devices[0].device_kind!r})")
  sec.finish(
      "Each step is built by `ssljax.train.build` from the shipped config ("
      f"{', '.join(f'configs/{f}.py' for f, _ in TRAIN_CASES.values())}) at batch 256, 224 px, "
      "bfloat16 (with --smoke: toy sizes); "
      "DINO with 2 global 224 px crops and 10 local 96 px crops. Data: 512 smooth random 384 px "
      "JPEGs (quality 90) prepared as ArrayRecord shards (`ssljax.data.prepare`, "
      "`data.source='array_record'`), so the pipeline decodes JPEGs as it would ImageNet's "
      "(ImageNet's average image is ~400 x 350). 'device-resident batch' (pipeline off) repeats "
      "one batch on the device; 'grain alone' is the pipeline's own rate on the host's CPUs; "
      "'grain + step' feeds each step from the pipeline, so if it is below the device-resident "
      "rate, data loading is the bottleneck. 'device aug' (`data.augment_on='device'`, the "
      "default on GPU): the host decodes and crops to uint8, the photometric augmentations run "
      "inside the step; 'host aug': all augmentation in the pipeline, float32 views. FLOPs per "
      "step: XLA's cost analysis of the compiled device-aug step (ViTs: of the same step with "
      "attention as plain einsums, lowered: cuDNN and Triton calls count no FLOPs), used for "
      f"both placements. {peak_note}. "
      "Goal: MAE ViT-B/16 >= 40% MFU on one H200.")


# ----------------------------------------------------------------------------------------------
# Section: the quickstart.
# ----------------------------------------------------------------------------------------------
QUICKSTART_SMOKE = {"total_steps": 4, "eval_every": 1000, "log_every": 2, "eval.max_examples": 64,
                    "eval.linear_epochs": 1, "eval.random_init": False}


def quickstart(ctx: Context) -> None:
  """The README's quickstart (configs/simclr_digits.py, what `python -m ssljax.main` runs):
  time and kNN top-1."""
  import jax  # pylint: disable=import-outside-toplevel
  from benchmarks import report  # pylint: disable=import-outside-toplevel
  from ssljax import train as train_lib  # pylint: disable=import-outside-toplevel
  sec = ctx.section("Device check: quickstart",
                    ["run", "steps", "wall time (s)", "kNN top-1", "kNN top-1 random init",
                     "linear probe top-1"])
  config = report.load_config(os.path.join(ROOT, "configs", "simclr_digits.py"))
  config.progress_bar = False
  for k, v in (QUICKSTART_SMOKE if ctx.smoke else {}).items():
    _set(config, k, v)
  with tempfile.TemporaryDirectory(prefix="ssljax-quickstart-") as workdir:
    def row():
      t = time.perf_counter()
      result = train_lib.train_and_evaluate(config, workdir)
      wall = time.perf_counter() - t
      get = lambda k: f"{result[k]:.3f}" if isinstance(result.get(k), (int, float)) else "n/a"  # noqa: E731
      return [result.get("step", "?"), f"{wall:.0f}", get("knn_top1"),
              get("knn_top1_random_init"), get("linear_top1")]
    ctx.guard(sec, [f"simclr_digits on {jax.devices()[0].device_kind}"], row)
  sec.finish("The README's quickstart (`configs/simclr_digits.py`: SimCLR, 3-block ViT, digits "
             "data; `ssljax.train.train_and_evaluate`, what `python -m ssljax.main` runs) on this "
             "device; wall time includes compilation and evaluation. On 2 CPU cores it reaches "
             "kNN top-1 ~0.91 (random init ~0.76) in 2-3 minutes (README).")


SECTION_FUNCS = {"train": train, "quickstart": quickstart}


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
                deadline=args.deadline or time.time() + 600)
  import jax  # pylint: disable=import-outside-toplevel
  print(f"{DEVICE_LINE}{jax.devices()[0].device_kind} ({jax.default_backend()}, jax "
        f"{jax.__version__})", flush=True)
  if args.section in SECTION_FUNCS:
    SECTION_FUNCS[args.section](ctx)
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
