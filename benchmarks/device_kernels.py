"""The kernels on whatever accelerator this process has: parity with the references and time,
side by side in one run (BENCHMARKS.md section "Kernels on an accelerator").

  python -m benchmarks.device_kernels            # what benchmarks/device_check.sh runs
  python -m benchmarks.device_kernels --small    # seconds, any machine (a smoke run on CPU)

Needs only jax (no grain / TFDS): ssljax.kernels imports nothing else. For each case: the
largest error of the output and of the q / k gradients against the float32 reference, and the
forward + backward time of every implementation the platform has, as a ratio to 'xla'.
"""
from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import report
from ssljax.kernels import attention as A
from ssljax.kernels import contrastive as C

TITLE = "Kernels on an accelerator"


def _time(fn, *args, repeats: int = 5) -> float:
  jax.block_until_ready(fn(*args))
  best = float("inf")
  for _ in range(repeats):
    t = time.perf_counter()
    jax.block_until_ready(fn(*args))
    best = min(best, time.perf_counter() - t)
  return best


def _max_err(a, b) -> float:
  return max(float(jnp.max(jnp.abs(x.astype(jnp.float32) - y.astype(jnp.float32))))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def attention_rows(b, l, h, d, dtype):
  rng = np.random.default_rng(0)
  q, k, v = (jnp.asarray(rng.normal(size=(b, l, h, d)), dtype) for _ in range(3))

  def grad_fn(impl):
    loss = lambda q, k, v: jnp.sum(A.dot_product_attention(q, k, v, impl=impl)  # noqa: E731
                                   .astype(jnp.float32) ** 2)
    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))

  want = grad_fn("reference")(q.astype(jnp.float32), k.astype(jnp.float32), v.astype(jnp.float32))
  base = _time(grad_fn("xla"), q, k, v)
  rows = []
  for impl in ("xla", "pallas", "auto"):
    fn = grad_fn(impl)
    got = fn(q, k, v)
    t = _time(fn, q, k, v)
    rows.append([f"attention B{b} L{l} H{h} D{d} {jnp.dtype(dtype).name}", impl,
                 A.choose_kernel(impl, q), f"{_max_err(want, got):.2e}", f"{t * 1e3:.2f}",
                 f"{base / t:.2f}x"])
  return rows


def contrastive_rows(n, d):
  rng = np.random.default_rng(0)
  unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
  z1 = jnp.asarray(unit(rng.normal(size=(n, d))), jnp.float32)
  z2 = jnp.asarray(unit(rng.normal(size=(n, d))), jnp.float32)

  def grad_fn(impl):
    return jax.jit(jax.value_and_grad(lambda a, b: C.nt_xent_loss(a, b, 10.0, impl=impl),
                                      argnums=(0, 1)))

  want = grad_fn("reference")(z1, z2)
  base = _time(grad_fn("xla"), z1, z2)
  rows = []
  for impl in ("xla", "pallas"):
    fn = grad_fn(impl)
    got = fn(z1, z2)
    t = _time(fn, z1, z2)
    rows.append([f"NT-Xent N{n} D{d}", impl, C.resolve_impl(impl, C.PALLAS_ON),
                 f"{_max_err(want, got):.2e}", f"{t * 1e3:.2f}", f"{base / t:.2f}x"])
  return rows


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--small", action="store_true", help="tiny shapes (a smoke run)")
  parser.add_argument("--no-write", action="store_true", help="print only")
  args = parser.parse_args(argv)
  if args.small:
    att = [(2, 32, 2, 32, jnp.float32)]
    con = [(64, 32)]
  else:
    att = [(64, 197, 6, 64, jnp.bfloat16), (64, 197, 6, 64, jnp.float32),
           (32, 577, 12, 64, jnp.bfloat16)]
    con = [(4096, 128), (32768, 128)]
  rows = []
  for shape in att:
    rows += attention_rows(*shape)
  for shape in con:
    rows += contrastive_rows(*shape)
  table = report.markdown_table(["case", "impl", "runs", "max error vs reference",
                                 "fwd + bwd (ms)", "speed vs xla"], rows)
  print(table)
  if not args.no_write:
    report.write_section(TITLE, table, {"command": "python -m benchmarks.device_kernels",
                                        "device": str(jax.devices()[0].device_kind)})


if __name__ == "__main__":
  main()
