"""XLA:CPU library fusions: jaxlib's YNNPACK fusions vs XLA's own kernels, side by side (issue #10).

  python -m benchmarks.xla_cpu_flags            # four workloads x four settings, writes BENCHMARKS.md
  python -m benchmarks.xla_cpu_flags --quick    # conv stack + quickstart step only

Why ssljax's command lines set `--xla_cpu_experimental_ynn_fusion_type=-individual_convolution`
(ssljax/cpu/xla_flags.py). jaxlib 0.10's XLA:CPU hands convolutions, dots, and elementwise and
reduce fusions to YNNPACK. Three settings: jaxlib's default; convolutions back to XLA's own (Eigen) kernels
(ssljax's default); no YNNPACK fusion at all. XLA reads XLA_FLAGS once per process, so each
setting runs in its own worker process (this file with --worker), and the settings
are timed in alternating rounds so that the load of a shared machine hits them alike. Workloads:
(a) forward + backward of four 3x3 64->64 convolutions + ReLU on [32, 32, 32, 64] (a ResNet-18
stage-1 block pair); (b) one SimCLR train step of the CIFAR-stem ResNet-18 and (c) one DINO train step
of the ViT-Tiny/4 of benchmarks/peer_throughput.py at batch 32; (d) one train step of the quickstart
(configs/simclr_digits.py: a 3-block ViT of width 64 at 16x16, batch 128) on random images.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import report  # noqa: E402

SECTION = "XLA:CPU library fusions"
_YNN = "--xla_cpu_experimental_ynn_fusion_type="
SETTINGS = {"jaxlib default (YNNPACK fusions)": "",
            "ssljax default (convolutions to XLA)": _YNN + "-individual_convolution",
            "no YNNPACK dots": _YNN + "-individual_convolution,-individual_dot,-dot",
            "no YNNPACK fusion": _YNN + "-individual_convolution,-individual_dot,-dot,-eltwise,-reduce"}
# (workload, steps per timed run); --quick runs the first and the last.
WORKLOADS = (("conv_stack", 2), ("resnet18_simclr_b32", 1), ("vit_tiny_dino_b32", 1), ("quickstart", 5))


def _worker(workload: str, steps: int) -> None:
  """Compiles `workload`, then times `steps` runs per 'run' line on stdin; prints JSON lines."""
  import jax
  import jax.numpy as jnp
  if workload == "conv_stack":
    x = jax.random.normal(jax.random.PRNGKey(0), (32, 32, 32, 64))
    w = jax.random.normal(jax.random.PRNGKey(1), (3, 3, 64, 64)) * 0.05

    def loss(w, x):
      y = x
      for _ in range(4):
        y = jax.nn.relu(jax.lax.conv_general_dilated(y, w, (1, 1), "SAME",
                                                     dimension_numbers=("NHWC", "HWIO", "NHWC")))
      return jnp.sum(y ** 2)
    fn = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
    run = lambda: jax.block_until_ready(fn(w, x))  # noqa: E731
  else:   # '<peer_throughput model>_b<batch>' (e.g. resnet18_simclr_b32) or 'quickstart'
    from benchmarks import peer_throughput as pt
    if workload == "quickstart":   # configs/simclr_digits.py's step on random 16x16 images
      config = report.load_config(os.path.join(report.ROOT, "configs", "simclr_digits.py"))
      config.data.source = "synthetic"
      config.data.synthetic_size = config.data.image_size
    else:
      model, batch = workload.rsplit("_b", 1)
      config = pt.ssljax_config(model, int(batch))
    step = pt.SsljaxStep(config)
    step.compile()
    run = lambda: step.run(1)  # noqa: E731
  t0 = time.perf_counter()
  run()
  print(json.dumps({"ready": True, "first_s": time.perf_counter() - t0}), flush=True)
  for line in sys.stdin:
    if line.strip() != "run":
      break
    times = []
    for _ in range(steps):
      t0 = time.perf_counter()
      run()
      times.append(time.perf_counter() - t0)
    print(json.dumps({"times": times}), flush=True)


def compare(workload: str, rounds: int, steps: int, log=print, settings=None) -> list[dict]:
  """Alternating rounds of each setting ({name: XLA_FLAGS}, SETTINGS by default); one row per
  setting with the median time and its speedup over the first setting."""
  settings = SETTINGS if settings is None else settings
  procs = {}
  for name, flags in settings.items():
    env = dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu", SSLJAX_XLA_CPU_DEFAULTS="0")
    procs[name] = subprocess.Popen([sys.executable, "-m", "benchmarks.xla_cpu_flags", "--worker", workload,
                                    "--steps", str(steps)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   text=True, cwd=report.ROOT, env=env, bufsize=1)
  times = {name: [] for name in procs}
  try:
    for p in procs.values():
      json.loads(p.stdout.readline())
    for r in range(rounds):
      order = list(procs) if r % 2 == 0 else list(procs)[::-1]
      for name in order:
        procs[name].stdin.write("run\n")
        procs[name].stdin.flush()
        times[name] += json.loads(procs[name].stdout.readline())["times"]
  finally:
    for p in procs.values():
      p.stdin.close()
      p.wait(timeout=60)
  base = statistics.median(times[list(settings)[0]])
  rows = []
  for name in settings:
    med = statistics.median(times[name])
    rows.append({"workload": workload, "setting": name, "ms": 1e3 * med, "speedup": base / med,
                 "n": len(times[name])})
    log(json.dumps(rows[-1]))
  return rows


def main(argv=None) -> list[dict]:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--worker", default="")
  parser.add_argument("--steps", type=int, default=2, help="(worker) steps per timed run")
  parser.add_argument("--rounds", type=int, default=3, help="alternating timed runs per setting")
  parser.add_argument("--quick", action="store_true")
  parser.add_argument("--no-write", action="store_true")
  args = parser.parse_args(argv)
  if args.worker:
    _worker(args.worker, args.steps)
    return []
  rows = []
  for workload, steps in (WORKLOADS[::len(WORKLOADS) - 1] if args.quick else WORKLOADS):
    rows += compare(workload, args.rounds, steps)
  table = report.markdown_table(["workload", "XLA_FLAGS setting", "median ms", "speedup vs jaxlib default",
                                 "runs timed"],
                                [[r["workload"], r["setting"], round(r["ms"]), f"{r['speedup']:.2f}x", r["n"]]
                                 for r in rows])
  print(table)
  if not args.no_write:
    notes = ("\n\nFlags: " + "; ".join(f"{k}: `{v or '(none)'}`" for k, v in SETTINGS.items())
             + ". Each setting in its own process, alternating rounds (machine load hits all alike); "
             "a median ms is one run of the workload's steps. ssljax's command lines apply the second "
             "setting (ssljax/cpu/xla_flags.py; opt out with SSLJAX_XLA_CPU_DEFAULTS=0).")
    report.write_section(SECTION, table + notes, {"command": "python -m benchmarks.xla_cpu_flags"
                                                  + (" --quick" if args.quick else "")})
  return rows


if __name__ == "__main__":
  from ssljax.cpu import host_memory
  host_memory.reexec_with_host_defaults()   # as the ssljax command lines do (ssljax/cpu)
  main()
