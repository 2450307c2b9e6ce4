"""benchmarks/peer_throughput.py without the peer: the ssljax side builds and steps; the table has a ratio.

No torch needed: the lightly side is replaced by fake step times.
"""
import math
import os
import sys
import time

import pytest

from benchmarks import peer_throughput as P

pytestmark = pytest.mark.bench   # peer harness: `make test-bench`


@pytest.mark.parametrize("model", P.MODELS)
def test_ssljax_side_runs_steps(model):
  step = P.SsljaxStep(P.ssljax_config(model, batch=4, size=32, tiny=True))
  before = step.state.params
  import jax
  import numpy as np
  before = jax.tree_util.tree_map(np.asarray, before)
  times = step.run(2)              # step 0 has lr 0 (warm-up from 0); step 1 updates
  assert len(times) == 2 and min(times) > 0
  assert math.isfinite(step.last_loss)
  assert int(step.state.step) == 2
  # The steps trained something: some parameter moved.
  after = jax.tree_util.tree_leaves(jax.tree_util.tree_map(np.asarray, step.state.params))
  assert any(not np.allclose(a, b) for a, b in zip(after, jax.tree_util.tree_leaves(before)))


def test_backbone_parts_are_the_dino_recipes_vit():
  """--breakdown rows: the DINO step's backbone on 2B images; the grad part returns the gradient
  of sum(features^2) (checked against a finite difference), the forward part the features."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  fwd = P.ssljax_runner("vit_tiny_backbone_fwd", 3, tiny=True)
  grad = P.ssljax_runner("vit_tiny_backbone_grad", 3, tiny=True)
  step = P.SsljaxStep(P.ssljax_config("vit_tiny_dino", batch=3, size=32, tiny=True))
  assert fwd.batch.shape == (6, 32, 32, 3)                 # B images x 2 views
  assert fwd.num_params == grad.num_params == sum(
      x.size for x in jax.tree_util.tree_leaves(step.state.params["backbone"]))
  assert len(fwd.run(1)) == 1 and len(grad.run(2)) == 2
  feats = fwd.compiled(fwd.state, fwd.batch)
  assert feats.shape == (6, 32)                            # [2B, width] (tiny width 32)
  g = grad.compiled(grad.state, grad.batch)
  assert jax.tree_util.tree_structure(g) == jax.tree_util.tree_structure(grad.state)
  # Directional finite difference of sum(features^2) along the gradient (both parts start from
  # the same init; train=True only matters for dropout / drop-path, which this ViT has none of).
  f = lambda p: float(jnp.sum(fwd.compiled(p, fwd.batch) ** 2))   # noqa: E731
  eps = 1e-3
  norm = np.sqrt(sum(float(jnp.sum(x ** 2)) for x in jax.tree_util.tree_leaves(g)))
  plus = jax.tree_util.tree_map(lambda p, d: p + eps * d / norm, grad.state, g)
  minus = jax.tree_util.tree_map(lambda p, d: p - eps * d / norm, grad.state, g)
  np.testing.assert_allclose((f(plus) - f(minus)) / (2 * eps), norm, rtol=2e-2)


def test_backward_only_is_grad_minus_forward():
  rows = [{"model": P.PARTS[0], "batch": 32, "ssljax_ms": 400.0, "lightly_ms": 500.0},
          {"model": P.PARTS[1], "batch": 32, "ssljax_ms": 1600.0, "lightly_ms": 1100.0},
          {"model": P.PARTS[0], "batch": 128, "ssljax_ms": 1.0, "lightly_ms": 1.0}]  # no grad row
  assert P.backward_only(rows) == [
      "Batch 32: backward alone (forward + backward minus forward) 1200 ms in ssljax, 600 ms in "
      "torch: ratio 0.50x."]


def test_recipes_match_the_brief():
  vit = P.ssljax_config("vit_tiny_dino", batch=32)
  assert (vit.model.width, vit.model.depth, vit.model.num_heads, vit.model.patch_size) == (192, 12, 3, 4)
  assert vit.data.image_size == 32 and vit.dino.local_crops == 0 and vit.dtype == "float32"
  res = P.ssljax_config("resnet18_simclr", batch=128)
  assert res.model.depth == 18 and res.model.cifar_stem and res.batch_size == 128
  assert res.optimizer.name == "lars" and vit.optimizer.name == "adamw"


def test_interleave_alternates_and_table_has_ratio():
  calls = []

  def fake(name, seconds):
    def run(n):
      calls.append((name, n))
      return [seconds] * n
    return run

  times = P.interleave({"ssljax": fake("ssljax", 0.5), "lightly": fake("lightly", 0.25)},
                       warmup=1, rounds=3, chunk=2)
  assert [c[0] for c in calls[2:]] == ["ssljax", "lightly", "lightly", "ssljax", "ssljax", "lightly"]
  assert len(times["ssljax"]) == len(times["lightly"]) == 6
  row = P.summarize("vit_tiny_dino", 32, times)
  assert row["ssljax_ips"] == pytest.approx(64.0) and row["lightly_ips"] == pytest.approx(128.0)
  assert row["ratio"] == pytest.approx(0.5)
  table = P.format_table([row, P.summarize("resnet18_simclr", 128,
                                           {"ssljax": [1.0, 3.0, 2.0], "lightly": [1.0, 1.0, 1.0]})])
  lines = table.splitlines()
  assert "ratio ssljax/lightly" in lines[0]
  col = lines[0].split("|").index(" ratio ssljax/lightly ")
  assert [line.split("|")[col].strip() for line in lines[2:]] == ["0.50x", "0.50x"]


def test_interleave_settle_steps_are_run_but_not_timed():
  calls = []

  def fake(name):
    def run(n):
      calls.append((name, n))
      return [float(len(calls))] * n     # a step's "time" says which call ran it
    return run

  times = P.interleave({"ssljax": fake("ssljax"), "lightly": fake("lightly")},
                       warmup=0, rounds=2, chunk=1, settle=1)
  # each chunk: one untimed step, then the timed one; the order still alternates per round
  assert calls == [("ssljax", 1), ("ssljax", 1), ("lightly", 1), ("lightly", 1),
                   ("lightly", 1), ("lightly", 1), ("ssljax", 1), ("ssljax", 1)]
  assert times == {"ssljax": [2.0, 8.0], "lightly": [4.0, 6.0]}


def test_roofline_shares_of_the_matmul_peak():
  rows = [dict(model="vit_tiny_dino", batch=32, ssljax_ms=2000.0, lightly_ms=1600.0, gflop=200.0),
          dict(model="resnet18_simclr", batch=32, ssljax_ms=1.0, lightly_ms=1.0, gflop=None)]
  (line,) = P.roofline(rows, peak_gflops=250.0, target=1.2)
  # ssljax 200 / 2.0 = 100 GFLOP/s = 40%; lightly 125 = 50%; 1.2x lightly = 150 = 60%
  assert "200 GFLOP per step" in line
  assert "ssljax 100 GFLOP/s (40% " in line and "lightly 125 GFLOP/s (50%)" in line
  assert "1.2x lightly would need 150 GFLOP/s (60%)" in line


def test_compiled_flops_counts_a_matmul():
  import jax
  import jax.numpy as jnp
  x = jnp.ones((64, 32), jnp.float32)
  w = jnp.ones((32, 16), jnp.float32)
  flops = P.compiled_flops(jax.jit(jnp.matmul).lower(x, w).compile())
  assert flops == pytest.approx(2 * 64 * 32 * 16, rel=0.01)


def test_model_flops_counts_winograd_convs_as_convolutions():
  """A 3x3 conv that the CPU conv routes to Winograd counts as the convolution it computes: a conv
  step's FLOPs come from its plain twin (the routed module has fewer)."""
  import jax
  import jax.numpy as jnp
  from ssljax.cpu import conv as cpu_conv
  x, w = jnp.ones((16, 8, 8, 256), jnp.float32), jnp.ones((3, 3, 256, 256), jnp.float32)
  args = ((1, 1), ((1, 1), (1, 1)))
  dn = jax.lax.conv_dimension_numbers(x.shape, w.shape, ("NHWC", "HWIO", "NHWC"))
  routed = jax.jit(lambda x, w: cpu_conv.Conv()(x, w, *args, dimension_numbers=dn))
  plain = jax.jit(lambda x, w: jax.lax.conv_general_dilated(x, w, *args, dimension_numbers=dn))
  conv_flops = P.compiled_flops(plain.lower(x, w))
  assert P.compiled_flops(routed.lower(x, w)) < 0.8 * conv_flops      # the Winograd products
  assert P.model_flops(plain, x, w) == conv_flops
  step = P.ConvStep("resnet18_conv_4x512", 3, tiny=True, winograd_min_channels=8)
  step.compile()
  assert step.flops == P.compiled_flops(step.flops_fn.lower(*step.state))
  assert " convolution(" not in step.compiled.as_text()              # the timed step is routed
  assert "convolution" in step.flops_fn.lower(*step.state).as_text()  # the counted one is not


def test_plain_twin_of_a_resnet_method_has_lax_ops():
  from benchmarks._xla_costs import plain_resnet_ops, resnet_ops_replaced
  import jax
  from ssljax.cpu import conv as cpu_conv
  step = P.SsljaxStep(P.ssljax_config("resnet18_simclr", 4, tiny=True))
  (name,) = [k for k, v in vars(step.method).items() if hasattr(v, "store_once")]
  assert isinstance(getattr(step.method, name).conv_general_dilated, cpu_conv.Conv)  # CPU: 'auto'
  twin = resnet_ops_replaced(step.method, **plain_resnet_ops())
  assert getattr(twin, name).conv_general_dilated is jax.lax.conv_general_dilated
  assert isinstance(getattr(step.method, name).conv_general_dilated, cpu_conv.Conv)  # untouched
  with pytest.raises(ValueError, match="has no ResNet attribute"):
    resnet_ops_replaced(object())


def test_write_section_with_fake_peer(tmp_path, monkeypatch):
  from benchmarks import report
  row = P.summarize("resnet18_simclr", 32, {"ssljax": [0.2], "lightly": [0.1]})
  path = tmp_path / "BENCHMARKS.md"
  report.write_section(P.SECTION, P.format_table([row]), {"peer": "fake"}, path=str(path))
  text = path.read_text()
  assert f"## {P.SECTION}" in text and "0.50x" in text and "- peer: fake" in text


HLO = """HloModule m

%fused_conv (p0: f32[1,4,4,3], p1: f32[3,3,3,8]) -> f32[1,4,4,8] {
  %p0 = f32[1,4,4,3]{3,2,1,0} parameter(0)
  %p1 = f32[3,3,3,8]{3,2,1,0} parameter(1)
  ROOT %convolution.1 = f32[1,4,4,8]{3,2,1,0} convolution(%p0, %p1), window={size=3x3 pad=1_1x1_1}
}

%fused_add (p0: f32[8]) -> f32[8] {
  %p0 = f32[8]{0} parameter(0)
  ROOT %add.1 = f32[8]{0} add(%p0, %p0)
}

ENTRY %main (a: f32[1,4,4,3], b: f32[3,3,3,8], c: f32[8], d: f32[8,8]) -> f32[8] {
  %a = f32[1,4,4,3]{3,2,1,0} parameter(0)
  %b = f32[3,3,3,8]{3,2,1,0} parameter(1)
  %c = f32[8]{0} parameter(2)
  %d = f32[8,8]{1,0} parameter(3)
  %ynn_fusion.3 = f32[1,4,4,8]{3,2,1,0} fusion(%a, %b), kind=kCustom, calls=%fused_conv
  %dot.2 = f32[8]{0} dot(%d, %c), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  ROOT %add_fusion = f32[8]{0} fusion(%dot.2), kind=kLoop, calls=%fused_add
}
"""


def test_profile_findings_by_kind():
  kinds = P.hlo_op_kinds(HLO)
  assert kinds["ynn_fusion.3"] == "convolution"
  assert kinds["dot.2"] == "dot / matmul"
  assert kinds["add_fusion"] == "elementwise"
  per_op = {"ynn_fusion.3": 0.6, "dot.2": 0.3, "add_fusion": 0.1, "ThunkExecutor::Execute": 5.0}
  (line,) = P.profile_findings("resnet18_simclr", per_op, 1.2, kinds)
  assert "convolution 60%" in line and "dot / matmul 30%" in line and "elementwise 10%" in line
  assert "1000 ms per step" in line


def test_fastest_torch_threads_keeps_the_faster_count(monkeypatch):
  """The peer gets its better thread count: the one with the smaller median, left set in torch."""
  import types
  from benchmarks import _peer
  fake = types.SimpleNamespace(threads=None)
  fake.set_num_threads = lambda n: setattr(fake, "threads", n)
  monkeypatch.setitem(sys.modules, "torch", fake)
  clock = {"t": 0.0}
  monkeypatch.setattr(time, "perf_counter", lambda: clock["t"])

  def work_costing(cost):           # cost[n]: seconds one call takes at n threads
    def fn():
      clock["t"] += cost[fake.threads]
    return fn

  best, medians = _peer.fastest_torch_threads(work_costing({1: 3.0, 2: 1.0}), 2, reps=3)
  assert (best, fake.threads, medians) == (2, 2, {1: 3.0, 2: 1.0})
  best, medians = _peer.fastest_torch_threads(work_costing({1: 1.0, 4: 2.5}), 4, reps=3)
  assert (best, fake.threads, medians) == (1, 1, {1: 1.0, 4: 2.5})
  best, medians = _peer.fastest_torch_threads(work_costing({1: 1.0}), 1)   # nothing to pick
  assert (best, list(medians)) == (1, [1])


@pytest.mark.skipif(not os.path.exists(P.PEER_PYTHON), reason="needs .venv-peer (bash benchmarks/peer_env.sh)")
@pytest.mark.parametrize("part", P.PARTS)
def test_lightly_worker_backbone_parts(part):
  """The real worker's --breakdown parts: torchvision's ViT alone, same size as the ssljax side."""
  worker = P.PeerWorker(part, 3, threads=1, tiny=True)
  try:
    assert worker.info["params"] == P.ssljax_runner(part, 3, tiny=True).num_params
    times = worker.run(2)
    assert len(times) == 2 and all(t > 0 for t in times) and math.isfinite(worker.last_loss)
  finally:
    worker.close()


@pytest.mark.skipif(not os.path.exists(P.PEER_PYTHON), reason="needs .venv-peer (bash benchmarks/peer_env.sh)")
def test_lightly_worker_picks_threads_and_steps():
  """The real lightly worker (tiny DINO): reports the thread count it picked and its timings, then steps."""
  worker = P.PeerWorker("vit_tiny_dino", 4, threads=2, tiny=True)
  try:
    info = worker.info
    assert set(info["thread_medians_s"]) == {"1", "2"}
    assert info["threads"] == min((1, 2), key=lambda n: info["thread_medians_s"][str(n)])
    times = worker.run(2)
    assert len(times) == 2 and all(t > 0 for t in times) and math.isfinite(worker.last_loss)
  finally:
    worker.close()


def test_resnet_cpu_workarounds_ab_compiles_each_variant_and_agrees():
  """benchmarks/resnet_cpu_workarounds.py on a tiny ResNet: without computed_once the step has
  ReLU-recomputing transposes, without the stride-2 input gradient dilated convolutions, without
  Winograd more convolutions; with all on none of these; every variant computes the same loss."""
  from benchmarks import resnet_cpu_workarounds as R
  rows = {r["variant"]: r for r in R.measure(batch=4, rounds=1, chunk=1, tiny=True,
                                             log=lambda *_: None,
                                             winograd_min_channels=16)}  # tiny stages 2-4
  assert set(rows) == set(R.VARIANTS)
  on = rows["all on"]
  assert on["relu_transposes"] == 0 and on["dilated_convs"] == 0 and on["slowdown"] == 1.0
  assert rows["without computed_once"]["relu_transposes"] > 0
  assert rows["without the stride-2 input gradient"]["dilated_convs"] > 0
  assert rows["without Winograd"]["convs"] > on["convs"]
  assert all(r["loss_agrees"] and math.isfinite(r["loss"]) and r["steps"] == 1 for r in rows.values())
  table = R.format_table(list(rows.values()))
  assert table.count("| 4 |") == 4 and "NO" not in table


@pytest.mark.parametrize("winograd_from", [None, 8])
def test_conv_parts_compute_the_loss_and_both_gradients(winograd_from):
  """--convs rows: sum(conv(x, k)^2) of a 3x3 'SAME' convolution (checked against NumPy) and its
  gradients in the input and the kernel, on 2B inputs of the stage's size; also where the op
  ResNet's convs call runs it by Winograd (from 8 channels on: the tiny parts' width)."""
  import numpy as np
  part = "resnet18_conv_4x512"
  step = P.ConvStep(part, 3, tiny=True, winograd_min_channels=winograd_from)  # 6 inputs of 4x4x8
  x, k = (np.asarray(a) for a in step.state)
  assert x.shape == (6, 4, 4, 8) and k.shape == (3, 3, 8, 8) and step.num_params == k.size
  assert len(step.run(2)) == 2
  loss, (gx, gk) = step.compiled(*step.state)
  xp = np.pad(x.astype(np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)))
  y = sum(np.einsum("nhwc,cd->nhwd", xp[:, i:i + 4, j:j + 4], k[i, j]) for i in range(3)
          for j in range(3))
  np.testing.assert_allclose(float(loss), np.sum(y ** 2), rtol=1e-5)
  np.testing.assert_allclose(step.last_loss, np.sum(y ** 2), rtol=1e-5)
  want_gk = np.stack([np.stack([np.einsum("nhwc,nhwd->cd", xp[:, i:i + 4, j:j + 4], 2 * y)
                                for j in range(3)]) for i in range(3)])
  np.testing.assert_allclose(gk, want_gk, rtol=1e-4, atol=1e-3)
  assert gx.shape == x.shape and np.abs(np.asarray(gx)).max() > 0
  assert P.LABELS[part] == "3x3 conv, 512 channels at 4x4 (x3 in ResNet-18)"
  assert (" convolution(" in step.compiled.as_text()) == (winograd_from is None)


def test_conv_totals_weight_each_stage_by_its_count():
  rows = [{"model": p, "batch": 32, "ssljax_ms": 10.0 * (i + 1), "lightly_ms": 5.0 * (i + 1)}
          for i, p in enumerate(P.CONV_PARTS)]
  rows.append({"model": P.CONV_PARTS[0], "batch": 128, "ssljax_ms": 1.0, "lightly_ms": 1.0})
  (line,) = P.conv_totals(rows)                      # batch 128 lacks parts: no line
  ours = 4 * 10 + 3 * 20 + 3 * 30 + 3 * 40
  assert f"{ours} ms in ssljax" in line and f"{ours // 2} ms in torch" in line
  assert "13 stride-1 3x3" in line and "ratio 0.50x" in line


@pytest.mark.skipif(not os.path.exists(P.PEER_PYTHON), reason="needs .venv-peer (bash benchmarks/peer_env.sh)")
def test_lightly_worker_conv_part_computes_the_same_loss():
  """The real worker's --convs part: torch's Conv2d on the same input and kernel (NCHW / OIHW)."""
  part = "resnet18_conv_8x256"
  ours = P.ssljax_runner(part, 2, tiny=True)
  ours.run(1)
  worker = P.PeerWorker(part, 2, threads=1, tiny=True)
  try:
    assert worker.info["params"] == ours.num_params
    worker.run(1)
    assert math.isclose(worker.last_loss, ours.last_loss, rel_tol=1e-4)
  finally:
    worker.close()
