"""Peak temporary memory and time of value_and_grad: naive full-matrix loss vs ssljax's tiled one.

For N = 1k .. 128k (D = 128, float32) both losses are compiled (not run) and the compiler's
`memory_analysis().temp_size_in_bytes` is read: the naive loss holds N x N logits (and their
softmax for the backward), the tiled kernel only O(N) values. Only the small N in --time-sizes
are timed (min over repetitions, the two losses interleaved). The table is printed and written
into the "Contrastive loss memory" section of BENCHMARKS.md.

  python benchmarks/contrastive_memory.py            # full table (a few minutes on CPU)
  python benchmarks/contrastive_memory.py --quick    # smoke run
  python benchmarks/contrastive_memory.py --loss sigmoid --no-write
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

from benchmarks.report import markdown_table, write_section  # pylint: disable=g-import-not-at-top
from ssljax.kernels import contrastive as C  # pylint: disable=g-import-not-at-top

LOSSES = {
    # CLIP-style symmetric InfoNCE (the Inf-CL setting), SimCLR NT-Xent, SigLIP.
    "clip": lambda q, k, impl: C.info_nce_loss(q, k, 10.0, bidirectional=True, impl=impl),
    "nt_xent": lambda q, k, impl: C.nt_xent_loss(q, k, 10.0, impl=impl),
    "sigmoid": lambda q, k, impl: C.sigmoid_loss(q, k, 10.0, -10.0, impl=impl),
}


def _grad_fn(loss, impl):
  return jax.jit(jax.value_and_grad(lambda q, k: LOSSES[loss](q, k, impl), argnums=(0, 1)))


def temp_bytes(loss, impl, n, d):
  x = jax.ShapeDtypeStruct((n, d), jnp.float32)
  compiled = _grad_fn(loss, impl).lower(x, x).compile()
  return compiled.memory_analysis().temp_size_in_bytes


def time_pair(loss, impls, n, d, reps):
  """Min seconds per value_and_grad call for each impl, calls interleaved across impls."""
  k1, k2 = jax.random.split(jax.random.PRNGKey(0))
  q = jax.random.normal(k1, (n, d))
  k = jax.random.normal(k2, (n, d))
  q = q / jnp.linalg.norm(q, axis=-1, keepdims=True)
  k = k / jnp.linalg.norm(k, axis=-1, keepdims=True)
  fns = {impl: _grad_fn(loss, impl) for impl in impls}
  for fn in fns.values():
    jax.block_until_ready(fn(q, k))
  best = {impl: float("inf") for impl in impls}
  for _ in range(reps):
    for impl, fn in fns.items():
      t = time.perf_counter()
      jax.block_until_ready(fn(q, k))
      best[impl] = min(best[impl], time.perf_counter() - t)
  return best


def _mib(b):
  return b / 2**20


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--loss", choices=sorted(LOSSES), nargs="+",
                      default=["clip", "nt_xent", "sigmoid"])
  parser.add_argument("--sizes", type=int, nargs="+",
                      default=[1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072])
  parser.add_argument("--time-sizes", type=int, nargs="+", default=[1024, 4096])
  parser.add_argument("--dim", type=int, default=128)
  parser.add_argument("--reps", type=int, default=5)
  parser.add_argument("--impl", default="auto", help="ssljax impl: auto | xla | pallas")
  parser.add_argument("--quick", action="store_true", help="N <= 16k, time N = 1024 only")
  parser.add_argument("--no-write", action="store_true", help="print only, leave BENCHMARKS.md")
  args = parser.parse_args(argv)
  if args.quick:
    args.sizes = [n for n in args.sizes if n <= 16384]
    args.time_sizes, args.reps = [1024], 3
  impl = C.resolve_impl(args.impl)

  rows = []
  for loss in args.loss:
    for n in args.sizes:
      naive = temp_bytes(loss, "reference", n, args.dim)
      ours = temp_bytes(loss, impl, n, args.dim)
      row = [loss, n, f"{_mib(naive):,.1f}", f"{_mib(ours):,.2f}", f"{naive / ours:,.0f}x",
             "", "", ""]
      if n in args.time_sizes:
        t = time_pair(loss, ["reference", impl], n, args.dim, args.reps)
        row[5:] = [f"{1e3 * t['reference']:.1f}", f"{1e3 * t[impl]:.1f}",
                   f"{t[impl] / t['reference']:.2f}"]
      rows.append(row)
      print(" | ".join(map(str, row)), flush=True)

  header = ["loss", "N", "naive temp (MiB)", f"ssljax temp (MiB, impl={impl})", "memory ratio",
            "naive time (ms)", "ssljax time (ms)", "time ratio ssljax/naive"]
  table = markdown_table(header, rows)
  print(table)
  gpu_note = ("" if jax.default_backend() == "gpu" else
              "\n\nGPU numbers (Pallas/Triton path) are not yet measured: no GPU was available "
              "to this run.")
  notes = (
      "\n\nLosses from `ssljax.kernels.contrastive`: `clip` = symmetric InfoNCE (N x N logits, "
      "both directions), `nt_xent` = SimCLR on two [N, D] views (2N x 2N logits, self excluded), "
      f"`sigmoid` = SigLIP (all N x N pairs). value_and_grad w.r.t. both [N, {args.dim}] float32 "
      "inputs; 'naive' is the same loss with impl='reference'. Temp memory is XLA's compiled "
      "`memory_analysis().temp_size_in_bytes` (compile only, nothing is allocated), so the naive "
      "column for large N is what it *would* need. Times are the minimum over "
      f"{args.reps} interleaved calls, on a shared machine: compare ratios, not absolutes."
      + gpu_note + "\n")
  if not args.no_write:
    command = " ".join(["python benchmarks/contrastive_memory.py", *(argv or sys.argv[1:])])
    write_section("Contrastive loss memory", table + notes, {"command": command, "D": args.dim})
  return rows


if __name__ == "__main__":
  main()
