"""XLA cost helpers for the throughput benchmarks (benchmarks/peer_throughput.py,
benchmarks/resnet_cpu_workarounds.py): FLOP counts of compiled computations, this CPU's matmul peak,
an op-level profile of a jitted step, and what an HLO module's text says about its ops.
"""
from __future__ import annotations

import collections
import glob
import gzip
import json
import os
import re
import time


def compiled_flops(compiled) -> float | None:
  """XLA's FLOP count of a compiled (or lowered) computation (`cost_analysis()['flops']`), None if
  unknown."""
  try:
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    flops = float(cost.get("flops", 0.0))
  except Exception:  # pylint: disable=broad-except  (cost analysis is optional per backend)
    return None
  return flops if flops > 0 else None


def resnet_ops_replaced(method, required: bool = True, **ops):
  """A shallow copy of `method` whose ResNet modules (`ssljax.models.ResNet` attributes, or values
  of dict / list / tuple attributes) use `ops` as their op fields (`conv_general_dilated`,
  `store_once`). Without a ResNet: a ValueError if `required`, else `method` itself."""
  import copy

  from ssljax.models import ResNet
  found = []

  def swap(value):
    if isinstance(value, ResNet):
      found.append(value)
      return value.clone(**ops)
    if isinstance(value, dict):
      return {k: swap(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
      return type(value)(swap(v) for v in value)
    return value
  attrs = {k: swap(v) for k, v in getattr(method, "__dict__", {}).items()}
  if not found:
    if not required:
      return method
    raise ValueError(f"{type(method).__name__} has no ResNet attribute; expected a ResNet method")
  twin = copy.copy(method)
  vars(twin).update(attrs)
  return twin


def plain_resnet_ops() -> dict:
  """The ResNet op fields of a model built with `cpu_tuning='off'` (lax's conv, no store)."""
  from ssljax.models import ResNet
  plain = ResNet()
  return {"conv_general_dilated": plain.conv_general_dilated, "store_once": plain.store_once}


def model_flops(jitted, *args) -> float | None:
  """XLA's FLOP count of `jitted(*args)` as the model's ops define it: the cost analysis of the
  lowered (unoptimised) module. Pass the step of the plain model (`plain_resnet_ops`): with the
  CPU Winograd route XLA would count its transformed-domain products, 2.25x or 4x fewer
  multiply-adds for the same convolution, and credit ssljax with less work than the peer does."""
  return compiled_flops(jitted.lower(*args))


def matmul_peak_gflops(n: int = 2048, repeats: int = 5) -> float:
  """The best float32 GFLOP/s of one jitted [n, n] x [n, n] matmul on the current threads: what
  this CPU's matmul reaches when nothing else runs (torch's `mm` measured the same here)."""
  import jax
  import jax.numpy as jnp
  a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
  f = jax.jit(jnp.matmul)
  jax.block_until_ready(f(a, a))
  best = float("inf")
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(f(a, a))
    best = min(best, time.perf_counter() - t0)
  return 2.0 * n ** 3 / best / 1e9


_OPCODE = re.compile(r"^\s*(?:ROOT )?%?([\w.\-]+) = [^=]*?\b([a-z][\w\-]*)\(")
_CALLS = re.compile(r"calls=%?([\w.\-]+)")
_BLOCK = re.compile(r"^(?:ENTRY )?%?([\w.\-]+) [^\n]*\{\s*$")
# What an XLA:CPU op (thunk) does, by the opcodes inside it, most expensive kind first.
_KINDS = (("convolution", "convolution"), ("dot", "dot / matmul"), ("reduce-window", "reduce"),
          ("reduce", "reduce"), ("scatter", "scatter / gather"), ("gather", "scatter / gather"),
          ("sort", "other"), ("custom-call", "other"), ("transpose", "transpose / copy"),
          ("copy", "transpose / copy"))


def hlo_op_kinds(hlo_text: str) -> dict[str, str]:
  """{instruction name: kind} for an optimized HLO module's text (a fusion: by what it calls)."""
  opcodes, calls = {}, {}
  members = collections.defaultdict(set)    # computation -> instruction names in it
  current = None
  for line in hlo_text.splitlines():
    block = _BLOCK.match(line)
    if block and "=" not in line.split("{")[0]:
      current = block.group(1)
      continue
    m = _OPCODE.match(line)
    if not m:
      continue
    name, op = m.group(1), m.group(2)
    opcodes[name] = op
    members[current].add(name)
    c = _CALLS.search(line)
    if c:
      calls[name] = c.group(1)

  def ops_in(comp: str, seen: frozenset) -> set[str]:
    out = set()
    for name in members.get(comp, ()):
      out.add(opcodes[name])
      callee = calls.get(name)
      if callee and callee not in seen:
        out |= ops_in(callee, seen | {callee})
    return out

  kinds = {}
  for name, op in opcodes.items():
    ops = {op} | (ops_in(calls[name], frozenset([calls[name]])) if name in calls else set())
    kinds[name] = next((kind for key, kind in _KINDS if key in ops), "elementwise")
  return kinds


def profile_ops(step, n: int, logdir: str) -> dict[str, float]:
  """Seconds per step by XLA op (thunk) name, from a jax.profiler trace of `n` steps of `step`
  (anything with `run(n)`, e.g. peer_throughput.SsljaxStep)."""
  import jax
  step.run(1)
  with jax.profiler.trace(logdir, create_perfetto_trace=True):
    step.run(n)
  files = glob.glob(os.path.join(logdir, "**", "perfetto_trace.json.gz"), recursive=True)
  if not files:
    return {}
  with gzip.open(max(files, key=os.path.getmtime), "rt") as f:
    trace = json.load(f)
  events = trace["traceEvents"] if isinstance(trace, dict) else trace
  per_op = collections.Counter()
  for e in events:
    if e.get("ph") == "X" and "dur" in e:
      per_op[e.get("name", "?")] += e["dur"] * 1e-6 / n
  return dict(per_op)


def transposes_with(hlo_text: str, opcode: str = "maximum") -> list[str]:
  """Names of the fusions in an optimized HLO module whose result is a transposed array (their
  root is a transpose, or a copy of one) and that also compute `opcode` on the way."""
  bodies = {m.group(1): m.group(0)
            for m in re.finditer(r"\n(%[\w.\-]+) \(.*?\n}\n", hlo_text, re.S)}

  def transposing(body: str) -> bool:
    root = re.search(r"ROOT %[\w.\-]+ = \S+ (\w+)\(", body)
    return bool(root) and root.group(1) in ("transpose", "copy") and " transpose(" in body

  fusions = re.finditer(r"%([\w.\-]+) = \S+ fusion\(.*?calls=(%[\w.\-]+)", hlo_text)
  return [m.group(1) for m in fusions
          if transposing(bodies.get(m.group(2), "")) and f" {opcode}(" in bodies[m.group(2)]]


def dilated_convolutions(hlo_text: str) -> int:
  """How many convolutions of an HLO module (optimized or StableHLO text) dilate their input."""
  hlo = re.findall(r"lhs_dilate=(\d+)x(\d+)", hlo_text)
  shlo = re.findall(r"lhs_dilate = \[(\d+), (\d+)\]", hlo_text)
  return sum(1 for d in hlo + shlo if d != ("1", "1"))
