"""`impl='auto'` of the contrastive losses against the full matrix at N <= 4096: the same speed.

`ssljax.losses` picks the full-matrix code for `impl='auto'` on one device while the logit matrix
has at most FULL_MATRIX_MAX_LOGITS entries, so auto should cost what `impl='reference'` costs
there (goal: within 1.1x). For each loss and N, value_and_grad w.r.t. the [N, D] float32 inputs is
jitted for both impls, the calls are interleaved, and the minimum over --reps calls is kept. The
table goes into the "Contrastive loss: auto vs full matrix" section of BENCHMARKS.md.

  python -m benchmarks.contrastive_auto             # N = 256 .. 4096, a minute or two on CPU
  python -m benchmarks.contrastive_auto --no-write  # print only
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import jax
import jax.numpy as jnp

from benchmarks.report import markdown_table, write_section
from ssljax import losses
from ssljax.losses import contrastive as contrastive_losses

TITLE = "Contrastive loss: auto vs full matrix"
GOAL = 1.1
LOSSES = {
    # name: (loss(x, y, impl), logit matrix rows x cols for N inputs)
    "nt_xent": (lambda x, y, impl: losses.nt_xent(x, y, 0.5, impl=impl), lambda n: (2 * n, 2 * n)),
    "info_nce": (lambda x, y, impl: losses.info_nce(x, y, 0.2, impl=impl), lambda n: (n, n)),
    "sigmoid": (lambda x, y, impl: losses.sigmoid_contrastive(x, y, jnp.log(10.0), -10.0,
                                                               impl=impl), lambda n: (n, n)),
}


def _grad_fn(loss: str, impl: str):
  fn = LOSSES[loss][0]
  return jax.jit(jax.value_and_grad(lambda x, y: fn(x, y, impl), argnums=(0, 1)))


def same_program(loss: str, n: int, d: int) -> bool:
  """Whether 'auto' and 'reference' lower to the same StableHLO text for [n, d] inputs."""
  x = jax.ShapeDtypeStruct((n, d), jnp.float32)
  return _grad_fn(loss, "auto").lower(x, x).as_text() == \
      _grad_fn(loss, "reference").lower(x, x).as_text()


def time_impls(loss: str, n: int, d: int, reps: int) -> dict[str, float]:
  """Min seconds per value_and_grad call of `loss` for 'auto' and 'reference', and the median
  over `reps` back-to-back pairs (order alternating) of auto / reference: a load burst on a shared
  machine hits both calls of a pair, so the paired ratio is steadier than the ratio of minima."""
  kx, ky = jax.random.split(jax.random.PRNGKey(0))
  x, y = jax.random.normal(kx, (n, d)), jax.random.normal(ky, (n, d))
  fns = {impl: _grad_fn(loss, impl) for impl in ("reference", "auto")}
  for fn in fns.values():
    jax.block_until_ready(fn(x, y))
  best = {impl: float("inf") for impl in fns}
  ratios = []
  for rep in range(reps):
    t = {}
    for impl in (("auto", "reference") if rep % 2 else ("reference", "auto")):
      t0 = time.perf_counter()
      jax.block_until_ready(fns[impl](x, y))
      t[impl] = time.perf_counter() - t0
      best[impl] = min(best[impl], t[impl])
    ratios.append(t["auto"] / t["reference"])
  return {**best, "ratio": statistics.median(ratios)}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024, 2048, 4096])
  parser.add_argument("--loss", choices=sorted(LOSSES), nargs="+", default=sorted(LOSSES))
  parser.add_argument("--dim", type=int, default=128)
  parser.add_argument("--reps", type=int, default=10)
  parser.add_argument("--no-write", action="store_true", help="print only, leave BENCHMARKS.md")
  args = parser.parse_args(argv)
  rows = []
  for loss in args.loss:
    for n in args.sizes:
      rows_, cols = LOSSES[loss][1](n)
      picked = contrastive_losses._pick_impl("auto", rows_, cols)  # pylint: disable=protected-access
      t = time_impls(loss, n, args.dim, args.reps)
      ratio = t["ratio"]
      same = "yes" if same_program(loss, n, args.dim) else "no"
      row = [loss, n, f"{rows_} x {cols}", picked, same, f"{1e3 * t['reference']:.2f}",
             f"{1e3 * t['auto']:.2f}", f"{ratio:.2f}", "yes" if ratio <= GOAL else "no"]
      rows.append(row)
      print(" | ".join(map(str, row)), flush=True)
  header = ["loss", "N", "logits", "auto runs", "same program", "full matrix (ms)", "auto (ms)",
            "auto / full (median of pairs)", f"within {GOAL}x"]
  table = markdown_table(header, rows)
  print(table)
  notes = (f"\n\nvalue_and_grad w.r.t. both [N, {args.dim}] float32 inputs of `ssljax.losses` "
           "(nt_xent: two views, 2N x 2N logits), jitted, on one device; 'full matrix' is "
           "impl='reference', 'auto' the default, which resolves as the 'auto runs' column says "
           "(full matrix up to FULL_MATRIX_MAX_LOGITS = 2^26 logits); 'same program' compares the "
           f"two lowered StableHLO texts. Times are the minimum over {args.reps} calls, the ratio "
           "the median over back-to-back pairs, on a shared machine: where the program is the "
           "same, the ratio is timing noise around 1.\n")
  if not args.no_write:
    command = " ".join(["python -m benchmarks.contrastive_auto", *(argv or sys.argv[1:])])
    write_section(TITLE, table + notes, {"command": command, "D": args.dim})
  return rows


if __name__ == "__main__":
  main()
