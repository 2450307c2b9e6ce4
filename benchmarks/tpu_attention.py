"""TPU attention kernels by XLA's cost model: splash (what `auto` runs) vs flash vs plain XLA.

For the attention shapes of the shipped ViT configs at their recipes' per-chip batch, the gradient
of sum(attention(q, k, v)^2) w.r.t. q, k, v (forward and backward, bf16) is compiled for one chip
of a v5e slice with libtpu's ahead-of-time compiler (no TPU needed) and XLA's cost analysis and
memory analysis are read: FLOPs, bytes accessed, temporaries, and the roofline time
max(FLOPs / bf16 peak, bytes / HBM bandwidth). The table goes into the "TPU attention kernels
(XLA's cost model, not measured on hardware)" section of BENCHMARKS.md.

  python -m benchmarks.tpu_attention            # a few minutes on 2 CPU cores
  python -m benchmarks.tpu_attention --no-write

Kernels: 'splash' is `ssljax.kernels.attention` on TPU (JAX's splash attention, padded to 128
rows); 'flash' is JAX's TPU flash attention (`jax.experimental.pallas.ops.tpu.flash_attention`)
with the same padding and segment ids, which ssljax ran before; 'xla' is the reference (plain
einsum / softmax in float32, the [B, H, Lq, Lk] matrix in HBM). FLOPs inside a Mosaic kernel are
counted only where the kernel declares a cost estimate (flash does, splash does not).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")   # compiles for TPU; computes nothing here

import jax  # noqa: E402  pylint: disable=wrong-import-position
import jax.numpy as jnp  # noqa: E402  pylint: disable=wrong-import-position

from benchmarks.report import markdown_table, package_version, write_section  # noqa: E402  pylint: disable=wrong-import-position
from ssljax import plan as plan_lib  # noqa: E402  pylint: disable=wrong-import-position
from ssljax.kernels import _common  # noqa: E402  pylint: disable=wrong-import-position
from ssljax.kernels import attention as A  # noqa: E402  pylint: disable=wrong-import-position
from ssljax.kernels._common import pad_axis, round_up  # noqa: E402  pylint: disable=wrong-import-position

TITLE = "TPU attention kernels (XLA's cost model, not measured on hardware)"
# (label, per-chip batch, tokens, heads, head dim): the recipes' batch on a v5e-8.
SHAPES = (
    ("MAE ViT-B/16 encoder (49 + cls)", 128, 50, 12, 64),
    ("MAE decoder (196 + cls, 512 wide)", 128, 197, 16, 32),
    ("DINO ViT-S/16 global crop (196 + cls)", 128, 197, 6, 64),
    ("DINO ViT-S/16 local crop (36 + cls)", 128, 37, 6, 64),
)


def _flash(q, k, v, key_mask):
  """JAX's TPU flash attention, padded to 128 rows and masked by segment ids as splash is."""
  from jax.experimental.pallas.ops.tpu import flash_attention as tpu_fa  # pylint: disable=import-outside-toplevel
  b, lq, _, d = q.shape
  lk = k.shape[1]
  blk = A.MOSAIC_BLOCK
  lq_p, lk_p = round_up(lq, blk), round_up(lk, blk)
  t = lambda x, n: jnp.swapaxes(pad_axis(x, 1, n), 1, 2)  # noqa: E731
  kv_ids = jnp.ones((b, lk), jnp.int32) if key_mask is None else key_mask.astype(jnp.int32)
  ids = tpu_fa.SegmentIds(q=jnp.ones((b, lq_p), jnp.int32), kv=pad_axis(kv_ids, 1, lk_p))
  sizes = tpu_fa.BlockSizes(block_q=blk, block_k_major=blk, block_k=blk, block_b=1,
                            block_q_major_dkv=blk, block_k_major_dkv=blk, block_k_dkv=blk,
                            block_q_dkv=blk, block_k_major_dq=blk, block_k_dq=blk, block_q_dq=blk)
  out = tpu_fa.flash_attention(t(q, lq_p), t(k, lk_p), t(v, lk_p), segment_ids=ids,
                               sm_scale=float(d) ** -0.5, block_sizes=sizes)
  return jnp.swapaxes(out, 1, 2)[:, :lq]


KERNELS = {"splash": A._mosaic_splash, "flash": _flash,  # pylint: disable=protected-access
           "xla": lambda q, k, v, m: A.attention_reference(q, k, v, m)}


def cost(kernel: str, shape: tuple[int, int, int, int], device) -> dict[str, float]:
  """FLOPs, bytes accessed and temporaries of the attention gradient, compiled for `device`."""
  b, l, h, d = shape
  s = jax.ShapeDtypeStruct((b, l, h, d), jnp.bfloat16,
                           sharding=jax.sharding.SingleDeviceSharding(device))
  fn = KERNELS[kernel]

  def grad(q, k, v):
    loss = lambda q, k, v: jnp.sum(fn(q, k, v, None).astype(jnp.float32) ** 2)  # noqa: E731
    return jax.grad(loss, argnums=(0, 1, 2))(q, k, v)

  t0 = time.perf_counter()
  with _common.lowering_for("tpu"):
    compiled = jax.jit(grad).trace(s, s, s).lower().compile()
  c = compiled.cost_analysis()
  c = c[0] if isinstance(c, (list, tuple)) else c
  return {"flops": float(c.get("flops", 0.0)), "bytes": float(c.get("bytes accessed", 0.0)),
          "temp": float(compiled.memory_analysis().temp_size_in_bytes),
          "compile": time.perf_counter() - t0}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--topology", default="v5e:2x4")
  parser.add_argument("--kernels", nargs="+", default=list(KERNELS), choices=list(KERNELS))
  parser.add_argument("--no-write", action="store_true", help="print only, leave BENCHMARKS.md")
  args = parser.parse_args(argv)
  chip = plan_lib.chip_for(args.topology)
  device = plan_lib.topology_devices(args.topology)[0]
  rows = []
  for label, b, l, h, d in SHAPES:
    for kernel in args.kernels:
      c = cost(kernel, (b, l, h, d), device)
      roof = max(c["flops"] / chip.bf16_flops, c["bytes"] / chip.hbm_bytes_per_s)
      row = [label, f"[{b}, {l}, {h}, {d}]", kernel, f"{c['flops'] / 1e9:.2f}",
             f"{c['bytes'] / 1e9:.3f}", f"{c['temp'] / 2 ** 20:.0f}", f"{roof * 1e3:.2f}"]
      rows.append(row)
      print(" | ".join(row), f"(compiled in {c['compile']:.0f} s)", flush=True)
  header = ["attention", "q shape [B, L, H, Dh]", "kernel", "GFLOP (counted)", "GB accessed",
            "temporaries (MiB)", "roofline (ms)"]
  table = markdown_table(header, rows)
  print(table)
  notes = ("\n\nOne chip of " + args.topology + ", forward and backward of one attention call "
           "(bf16 q, k, v), including the padding to 128 rows and the [B, H, L, Dh] transposes "
           "the kernels need. 'GFLOP (counted)' is XLA's cost analysis, which sees no FLOPs "
           "inside a Mosaic kernel without a declared cost estimate (splash declares none); "
           f"roofline = max(FLOPs / {chip.bf16_flops / 1e12:.0f} TFLOP/s, bytes / "
           f"{chip.hbm_bytes_per_s / 1e9:.0f} GB/s). `auto` on TPU runs 'splash'.\n")
  if not args.no_write:
    command = " ".join(["python -m benchmarks.tpu_attention", *(argv or sys.argv[1:])])
    write_section(TITLE, table + notes, {"command": command, "libtpu": package_version("libtpu")})
  return rows


if __name__ == "__main__":
  main()
