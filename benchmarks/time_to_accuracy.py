"""Time to accuracy vs lightly: SimCLR on digits, end to end, side by side (issue #10, item 4).

  bash benchmarks/peer_env.sh                      # once: .venv-peer/ with torch, torchvision, lightly
  python -m benchmarks.time_to_accuracy            # full run (~3-6 min), writes its BENCHMARKS.md section
  python -m benchmarks.time_to_accuracy --quick    # smoke run: 20 steps, no write

The recipe is configs/simclr_digits.py, ssljax's quickstart, on both sides: a ViT (width 64, depth 3,
4 heads, 4x4 patches on 16x16 inputs, fixed 2-D sin-cos position embedding, [CLS] features), a
64-256(BN, ReLU)-64 projection, NT-Xent at T 0.2, batch 128, AdamW (lr 2e-3 x 128/256, 20 warm-up
steps from 0, cosine to 0 at step 300, weight decay 1e-4 on kernels only, b1 0.9, b2 0.999) and the
digits augmentations (RandomResizedCrop to 16 px with scale (0.3, 1), no flip, colour jitter
(0.4, 0.4, 0.4, 0.1) p 0.8, blur p 0.2 with sigma in (0.1, 2) and a 3-tap kernel, no grayscale),
grain / DataLoader with the config's worker count (0). Everything the torch side needs is read from
the ssljax config and handed to it (`peer_recipe`), and the torch network starts from ssljax's own
initial weights (`torch_state_dict`), so both runs start from the same point.

- ssljax: `ssljax.data.pipeline.train_dataset` over `sources.digits('train')`, the method,
  `optim.build`, `train.make_train_step` jitted with the state donated, as the Trainer runs it (the
  compilation is timed and counted in ssljax's clock).
- lightly: benchmarks/_lightly_digits_worker.py under .venv-peer/bin/python: the same ViT in torch,
  lightly's `ProjectionHead` and `NTXentLoss`, torchvision transforms, torch AdamW, a DataLoader;
  torch's intra-op threads: the faster of 1 and `--threads` for this model, timed at start-up
  (on this shared machine 2 torch threads could be several times slower than 1).

Both train in alternating chunks of `--eval-every` steps (ssljax, lightly, lightly, ssljax, ...), both
pinned to the same CPUs. After every chunk (and at step 0) each side's backbone features of the same
eval arrays (ssljax's `pipeline.eval_arrays`: centre views of the 1,437 train and 360 held-out
digits) go through the same `ssljax.evaluate.knn_top1` (k 20, T 0.07), as the Trainer's kNN monitor
does; evaluation time is not on the clock. Time to accuracy = wall-clock of training (data loading,
steps, and ssljax's compilation) until the first evaluation at or above each of `--targets`.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from typing import Any, Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import _peer  # noqa: E402
from benchmarks import report  # noqa: E402
from benchmarks.peer_throughput import PEER_PYTHON, pin_threads  # noqa: E402

import numpy as np  # noqa: E402

ROOT = report.ROOT
WORKER = os.path.join(ROOT, "benchmarks", "_lightly_digits_worker.py")
CONFIG = os.path.join(ROOT, "configs", "simclr_digits.py")
SECTION = "Time to accuracy vs lightly"


def load_config(steps: int | None = None):
  """configs/simclr_digits.py's config (total_steps overridden by `steps`)."""
  config = report.load_config(CONFIG)
  if steps:
    config.total_steps = steps
  config.progress_bar = False
  return config


def peer_recipe(config) -> dict[str, Any]:
  """What the torch side needs of the ssljax config, as plain JSON values."""
  from benchmarks.data_pipeline_peer import torch_aug_params
  m, o = config.model, config.optimizer
  if (config.method, m.name, m.pool, m.posemb, m.num_registers, m.drop_path) != \
     ("simclr", "vit", "cls", "sincos2d", 0, 0.0):
    raise ValueError("the lightly side implements SimCLR with a [CLS]-pooled sin-cos ViT only")
  if (o.name, o.grad_clip, o.layer_decay, o.weight_decay_end) != ("adamw", 0.0, 1.0, -1.0):
    raise ValueError("the lightly side implements plain AdamW (no clipping, layer decay or wd schedule)")
  if len(config.simclr.proj_hidden_dims) != 1 or not config.simclr.proj_use_bn:
    raise ValueError("the lightly side implements a Linear-BN-ReLU-Linear projection only")
  return {
      "seed": int(config.seed), "batch_size": int(config.batch_size),
      "total_steps": int(config.total_steps), "worker_count": int(config.data.worker_count),
      "image_size": int(config.data.image_size), "channels": 1,
      "width": int(m.width), "depth": int(m.depth), "num_heads": int(m.num_heads),
      "patch_size": int(m.patch_size), "mlp_ratio": float(m.mlp_ratio),
      "proj_hidden_dim": int(config.simclr.proj_hidden_dims[0]),
      "proj_dim": int(config.simclr.proj_dim), "temperature": float(config.simclr.temperature),
      "weight_decay": float(o.weight_decay), "b1": float(o.b1), "b2": float(o.b2),
      "augment": torch_aug_params(config.data.augment),
  }


def learning_rates(config) -> np.ndarray:
  """ssljax's learning rate at every step (the optax schedule `optim.build` returns)."""
  from ssljax import optim
  _, lr_fn = optim.build(config)
  return np.asarray([float(lr_fn(s)) for s in range(config.total_steps)], np.float64)


def eval_data(config) -> dict[str, np.ndarray]:
  """ssljax's digits split and kNN eval arrays, exactly as the Trainer's Evaluator builds them."""
  from ssljax.data import pipeline, sources
  train = sources.digits("train")
  val = sources.digits("val")
  ev = config.eval
  train_x, train_y = pipeline.eval_arrays(train, config.data.image_size, config.data.augment,
                                          ev.max_examples)
  eval_x, eval_y = pipeline.eval_arrays(val, config.data.image_size, config.data.augment,
                                        ev.max_examples)
  return {"train_images": train.images, "train_labels": train.labels, "eval_train_x": train_x,
          "eval_train_y": train_y, "eval_eval_x": eval_x, "eval_eval_y": eval_y,
          "num_classes": np.int32(train.num_classes)}


def _np(x) -> np.ndarray:
  return np.asarray(x, np.float32)


def torch_state_dict(params, state, depth: int) -> dict[str, np.ndarray]:
  """ssljax SimCLR ViT params / BN stats -> the worker's state dict (names, layouts)."""
  b, h = params["backbone"], params["head"]
  out = {
      "backbone.patch_embed.weight": _np(b["patch_embed"]["kernel"]).transpose(3, 2, 0, 1),
      "backbone.patch_embed.bias": _np(b["patch_embed"]["bias"]),
      "backbone.cls": _np(b["cls"]),
      "backbone.norm.weight": _np(b["norm"]["scale"]),
      "backbone.norm.bias": _np(b["norm"]["bias"]),
  }
  for i in range(depth):
    blk, pre = b[f"block{i}"], f"backbone.blocks.{i}."
    for norm in ("norm1", "norm2"):
      out[pre + norm + ".weight"] = _np(blk[norm]["scale"])
      out[pre + norm + ".bias"] = _np(blk[norm]["bias"])
    for proj in ("query", "key", "value"):
      k = _np(blk["attn"][proj]["kernel"])                   # [D, H, Dh]
      out[pre + f"attn.{proj}.weight"] = k.reshape(k.shape[0], -1).T
      out[pre + f"attn.{proj}.bias"] = _np(blk["attn"][proj]["bias"]).reshape(-1)
    k = _np(blk["attn"]["out"]["kernel"])                    # [H, Dh, D]
    out[pre + "attn.out.weight"] = k.reshape(-1, k.shape[-1]).T
    out[pre + "attn.out.bias"] = _np(blk["attn"]["out"]["bias"])
    for fc in ("fc1", "fc2"):
      out[pre + f"mlp.{fc}.weight"] = _np(blk["mlp"][fc]["kernel"]).T
      out[pre + f"mlp.{fc}.bias"] = _np(blk["mlp"][fc]["bias"])
  stats = state["head"]["batch_stats"]["bn0"]
  out.update({
      "head.layers.0.weight": _np(h["linear0"]["kernel"]).T,
      "head.layers.1.weight": _np(h["bn0"]["scale"]),
      "head.layers.1.bias": _np(h["bn0"]["bias"]),
      "head.layers.1.running_mean": _np(stats["mean"]),
      "head.layers.1.running_var": _np(stats["var"]),
      "head.layers.1.num_batches_tracked": np.asarray(0, np.int64),
      "head.layers.3.weight": _np(h["linear1"]["kernel"]).T,
      "head.layers.3.bias": _np(h["linear1"]["bias"]),
  })
  return {k: np.ascontiguousarray(v) for k, v in out.items()}


class SsljaxRun:
  """ssljax's SimCLR digits run, stepped in chunks: `train(n)` -> wall s, `features()` -> arrays."""

  def __init__(self, config):
    import jax

    from ssljax import config as config_lib
    from ssljax import methods as methods_lib
    from ssljax import optim
    from ssljax import train
    from ssljax.data import pipeline, sources

    config_lib.validate(config, device_count=1)
    self.config = config
    self.method = methods_lib.get(config.method)(config)
    tx, lr_fn = optim.build(config)
    self.data = iter(pipeline.train_dataset(
        sources.digits("train"), self.method.view_spec(), config.data.augment, seed=config.seed,
        local_batch_size=config.batch_size, worker_count=config.data.worker_count,
        prefetch=config.data.prefetch))
    example = next(iter(pipeline.train_dataset(
        sources.digits("train"), self.method.view_spec(), config.data.augment, seed=config.seed,
        local_batch_size=config.batch_size)))   # shapes only: a separate iterator
    method = self.method

    self.state = jax.jit(train.make_init_fn(method, tx, example, config.seed))()   # as the Trainer
    self.initial_torch_state = torch_state_dict(self.state.params, self.state.method_state,
                                                config.model.depth)
    step_fn = jax.jit(train.make_train_step(method, tx, lr_fn), donate_argnums=(0,))
    abstract = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in example.items()}
    t0 = time.perf_counter()
    self.step_fn = step_fn.lower(self.state, abstract).compile()
    self.compile_s = time.perf_counter() - t0
    self._features = jax.jit(method.features)
    self.steps, self.loss = 0, float("nan")

  def train(self, n: int) -> float:
    import jax
    t0 = time.perf_counter()
    for _ in range(n):
      self.state, metrics = self.step_fn(self.state, next(self.data))
    jax.block_until_ready(self.state)
    seconds = time.perf_counter() - t0
    self.steps += n
    self.loss = float(metrics["loss"])
    return seconds

  def features(self, images: np.ndarray) -> np.ndarray:
    from ssljax.evaluate.online import extract
    return extract(self._features, self.state.params, self.state.method_state, images,
                   self.config.eval.batch_size)


def export_peer_inputs(path: str, config, data: dict[str, np.ndarray],
                       initial_state: dict[str, np.ndarray]) -> None:
  """The .npz the lightly worker reads: data, recipe, per-step lr, posemb and initial weights."""
  from ssljax.models import vit
  grid = config.data.image_size // config.model.patch_size
  posemb = np.asarray(vit.sincos_2d_posemb(grid, grid, config.model.width,
                                           ref_grid=config.model.image_size // config.model.patch_size))
  np.savez(path, recipe=json.dumps(peer_recipe(config)), lrs=learning_rates(config), posemb=posemb,
           train_images=data["train_images"], eval_train_x=data["eval_train_x"],
           eval_eval_x=data["eval_eval_x"], **{f"w/{k}": v for k, v in initial_state.items()})


class LightlyRun(_peer.LineWorker):
  """benchmarks/_lightly_digits_worker.py under the peer venv, driven line by line."""

  def __init__(self, data_path: str, threads: int, python: str = PEER_PYTHON):
    super().__init__([python, WORKER, "--data", data_path, "--threads", str(threads)],
                     "lightly digits worker")
    self.steps, self.loss = 0, float("nan")

  def train(self, n: int) -> float:
    out = self._ask(f"train {n}")
    self.steps, self.loss = out["step"], out["loss"]
    return out["seconds"]

  def features(self, path: str) -> tuple[np.ndarray, np.ndarray]:
    self._ask(f"features {path}")
    with np.load(path) as f:
      return f["train"], f["eval"]


def knn(config, data: dict[str, np.ndarray], train_f: np.ndarray, eval_f: np.ndarray) -> float:
  """The Trainer's kNN monitor on given features: `knn_top1` with the config's k and T."""
  from ssljax.evaluate import knn_top1
  ev = config.eval
  return knn_top1(train_f, data["eval_train_y"], eval_f, data["eval_eval_y"],
                  int(data["num_classes"]), k=min(ev.knn_k, len(train_f)),
                  temperature=ev.knn_temperature)


def time_to(curve: Sequence[dict[str, float]], target: float) -> dict[str, float] | None:
  """The first point of a curve [{'step', 'seconds', 'knn'}] with knn >= target (None: never)."""
  return next((p for p in curve if p["knn"] >= target), None)


def run(config, threads: int, eval_every: int, log=print) -> dict[str, Any]:
  """Trains both sides in alternating chunks of `eval_every` steps, evaluating both after each.

  Returns:
    {'curves': {'ssljax': [...], 'lightly': [...]} with one {'step', 'seconds', 'knn', 'loss'} per
    evaluation (step 0 first), 'compile_s', 'versions', 'params', 'torch_threads',
    'thread_calibration'}.
  """
  data = eval_data(config)
  ours = SsljaxRun(config)
  log(f"ssljax: compiled the train step in {ours.compile_s:.1f} s", flush=True)
  curves = {"ssljax": [], "lightly": []}
  clock = {"ssljax": ours.compile_s, "lightly": 0.0}
  with tempfile.TemporaryDirectory() as tmp:
    inputs = os.path.join(tmp, "digits.npz")
    export_peer_inputs(inputs, config, data, ours.initial_torch_state)
    peer = LightlyRun(inputs, threads)
    log(f"lightly: torch intra-op threads {peer.info['torch_threads']} (forward+backward medians "
        f"by thread count: {peer.info['thread_calibration']})", flush=True)
    try:
      def evaluate(name):
        if name == "ssljax":
          feats = (ours.features(data["eval_train_x"]), ours.features(data["eval_eval_x"]))
          side = ours
        else:
          feats = peer.features(os.path.join(tmp, "features.npz"))
          side = peer
        point = {"step": side.steps, "seconds": clock[name], "knn": knn(config, data, *feats),
                 "loss": side.loss}
        curves[name].append(point)
        return point

      for name in curves:
        evaluate(name)
      log(f"step 0: kNN ssljax {curves['ssljax'][0]['knn']:.4f}, lightly "
          f"{curves['lightly'][0]['knn']:.4f} (same initial weights)", flush=True)
      sides = {"ssljax": ours, "lightly": peer}
      done, r = 0, 0
      while done < config.total_steps:
        n = min(eval_every, config.total_steps - done)
        for name in (("ssljax", "lightly") if r % 2 == 0 else ("lightly", "ssljax")):
          clock[name] += sides[name].train(n)
        done += n
        r += 1
        points = {name: evaluate(name) for name in curves}
        log(f"step {done}: " + ", ".join(
            f"{name} kNN {p['knn']:.4f} loss {p['loss']:.3f} at {p['seconds']:.1f} s"
            for name, p in points.items()), flush=True)
    finally:
      peer.close()
  import jax
  n_params = int(sum(x.size for x in jax.tree_util.tree_leaves(ours.state.params)))
  return {"curves": curves, "compile_s": ours.compile_s, "versions": peer.info["versions"],
          "params": {"ssljax": n_params, "lightly": peer.info["params"]},
          "torch_threads": peer.info["torch_threads"],
          "thread_calibration": peer.info["thread_calibration"]}


def format_table(result: dict[str, Any], targets: Sequence[float]) -> str:
  """Two markdown tables: time to each kNN target (ssljax with and without its compile time, and
  the ratio lightly / ssljax), then per side the final kNN, kNN at step 0, training time, s/step."""
  curves, compile_s = result["curves"], result["compile_s"]

  def cell(hit, minus=0.0):
    return f"{hit['seconds'] - minus:.1f} (step {hit['step']})" if hit else "not reached"

  rows = []
  for target in targets:
    ours, peer = time_to(curves["ssljax"], target), time_to(curves["lightly"], target)
    both = ours and peer
    rows.append([f">= {target:g}", cell(ours), cell(ours, compile_s), cell(peer),
                 f"{peer['seconds'] / ours['seconds']:.2f}x" if both else "-",
                 f"{peer['seconds'] / max(ours['seconds'] - compile_s, 1e-9):.2f}x" if both else "-"])
  table = report.markdown_table(
      ["held-out kNN top-1", "ssljax s (step)", "ssljax s without compile", "lightly s (step)",
       "lightly s / ssljax s", "same, without ssljax's compile"], rows)
  rows = []
  for name, curve in curves.items():
    per_step = [(b["seconds"] - a["seconds"]) / max(b["step"] - a["step"], 1)
                for a, b in zip(curve, curve[1:])]
    rows.append([name, f"{curve[-1]['knn']:.4f}", f"{max(p['knn'] for p in curve):.4f}",
                 f"{curve[0]['knn']:.4f}", curve[-1]["step"], f"{curve[-1]['seconds']:.1f}",
                 f"{float(np.median(per_step)):.3f}" if per_step else "-"])
  table += "\n\n" + report.markdown_table(
      ["framework", "final kNN top-1", "best kNN top-1", "kNN at step 0", "steps",
       "train s (all steps)", "s per step (median chunk)"], rows)
  return table + (f"\n\nRatios > 1: ssljax reached the accuracy sooner. ssljax's seconds include "
                  f"its compilation ({compile_s:.1f} s, cold cache) unless said otherwise.")


def format_curves(result: dict[str, Any]) -> str:
  """One line per side: (step, s, kNN) of every evaluation."""
  return "\n".join(f"- {name}: " + ", ".join(f"{p['step']}: {p['knn']:.3f} @ {p['seconds']:.0f} s"
                                             for p in curve)
                   for name, curve in result["curves"].items())


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="20 steps, eval every 10, no write")
  parser.add_argument("--steps", type=int, default=0, help="total steps (default: the config's)")
  parser.add_argument("--eval-every", type=int, default=10,
                      help="steps per chunk, and between kNN evaluations")
  parser.add_argument("--targets", type=float, nargs="+", default=[0.85, 0.88, 0.9],
                      help="held-out kNN top-1 accuracies to time")
  parser.add_argument("--threads", type=int, default=2, help="CPUs both processes are pinned to")
  parser.add_argument("--no-write", action="store_true")
  args = parser.parse_args(argv)
  if args.quick:
    args.steps, args.eval_every, args.no_write = 20, 10, True
  cpus = pin_threads(args.threads)
  import jax
  config = load_config(args.steps or None)
  result = run(config, args.threads, args.eval_every)
  table = format_table(result, args.targets)
  curves = format_curves(result)
  print(table)
  print(curves)
  if not args.no_write:
    notes = (
        f"\n\nkNN every {args.eval_every} steps (step, held-out kNN top-1 @ training s):\n\n{curves}"
        "\n\nRecipe: configs/simclr_digits.py on both sides, both starting from ssljax's initial "
        "weights (converted to the torch module): ViT width 64, depth 3, 4 heads, 4x4 patches on 16x16 "
        "digits, sin-cos position embedding, [CLS] features; projection 64-256(BN, ReLU)-64; NT-Xent "
        "T 0.2; batch 128; AdamW, lr 2e-3 x 128/256 with 20 linear warm-up steps from 0 and a cosine "
        f"to 0 at step {config.total_steps}, wd 1e-4 on kernels only; augmentations "
        f"{json.dumps(peer_recipe(config)['augment'])} "
        "(ssljax's numpy/PIL code vs torchvision's RandomResizedCrop, RandomApply(ColorJitter), "
        "RandomGrayscale, RandomApply(GaussianBlur(3))); data from grain / a DataLoader with "
        f"{config.data.worker_count} workers. kNN: ssljax's `knn_top1` (k 20, T 0.07) on each side's "
        "backbone features of the same centre-view arrays (1,437 train bank, 360 held out; ssljax's "
        "fixed digits split, exported to the worker). Seconds: training wall-clock only (data "
        "loading and steps; ssljax's clock starts with its compile time, measured here with a cold "
        "cache; `python -m ssljax.main` turns on JAX's persistent compilation cache, which a second "
        "run of the same config hits: see 'Time to first step'), evaluations excluded; the "
        "sides alternate chunks on a machine shared with other jobs. lightly side: "
        "`lightly.models.modules.heads.ProjectionHead`, `lightly.loss.NTXentLoss`, the ViT written in "
        "torch (F.scaled_dot_product_attention), `torch.optim.AdamW`, torchvision transforms.")
    command = " ".join(["python -m benchmarks.time_to_accuracy",
                        *(argv if argv is not None else sys.argv[1:])])
    meta = {"command": command,
            "threads": f"both processes pinned to CPUs {cpus} (XLA's pool: {len(cpus)} threads); "
                       f"torch.set_num_threads({result['torch_threads']}), the faster of 1 and "
                       f"{args.threads} in a start-up timing of its forward + backward (median s "
                       f"by thread count: {_round(result['thread_calibration'])})",
            "peer": ", ".join(f"{k} {v}" for k, v in result["versions"].items()),
            "ssljax side": f"jax {jax.__version__}, flax {_peer.version('flax')}, optax {_peer.version('optax')}, "
                           f"grain {_peer.version('grain')}",
            "params": f"ssljax {result['params']['ssljax']:,} (incl. an unused mask token), "
                      f"lightly {result['params']['lightly']:,}",
            "ssljax compile": f"{result['compile_s']:.1f} s (in ssljax's clock)"}
    report.write_section(SECTION, table + notes, meta)
  return result


def _round(d: dict) -> dict:
  return {k: round(v, 3) for k, v in d.items()}


if __name__ == "__main__":
  from ssljax.cpu import host_memory, xla_flags
  host_memory.reexec_with_host_defaults()   # as the ssljax command lines do (ssljax/cpu)
  xla_flags.apply_cpu_defaults()             # (its XLA:CPU flags too, before JAX starts)
  main()
