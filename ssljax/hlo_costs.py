"""What a compiled XLA program (its HLO text) does that its cost analysis does not say: the
collectives it runs, and the work of Mosaic kernels that declare no cost (`ssljax.plan`)."""
from __future__ import annotations

import collections
import re
from typing import Any

_DTYPE_BYTES = {"f64": 8, "s64": 8, "u64": 8, "f32": 4, "s32": 4, "u32": 4, "bf16": 2, "f16": 2,
                "s16": 2, "u16": 2, "s8": 1, "u8": 1, "pred": 1, "f8e4m3fn": 1, "f8e5m2": 1}
_COLLECTIVES = ("all-gather", "all-reduce", "reduce-scatter", "all-to-all", "collective-permute")
_SHAPE = re.compile(r"\b([a-z]+[0-9]*[a-z0-9]*)\[([0-9,]*)\]")
_OP = re.compile(r"=\s*(\(.*?\)|[a-z0-9]+\[[0-9,]*\](?:\{[^}]*\})?)\s+("
                 + "|".join(_COLLECTIVES) + r")(-start)?\(")


def _shape_bytes(text: str) -> list[tuple[tuple[int, ...], int]]:
  out = []
  for dtype, dims in _SHAPE.findall(text):
    if dtype not in _DTYPE_BYTES:
      continue
    shape = tuple(int(d) for d in dims.split(",") if d)
    n = 1
    for d in shape:
      n *= d
    out.append((shape, n * _DTYPE_BYTES[dtype]))
  return out


def collectives(hlo: str, param_shapes: set[tuple[int, ...]]) -> tuple[dict[str, dict], int]:
  """({kind: {'count', 'bytes'}}, activation all-gather bytes) of a compiled HLO text.

  Bytes are each collective's result (for an async '-start' all-gather or permute: the gathered /
  received half of its tuple). An all-gather counts as a parameter gather when its result has the
  shape of a parameter, and as the contrastive kernels' own when it is an explicit all_gather
  inside a shard_map (ssljax/kernels/distributed.py); the rest are activation gathers.
  """
  stats: dict[str, dict] = collections.defaultdict(lambda: {"count": 0, "bytes": 0})
  activation = 0
  for line in hlo.splitlines():
    m = _OP.search(line)
    if not m:
      continue
    result, kind, start = m.group(1), m.group(2), m.group(3)
    shapes = _shape_bytes(result)
    if start and kind in ("all-gather", "collective-permute") and len(shapes) >= 2:
      shapes = shapes[len(shapes) // 2:] if kind == "all-gather" else shapes[1:2]
    size = sum(b for _, b in shapes)
    stats[kind]["count"] += 1
    stats[kind]["bytes"] += size
    if kind == "all-gather":
      # The only shard_map in a train step is the kernels' (ssljax.kernels.sharding), so an
      # explicit all_gather inside one is the contrastive kernels' gather of the embeddings.
      own = re.search(r'op_name="[^"]*shard_map[^"]*all_gather', line) is not None
      params = all(s in param_shapes for s, _ in shapes)
      if not (own or params):
        activation += size
  return dict(stats), activation


# JAX's splash attention kernels (jax.experimental.pallas.ops.tpu.splash_attention) declare no cost
# estimate, so XLA's cost analysis counts none of their work. Matmuls of [Lq, D] x [D, Lk] size per
# (batch, head), from the kernels' algorithm: the forward computes S = QK^T and PV; the dq kernel
# recomputes S, then dP = dO V^T and dQ = dS K; the dkv kernel recomputes S and dP, then
# dV = P^T dO and dK = dS^T Q (a fused dkv kernel also computes dQ).
_SPLASH_MATMULS = {"fwd": 2, "dq": 3, "dkv": 4, "dkv_fused": 5}
_INSTRUCTION = re.compile(r"\n(?=\s*(?:ROOT )?%)")
_CONSTRAINTS = re.compile(r"operand_layout_constraints=\{((?:[^{}]|\{[^{}]*\})*)\}")


def mosaic_kernel_costs(hlo: str) -> dict[str, Any]:
  """FLOPs and bytes of the Mosaic kernels that XLA's cost analysis leaves out.

  A Mosaic call's cost reaches XLA only through a declared `cost_estimate` (ssljax's contrastive
  kernels declare one; XLA then counts it). JAX's splash attention declares none: its FLOPs are
  counted here from each call's q and k operands ([..., Lq, D], [..., Lk, D]: padded lengths, as
  the kernel computes them) and its bytes as operands read plus results written once.
  Returns {'flops', 'bytes', 'costed_by_xla', 'counted_here', 'uncounted': [names]}.
  """
  out = {"flops": 0.0, "bytes": 0.0, "costed_by_xla": 0, "counted_here": 0, "uncounted": []}
  for inst in _INSTRUCTION.split(hlo):
    if 'custom_call_target="tpu_custom_call"' not in inst:
      continue
    name = re.match(r"\s*(?:ROOT )?%([A-Za-z0-9_]+)", inst)
    name = name.group(1) if name else "?"
    if '"cost_estimate"' in inst:
      out["costed_by_xla"] += 1
      continue
    m = re.match(r"splash_mha_(fwd|dq|dkv)", name)
    operands = _CONSTRAINTS.search(inst)
    text = operands.group(1) if operands else ""
    shapes = _shape_bytes(text)
    tensors = [tuple(int(d) for d in dims.split(",") if d) for dtype, dims in _SHAPE.findall(text)
               if dtype in ("bf16", "f32", "f16") and dims.count(",") >= 2]   # q, k, v: [.., L, D]
    if not m or len(tensors) < 2:
      out["uncounted"].append(name)
      continue
    kind = m.group(1)
    if kind == "dkv" and re.search(r"use_fused_bwd_kernel\W*:\s*true", inst):
      kind = "dkv_fused"
    q, k = tensors[0], tensors[1]
    rows = 1
    for dim in q[:-1]:
      rows *= dim
    out["flops"] += 2.0 * _SPLASH_MATMULS[kind] * rows * k[-2] * q[-1]
    result = inst.split(" custom-call(", 1)[0]
    out["bytes"] += sum(size for _, size in shapes) + sum(b for _, b in _shape_bytes(result))
    out["counted_here"] += 1
  return out
