"""Command line: fine-tune a pretrained workdir's backbone with layer-wise lr decay.

  python -m ssljax.finetune --workdir DIR [--steps 500 --layer_decay 0.75 --lr 1.6e-2
                                   --crop_scale 0.7,1 ...]

Opens DIR at its latest (or --step) checkpoint (`ssljax.workdir.open_run`), fine-tunes the method's
pretrained backbone (`Method.pretrained_backbone`: the one kNN and export use) + a linear head
on the labelled train split (see ssljax.evaluate.finetune), and merges {'finetune_top1', ...}
into DIR/eval.json, keeping its other keys.
"""
from __future__ import annotations

import json
import os

from absl import flags

from ssljax import commandline

PROG = "ssljax.finetune"
# Flag name -> keyword of ssljax.evaluate.finetune.finetune. A flag left unset (None) keeps that
# function's default (DEFAULT_*, measured on the digits data).
_OPTIONS = {"steps": "steps", "layer_decay": "layer_decay", "lr": "base_lr",
            "weight_decay": "weight_decay", "batch_size": "batch_size",
            "warmup_steps": "warmup_steps", "label_smoothing": "label_smoothing"}


def define_flags(flag_values: flags.FlagValues) -> None:
  fv = flag_values
  flags.DEFINE_string("workdir", None, "A pretraining workdir (config.json + checkpoints/).",
                      flag_values=fv)
  flags.DEFINE_integer("step", None, "Checkpoint step to start from (default: the latest).",
                       flag_values=fv)
  flags.DEFINE_integer("steps", None, "Fine-tuning steps (default 500).", flag_values=fv)
  flags.DEFINE_float("layer_decay", None, "Layer-wise lr decay, 1.0 = off (default 0.75).",
                     flag_values=fv)
  flags.DEFINE_float("lr", None, "Base learning rate at batch 256 (default 1.6e-2).",
                     flag_values=fv)
  flags.DEFINE_float("weight_decay", None, "AdamW weight decay (default 0.05).", flag_values=fv)
  flags.DEFINE_integer("batch_size", None, "Fine-tuning batch size (default 64).", flag_values=fv)
  flags.DEFINE_integer("warmup_steps", None, "Linear warm-up steps (default 50).", flag_values=fv)
  flags.DEFINE_float("label_smoothing", None, "Label smoothing (default 0.1).", flag_values=fv)
  flags.DEFINE_list("crop_scale", None, "Random resized crop area range 'lo,hi' of the training "
                    "views; '1,1' = no crop (default 0.7,1).", flag_values=fv)
  flags.DEFINE_integer("seed", 0, "Seed of the head init, data order and augmentations.",
                       flag_values=fv)


def _crop_scale(values: list[str]) -> tuple[float, float]:
  """(lo, hi) of `--crop_scale=lo,hi` (checked before any checkpoint is read)."""
  try:
    lo, hi = (float(v) for v in values)
  except ValueError:
    raise ValueError(f"--crop_scale={','.join(values)}; expected two numbers lo,hi") from None
  if not 0.0 < lo <= hi <= 1.0:
    raise ValueError(f"--crop_scale={','.join(values)}; expected 0 < lo <= hi <= 1")
  return lo, hi


def main(fv: flags.FlagValues, _=None) -> int:
  if fv.workdir is None:
    commandline.fail(PROG, "--workdir is required, e.g. python -m ssljax.finetune --workdir /tmp/run")
  commandline.quiet_logging(fv)
  from ssljax.cpu import xla_flags
  xla_flags.apply_cpu_defaults()   # before JAX starts; only for a CPU run (ssljax/cpu/xla_flags.py)
  from ssljax import workdir as workdir_lib
  from ssljax.evaluate import finetune as ft
  try:
    options = {kw: fv[name].value for name, kw in _OPTIONS.items() if fv[name].value is not None}
    if fv.crop_scale is not None:
      options["crop_scale"] = _crop_scale(fv.crop_scale)
    run = workdir_lib.open_run(fv.workdir, step=fv.step)
    backbone, variables = ft.pretrained_backbone(run.method, run.params, run.method_state)
    result = ft.finetune(run.config, backbone, variables, seed=fv.seed, **options)
  except (FileNotFoundError, ValueError) as e:   # ConfigError, IncompatibleCheckpointError too
    commandline.fail(PROG, e)
  merged = workdir_lib.merge_json(os.path.join(run.workdir, "eval.json"), result)
  print(json.dumps(merged, indent=2))
  return 0


def run() -> None:
  from ssljax.cpu import host_memory
  host_memory.reexec_with_host_defaults()   # huge pages for XLA:CPU (ssljax/cpu/host_memory.py)
  commandline.run(PROG, define_flags, main)


if __name__ == "__main__":
  run()
