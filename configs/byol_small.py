"""BYOL for your own folder of small images (32-64 px).

Run:
  python -m ssljax.main --config configs/byol_small.py --workdir workdirs/byol_small \
      --config.data.path=DIR --config.data.image_size=32
(DIR/train/<class>/*.png and DIR/val/<class>/*.png; labels are used only for evaluation.) Other
backbones: `--config configs/byol_small.py:resnet18` (CIFAR-stem ResNet-18) or `:vit,64`.

Measured 2026-12-05 on photo_patches32 (seed 0, batch 128, 600 steps, 2-core machine): held-out
kNN 0.382 (random-init small CNN 0.327; with BatchNorm on the projector's output, the earlier
recipe: 0.342; both views through one forward, `byol.joint_view_bn`: 0.382 but 20% slower per
step here). With ssljax's XLA:CPU flags, as `python -m ssljax.main` sets them (other
convolution rounding), the same run gave 0.371 against lightly's 0.373. The target's momentum rises to 1 over total_steps, so very short runs learn little
(150 steps at batch 64: 0.321): give it 500 steps or more; lightly's BYOL with the same network
and budget: BENCHMARKS.md "Small images vs lightly".

common.small_images (small CNN, batch 256, AdamW, crops 0.2-1, flips, colour jitter, no blur) with
base_lr 5e-3 and weight decay 1e-4; BYOL's EMA target at tau 0.99 (a short run's faster target) and
a 512 -> 128 projector (no output BatchNorm) and a 512-wide predictor; each view forwarded on its
own (BatchNorm statistics per view, as the paper's code).
"""
from ssljax import config as config_lib

common = config_lib.import_sibling(__file__)   # configs/common.py


def get_config(arg=None):
  backbone, size = common.small_backbone(arg)
  config = common.small_images("byol", backbone, size)
  config.optimizer.update(base_lr=5e-3)
  config.byol.update(tau_base=0.99, proj_hidden_dims=(512,), proj_dim=128, proj_last_bn=False,
                     pred_hidden_dims=(512,))
  return config
