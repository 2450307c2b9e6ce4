"""Attention fwd+bwd: temporary memory and time of ssljax's flash attention vs the naive one.

For sequence lengths 64 .. 4096 (ViT-B heads: H = 12, Dh = 64) value_and_grad of
sum(attention(q, k, v) * w) is compiled for the naive reference (holds the [B, H, L, L]
probabilities) and for `ssljax.kernels.attention.dot_product_attention(impl='auto')`; the table
gives XLA's compiled `memory_analysis().temp_size_in_bytes` and, for L <= --time-max, the time.
On a GPU it also gives TFLOP/s of the Pallas kernel and of `jax.nn.dot_product_attention` with
implementation='xla' and 'cudnn' (bf16), counting fwd+bwd as 3.5 x the forward's 4 B H L^2 Dh.
The table is printed and written into the "Attention" section of BENCHMARKS.md.

  python benchmarks/attention.py           # full table (a few minutes on CPU)
  python benchmarks/attention.py --quick   # smoke run
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
from ssljax.kernels import attention as A  # pylint: disable=g-import-not-at-top


def _attention_fn(name):
  """name: 'naive' | 'ssljax' | 'jax-xla' | 'jax-cudnn' -> f(q, k, v) [B, L, H, Dh]."""
  if name == "naive":
    return lambda q, k, v: A.dot_product_attention(q, k, v, impl="reference")
  if name == "ssljax":
    return lambda q, k, v: A.dot_product_attention(q, k, v, impl="auto")
  implementation = name.split("-")[1]
  return lambda q, k, v: jax.nn.dot_product_attention(q, k, v, implementation=implementation)


def _grad_fn(name):
  attend = _attention_fn(name)

  def objective(q, k, v, w):
    return jnp.sum(attend(q, k, v).astype(jnp.float32) * w)
  return jax.jit(jax.value_and_grad(objective, argnums=(0, 1, 2)))


def temp_bytes(name, shape, dtype):
  x = jax.ShapeDtypeStruct(shape, dtype)
  w = jax.ShapeDtypeStruct(shape, jnp.float32)
  return _grad_fn(name).lower(x, x, x, w).compile().memory_analysis().temp_size_in_bytes


def time_fns(names, shape, dtype, reps):
  """Min seconds per fwd+bwd call for each name, interleaved."""
  ks = jax.random.split(jax.random.PRNGKey(0), 4)
  q, k, v = (jax.random.normal(kk, shape).astype(dtype) for kk in ks[:3])
  w = jax.random.normal(ks[3], shape)
  fns = {n: _grad_fn(n) for n in names}
  for fn in fns.values():
    jax.block_until_ready(fn(q, k, v, w))
  best = {n: float("inf") for n in names}
  for _ in range(reps):
    for n, fn in fns.items():
      t = time.perf_counter()
      jax.block_until_ready(fn(q, k, v, w))
      best[n] = min(best[n], time.perf_counter() - t)
  return best


def fwd_bwd_flops(b, l, h, d):
  return 3.5 * 4 * b * h * l * l * d


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--seq", type=int, nargs="+",
                      default=[64, 128, 197, 256, 512, 1024, 2048, 4096])
  parser.add_argument("--batch", type=int, default=1)
  parser.add_argument("--heads", type=int, default=12)
  parser.add_argument("--head-dim", type=int, default=64)
  parser.add_argument("--dtype", default=None, help="float32 | bfloat16 (default: f32 on CPU, "
                      "bf16 on GPU)")
  parser.add_argument("--time-max", type=int, default=None,
                      help="time lengths up to this (default 1024 on CPU, all on GPU)")
  parser.add_argument("--reps", type=int, default=5)
  parser.add_argument("--quick", action="store_true", help="L <= 512, time L <= 256")
  parser.add_argument("--no-write", action="store_true", help="print only, leave BENCHMARKS.md")
  args = parser.parse_args(argv)
  on_gpu = jax.default_backend() == "gpu"
  dtype = jnp.dtype(args.dtype or ("bfloat16" if on_gpu else "float32"))
  time_max = args.time_max or (max(args.seq) if on_gpu else 1024)
  if args.quick:
    args.seq = [s for s in args.seq if s <= 512]
    time_max, args.reps = min(time_max, 256), 3
  impl = A.resolve_impl("auto")
  timed = ["naive", "ssljax"] + (["jax-xla", "jax-cudnn"] if on_gpu else [])

  rows = []
  for seq in args.seq:
    shape = (args.batch, seq, args.heads, args.head_dim)
    naive, ours = temp_bytes("naive", shape, dtype), temp_bytes("ssljax", shape, dtype)
    row = [seq, f"{naive / 2**20:,.2f}", f"{ours / 2**20:,.2f}", f"{naive / ours:,.1f}x"]
    if seq <= time_max:
      t = time_fns(timed, shape, dtype, args.reps)
      row += [f"{1e3 * t['naive']:.2f}", f"{1e3 * t['ssljax']:.2f}",
              f"{t['ssljax'] / t['naive']:.2f}"]
      if on_gpu:
        flops = fwd_bwd_flops(*shape)
        row += [f"{flops / t[n] / 1e12:.1f}" for n in ("ssljax", "jax-xla", "jax-cudnn")]
    else:
      row += [""] * (3 + 3 * on_gpu)
    rows.append(row)
    print(" | ".join(map(str, row)), flush=True)

  header = ["L", "naive temp (MiB)", f"ssljax temp (MiB, impl={impl})", "memory ratio",
            "naive fwd+bwd (ms)", "ssljax fwd+bwd (ms)", "time ratio ssljax/naive"]
  if on_gpu:
    header += ["ssljax TFLOP/s", "jax.nn xla TFLOP/s", "jax.nn cudnn TFLOP/s"]
  table = markdown_table(header, rows)
  print(table)
  device = jax.devices()[0].device_kind
  notes = (
      f"\n\nvalue_and_grad of sum(attention(q, k, v) * w), q/k/v [{args.batch}, L, {args.heads}, "
      f"{args.head_dim}] {dtype.name}, no mask, device: {device}. 'naive' is "
      "`attention_reference` (float32 softmax over the full [B, H, L, L] matrix); 'ssljax' is "
      f"`dot_product_attention(impl='auto')` = '{impl}' here. Temp memory is XLA's compiled "
      "`memory_analysis().temp_size_in_bytes` (compile only). Times: minimum over "
      f"{args.reps} interleaved calls on a shared machine.\n")
  if not on_gpu:
    notes += ("\nGPU numbers (Pallas/Triton flash attention, TFLOP/s against "
              "`jax.nn.dot_product_attention` xla and cuDNN) are not yet measured: no GPU was "
              "available to this run.\n")
  if not args.no_write:
    command = " ".join(["python benchmarks/attention.py", *(argv or sys.argv[1:])])
    write_section("Attention", table + notes, {"command": command})
  return rows


if __name__ == "__main__":
  main()
