"""BYOL for your own folder of small images (32-64 px).

Run:
  python -m ssljax.main --config configs/byol_small.py --workdir workdirs/byol_small \
      --config.data.path=DIR --config.data.image_size=32
(DIR/train/<class>/*.png and DIR/val/<class>/*.png; labels are used only for evaluation.) Other
backbones: `--config configs/byol_small.py:resnet18` (CIFAR-stem ResNet-18) or `:vit,64`.

Measured 2026-12-04 (tests/test_small_learning.py, seed 0): does NOT yet learn in a short budget
on photo_patches32: held-out kNN 0.321 after 150 steps at batch 64 (random-init small CNN 0.327;
SimCLR, configs/simclr_small.py: 0.418). Start from configs/simclr_small.py; the 1,000-step
budget is not measured yet.

common.small_images (small CNN, batch 256, AdamW, crops 0.2-1, flips, colour jitter, no blur) with
base_lr 5e-3 and weight decay 1e-4; BYOL's EMA target at tau 0.99 (a short run's faster target) and
a 512 -> 128 projector with output BatchNorm and a 512-wide predictor.
"""
from ssljax import config as config_lib

common = config_lib.import_sibling(__file__)   # configs/common.py


def get_config(arg=None):
  backbone, size = common.small_backbone(arg)
  config = common.small_images("byol", backbone, size)
  config.optimizer.update(base_lr=5e-3)
  config.byol.update(tau_base=0.99, proj_hidden_dims=(512,), proj_dim=128, proj_last_bn=True,
                     pred_hidden_dims=(512,))
  return config
