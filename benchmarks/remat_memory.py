"""XLA's compiled temporary memory of a train step with and without `model.remat`, on CPU.

Lowers and compiles (never runs) the real train step of a shipped ViT config on one CPU device,
at a given batch, once per `model.remat` / `model.remat_policy` setting, and reads
`compiled.memory_analysis()`: the temporaries (activations kept for the backward pass, and
scratch) are what rematerialisation trades for recomputation; arguments (parameters, optimizer
state, batch) do not change. On CPU, policy 'full' is `ssljax.cpu.remat` (XLA:CPU undoes
`jax.checkpoint`'s optimization barriers; the other policies are plain nn.remat and show it).
Writes the "Rematerialisation: compiled temporary memory" section of BENCHMARKS.md.

  python -m benchmarks.remat_memory     # DINO and MAE ViT-B/16, batch 32: about 10 minutes
  python -m benchmarks.remat_memory --config configs/mae_vit_b16_imagenet.py --no-write
"""
from __future__ import annotations

import argparse
import os
import time

from benchmarks.report import ROOT, load_config, markdown_table, write_section

# (label, model.remat, model.remat_policy)
SETTINGS = (("off", False, "full"), ("full", True, "full"),
            ("dots_saveable", True, "dots_saveable"))


def step_memory(config, remat: bool, policy: str) -> dict[str, float]:
  """{'temp_mib', 'args_mib', 'compile_s'} of `config`'s train step compiled on one CPU device."""
  import jax
  from ssljax import build as build_lib
  from ssljax.data import sources
  config = config.copy_and_resolve_references()
  config.model.remat, config.model.remat_policy = remat, policy
  record = sources.build_source(config.data, config.data.train_split)[0]
  built = build_lib.build(config, jax.devices()[:1], record)
  t0 = time.perf_counter()
  compiled = built.train_step.lower(built.abstract_state, built.abstract_batch()).compile()
  mem = compiled.memory_analysis()
  return {"temp_mib": mem.temp_size_in_bytes / 2**20,
          "args_mib": mem.argument_size_in_bytes / 2**20,
          "compile_s": time.perf_counter() - t0}


def shrink(config, batch_size: int, variant: str | None = None, image_size: int | None = None):
  """The config at `batch_size` on the synthetic source, on one device (and a smaller ViT)."""
  config.batch_size = batch_size
  config.data.source = "synthetic"
  config.data.worker_count = 0
  config.mesh.data, config.mesh.fsdp, config.mesh.model = 1, 1, 1
  config.param_sharding = "replicated"
  if variant is not None:
    config.model.variant = variant
  if image_size is not None:
    config.data.image_size = config.model.image_size = image_size
  config.data.synthetic_size = config.data.image_size + config.data.image_size // 7
  config.data.synthetic_examples = 16
  return config


def measure(path: str, batch_size: int, variant=None, image_size=None,
            settings=SETTINGS) -> list[list]:
  rows = []
  base = None
  for label, remat, policy in settings:
    config = shrink(load_config(path), batch_size, variant, image_size)
    m = step_memory(config, remat, policy)
    base = base or m["temp_mib"]
    rows.append([os.path.basename(path), config.model.variant or "custom", batch_size, label,
                 int(round(m["temp_mib"])), round(base / m["temp_mib"], 2),
                 int(round(m["args_mib"])), round(m["compile_s"], 1)])
    print(rows[-1], flush=True)
  return rows


def main(argv=None) -> list[list]:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--config", action="append",
                 help="config file (repeatable); default: DINO ViT-S/16 and MAE ViT-B/16 recipes")
  p.add_argument("--variant", default="b")
  p.add_argument("--batch-size", type=int, default=32)
  p.add_argument("--no-write", action="store_true")
  args = p.parse_args(argv)
  configs = args.config or [os.path.join(ROOT, "configs", n)
                            for n in ("dino_vit_s16_imagenet.py", "mae_vit_b16_imagenet.py")]
  rows = [r for path in configs for r in measure(path, args.batch_size, args.variant)]
  if not args.no_write:
    table = markdown_table(["config", "ViT", "batch", "model.remat (policy)", "temp MiB",
                            "temp reduction vs off", "arguments MiB", "compile s"], rows)
    note = ("XLA:CPU `compiled.memory_analysis()` of the lowered and compiled train step (never "
            "run), one CPU device, synthetic data, `--variant` ViT at the config's image size; "
            "temporaries are the activations kept for the backward pass plus scratch. `full` "
            "keeps only each block's input (on CPU through `ssljax.cpu.remat`, which ties the "
            "recomputation to the cotangent: XLA:CPU expands `jax.checkpoint`'s optimization "
            "barriers before CSE and scheduling and so undoes it, as the `dots_saveable` row, "
            "plain `nn.remat`, shows). MAE: the encoder sees a quarter of the tokens and its "
            "8-block decoder (`ssljax/methods/_masked.py`) is not rematerialised, hence 1.3x. "
            "tests/test_remat.py asserts a >= 2x reduction at a small ViT.")
    write_section("Rematerialisation: compiled temporary memory", table + "\n\n" + note,
                  {"command": "python -m benchmarks.remat_memory " + " ".join(argv or [])})
  return rows


if __name__ == "__main__":
  main()
