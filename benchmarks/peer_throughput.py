"""Train-step throughput of ssljax vs lightly (PyTorch), side by side on this machine (issue #10, item 1).

  bash benchmarks/peer_env.sh                      # once: .venv-peer/ with torch, torchvision, lightly
  python -m benchmarks.peer_throughput             # full table, writes its section of BENCHMARKS.md
  python -m benchmarks.peer_throughput --quick     # smoke run: batch 32 only, few steps
  python -m benchmarks.peer_throughput --profile   # also: where ssljax's step time goes (XLA ops)
  python -m benchmarks.peer_throughput --breakdown # the DINO recipe's ViT alone: forward, backward
  python -m benchmarks.peer_throughput --convs     # ResNet-18's 3x3 convolutions alone, per stage

Two recipes, the same on both sides: (a) SimCLR with a CIFAR-stem ResNet-18 (3x3 stride-1 stem, no
max-pool), projection 512 -> 2048 (BN, ReLU) -> 128, NT-Xent at temperature 0.5, LARS as in
configs/simclr_resnet18_cifar10.py; (b) DINO with a ViT-Tiny/4 (width 192, depth 12, 3 heads, 8x8 =
64 patch tokens + CLS, learned position embedding), the DINO paper's head (hidden 2048, bottleneck
256, 65536 prototypes, weight-normalised last layer), an EMA teacher and centring, 2 global crops
(no local crops), AdamW with weight decay 0.04 and global-norm clipping 3.0 as in
configs/dino_vit_s16_imagenet.py. Both at 32x32, fp32, on a fixed in-memory random batch of
B images x 2 views (no augmentation, no data loading), batch B in {32, 128}.

The ssljax side runs in this process with ssljax's own pieces (`base_config`, the method class,
`optim.build`, `train.make_train_step`, jitted with the state donated, as the Trainer does); the
lightly side in a worker process under .venv-peer/bin/python (benchmarks/_lightly_worker.py). Both
are warmed up (compiled), then timed in alternating chunks (ssljax, lightly, ssljax, ...), so that
the load of this shared machine hits both alike; the table shows medians over all timed steps.
Threads: both processes are pinned to the same first N CPUs with sched_setaffinity (XLA:CPU sizes
its thread pool from the CPUs it may run on) with OMP/MKL_NUM_THREADS=N, and torch's intra-op
threads are the faster of 1 and N for that step, timed by the worker at start-up (on a loaded
machine torch's N-thread ops can be slower than one thread; the table shows the count used).
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import sys
import time
from typing import Any, Callable, Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import _peer  # noqa: E402
from benchmarks._xla_costs import (compiled_flops, hlo_op_kinds,  # noqa: E402,F401  (re-exported)
                                   matmul_peak_gflops, model_flops, plain_resnet_ops, profile_ops,
                                   resnet_ops_replaced)
from benchmarks import report  # noqa: E402  (report imports jax lazily)

ROOT = report.ROOT
PEER_PYTHON = _peer.PEER_PYTHON
WORKER = os.path.join(ROOT, "benchmarks", "_lightly_worker.py")
SECTION = "Train-step throughput vs lightly"
BREAKDOWN_SECTION = "ViT backbone alone vs torchvision"
MODELS = ("resnet18_simclr", "vit_tiny_dino")
# --breakdown: the DINO recipe's ViT-Tiny/4 backbone alone on the same 2B images, to tell the
# backbone's forward (what the EMA teacher runs) from its backward.
PARTS = ("vit_tiny_backbone_fwd", "vit_tiny_backbone_grad")
# --convs: one 3x3 stride-1 convolution of the ResNet-18 recipe per stage, alone, on 2B inputs of
# that stage's size (forward and the gradients in its input and kernel, as a network's backward
# needs), to tell how much of the ResNet-18 row is the convolutions themselves. Named
# resnet18_conv_<side>x<channels>; COUNTS: how many such convolutions ResNet-18 has per stage.
CONVS_SECTION = "ResNet-18 convolutions alone vs torch"
CONV_COUNTS = {"resnet18_conv_32x64": 4, "resnet18_conv_16x128": 3, "resnet18_conv_8x256": 3,
               "resnet18_conv_4x512": 3}
CONV_PARTS = tuple(CONV_COUNTS)
LABELS = {"resnet18_simclr": "SimCLR, ResNet-18 (CIFAR stem)",
          "vit_tiny_dino": "DINO, ViT-Tiny/4",
          "vit_tiny_backbone_fwd": "ViT-Tiny/4 backbone, forward (no grad)",
          "vit_tiny_backbone_grad": "ViT-Tiny/4 backbone, forward + backward"}
LABELS.update({p: "3x3 conv, {1} channels at {0}x{0} (x{2} in ResNet-18)".format(
    *_peer.conv_part_shape(p), CONV_COUNTS[p]) for p in CONV_PARTS})


def pin_threads(threads: int) -> list[int]:
  """Restricts this process (and the workers it starts) to its first `threads` CPUs.

  Call before JAX initialises its CPU backend: XLA:CPU sizes its intra-op thread pool from the
  CPUs the process may run on.
  """
  for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[var] = str(threads)
  cpus = sorted(os.sched_getaffinity(0))[:threads]
  os.sched_setaffinity(0, cpus)
  return cpus


# ---------------------------------------------------------------------------------------------
# The ssljax side.
# ---------------------------------------------------------------------------------------------


def ssljax_config(model: str, batch: int, size: int = 32, tiny: bool = False):
  """The ssljax config of one recipe (see the module docstring); `tiny` shrinks it for tests."""
  from ssljax.config import base_config
  if model == "resnet18_simclr":
    c = base_config("simclr", "resnet")
    c.model.update(dict(depth=18, cifar_stem=True, dtype="float32"))
    if tiny:
      c.model.width_multiplier = 0.125
    c.optimizer.update(dict(name="lars", base_lr=0.3, weight_decay=1e-6, momentum=0.9,
                            trust_coefficient=1e-3))
    c.simclr.update(dict(temperature=0.5, proj_hidden_dims=(32,) if tiny else (2048,),
                         proj_dim=16 if tiny else 128, proj_use_bn=True))
  elif model == "vit_tiny_dino":
    c = base_config("dino", "vit")
    width, depth, heads = (32, 1, 2) if tiny else (192, 12, 3)    # ViT-Tiny: 192, 12, 3
    c.model.update(dict(width=width, depth=depth, num_heads=heads, patch_size=4, image_size=size,
                        posemb="learned", pool="cls", dtype="float32"))
    c.optimizer.update(dict(name="adamw", base_lr=5e-4, weight_decay=0.04, grad_clip=3.0))
    out_dim, hidden, bottleneck = (64, 32, 16) if tiny else (65536, 2048, 256)
    c.dino.update(dict(out_dim=out_dim, hidden_dim=hidden, bottleneck_dim=bottleneck, head_layers=3,
                       norm_last_layer=True, use_bn_in_head=False, student_temp=0.1,
                       teacher_temp=0.04, warmup_teacher_temp=0.04, warmup_teacher_temp_steps=0,
                       momentum=0.996, center_momentum=0.9, freeze_last_layer_steps=0,
                       local_crops=0))
  else:
    raise ValueError(f"model={model!r}; expected one of {MODELS}")
  c.dtype = "float32"
  c.batch_size = batch
  c.total_steps = 100_000
  c.optimizer.warmup_steps = 10
  c.data.source = "synthetic"
  c.data.image_size = size
  c.data.synthetic_size = size
  c.progress_bar = False
  return c


def roofline(rows: Sequence[dict[str, Any]], peak_gflops: float, target: float = 1.2) -> list[str]:
  """Per row with a FLOP count: each side's GFLOP/s as a share of the matmul peak, and the share
  ssljax would need for `target` x lightly's images/s."""
  out = []
  for r in rows:
    gflop = r.get("gflop")
    if not gflop:
      continue
    ours = gflop / (r["ssljax_ms"] / 1e3)
    peer = gflop / (r["lightly_ms"] / 1e3)
    need = target * peer
    out.append(f"{LABELS.get(r['model'], r['model'])}, batch {r['batch']}: {gflop:.0f} GFLOP per "
               f"step (XLA's count); ssljax {ours:.0f} GFLOP/s ({100 * ours / peak_gflops:.0f}% of "
               f"the matmul peak), lightly {peer:.0f} GFLOP/s ({100 * peer / peak_gflops:.0f}%); "
               f"{target:g}x lightly would need {need:.0f} GFLOP/s "
               f"({100 * need / peak_gflops:.0f}%).")
  return out


class SsljaxStep:
  """One recipe's jitted ssljax train step on a fixed random batch; `run(n)` -> n step times (s)."""

  flops = None   # XLA's FLOP count of the step's ops (_xla_costs.model_flops), set by compile()

  def __init__(self, config):
    import jax
    import jax.numpy as jnp

    from ssljax import config as config_lib
    from ssljax import methods as methods_lib
    from ssljax import optim
    from ssljax import train

    config_lib.validate(config, device_count=1)
    self.config = config
    self.method = methods_lib.get(config.method)(config)
    tx, lr_fn = optim.build(config)
    b, s = config.batch_size, config.data.image_size
    images = jax.random.normal(jax.random.PRNGKey(1), (b, 2, s, s, 3), jnp.float32)
    self.batch = {"global": images}
    method = self.method
    self.state = jax.jit(train.make_init_fn(method, tx, self.batch, seed=0))()
    self.num_params = sum(x.size for x in jax.tree_util.tree_leaves(self.state.params))
    self.step_fn = jax.jit(train.make_train_step(method, tx, lr_fn), donate_argnums=(0,))
    # FLOPs as the model's ops define them: the same step with the plain ResNet ops (no Winograd).
    plain = resnet_ops_replaced(method, required=False, **plain_resnet_ops())
    self.flops_fn = jax.jit(train.make_train_step(plain, tx, lr_fn))
    self.compile_s = None
    self.last_loss = None

  def _args(self) -> tuple:
    """The compiled step's arguments."""
    return self.state, self.batch

  def compile(self) -> float:
    t0 = time.perf_counter()
    self.compiled = self.step_fn.lower(*self._args()).compile()
    self.compile_s = time.perf_counter() - t0
    self.flops = model_flops(self.flops_fn, *self._args())
    return self.compile_s

  def _call(self):
    """One call of the compiled step: (what to wait for, its loss or None)."""
    self.state, metrics = self.compiled(self.state, self.batch)
    return (self.state, metrics), metrics["loss"]

  def run(self, n: int) -> list[float]:
    import jax
    if self.compile_s is None:
      self.compile()
    times, loss = [], None
    for _ in range(n):
      t0 = time.perf_counter()
      out, loss = self._call()
      jax.block_until_ready(out)
      times.append(time.perf_counter() - t0)
    self.last_loss = None if loss is None else float(loss)
    return times


class BackboneStep(SsljaxStep):
  """The DINO recipe's ViT backbone alone on 2B random images: its forward (`grad=False`, as the
  EMA teacher runs it) or the gradient of sum(features^2) in its parameters (`grad=True`)."""

  def __init__(self, config, grad: bool):  # pylint: disable=super-init-not-called
    import jax
    import jax.numpy as jnp

    from ssljax.methods import common

    self.config = config
    backbone = common.backbone_from_config(config)
    b, s = config.batch_size, config.data.image_size
    self.batch = jax.random.normal(jax.random.PRNGKey(1), (2 * b, s, s, 3), jnp.float32)
    self.state = jax.jit(backbone.init)(jax.random.PRNGKey(0), self.batch)["params"]
    self.num_params = sum(x.size for x in jax.tree_util.tree_leaves(self.state))
    apply = lambda p, x: backbone.apply({"params": p}, x, train=grad)  # noqa: E731
    if grad:
      self.step_fn = jax.jit(jax.grad(lambda p, x: jnp.sum(apply(p, x) ** 2)))
    else:
      self.step_fn = jax.jit(apply)
    self.flops_fn = self.step_fn   # (no Winograd in a ViT: the step's own ops)
    self.compile_s = None
    self.last_loss = None

  def _call(self):
    return self.compiled(self.state, self.batch), None


class ConvStep(SsljaxStep):
  """One 3x3 stride-1 'SAME' convolution (no bias) of a CONV_PARTS shape on 2B inputs: the loss
  sum(conv(x, k)^2) and its gradients in x and k, jitted, through the op the ResNet's convs call
  with the CPU tuning on (`ssljax.cpu.conv.Conv`: Winograd from `winograd_min_channels` channels
  on)."""

  def __init__(self, part: str, batch: int, tiny: bool = False,  # pylint: disable=super-init-not-called
               winograd_min_channels: int | None = 128):
    import jax
    import jax.numpy as jnp

    from ssljax.cpu import conv as cpu_conv

    side, channels = _peer.conv_part_shape(part, tiny)
    x, k = _peer.conv_part_inputs(2 * batch, side, channels)
    self.state = (jnp.asarray(x), jnp.asarray(k))
    self.num_params = k.size
    dn = jax.lax.conv_dimension_numbers(x.shape, k.shape, ("NHWC", "HWIO", "NHWC"))

    def loss(x, k, conv=cpu_conv.Conv(winograd_min_channels=winograd_min_channels)):
      y = conv(x, k, (1, 1), ((1, 1), (1, 1)), dimension_numbers=dn)
      return jnp.sum(y ** 2)

    self.step_fn = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
    self.flops_fn = jax.jit(jax.value_and_grad(  # the convolution's FLOPs, not Winograd's
        lambda x, k: loss(x, k, jax.lax.conv_general_dilated), argnums=(0, 1)))
    self.compile_s = None
    self.last_loss = None

  def _args(self) -> tuple:
    return self.state             # (x, k)

  def _call(self):
    out = self.compiled(*self.state)
    return out, out[0]


def conv_totals(rows: Sequence[dict[str, Any]]) -> list[str]:
  """Per batch with every --convs part: the per-layer medians summed over ResNet-18's stride-1
  3x3 convolutions (CONV_COUNTS), each side, and their ratio."""
  out = []
  for batch in sorted({r["batch"] for r in rows}):
    by = {r["model"]: r for r in rows if r["batch"] == batch}
    if set(by) >= set(CONV_PARTS):
      ours = sum(CONV_COUNTS[p] * by[p]["ssljax_ms"] for p in CONV_PARTS)
      peer = sum(CONV_COUNTS[p] * by[p]["lightly_ms"] for p in CONV_PARTS)
      out.append(f"Batch {batch}: ResNet-18's {sum(CONV_COUNTS.values())} stride-1 3x3 "
                 f"convolutions (forward + both gradients, count x median) take {ours:.0f} ms in "
                 f"ssljax (XLA:CPU) and {peer:.0f} ms in torch: ratio {peer / ours:.2f}x.")
  return out


def ssljax_runner(model: str, batch: int, tiny: bool = False) -> SsljaxStep:
  """The ssljax side of one table row: a train step (MODELS), a backbone part (PARTS) or a
  convolution (CONV_PARTS)."""
  if model in CONV_PARTS:
    return ConvStep(model, batch, tiny=tiny)
  if model in PARTS:
    return BackboneStep(ssljax_config("vit_tiny_dino", batch, tiny=tiny),
                        grad=model.endswith("_grad"))
  return SsljaxStep(ssljax_config(model, batch, tiny=tiny))


# ---------------------------------------------------------------------------------------------
# The lightly side (a worker process in .venv-peer).
# ---------------------------------------------------------------------------------------------


class PeerWorker(_peer.LineWorker):
  """benchmarks/_lightly_worker.py under the peer venv, driven line by line."""

  def __init__(self, model: str, batch: int, threads: int, size: int = 32, tiny: bool = False,
               python: str = PEER_PYTHON):
    cmd = [python, WORKER, "--model", model, "--batch", str(batch), "--threads", str(threads),
           "--size", str(size)] + (["--tiny"] if tiny else [])
    super().__init__(cmd, "lightly worker")

  def run(self, n: int) -> list[float]:
    out = self._ask(f"run {n}")
    self.last_loss = out["loss"]
    return out["times"]


# ---------------------------------------------------------------------------------------------
# Measuring and reporting.
# ---------------------------------------------------------------------------------------------


def interleave(runners: dict[str, Callable[[int], list[float]]], warmup: int, rounds: int,
               chunk: int, settle: int = 0) -> dict[str, list[float]]:
  """Warms each runner up, then `rounds` x (chunk steps of each, in turn; the order alternates
  every round so that neither side always follows the other). Each chunk starts with `settle`
  untimed steps (see SETTLE_NOTE). Returns each side's timed step times."""
  for run in runners.values():
    if warmup:
      run(warmup)
  times = {name: [] for name in runners}
  names = list(runners)
  for r in range(rounds):
    for name in (names if r % 2 == 0 else names[::-1]):
      if settle:
        runners[name](settle)
      times[name] += runners[name](chunk)
  return times


# Why chunks start with an untimed step (measured 2026-11-24, chunks of 1 step, 2 threads): an
# ssljax step right after the lightly worker's took 0.2-0.3 s longer (DINO b32 2.0-2.05 vs
# 1.75-1.83 s; ResNet-18 b32 1.71-1.86 vs 1.56-1.57 s), all of it kernel time (getrusage: 0.3-0.6
# vs 0.07-0.18 s, the same number of page faults): XLA:CPU maps a fresh temporary buffer every
# step, and its huge-page faults cost more right after the other process ran. torch's steps
# showed no such switch cost (it reuses malloc'd memory), and a training run never switches.
SETTLE_NOTE = ("Each timed chunk started with {settle} untimed step(s) per side: ssljax's first "
               "step after the lightly worker ran paid 0.2-0.3 s of extra kernel time (fresh "
               "huge-page faults for XLA:CPU's per-step temporary buffer), which a training run, "
               "one process stepping on, does not; torch's steps showed no such cost.")


def summarize(model: str, batch: int, times: dict[str, list[float]]) -> dict[str, Any]:
  """Median step time and images/s of each side, and the ssljax/lightly throughput ratio."""
  row = {"model": model, "batch": batch}
  for side in ("ssljax", "lightly"):
    med = statistics.median(times[side])
    row[f"{side}_ms"] = 1e3 * med
    row[f"{side}_ips"] = batch / med
    row[f"{side}_steps"] = len(times[side])
  row["ratio"] = row["ssljax_ips"] / row["lightly_ips"]
  return row


def backward_only(rows: Sequence[dict[str, Any]]) -> list[str]:
  """Per batch with both --breakdown parts: the backward pass alone (forward + backward minus
  forward, median times) on each side, and its ratio."""
  by = {(r["model"], r["batch"]): r for r in rows}
  out = []
  for batch in sorted({r["batch"] for r in rows}):
    fwd, grad = by.get((PARTS[0], batch)), by.get((PARTS[1], batch))
    if fwd and grad:
      ours = grad["ssljax_ms"] - fwd["ssljax_ms"]
      peer = grad["lightly_ms"] - fwd["lightly_ms"]
      out.append(f"Batch {batch}: backward alone (forward + backward minus forward) {ours:.0f} ms "
                 f"in ssljax, {peer:.0f} ms in torch: ratio {peer / ours:.2f}x.")
  return out


def format_table(rows: Sequence[dict[str, Any]]) -> str:
  """Markdown table of summarized rows (a 'ratio' column: ssljax images/s over lightly's)."""
  header = ["recipe", "batch", "ssljax ms/step", "lightly ms/step", "ssljax img/s",
            "lightly img/s", "ratio ssljax/lightly", "steps timed (each)", "torch threads"]
  body = [[LABELS.get(r["model"], r["model"]), r["batch"], f"{r['ssljax_ms']:.0f}",
           f"{r['lightly_ms']:.0f}", f"{r['ssljax_ips']:.1f}", f"{r['lightly_ips']:.1f}",
           f"{r['ratio']:.2f}x", min(r["ssljax_steps"], r["lightly_steps"]),
           r.get("torch_threads", "?")] for r in rows]
  return report.markdown_table(header, body)


# ---------------------------------------------------------------------------------------------
# Where ssljax's time goes: an XLA op profile of the step (profile_ops, hlo_op_kinds: _xla_costs).
# ---------------------------------------------------------------------------------------------


def profile_findings(model: str, per_op: dict[str, float], step_s: float,
                     kinds: dict[str, str]) -> list[str]:
  """Shares of ssljax's XLA op time by kind (convolution, dot, ...), from `profile_ops`."""
  ops = {k: v for k, v in per_op.items() if k in kinds}
  if not ops:
    return []
  by_kind = collections.Counter()
  for name, sec in ops.items():
    by_kind[kinds[name]] += sec
  total = sum(by_kind.values())
  top = sorted(ops.items(), key=lambda kv: -kv[1])[:3]
  shares = ", ".join(f"{kind} {100 * sec / total:.0f}%" for kind, sec in by_kind.most_common())
  tops = ", ".join(f"`{n}` ({kinds[n]}) {1e3 * sec:.0f} ms" for n, sec in top)
  return [f"{LABELS[model]}: XLA:CPU ops sum to {1e3 * total:.0f} ms per step (median step "
          f"{1e3 * step_s:.0f} ms; ops may overlap): {shares}. Largest: {tops}."]


# ---------------------------------------------------------------------------------------------


def measure(model: str, batch: int, threads: int, warmup: int, rounds: int, chunk: int,
            tiny: bool = False, log=print, settle: int = 0) -> tuple[dict[str, Any], SsljaxStep, dict]:
  peer = PeerWorker(model, batch, threads, tiny=tiny)   # first: fails fast without the peer env
  try:
    ours = ssljax_runner(model, batch, tiny=tiny)
    compile_s = ours.compile()
    log(f"{model} batch {batch}: ssljax compiled in {compile_s:.1f} s "
        f"({ours.num_params / 1e6:.2f}M params), lightly {peer.info['params'] / 1e6:.2f}M params")
    times = interleave({"ssljax": ours.run, "lightly": peer.run}, warmup, rounds, chunk, settle)
  finally:
    peer.close()
  row = summarize(model, batch, times)
  row.update(compile_s=compile_s, ssljax_params=ours.num_params, lightly_params=peer.info["params"],
             ssljax_loss=ours.last_loss, lightly_loss=peer.last_loss,
             torch_threads=peer.info.get("threads"),
             gflop=None if ours.flops is None else ours.flops / 1e9)
  log(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}))
  return row, ours, peer.info


def main(argv=None) -> list[dict[str, Any]]:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--threads", type=int, default=2)
  parser.add_argument("--batches", type=int, nargs="+", default=[32, 128])
  parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
  parser.add_argument("--warmup", type=int, default=2, help="untimed steps per side after compile")
  parser.add_argument("--rounds", type=int, default=4, help="alternating timed chunks per side")
  parser.add_argument("--chunk", type=int, default=2, help="steps per chunk at batch 32")
  parser.add_argument("--rounds-large", type=int, default=3, help="rounds at batch >= 128")
  parser.add_argument("--settle", type=int, default=1,
                      help="untimed steps at the start of each chunk, per side (see SETTLE_NOTE)")
  parser.add_argument("--chunk-large", type=int, default=1, help="steps per chunk at batch >= 128")
  parser.add_argument("--rows-json", default="", help="also append each row to this JSON-lines file")
  parser.add_argument("--quick", action="store_true", help="batch 32 only, 1 warm-up, 2 x 1 steps")
  parser.add_argument("--profile", action="store_true", help="profile ssljax's step (XLA ops)")
  parser.add_argument("--breakdown", action="store_true",
                      help="instead, time the DINO recipe's ViT backbone alone (forward; forward + "
                           "backward) against torchvision's, in its own BENCHMARKS.md section")
  parser.add_argument("--convs", action="store_true",
                      help="instead, time ResNet-18's 3x3 convolutions alone (one per stage: "
                           "forward + gradients) against torch's, in its own BENCHMARKS.md section")
  parser.add_argument("--no-write", action="store_true", help="print only, leave BENCHMARKS.md")
  args = parser.parse_args(argv)
  if args.convs and args.breakdown:
    parser.error("--convs and --breakdown each write their own section: pass one")
  if args.quick:
    args.batches, args.warmup, args.rounds, args.chunk = [32], 1, 2, 1
  cpus = pin_threads(args.threads)
  from ssljax.cpu import xla_flags
  xla_flags.apply_cpu_defaults()   # as `python -m ssljax.main` does (ssljax/cpu/xla_flags.py)
  import jax

  rows, findings, info = [], [], {}
  models, section = ((PARTS, BREAKDOWN_SECTION) if args.breakdown else
                     (CONV_PARTS, CONVS_SECTION) if args.convs else (args.models, SECTION))
  for model in models:
    for batch in args.batches:
      large = batch >= 128
      row, ours, info = measure(model, batch, args.threads, args.warmup,
                                args.rounds_large if large else args.rounds,
                                args.chunk_large if large else args.chunk, settle=args.settle)
      rows.append(row)
      if args.rows_json:
        with open(args.rows_json, "a") as f:
          f.write(json.dumps(row) + "\n")
      if args.profile and model in MODELS and batch == min(args.batches):
        import tempfile
        try:
          with tempfile.TemporaryDirectory() as tmp:
            per_op = profile_ops(ours, 2, tmp)
          if args.rows_json:
            with open(args.rows_json + f".{model}.ops.json", "w") as f:
              json.dump(per_op, f)
          findings += profile_findings(model, per_op, row["ssljax_ms"] / 1e3,
                                       hlo_op_kinds(ours.compiled.as_text()))
        except Exception as e:  # a profile is optional: report and go on
          print(f"profile of {model} failed: {type(e).__name__}: {e}", flush=True)
      del ours

  table = format_table(rows)
  print(table)
  peak = matmul_peak_gflops()
  flop_lines = [] if args.convs else roofline(rows, peak)   # (about train steps)
  for line in flop_lines:
    print("-", line)
  for f in findings:
    print("-", f)
  versions = dict(info.get("versions", {}))
  notes = (
      "\n\nImages/s = B / median step time, where a step is forward + backward + optimizer (+ EMA "
      "teacher and centre for DINO) on B images x 2 views of 32x32x3 fp32 (a fixed random batch: "
      "no augmentation, no data loading). Ratio > 1: ssljax is faster. Each side was compiled / "
      f"warmed up ({args.warmup} steps), then timed in alternating chunks (ssljax, lightly, "
      "lightly, ssljax, ...) on a machine shared with other jobs: compare the ratios, not the "
      "absolute numbers. " + (SETTLE_NOTE.format(settle=args.settle) + " " if args.settle else "")
      + "Same recipe on both sides: SimCLR = CIFAR-stem ResNet-18, projection "
      "512-2048(BN, ReLU)-128, NT-Xent T=0.5, LARS (lr 0.3 x B/256, momentum 0.9, wd 1e-6, trust "
      "1e-3; biases and norms excluded); DINO = ViT-Tiny/4 (192 wide, 12 deep, 3 heads, 64 patch "
      "tokens + CLS, learned position embedding), head 192-2048-2048-256-65536 (weight-normalised "
      "last layer, no BN), EMA teacher (m 0.996), centring, teacher/student temperatures "
      "0.04/0.1, 2 global crops, AdamW (lr 5e-4 x B/256, wd 0.04 except biases, norms and tokens), "
      "global-norm clipping 3.0. lightly side: `lightly.loss.NTXentLoss`, "
      "`lightly.models.modules.SimCLRProjectionHead`, `lightly.utils.lars.LARS`, "
      "`DINOProjectionHead`, `DINOLoss`, `lightly.models.utils.update_momentum`, torchvision's "
      "`resnet18` (stem replaced) and `VisionTransformer`. ssljax side: `ssljax.config.base_config`, "
      "the method class, `ssljax.optim.build` and `ssljax.train.make_train_step`, jitted with the "
      "state donated, as the Trainer does. Both processes as a user would start them: ssljax's "
      "with the XLA:CPU flags and `GLIBC_TUNABLES=glibc.malloc.hugetlb=1` that its command lines "
      "set (ssljax/cpu/xla_flags.py, ssljax/cpu/host_memory.py), lightly's with the environment the "
      "benchmark was started in (torch's ViT-Tiny step measured the same with the tunable).")
  timing = (f"Timed as the train-step table (alternating chunks after {args.warmup} warm-up "
            f"runs, {args.settle} untimed run(s) at the start of each chunk, same threads). "
            "Ratio > 1: ssljax is faster.")
  if args.breakdown:
    notes = ("\n\nWhere the DINO row's gap is: the same ViT-Tiny/4 as the DINO recipe, alone, on "
             "the same B images x 2 views (32x32x3 fp32, a fixed random batch): its forward without "
             "gradient (what the EMA teacher runs) and the gradient of sum(features^2) in its "
             "parameters (forward + backward; no head, loss or optimizer). ssljax: "
             "`ssljax.models.build_backbone` under `jax.jit`; the other side: torchvision's "
             "`VisionTransformer` (the lightly worker's backbone). " + timing)
    notes += "".join(f"\n\n{line}" for line in backward_only(rows))
  if args.convs:
    notes = ("\n\nWhere the ResNet-18 row's time goes: one 3x3 stride-1 convolution per stage "
             "of the SimCLR recipe's CIFAR ResNet-18, alone, on 2B inputs of that stage's size "
             "(B images x 2 views), no bias: the loss sum(conv(x, k)^2) with its gradients in the "
             "input and the kernel (what a network's backward computes per layer). ssljax side: "
             "`ssljax.cpu.conv.Conv` in NHWC under `jax.jit` with ssljax's XLA:CPU "
             "flags, the op ResNet-18 runs: XLA:CPU's (Eigen) convolution, or from "
             "`winograd_min_channels` (128) channels on (stages 2-4) Winograd, F(4x4, 3x3) at 128 "
             "channels and F(2x2, 3x3) from 256 (`ssljax.cpu.winograd`); torch side: "
             "`nn.Conv2d` in "
             "NCHW, as torchvision's ResNet runs it (oneDNN). The same deterministic input and "
             "kernel on both sides (the losses agree). " + timing + " `make bench-more` runs "
             "this with 4 untimed runs per chunk: alone in a process, the Winograd rows' first "
             "runs took up to twice as long as the later ones while their temporary arrays were "
             "faulted in (69 ms, then ~30 ms, for the 128-channel one), a cost a training run "
             "pays once.")
    notes += "".join(f"\n\n{line}" for line in conv_totals(rows))
  if flop_lines:
    notes += (f"\n\nHow close each side is to this CPU's arithmetic limit: a jitted float32 "
              f"2048 x 2048 matmul ran at {peak:.0f} GFLOP/s on the same threads (torch's `mm` "
              f"measured the same), the most either side can reach; both run the same model, so "
              f"XLA's FLOP count of the ssljax step's ops stands for both (convolutions counted "
              f"as convolutions, also where ssljax computes them by Winograd on CPU):\n\n"
              + "\n".join(f"- {line}" for line in flop_lines))
  if findings:
    notes += ("\n\nWhere ssljax's step time goes (XLA:CPU op times from a `jax.profiler` trace of "
              "2 steps at the smallest batch; shares of the median step):\n\n"
              + "\n".join(f"- {f}" for f in findings))
  if not args.no_write:
    command = " ".join(["python -m benchmarks.peer_throughput", *(argv if argv is not None
                                                                 else sys.argv[1:])])
    meta = {"command": command,
            "threads": f"{args.threads} (both processes pinned to CPUs {cpus} with sched_setaffinity; "
                       f"OMP/MKL_NUM_THREADS={args.threads}; torch intra-op threads: the faster of 1 and "
                       f"{args.threads} per row, picked by the worker at start-up)",
            "peer": ", ".join(f"{k} {v}" for k, v in versions.items()),
            "ssljax side": f"jax {jax.__version__}, flax {_peer.version('flax')}, optax {_peer.version('optax')}",
            "XLA_FLAGS": os.environ.get("XLA_FLAGS", "") or "(none)",
            "steps timed per side": f"{args.rounds} x {args.chunk} (B < 128), {args.rounds_large} x "
                                    f"{args.chunk_large} (B >= 128), after {args.warmup} warm-up steps; "
                                    f"{args.settle} untimed step(s) at the start of each chunk"}
    report.write_section(section, table + notes, meta)
  return rows


if __name__ == "__main__":
  from ssljax.cpu import host_memory
  host_memory.reexec_with_host_defaults()   # as the ssljax command lines do (ssljax/cpu)
  main()
