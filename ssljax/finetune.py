"""Command line: fine-tune a pretrained workdir's backbone with layer-wise lr decay.

  python -m ssljax.finetune --workdir DIR [--steps 1000 --layer_decay 0.75 --lr 5e-4 ...]

Loads DIR/config.json and the latest checkpoint in DIR/checkpoints, fine-tunes backbone + linear
head on the labelled train split (see ssljax.evaluate.finetune), and merges {'finetune_top1', ...}
into DIR/eval.json, keeping its other keys.
"""
from __future__ import annotations

import json
import sys

from absl import app
from absl import flags
from absl import logging

_WORKDIR = flags.DEFINE_string("workdir", None, "A pretraining workdir (config.json + checkpoints/).")
_STEPS = flags.DEFINE_integer("steps", 1000, "Fine-tuning steps.")
_LAYER_DECAY = flags.DEFINE_float("layer_decay", 0.75, "Layer-wise lr decay (1.0 = off).")
_LR = flags.DEFINE_float("lr", 5e-4, "Base learning rate at batch 256.")
_WEIGHT_DECAY = flags.DEFINE_float("weight_decay", 0.05, "AdamW weight decay.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 128, "Fine-tuning batch size.")
_WARMUP = flags.DEFINE_integer("warmup_steps", 50, "Linear warm-up steps.")
_SMOOTHING = flags.DEFINE_float("label_smoothing", 0.1, "Label smoothing.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the head init, data order and augmentations.")


def main(argv) -> int:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}; expected only --flags")
  if _WORKDIR.value is None:
    raise app.UsageError("--workdir is required, e.g. python -m ssljax.finetune --workdir /tmp/run")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  from ssljax.evaluate import finetune as ft
  try:
    config = ft.load_workdir_config(_WORKDIR.value)
    backbone, params, collections = ft.load_pretrained_backbone(config, _WORKDIR.value)
    result = ft.finetune(config, backbone, params, collections, steps=_STEPS.value,
                         layer_decay=_LAYER_DECAY.value, base_lr=_LR.value,
                         weight_decay=_WEIGHT_DECAY.value, batch_size=_BATCH_SIZE.value,
                         warmup_steps=_WARMUP.value, label_smoothing=_SMOOTHING.value,
                         seed=_SEED.value)
  except (FileNotFoundError, KeyError, ValueError) as e:
    print(f"ssljax.finetune: {e}", file=sys.stderr)
    return 2
  merged = ft.write_result(_WORKDIR.value, result)
  print(json.dumps(merged, indent=2))
  return 0


def run() -> None:
  app.run(main)


if __name__ == "__main__":
  run()
