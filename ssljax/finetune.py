"""Command line: fine-tune a pretrained workdir's backbone with layer-wise lr decay.

  python -m ssljax.finetune --workdir DIR [--steps 500 --layer_decay 0.75 --lr 1.6e-2
                                   --crop_scale 0.7,1 ...]

Loads DIR/config.json and the latest checkpoint in DIR/checkpoints, fine-tunes the method's
pretrained backbone (`Method.pretrained_backbone`: the one kNN and export use) + a linear head
on the labelled train split (see ssljax.evaluate.finetune), and merges {'finetune_top1', ...}
into DIR/eval.json, keeping its other keys.
"""
from __future__ import annotations

import json
import sys

from absl import app
from absl import flags
from absl import logging

_WORKDIR = flags.DEFINE_string("workdir", None, "A pretraining workdir (config.json + checkpoints/).")
# None = the default of ssljax.evaluate.finetune.finetune (DEFAULT_*, measured on the digits data).
_STEPS = flags.DEFINE_integer("steps", None, "Fine-tuning steps (default 500).")
_LAYER_DECAY = flags.DEFINE_float("layer_decay", None,
                                  "Layer-wise lr decay, 1.0 = off (default 0.75).")
_LR = flags.DEFINE_float("lr", None, "Base learning rate at batch 256 (default 1.6e-2).")
_WEIGHT_DECAY = flags.DEFINE_float("weight_decay", None, "AdamW weight decay (default 0.05).")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", None, "Fine-tuning batch size (default 64).")
_WARMUP = flags.DEFINE_integer("warmup_steps", None, "Linear warm-up steps (default 50).")
_SMOOTHING = flags.DEFINE_float("label_smoothing", None, "Label smoothing (default 0.1).")
_CROP_SCALE = flags.DEFINE_list("crop_scale", None, "Random resized crop area range 'lo,hi' of "
                                "the training views; '1,1' = no crop (default 0.7,1).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the head init, data order and augmentations.")

_OPTIONS = {"steps": _STEPS, "layer_decay": _LAYER_DECAY, "base_lr": _LR,
            "weight_decay": _WEIGHT_DECAY, "batch_size": _BATCH_SIZE, "warmup_steps": _WARMUP,
            "label_smoothing": _SMOOTHING}


def main(argv) -> int:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}; expected only --flags")
  if _WORKDIR.value is None:
    raise app.UsageError("--workdir is required, e.g. python -m ssljax.finetune --workdir /tmp/run")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  from ssljax.cpu import xla_flags
  xla_flags.apply_cpu_defaults()   # before JAX starts; only for a CPU run (ssljax/cpu/xla_flags.py)
  from ssljax.evaluate import finetune as ft
  try:
    config = ft.load_workdir_config(_WORKDIR.value)
    backbone, variables = ft.load_pretrained_backbone(config, _WORKDIR.value)
    options = {name: flag.value for name, flag in _OPTIONS.items() if flag.value is not None}
    if _CROP_SCALE.value is not None:
      if len(_CROP_SCALE.value) != 2:
        raise ValueError(f"--crop_scale={','.join(_CROP_SCALE.value)}; expected two numbers lo,hi")
      options["crop_scale"] = tuple(float(v) for v in _CROP_SCALE.value)
    result = ft.finetune(config, backbone, variables, seed=_SEED.value, **options)
  except (FileNotFoundError, KeyError, ValueError) as e:
    print(f"ssljax.finetune: {e}", file=sys.stderr)
    return 2
  merged = ft.write_result(_WORKDIR.value, result)
  print(json.dumps(merged, indent=2))
  return 0


def run() -> None:
  from ssljax.cpu import host_memory
  host_memory.reexec_with_host_defaults()   # huge pages for XLA:CPU (ssljax/cpu/host_memory.py)
  app.run(main)


if __name__ == "__main__":
  run()
