"""Step parity with lightly: ssljax's and lightly's train steps from the same weights on the same views.

  python -m benchmarks.peer_parity [--tasks clutter_digits64] [--methods simclr byol dino] [--steps 10]

For each (task, method), ssljax's recommended small-image recipe (configs/<method>_small.py, as
benchmarks/small_images.py runs it) is initialised and takes `--steps` train steps on batches from
its own pipeline; the lightly side (benchmarks/_lightly_parity_worker.py under .venv-peer: the same
small CNN in torch with lightly's heads, losses and momentum updates, torch's AdamW) starts from
ssljax's initial weights and takes the same steps on the same views at the same learning rates. The
section compares, per step, the losses (in lightly's convention: ssljax's BYOL loss is
4 + 2 (nc_12 + nc_21), lightly's the mean of the two negative cosines), the first step's gradients
and the parameters and BatchNorm running statistics after the last step.

Where the two sides compute the same thing the differences are float rounding (XLA's and torch's
convolutions sum in different orders), which Adam's normalisation amplifies in the parameters of
small gradients over the steps; a different loss, head, update order or schedule shows up at the
first step. So the side-by-side learning curves of benchmarks/small_images.py compare
implementations that agree step for step, and their differences come from the initial weights and
the data order of each side's seed.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from typing import Any, Sequence

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import _peer  # noqa: E402
from benchmarks import report  # noqa: E402
from benchmarks import small_images  # noqa: E402
from benchmarks.time_to_accuracy import learning_rates  # noqa: E402

SECTION = "Step parity with lightly"
WORKER = os.path.join(report.ROOT, "benchmarks", "_lightly_parity_worker.py")
# ssljax's loss = OFFSET + SCALE * lightly's loss for the same network outputs (and so its
# gradients SCALE times lightly's).
LOSS_AFFINE = {"simclr": (0.0, 1.0), "byol": (4.0, 4.0), "dino": (0.0, 1.0)}
HEADER = ["task", "method", "batch", "steps", "loss at step 0 (ssljax / lightly)",
          "max loss difference over the steps", "first step: gradient difference",
          "after the steps: parameter-change difference", "after the steps: BN statistics difference",
          "lightly-only parameters"]


def _rel(a: dict[str, np.ndarray], b: dict[str, np.ndarray], keys) -> float:
  """||a - b|| / ||b|| over the concatenation of `keys`."""
  num = sum(float(np.sum((a[k].astype(np.float64) - b[k]) ** 2)) for k in keys)
  den = sum(float(np.sum(b[k].astype(np.float64) ** 2)) for k in keys)
  return float(np.sqrt(num / max(den, 1e-300)))


def ssljax_side(config, steps: int) -> dict[str, Any]:
  """ssljax's initial params, `steps` batches of views, its losses, first gradients, final state."""
  import jax
  import jax.numpy as jnp
  run = small_images.SsljaxRun(config)
  state = run.state
  batches = [next(run.data) for _ in range(steps)]
  init, method_state = small_images.flat_tree(state.params), state.method_state

  def loss_fn(params, batch):
    return run.method.loss(params, method_state, batch, jax.random.fold_in(state.rng, state.step),
                           state.step)

  first = {k: jnp.asarray(v) for k, v in batches[0].items() if k != "label"}
  grads = small_images.flat_tree(jax.grad(lambda p: loss_fn(p, first)[0])(state.params))
  losses = []
  for batch in batches:
    state, metrics = run.step_fn(state, batch)
    losses.append(float(metrics["loss"]))
  stats = {}
  for key, value in small_images.flat_tree(state.method_state).items():
    if "['batch_stats']['norm" in key and "target" not in key and "teacher" not in key:
      norm, stat = key.split("['")[-2].rstrip("']"), key.split("['")[-1].rstrip("']")
      stats[f"stats/{norm}/{stat}"] = value
  return {"init": init, "views": np.stack([b["global"] for b in batches]), "grads": grads,
          "losses": np.asarray(losses), "final": small_images.flat_tree(state.params),
          "stats": stats, "lrs": learning_rates(config)}


def lightly_side(config, ours: dict[str, Any], threads: int, python: str) -> tuple[dict, dict]:
  """The worker's answer (losses, grads, final params, stats) and its JSON line."""
  if not os.path.exists(python):
    raise FileNotFoundError(f"{python} not found: run `bash benchmarks/peer_env.sh` first")
  from ssljax.cpu import host_memory
  with tempfile.TemporaryDirectory() as tmp:
    inputs, outputs = os.path.join(tmp, "in.npz"), os.path.join(tmp, "out.npz")
    np.savez(inputs, recipe=json.dumps(small_images.peer_recipe(config)), views=ours["views"],
             lrs=ours["lrs"], **{"init/" + k: v for k, v in ours["init"].items()})
    proc = subprocess.run([python, WORKER, "--data", inputs, "--out", outputs, "--threads",
                           str(threads)], capture_output=True, text=True, cwd=report.ROOT,
                          env=host_memory.original_environ())
    if proc.returncode:
      raise RuntimeError(f"lightly parity worker exited with {proc.returncode}: "
                         f"{proc.stderr.strip().splitlines()[-1:]}")
    with np.load(outputs) as f:
      theirs = {k: f[k] for k in f.files}
  return theirs, json.loads(proc.stdout.strip().splitlines()[-1])


def compare(method: str, ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
  """The section's numbers for one (task, method)."""
  offset, scale = LOSS_AFFINE[method]
  our_losses = (ours["losses"] - offset) / scale          # in lightly's convention
  grad_keys = [k[len("grad/"):] for k in theirs if k.startswith("grad/")]
  final_keys = [k[len("final/"):] for k in theirs if k.startswith("final/")]
  grads = {k: ours["grads"][k] / scale for k in grad_keys}
  ours_change = {k: ours["final"][k] - ours["init"][k] for k in final_keys}
  theirs_change = {k: theirs["final/" + k] - ours["init"][k] for k in final_keys}
  stat_keys = [k for k in ours["stats"] if k in theirs]
  if not grad_keys or not final_keys or not stat_keys:
    raise ValueError(f"{method}: nothing to compare ({len(grad_keys)} gradients, {len(final_keys)} "
                     f"parameters, {len(stat_keys)} BatchNorm statistics in common)")
  return {
      "loss0": (float(our_losses[0]), float(theirs["losses"][0])),
      "max_loss_diff": float(np.max(np.abs(our_losses - theirs["losses"]))),
      "grad_rel": _rel(grads, {k: theirs["grad/" + k] for k in grad_keys}, grad_keys),
      "change_rel": _rel(ours_change, theirs_change, final_keys),
      "stats_rel": _rel(ours["stats"], {k: theirs[k] for k in stat_keys}, stat_keys),
      "unmapped": [str(x) for x in theirs["unmapped"]],
      "curves": (our_losses.tolist(), theirs["losses"].tolist()),
  }


def row(task: str, method: str, batch: int, steps: int, r: dict[str, Any]) -> list[Any]:
  return [task, method, batch, steps, f"{r['loss0'][0]:.5f} / {r['loss0'][1]:.5f}",
          f"{r['max_loss_diff']:.1e}", f"{r['grad_rel']:.1e}", f"{r['change_rel']:.1e}",
          f"{r['stats_rel']:.1e}", ", ".join(r["unmapped"]) or "none"]


def main(argv: Sequence[str] | None = None) -> list[list[Any]]:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--tasks", nargs="+", default=["clutter_digits64"])
  parser.add_argument("--methods", nargs="+", default=list(small_images.METHODS),
                      choices=small_images.METHODS)
  parser.add_argument("--steps", type=int, default=10, help="train steps compared")
  parser.add_argument("--batch", type=int, default=64)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--recipe-arg", default="glyphs", choices=["", "glyphs"])
  parser.add_argument("--threads", type=int, default=2)
  parser.add_argument("--data-dir", default=os.path.join(tempfile.gettempdir(), "ssljax_benchmarks"))
  parser.add_argument("--no-write", action="store_true")
  args = parser.parse_args(argv)
  if args.steps < 1:
    parser.error(f"--steps {args.steps}; expected at least 1")
  from ssljax.data import benchmarks
  rows, notes, versions = [], [], {}
  for task in args.tasks:
    path = os.path.join(args.data_dir, task)
    if not os.path.isdir(os.path.join(path, "val")):
      benchmarks.write(task, path)
    for method in args.methods:
      # The schedule of the side-by-side runs (300 steps: 15 warm-up steps, then cosine).
      config = small_images.load_config(method, path, 300, args.batch, seed=args.seed,
                                        image_size=benchmarks.get(task).image_size,
                                        recipe_arg=args.recipe_arg)
      ours = ssljax_side(config, args.steps)
      theirs, info = lightly_side(config, ours, args.threads, _peer.PEER_PYTHON)
      versions = info["versions"]
      result = compare(method, ours, theirs)
      label = method + (f":{args.recipe_arg}" if args.recipe_arg else "")
      rows.append(row(task, label, args.batch, args.steps, result))
      print(" | ".join(str(x) for x in rows[-1]), flush=True)
      notes.append(f"- {task} {label}, losses per step (ssljax; lightly): "
                   + "; ".join(" ".join(f"{x:.4f}" for x in c) for c in result["curves"]))
  if args.no_write:
    return rows
  table = report.markdown_table(HEADER, rows)
  text = table + "\n" + "\n".join(notes) + (
      "\n\nLoss differences are absolute; the others relative: ||ssljax - lightly|| / ||lightly|| "
      "over all the weights both "
      "sides have (first step's gradients, ssljax's divided by its loss scale; the parameters' "
      "change from the shared initial weights; the online backbone's BatchNorm running means and "
      "variances; torch's running variance is unbiased, Flax's biased). Losses in lightly's "
      "convention. The first step runs at learning rate 0 (the warm-up's first step), so the "
      "parameters move from the second step on. Lightly-only parameters keep torch's initial "
      "values (the BatchNorm shift on SimCLR's output layer, which ssljax's head has not: scale "
      "only, as SimCLR v2's).\n")
  meta = {"command": "python -m benchmarks.peer_parity " + " ".join(argv if argv is not None
                                                                    else sys.argv[1:]),
          **{k: v for k, v in versions.items()}}
  report.write_section(SECTION, text, meta)
  return rows


if __name__ == "__main__":
  from ssljax.cpu import host_memory, xla_flags
  host_memory.reexec_with_host_defaults()
  xla_flags.apply_cpu_defaults()
  main()
