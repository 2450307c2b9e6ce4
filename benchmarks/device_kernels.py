"""The kernels on whatever accelerator this process has: correctness against the references, attention
TFLOP/s, and the contrastive losses at large N. Three sections of the device check
(benchmarks/device_check.py runs each in its own process, within a time budget):

  correctness(ctx)   attention (ssljax's Triton kernel, cuDNN) and the contrastive Pallas kernels
                     against the float32 references, forward and backward, float32 and bfloat16
                     inputs (on CPU: the Pallas interpreter and the blockwise XLA path)
  attention(ctx)     TFLOP/s at ViT-B/16 and ViT-L/14 shapes, fwd and fwd+bwd: ssljax's Pallas
                     kernel vs cuDNN vs XLA (`jax.nn.dot_product_attention`)
  contrastive(ctx)   CLIP / NT-Xent / SigLIP value+grad time and memory at N = 16k, 65k, 262k,
                     D = 256, against the naive full-matrix loss where it fits

  python -m benchmarks.device_check --sections correctness attention contrastive   # usual way
  python -m benchmarks.device_kernels --smoke --no-write                          # this file alone

Needs only jax: ssljax.kernels imports nothing else. On CPU the Pallas path runs in the
interpreter (shapes are then tiny: --smoke), and cuDNN rows say n/a.
"""
from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from ssljax.kernels import attention as A
from ssljax.kernels import contrastive as C

# Relative error allowed against the float32 reference (largest |got - want| / largest |want|).
# float32 cases run ssljax's kernels at Precision.HIGHEST (full float32 dots: the default on
# NVIDIA GPUs is TF32, a speed choice, not the algorithm); bf16 inputs and outputs round to 8 bits.
TOLERANCE = {"float32": 1e-3, "bfloat16": 5e-2}
# ViT attention shapes [B, L, H, Dh] for the TFLOP/s table (a training batch's worth of images).
VIT_SHAPES = {"ViT-B/16": (256, 197, 12, 64), "ViT-L/14": (128, 257, 16, 64)}
CONTRASTIVE_N = (16_384, 65_536, 262_144)
CONTRASTIVE_D = 256

LOSSES = {
    # SigLIP: sigmoid over all N x N pairs (first: its memory at 262k is the goal, and a
    # section short of time drops its last cases); CLIP: symmetric InfoNCE over N x N; NT-Xent:
    # SimCLR's 2N x 2N without self.
    "SigLIP": lambda q, k, impl, **kw: C.sigmoid_loss(q, k, 10.0, -10.0, impl=impl, **kw),
    "CLIP": lambda q, k, impl, **kw: C.info_nce_loss(q, k, 10.0, bidirectional=True, impl=impl,
                                                     **kw),
    "NT-Xent": lambda q, k, impl, **kw: C.nt_xent_loss(q, k, 10.0, impl=impl, **kw),
}


def on_gpu() -> bool:
  return jax.default_backend() == "gpu"


def bench(fn, *args, iters: int = 10, repeats: int = 3) -> float:
  """Seconds per call of a jitted `fn`: best of `repeats` runs of `iters` back-to-back calls
  (dispatch overlaps the device work, so short kernels are not timed as Python overhead)."""
  jax.block_until_ready(fn(*args))
  best = float("inf")
  for _ in range(repeats):
    t = time.perf_counter()
    for _ in range(iters):
      out = fn(*args)
    jax.block_until_ready(out)
    best = min(best, (time.perf_counter() - t) / iters)
  return best


def rel_err(want, got) -> float:
  """Largest |got - want| over all leaves, relative to the largest |want| (float32)."""
  num = max(float(jnp.max(jnp.abs(g.astype(jnp.float32) - w.astype(jnp.float32))))
            for w, g in zip(jax.tree.leaves(want), jax.tree.leaves(got)))
  den = max(float(jnp.max(jnp.abs(w.astype(jnp.float32)))) for w in jax.tree.leaves(want))
  return num / max(den, 1e-30)


def _err_cell(err: float, dtype: str) -> str:
  return f"{err:.1e} {'ok' if err <= TOLERANCE[dtype] else 'FAIL'}"


# ----------------------------------------------------------------------------------------------
# Attention implementations: name -> (fn(q, k, v, mask) or None, why not).
# ----------------------------------------------------------------------------------------------
def attention_impls(dtype, masked: bool, precision=None):
  """{name: f(q, k, v, key_mask) -> out} of what this platform runs, or a string saying why not."""
  impls = {
      "ssljax pallas": lambda q, k, v, m: A.dot_product_attention(q, k, v, m, impl="pallas",
                                                                  precision=precision)}
  if not on_gpu():  # what impl='auto' runs on CPU (on a GPU it runs cuDNN or the Triton kernel)
    impls["ssljax xla"] = lambda q, k, v, m: A.dot_product_attention(q, k, v, m, impl="xla",
                                                                     precision=precision)
    impls["cuDNN"] = "n/a: no GPU"
  elif masked or jnp.dtype(dtype) == jnp.float32:
    impls["cuDNN"] = "n/a: cuDNN fused attention takes bf16/fp16 without a key mask"
  else:
    impls["cuDNN"] = lambda q, k, v, m: A.cudnn_attention(q, k, v)
  return impls


def _kernel_name(name, q, masked):
  if name == "cuDNN":
    return "cudnn"
  impl = "pallas" if name == "ssljax pallas" else "xla"
  mask = jnp.ones(q.shape[:2], bool) if masked else None
  return A.choose_kernel(impl, q, mask)


def correctness(ctx) -> None:
  """Attention and contrastive kernels against the float32 references: value and gradients."""
  sec = ctx.section("Device check: kernel correctness",
                    ["case", "dtype", "implementation", "runs", "forward rel. error",
                     "backward rel. error"])
  att = [(4, 197, 12, 64, False), (4, 197, 12, 64, True)]
  losses = {dtype: list(LOSSES) for dtype in TOLERANCE}
  if ctx.smoke:  # toy shapes, and fewer cases: seconds on a CPU (the Pallas interpreter is slow)
    att = [(2, 17, 2, 32, False), (2, 17, 2, 32, True)]
    losses["bfloat16"] = ["SigLIP"]
  con_n, con_d = (48, 16) if ctx.smoke else (4096, 256)
  rng = np.random.default_rng(0)
  for dtype in ("float32", "bfloat16"):
    precision = jax.lax.Precision.HIGHEST if dtype == "float32" else None
    for b, l, h, d, masked in att:
      if ctx.smoke and masked != (dtype == "bfloat16"):
        continue
      if ctx.out_of_time():
        break
      q, k, v = (jnp.asarray(rng.normal(size=(b, l, h, d)), dtype) for _ in range(3))
      w = jnp.asarray(rng.normal(size=(b, l, h, d)), jnp.float32)
      mask = jnp.asarray(rng.random((b, l)) > 0.1) if masked else None

      def value_and_grads(attend, mask=mask, w=w):
        return jax.jit(jax.value_and_grad(
            lambda q, k, v: jnp.sum(attend(q, k, v, mask).astype(jnp.float32) * w),
            argnums=(0, 1, 2)))

      ref = lambda q, k, v, m: A.attention_reference(q, k, v, m)  # noqa: E731
      f32 = [x.astype(jnp.float32) for x in (q, k, v)]
      want_out = jax.jit(ref)(*f32, mask)
      want_grads = value_and_grads(ref)(*f32)[1]
      case = f"attention B{b} L{l} H{h} D{d}" + (" key mask" if masked else "")
      for name, attend in attention_impls(dtype, masked, precision).items():
        if isinstance(attend, str):
          sec.add([case, dtype, name, "-", attend, ""])
          continue
        ctx.guard(sec, [case, dtype, name], lambda attend=attend, name=name: [
            _kernel_name(name, q, masked),
            _err_cell(rel_err(want_out, jax.jit(attend)(q, k, v, mask)), dtype),
            _err_cell(rel_err(want_grads, value_and_grads(attend)(q, k, v)[1]), dtype)])
  unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
  for dtype in ("float32", "bfloat16"):
    kw = {"precision": jax.lax.Precision.HIGHEST} if dtype == "float32" else {}
    z1 = jnp.asarray(unit(rng.normal(size=(con_n, con_d))), dtype)
    z2 = jnp.asarray(unit(rng.normal(size=(con_n, con_d))), dtype)
    for loss_name in losses[dtype]:
      loss = LOSSES[loss_name]
      if ctx.out_of_time():
        break
      grad = lambda impl, loss=loss, kw=kw: jax.jit(jax.value_and_grad(  # noqa: E731
          lambda a, b: loss(a, b, impl, **kw), argnums=(0, 1)))
      want_v, want_g = jax.jit(jax.value_and_grad(lambda a, b: loss(a, b, "reference"),
                                                  argnums=(0, 1)))(z1.astype(jnp.float32),
                                                                   z2.astype(jnp.float32))
      # 'xla' is what impl='auto' runs on CPU; on a GPU 'auto' runs the Pallas kernel.
      for impl in ("pallas",) if on_gpu() else ("pallas", "xla"):
        def row(impl=impl, grad=grad):
          got_v, got_g = grad(impl)(z1, z2)
          runs = C.resolve_impl(impl)
          if runs == "pallas":
            runs = {"gpu": "triton", "tpu": "mosaic"}.get(jax.default_backend(), "interpret")
          return [runs, _err_cell(rel_err(want_v, got_v), dtype),
                  _err_cell(rel_err(want_g, got_g), dtype)]
        ctx.guard(sec, [f"{loss_name} N{con_n} D{con_d}", dtype, f"ssljax {impl}"], row)
  sec.finish(
      "Relative error = largest |got - reference| / largest |reference| over the output "
      "(forward) or over all input gradients of sum(out * w) (backward); the reference is the "
      "pure-jnp spec in float32 on the same (rounded) inputs. 'ok' means within "
      f"{TOLERANCE['float32']:g} (float32, ssljax's kernels at Precision.HIGHEST: their default "
      f"on NVIDIA GPUs is TF32) or {TOLERANCE['bfloat16']:g} (bfloat16). 'runs' is the kernel that executed "
      "(`choose_kernel`): triton / cudnn on a GPU, interpret (Pallas interpreter) on CPU.")


def attention_flops(b, l, h, d, backward: bool) -> float:
  """q k^T and p v: 4 B H L^2 Dh; forward + backward counts 3.5x the forward (FlashAttention-2)."""
  fwd = 4.0 * b * h * l * l * d
  return 3.5 * fwd if backward else fwd


def attention(ctx) -> None:
  """Attention TFLOP/s, bf16, fwd and fwd+bwd: ssljax Pallas vs cuDNN vs XLA."""
  sec = ctx.section("Device check: attention TFLOP/s",
                    ["shape [B, L, H, Dh]", "pass", "implementation", "time (ms)", "TFLOP/s",
                     "vs cuDNN"])
  shapes = {"toy": (2, 17, 2, 32)} if ctx.smoke else VIT_SHAPES
  dtype = jnp.bfloat16
  impls = {
      "ssljax pallas": lambda q, k, v: A.dot_product_attention(q, k, v, impl="pallas"),
      "cuDNN": A.cudnn_attention if on_gpu() else None,
      "XLA": lambda q, k, v: jax.nn.dot_product_attention(q, k, v, implementation="xla"),
  }
  iters, repeats = (1, 1) if ctx.smoke else (10, 3)
  for label, shape in shapes.items():
    key = jax.random.split(jax.random.PRNGKey(0), 4)
    q, k, v = (jax.random.normal(kk, shape, dtype) for kk in key[:3])
    w = jax.random.normal(key[3], shape, dtype)
    for backward in (False, True):
      if ctx.out_of_time():
        break
      mode = "fwd+bwd" if backward else "fwd"
      times = {}
      for name, attend in impls.items():
        cells = [f"{label} {list(shape)}", mode, name]
        if attend is None:
          sec.add(cells + ["-", "n/a: no GPU", ""])
          continue
        if backward:   # w is an argument: closed over, XLA constant-folds it for seconds
          fn = jax.jit(jax.grad(lambda q, k, v, w, attend=attend: jnp.sum(
              attend(q, k, v).astype(jnp.float32) * w), argnums=(0, 1, 2)))
          args = (q, k, v, w)
        else:
          fn, args = jax.jit(attend), (q, k, v)

        def row(fn=fn, name=name, args=args):
          t = bench(fn, *args, iters=iters, repeats=repeats)
          times[name] = t
          ratio = f"{times['cuDNN'] / t:.2f}x" if "cuDNN" in times else ""
          return [f"{t * 1e3:.3f}", f"{attention_flops(*shape, backward) / t / 1e12:.1f}", ratio]
        ctx.guard(sec, cells, row)
  sec.finish(
      "bfloat16 q, k, v, no mask; fwd+bwd is the gradient of sum(out * w) w.r.t. q, k, v. "
      "FLOPs: 4 B H L^2 Dh forward, 3.5x that forward + backward. 'ssljax pallas' is "
      "`dot_product_attention(impl='pallas')` (ssljax's Triton kernels on a GPU); cuDNN is "
      "`jax.nn.dot_product_attention(implementation='cudnn')` with L padded to a multiple of 64 "
      "(`ssljax.kernels.attention.cudnn_attention`, what impl='auto' runs on a GPU: unpadded, "
      "JAX refuses the gradient at L = 197 and 257), XLA its implementation='xla'. 'vs cuDNN' = cuDNN's time / this "
      "one's (goal for ssljax fwd+bwd at ViT-B/16: >= 0.9x). Time: best of 3 runs of 10 calls.")


def _memory(compiled) -> tuple[int, int]:
  """(temp bytes, peak bytes = arguments + outputs + temp - aliased) of a compiled program."""
  m = compiled.memory_analysis()
  if m is None:
    raise RuntimeError("this backend gives no memory_analysis() of a compiled program")
  temp = int(m.temp_size_in_bytes)
  peak = getattr(m, "peak_memory_in_bytes", 0) or 0
  if not peak:
    peak = (int(m.argument_size_in_bytes) + int(m.output_size_in_bytes) + temp
            - int(getattr(m, "alias_size_in_bytes", 0)))
  return temp, int(peak)


def memory_limit() -> int:
  """Bytes one program may use here: 80% of the device's memory (1 GiB on CPU)."""
  stats = jax.devices()[0].memory_stats() or {}
  return int(0.8 * stats["bytes_limit"]) if "bytes_limit" in stats else 2 ** 30


def naive_logits_bytes(loss_name: str, n: int) -> int:
  """Bytes of the float32 logits matrix the naive loss materialises (2N x 2N for NT-Xent)."""
  rows = 2 * n if loss_name == "NT-Xent" else n
  return 4 * rows * rows


def contrastive(ctx) -> None:
  """CLIP / NT-Xent / SigLIP value+grad at large N: ssljax's tiled kernel vs the naive loss."""
  sec = ctx.section("Device check: contrastive loss at large N",
                    ["loss", "N", "implementation", "value+grad (ms)", "peak memory (MiB)",
                     "temp memory (MiB)"])
  sizes = (64, 256) if ctx.smoke else CONTRASTIVE_N
  d = 32 if ctx.smoke else CONTRASTIVE_D
  limit = memory_limit()
  ours = "auto"
  for loss_name, loss in LOSSES.items():
    for n in sizes:
      if ctx.out_of_time():
        break
      k1, k2 = jax.random.split(jax.random.PRNGKey(n))
      z1 = jax.random.normal(k1, (n, d))
      z2 = jax.random.normal(k2, (n, d))
      z1 = z1 / jnp.linalg.norm(z1, axis=1, keepdims=True)
      z2 = z2 / jnp.linalg.norm(z2, axis=1, keepdims=True)
      for impl in (ours, "reference"):
        name = (f"ssljax {impl} ({C.resolve_impl(impl)})" if impl == ours
                else "naive (full matrix)")

        logits = naive_logits_bytes(loss_name, n)
        if impl == "reference" and logits > limit:   # compiling it alone takes minutes
          sec.add([loss_name, n, name, "does not fit", f">= {logits / 2**20:,.0f}", ""])
          continue

        def row(impl=impl, loss=loss, z1=z1, z2=z2):
          fn = jax.jit(jax.value_and_grad(lambda a, b: loss(a, b, impl), argnums=(0, 1)))
          compiled = fn.lower(z1, z2).compile()
          temp, peak = _memory(compiled)
          if peak > limit:
            return ["does not fit", f"{peak / 2**20:,.0f}", f"{temp / 2**20:,.0f}"]
          reps = 1 if (ctx.smoke or n >= 65_536) else 3
          t = bench(compiled, z1, z2, iters=1 if n >= 65_536 else 3, repeats=reps)
          return [f"{t * 1e3:,.1f}", f"{peak / 2**20:,.1f}", f"{temp / 2**20:,.1f}"]
        ctx.guard(sec, [loss_name, n, name], row)
  sec.finish(
      f"value_and_grad w.r.t. both L2-normalised [N, {d}] float32 inputs; CLIP = symmetric "
      "InfoNCE (N x N), NT-Xent = SimCLR on two views (2N x 2N, self excluded), SigLIP = sigmoid "
      "loss over all N x N pairs. Memory is XLA's compiled `memory_analysis()` of the program "
      "(peak = arguments + outputs + temporaries); 'does not fit' = the naive loss would need "
      f"more than {limit / 2**30:.0f} GiB (80% of the device): compiled, not run, or, where its "
      "float32 logits matrix alone is larger (the '>=' figure), not even compiled. "
      "Goal: SigLIP at N = 262k under 2 GiB peak.")


SECTIONS = {"correctness": correctness, "attention": attention, "contrastive": contrastive}


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--smoke", action="store_true", help="tiny shapes (a smoke run, any machine)")
  parser.add_argument("--no-write", action="store_true", help="print only")
  args = parser.parse_args(argv)
  from benchmarks import device_check  # pylint: disable=import-outside-toplevel
  extra = ["--smoke"] if args.smoke else []
  extra += ["--out", "-"] if args.no_write else []
  device_check.main(["--sections", *SECTIONS, *extra])


if __name__ == "__main__":
  main()
