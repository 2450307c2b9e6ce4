"""The device check's model sections: train-step throughput (pipeline off, grain with device and
with host augmentation) and the quickstart; run by benchmarks/device_check.py, one process per
section, as benchmarks/device_kernels.py's kernel sections are.

  python -m benchmarks.device_check --sections train quickstart --smoke --out -
"""
from __future__ import annotations

import atexit
import functools
import gc
import os
import shutil
import sys
import tempfile
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
  from benchmarks.device_check import Context

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

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


def flops_per_step(config, lowered, devices, record) -> float | None:
  """FLOPs of one train step from XLA's cost analysis of the lowered (not compiled) step: the
  compiled GPU program counts no FLOPs in custom calls (cuDNN convolutions and attention,
  Triton), so ResNet-50's compiled step showed 0.217 TFLOP for ~13. A model with attention is
  counted on the same step with attention as plain einsums."""
  from ssljax import train as train_lib  # pylint: disable=import-outside-toplevel
  if "attention_impl" not in config.model:
    return _flops(lowered.cost_analysis())
  c = config.copy_and_resolve_references()
  c.model.attention_impl = "reference"
  ref = train_lib.build(c, devices, record)
  return _flops(ref.train_step.lower(ref.abstract_state, ref.abstract_batch()).cost_analysis())


def train_batches(source, spec, config, workers: int, prefetch: int):
  """The trainer's batch iterator for `config` with `workers` grain processes."""
  from ssljax.data import pipeline  # pylint: disable=import-outside-toplevel
  return iter(pipeline.train_dataset(source, spec, config.data.augment, seed=config.seed,
                                     local_batch_size=config.batch_size, worker_count=workers,
                                     prefetch=prefetch))


def pipeline_rate(it, batch_size: int, skip: int, batches: int) -> list[str]:
  """The row (images/s, ms per batch) of iterator `it` alone: `skip` batches read untimed, then
  `batches` timed ones."""
  for _ in range(skip):
    next(it)
  t = time.perf_counter()
  for _ in range(batches):
    next(it)
  dt = (time.perf_counter() - t) / batches
  return [f"{batch_size / dt:,.0f}", f"{dt * 1e3:.1f}", "", ""]


def one_core_rate(source, spec, config, batches: int = 2) -> list[str]:
  """images/s of the train pipeline in this process alone (0 workers): a warm-up batch, then
  `batches` timed ones."""
  it = train_batches(source, spec, config, workers=0, prefetch=0)
  return pipeline_rate(it, config.batch_size, skip=1, batches=batches)


def _reraise(e: Exception):
  raise e


def train(ctx: Context) -> None:
  """Images/s and MFU of three train steps, with a device-resident batch and with grain."""
  import jax  # pylint: disable=import-outside-toplevel
  from ssljax import parallel  # pylint: disable=import-outside-toplevel
  from ssljax import train as train_lib  # pylint: disable=import-outside-toplevel
  from ssljax.data import sources  # pylint: disable=import-outside-toplevel
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
  names = [n for n in (SMOKE_TRAIN_CASES if ctx.smoke else TRAIN_CASES)
           if not ctx.cases or any(c.lower() in n.lower() for c in ctx.cases)]
  cases = [(name, where) for name in names for where in ("device", "host")]
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
      lowered = built.train_step.lower(built.abstract_state, built.abstract_batch())
      state["step"] = lowered.compile()
      state["compile_s"] = time.perf_counter() - t
      if name not in flops_of:   # the model's FLOPs, counted once (on the device-aug step)
        try:
          flops_of[name] = flops_per_step(config, lowered, devices, source[0])
        except Exception as e:  # pylint: disable=broad-except
          print(f"[train] FLOP count failed for {name}: {e}", file=sys.stderr)
          flops_of[name] = None
      state["flops"] = flops_of[name]
      state["built"], state["source"] = built, source
      state["train"] = built.init()
      it = train_batches(source, built.spec, config, config.data.worker_count,
                         config.data.prefetch)
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
      # Batches buffered while the step compiled and ran come out at once (on the H100 the
      # first version of this row read 89,256 images/s off a pipeline that fed the step 932):
      # drain what the workers hold (a batch each, plus the prefetch), then time a full round.
      return pipeline_rate(state["iter"], config.batch_size,
                           skip=workers + config.data.prefetch + 1, batches=max(steps, workers))
    ctx.guard(sec, [label, f"grain alone ({workers} workers, {aug})"], pipeline_alone)
    if where == "device" and (workers or ctx.smoke):
      # One core's rate (this process, no workers): with the row above, how well the workers
      # scale on this host (on the H100 machine the 16 workers fed ~930 images/s; one core
      # of the 2-core CPU machine makes ~365 images/s of these views).
      ctx.guard(sec, [label, f"grain alone (0 workers, {aug})"],
                functools.partial(one_core_rate, state["source"], state["built"].spec, config))
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
      "step: XLA's cost analysis of the lowered (not compiled) device-aug step (ViTs: of the same "
      "step with attention as plain einsums; compiled, cuDNN and Triton calls count no FLOPs), "
      "used for "
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


SECTIONS = {"train": train, "quickstart": quickstart}
