"""The accelerator path without an accelerator: train steps compiled for a TPU slice by libtpu's
AOT compiler (`ssljax.plan`), and lowered for CUDA, with every kernel under shard_map.

The TPU tests use the shipped configs at digits size (each compile well under a minute); the full
ImageNet configs go through `python -m ssljax.plan` into BENCHMARKS.md.
"""
import re

import jax
import jax.numpy as jnp
import pytest

from conftest import load_config
from ssljax import parallel
from ssljax import plan as plan_lib
from ssljax import train
from ssljax.data import sources
from ssljax.kernels import _common
from ssljax.kernels import attention as A
from ssljax.kernels import contrastive as C

V5E_HBM = 16 * 2 ** 30


def _tpu_plan(config):
  pytest.importorskip("libtpu", reason="libtpu (pip install -e .[tpu-aot]) compiles for TPU")
  return plan_lib.make_plan(config, "v5e:2x4")


def _assert_sharded_step(plan, hlo, mosaic):
  assert plan["chips"] == 8 and plan["mesh"]["data"] == 8
  assert plan["activation_all_gather_bytes"] == 0, plan["collectives"]
  assert 0 < plan["hbm_per_chip_bytes"] < V5E_HBM
  assert plan["flops_per_step"] > 0 and plan["est_step_seconds"] > 0
  kernels = hlo.count('custom_call_target="tpu_custom_call"')
  assert plan["mosaic_kernels"] == kernels
  assert (kernels > 0) == mosaic, kernels


@pytest.mark.parametrize("name", ["dino_digits", "mae_digits", "ijepa_digits"])
def test_vit_steps_compile_for_a_v5e_slice_with_mosaic_attention(name):
  """Attention over more than 128 tokens is JAX's Mosaic splash kernel, per batch shard: no
  all-gather of activations. (64 px images: 256 patches; shorter sequences run plain XLA.)"""
  config = load_config(name)
  config.batch_size = 64
  config.data.image_size = config.model.image_size = 64
  plan, hlo = _tpu_plan(config)
  _assert_sharded_step(plan, hlo, mosaic=True)
  # Splash declares no cost to XLA: the plan counts its FLOPs, and every kernel is accounted for.
  assert plan["kernel_flops_per_step"] > 0 and plan["uncounted_kernels"] == []
  assert plan["flops_per_step"] == plan["xla_flops_per_step"] + plan["kernel_flops_per_step"]


def test_simclr_resnet_step_compiles_with_the_sharded_contrastive_kernel():
  """The NT-Xent kernel gathers the embeddings itself (inside shard_map), nothing else is gathered."""
  config = load_config("simclr_resnet18_cifar10")
  config.batch_size = 64
  config.data.image_size = 16
  config.model.width_multiplier = 0.125
  plan, hlo = _tpu_plan(config)
  _assert_sharded_step(plan, hlo, mosaic=True)   # the Mosaic contrastive kernel
  assert plan["kernel_flops_per_step"] == 0 and plan["uncounted_kernels"] == []   # XLA costs it
  assert plan_lib.mosaic_kernel_costs(hlo)["costed_by_xla"] == plan["mosaic_kernels"]
  gathers = [ln for ln in hlo.splitlines() if re.search(r"= .* all-gather(-start)?\(", ln)]
  assert gathers and all("shard_map" in ln for ln in gathers), gathers


@pytest.mark.parametrize("name", ["swav_digits", "lejepa_digits", "msn_digits", "simclr_digits",
                                  "supcon_digits"])
def test_multi_view_steps_keep_the_batch_sharding(name):
  """Views are merged sample-major ([B * V] rows) or kept on their own axis (MSN's anchors);
  view-major rows (SwAV's merge, LeJEPA's concat of global and local row blocks, NT-Xent's
  [z1; z2], MSN's anchors, SupCon's [V * N] anchors) made XLA gather or reshuffle them across
  chips. Now the collectives are the all-reduces of gradients and batch statistics, plus, for
  SimCLR and SupCon, the contrastive kernel's own gather of the embeddings and its gradient."""
  config = load_config(name)
  config.batch_size = 64
  plan, hlo = _tpu_plan(config)
  kernel = name in ("simclr_digits", "supcon_digits")
  _assert_sharded_step(plan, hlo, mosaic=kernel)
  allowed = {"all-reduce", "all-gather", "reduce-scatter"} if kernel else {"all-reduce"}
  assert set(plan["collectives"]) <= allowed, plan["collectives"]


def _no_compile(monkeypatch):
  def no_compile(*args, **kwargs):
    raise AssertionError("compiled a step that cannot fit")
  monkeypatch.setattr(jax.stages.Lowered, "compile", no_compile)
  monkeypatch.setattr(jax.stages.Traced, "lower", no_compile)


def test_plan_reports_activations_that_cannot_fit_before_compiling(monkeypatch):
  """Arguments fit, activations cannot: the traced step's estimate says so, nothing compiles."""
  _no_compile(monkeypatch)
  config = load_config("mae_digits")
  config.batch_size = 8 * 2 ** 18
  with pytest.raises(plan_lib.PlanError) as e:
    _tpu_plan(config)
  message = str(e.value)
  assert "\n" not in message and message.startswith("does not fit: arguments ")
  assert "estimated at" in message and "(not compiled)" in message
  assert "TPU v5e" in message and f"{2 ** 18} images per chip" in message
  assert "--config.model.remat=True" in message


def test_compiler_out_of_memory_becomes_one_line():
  chip = plan_lib.CHIPS["v5e"]
  error = RuntimeError("RESOURCE_EXHAUSTED: XLA:TPU compile permanent error. Ran out of memory in "
                       "memory space hbm. Used 40.5G of 15.75G hbm. Exceeded hbm capacity by 24.7G."
                       "\nTotal hbm usage >= 41.2G:\n  reserved 530M\n")
  message = plan_lib._oom_from_compiler(error, chip)
  assert message.startswith("does not fit: ") and "\n" not in message and "Exceeded" in message
  error = RuntimeError("Program hbm requirement 20.00G: HLO temporaries required for HLO temp "
                       "allocation (20.00G) exceeds available HBM (16.00G)")
  message = plan_lib._oom_from_compiler(error, chip)
  assert "20.00 GiB per chip" in message and "by 4.00 GiB" in message
  assert plan_lib._oom_from_compiler(RuntimeError("INTERNAL: something else"), chip) is None


def test_traced_temporaries_follow_liveness():
  """A value stays alive until its last use; a nested jaxpr's temporaries count while it runs."""
  from ssljax import plan_memory
  mb = 2 ** 20 // 4   # float32 elements in 1 MiB

  def chain(x):        # each step frees its input: never more than two buffers alive
    for _ in range(5):
      x = jnp.sin(x)
    return x

  def kept(x):         # every intermediate read at the end: all five alive at once
    ys = [x]
    for _ in range(5):
      ys.append(jnp.sin(ys[-1]))
    return sum(ys[1:])

  x = jax.ShapeDtypeStruct((mb,), jnp.float32)
  peak = lambda f: plan_memory.temporary_peak(jax.make_jaxpr(f)(x)) / 2 ** 20  # noqa: E731
  assert peak(chain) == 2
  assert peak(kept) >= 5
  assert peak(jax.jit(kept)) == peak(kept)   # through a nested pjit
  assert plan_memory.temporaries_per_chip(jax.make_jaxpr(kept)(x), 4) == (
      plan_memory.temporary_peak(jax.make_jaxpr(kept)(x)) // 4)


def test_plan_reports_arguments_that_cannot_fit_before_compiling(monkeypatch):
  """Arguments alone over 16 GiB per chip: one line from their shardings, nothing is compiled."""
  _no_compile(monkeypatch)
  config = load_config("mae_digits")
  config.batch_size = 8 * 2 ** 26     # 2^26 images per chip: the batch alone is over 16 GiB
  with pytest.raises(plan_lib.PlanError) as e:
    _tpu_plan(config)
  message = str(e.value)
  assert "\n" not in message and message.startswith("does not fit: the step's arguments alone")
  assert "mostly batch" in message and f"{2 ** 26} images per chip" in message
  assert "--config.batch_size" in message and "TPU v5e" in message


def test_arguments_overflow_names_the_class_and_the_change():
  config = load_config("dino_digits")
  config.param_sharding = "replicated"
  chip = plan_lib.CHIPS["v5e"]
  gib = plan_lib.GIB
  parts = {"parameters": 5 * gib, "optimizer state": 10 * gib, "method state": 5 * gib,
           "batch": gib}
  message = plan_lib._arguments_overflow(parts, chip, config, images_per_chip=8)
  assert "21.00 GiB per chip" in message and "by 5.00 GiB" in message
  assert "mostly optimizer state" in message and "--config.param_sharding=fsdp" in message
  assert "--config.model.remat=True" in message
  assert plan_lib._arguments_overflow({"batch": gib}, chip, config, images_per_chip=8) is None
  b = {"params": jax.ShapeDtypeStruct((64, 8), jnp.float32),
       "x": jax.ShapeDtypeStruct((3,), jnp.bfloat16)}
  assert plan_lib.per_chip_bytes(b) == 64 * 8 * 4 + 3 * 2


def test_plan_rejects_unknown_chips():
  with pytest.raises(plan_lib.PlanError, match=r"--topology='v9x:2x4': unknown chip 'v9x'"):
    plan_lib.chip_for("v9x:2x4")


def test_collective_parser_separates_parameter_kernel_and_activation_gathers():
  hlo = "\n".join([
      '%ag.1 = f32[64,128]{1,0} all-gather(f32[8,128]{1,0} %p), dimensions={0}',
      '%ag.2 = (bf16[8,16]{1,0}, bf16[64,16]{1,0}) all-gather-start(bf16[8,16]{1,0} %e), '
      'metadata={op_name="jit(step)/shard_map/all_gather"}',
      '%ag.3 = f32[64,17,32]{2,1,0} all-gather(f32[8,17,32]{2,1,0} %x), dimensions={0}',
      '%ar = f32[10]{0} all-reduce(f32[10]{0} %g), to_apply=%add',
  ])
  stats, activation = plan_lib.collectives(hlo, param_shapes={(64, 128)})
  assert stats["all-gather"] == {"count": 3, "bytes": 64 * 128 * 4 + 64 * 16 * 2 + 64 * 17 * 32 * 4}
  assert stats["all-reduce"] == {"count": 1, "bytes": 40}
  assert activation == 64 * 17 * 32 * 4


def _custom_call(name, result, operands, extra=""):
  constraints = ", ".join(f"{o}{{{','.join(str(i) for i in reversed(range(o.count(',') + 1)))}}}"
                          for o in operands)
  return (f'  %{name}.3 = {result} custom-call(%a, %b), custom_call_target="tpu_custom_call", '
          f'operand_layout_constraints={{{constraints}}}, frontend_attributes={{kernel_metadata={{\n'
          f'"xprof_metadata":"{{{extra}}}"\n}}}}, backend_config={{"custom_call_config": {{}}}}')


def test_mosaic_kernel_costs_count_what_xla_leaves_out():
  """Splash attention declares no cost: its matmuls are counted from q and k (fwd 2, dq 3, dkv 4
  per [Lq, D] x [D, Lk] product); a kernel with a cost estimate is XLA's; others are named."""
  qkv = ["s8[1,2,2]", "bf16[4,3,256,64]", "bf16[4,3,384,64]", "bf16[4,3,384,64]", "s32[4,8,256]"]
  hlo = "\n".join([
      "ENTRY %main {",
      _custom_call("splash_mha_fwd_segmented_residuals", "bf16[4,3,256,64]{3,2,1,0}", qkv),
      _custom_call("splash_mha_dq_segmented_no_residuals", "bf16[4,3,256,64]{3,2,1,0}", qkv),
      _custom_call("splash_mha_dkv_segmented_no_residuals", "bf16[4,3,384,64]{3,2,1,0}", qkv),
      _custom_call("splash_mha_dkv_fused", "bf16[4,3,384,64]{3,2,1,0}", qkv,
                   r'\"use_fused_bwd_kernel\": true'),
      _custom_call("ssljax_contrastive_fwd_mosaic", "f32[8,128]{1,0}", ["f32[8,128]"]).replace(
          '"custom_call_config"', '"cost_estimate":{"flops":"7"}, "custom_call_config"'),
      _custom_call("someone_elses_kernel", "f32[8,128]{1,0}", ["f32[8,128]"]),
      "  ROOT %t = (f32[]) tuple(%x)", "}"])
  costs = plan_lib.mosaic_kernel_costs(hlo)
  product = 2 * 4 * 3 * 256 * 384 * 64
  assert costs["flops"] == (2 + 3 + 4 + 5) * product
  assert costs["counted_here"] == 4 and costs["costed_by_xla"] == 1
  assert costs["uncounted"] == ["someone_elses_kernel"]
  operands = 1 * 2 * 2 + (4 * 3 * 256 * 64 + 2 * 4 * 3 * 384 * 64) * 2 + 4 * 8 * 256 * 4
  results = (2 * 4 * 3 * 256 * 64 + 2 * 4 * 3 * 384 * 64) * 2
  assert costs["bytes"] == 4 * operands + results


def test_with_kernel_costs_updates_an_old_plan_once():
  """A plan.json from before kernel costs were counted: XLA's totals are kept apart, the kernels'
  added, and the estimate redone; applying it twice changes nothing."""
  qkv = ["bf16[2,4,128,64]", "bf16[2,4,128,64]", "bf16[2,4,128,64]"]
  hlo = _custom_call("splash_mha_fwd_segmented_no_residuals", "bf16[2,4,128,64]{3,2,1,0}", qkv)
  old = {"topology": "v5e:2x4", "global_batch": 16, "flops_per_step": 1e9,
         "bytes_accessed": 1e9, "xla_optimal_seconds": -1.0}
  plan = plan_lib.with_kernel_costs(dict(old), hlo)
  kernel = 2 * 2 * 2 * 4 * 128 * 128 * 64
  assert plan["kernel_flops_per_step"] == kernel and plan["xla_flops_per_step"] == 1e9
  assert plan["flops_per_step"] == 1e9 + kernel and plan["bytes_accessed"] > 1e9
  assert plan["est_step_seconds"] == pytest.approx(plan["bytes_accessed"] / 819e9)
  assert plan_lib.with_kernel_costs(dict(plan), hlo) == plan


def test_estimate_is_a_roofline_lower_bound():
  chip = plan_lib.CHIPS["v5e"]
  compute = plan_lib.estimate(197e12, 1.0, -1.0, chip, 256)
  assert compute["est_step_seconds"] == pytest.approx(1.0) and compute["est_mfu"] == 1.0
  memory = plan_lib.estimate(197e12, 2 * 819e9, -1.0, chip, 256)
  assert memory["est_step_seconds"] == pytest.approx(2.0) and memory["est_mfu"] == 0.5
  assert plan_lib.estimate(1.0, 1.0, 3.0, chip, 6)["est_images_per_sec"] == pytest.approx(2.0)
  assert compute["bound"] == "compute" and memory["bound"] == "HBM bandwidth"
  assert memory["flops_per_byte"] == pytest.approx(197e12 / (2 * 819e9))
  assert memory["ridge_flops_per_byte"] == pytest.approx(197e12 / 819e9)


# ---------------------------------------------------------------------------------------------
# CUDA lowering on 8 simulated devices.
# ---------------------------------------------------------------------------------------------
def _functions(text):
  funcs, cur = {}, None
  for line in text.splitlines():
    m = re.match(r"\s*func\.func (?:public |private )?@([\w$.\-]+)", line)
    if m:
      cur = m.group(1)
      funcs[cur] = []
    if cur:
      funcs[cur].append(line)
  return funcs


def _inside_manual_computations(text, needle):
  """How many `needle`s sit in a shard_map body (sdy.manual_computation), or a function it calls."""
  funcs = _functions(text)
  region, called = [], set()
  for body in funcs.values():
    depth, inside = 0, False
    for line in body:
      inside = inside or "sdy.manual_computation(" in line
      if inside:
        region.append(line)
        depth += line.count("{") - line.count("}")
        if depth <= 0 and line.strip().startswith("}"):
          inside = False
  called = set(re.findall(r"call @([\w$.\-]+)", "\n".join(region)))
  frontier = list(called)
  while frontier:
    for g in re.findall(r"call @([\w$.\-]+)", "\n".join(funcs.get(frontier.pop(), []))):
      if g not in called:
        called.add(g)
        frontier.append(g)
  return "\n".join(region).count(needle) + sum("\n".join(funcs[f]).count(needle)
                                               for f in called if f in funcs)


@pytest.mark.parametrize("name,dtype", [("dino_digits", "bfloat16"), ("mae_digits", "float32")])
def test_cuda_lowering_puts_every_triton_kernel_under_shard_map(name, dtype):
  config = load_config(name)
  config.batch_size = 64
  config.dtype = dtype
  built = train.build(config, jax.devices(), sources.build_source(config.data, "train")[0])
  with _common.lowering_for("cuda"):
    text = built.train_step.trace(built.abstract_state, built.abstract_batch()).lower(
        lowering_platforms=("cuda",)).as_text()
  total = text.count("xla.gpu.triton")
  assert total >= 3 * config.model.depth   # forward, dQ, dK/dV of every block
  assert _inside_manual_computations(text, "xla.gpu.triton") == total


# ---------------------------------------------------------------------------------------------
# Kernel choice per platform.
# ---------------------------------------------------------------------------------------------
def test_choose_kernel_table():
  f32 = jax.ShapeDtypeStruct((2, 16, 2, 64), jnp.float32)
  bf16 = jax.ShapeDtypeStruct((2, 16, 2, 64), jnp.bfloat16)
  assert A.choose_kernel("auto", f32) == "xla"           # this machine: CPU
  assert A.choose_kernel("pallas", f32) == "interpret"
  long = jax.ShapeDtypeStruct((2, 197, 2, 64), jnp.bfloat16)
  mask = jax.ShapeDtypeStruct((2, 16), jnp.bool_)
  with _common.lowering_for("tpu"):
    assert A.choose_kernel("auto", long) == "mosaic" and A.choose_kernel("pallas", f32) == "mosaic"
    # One 128-row tile without a key mask: plain XLA attention moves fewer bytes.
    assert A.choose_kernel("auto", f32) == "reference"
    assert A.choose_kernel("auto", f32, kv_length=197) == "mosaic"
    assert A.choose_kernel("auto", f32, mask) == "mosaic"
    assert A.choose_kernel("pallas", f32, interpret=True) == "interpret"
    assert C.resolve_impl("auto", C.PALLAS_ON) == ("pallas" if "tpu" in C.PALLAS_ON else "xla")
  with _common.lowering_for("cuda"):
    assert A.choose_kernel("auto", f32) == "triton"     # cuDNN takes fp16 / bf16 only
    # cuDNN also needs this process on a GPU (its version is checked while tracing).
    assert A.choose_kernel("auto", bf16) == ("cudnn" if jax.default_backend() == "gpu" else "triton")
    assert A.choose_kernel("xla", bf16) == "xla"
  with pytest.raises(ValueError, match=r"platform='metal'; expected one of"):
    with _common.lowering_for("metal"):
      pass


def test_target_platform_follows_the_traced_mesh():
  """Under a mesh of TPU devices, 'auto' resolves for TPU although this process runs on CPU."""
  seen = []
  mesh = parallel.make_mesh({"data": -1})

  def f(x):
    seen.append(_common.target_platform())
    return x

  jax.jit(parallel.traced_under(f, mesh)).trace(jax.ShapeDtypeStruct((8,), jnp.float32))
  assert seen == ["cpu"]
  libtpu = pytest.importorskip("libtpu")
  del libtpu
  devices = plan_lib.topology_devices("v5e:2x2")
  tpu_mesh = parallel.make_mesh({"data": -1}, devices)
  jax.jit(parallel.traced_under(f, tpu_mesh)).trace(jax.ShapeDtypeStruct((8,), jnp.float32))
  assert seen == ["cpu", "tpu"]


def test_mosaic_attention_matches_the_reference_shapes():
  """The TPU wrapper pads to 128-row tiles and masks padded keys; its output has q's shape."""
  q = jax.ShapeDtypeStruct((2, 17, 2, 32), jnp.float32)
  mask = jax.ShapeDtypeStruct((2, 17), jnp.bool_)
  with _common.lowering_for("tpu"):
    out = jax.eval_shape(lambda q, m: A.dot_product_attention(q, q, q, m), q, mask)
  assert out.shape == (2, 17, 2, 32) and out.dtype == jnp.float32


def test_import_ssljax_keeps_jax_from_probing_for_an_absent_tpu(tmp_path):
  """With libtpu installed and no TPU, a JAX start after `import ssljax` prints nothing."""
  import os
  import subprocess
  import sys
  pytest.importorskip("libtpu")
  env = {k: v for k, v in os.environ.items() if k != "JAX_PLATFORMS"}
  code = "import ssljax, jax, os; jax.devices(); print(os.environ['JAX_PLATFORMS'])"
  out = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True,
                       text=True, timeout=120, check=True)
  assert out.stdout.strip() in ("cpu", "cuda,cpu")
  assert "TPU" not in out.stderr and "libtpu" not in out.stderr, out.stderr
  explicit = subprocess.run([sys.executable, "-c", code], env=dict(env, JAX_PLATFORMS="cpu"),
                            cwd=tmp_path, capture_output=True, text=True, timeout=120, check=True)
  assert explicit.stdout.strip() == "cpu"


def test_overflow_hint_does_not_suggest_remat_twice():
  chip = plan_lib.CHIPS["v5e"]
  parts = {"temporaries": 52 * plan_lib.GIB}
  plain = plan_lib._overflow_message(52 * plan_lib.GIB, chip.hbm_bytes, parts, chip)
  on = plan_lib._overflow_message(52 * plan_lib.GIB, chip.hbm_bytes, parts, chip, remat=True)
  assert "--config.model.remat=True" in plain and "remat=True" not in on
  assert "recomputed already" in on and "--config.batch_size" in on and "\n" not in on
