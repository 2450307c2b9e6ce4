"""DINO for your own folder of small images (32-64 px).

Run:
  python -m ssljax.main --config configs/dino_small.py --workdir workdirs/dino_small \
      --config.data.path=DIR --config.data.image_size=32
(DIR/train/<class>/*.png and DIR/val/<class>/*.png; labels are used only for evaluation.) Other
backbones: `--config configs/dino_small.py:resnet18` (CIFAR-stem ResNet-18) or `:vit,64`.

Measured 2026-12-04 (tests/test_small_learning.py, seed 0): does NOT yet learn in a short budget
on photo_patches32: held-out kNN 0.331 after 150 steps at batch 64 (random-init small CNN 0.327;
SimCLR, configs/simclr_small.py: 0.418). Start from configs/simclr_small.py; the 1,000-step
budget is not measured yet.

common.small_images (small CNN, batch 256, AdamW, crops, flips, colour jitter, no blur) with DINO's
recipe scaled down as for the digits (common.distill_digits: a 1024-prototype head with BatchNorm
in its MLP, teacher temperature 0.04, momentum 0.99, weight decay 0.04, clip 3.0), base_lr 5e-3,
2 global crops of scale 0.3-1 and no local crops.
"""
from ssljax import config as config_lib

common = config_lib.import_sibling(__file__)   # configs/common.py


def get_config(arg=None):
  backbone, size = common.small_backbone(arg)
  config = common.distill_digits(common.small_images("dino", backbone, size))
  config.dino.update(global_crops_scale=(0.3, 1.0), local_crops=0, local_size=max(8, size // 2),
                     freeze_last_layer_steps=0)
  if backbone != "vit":
    config.optimizer.weight_decay = 1e-4
  return config
