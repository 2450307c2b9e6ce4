"""BYOL for your own folder of small images (32-64 px).

Run:
  python -m ssljax.main --config configs/byol_small.py --workdir workdirs/byol_small \
      --config.data.path=DIR --config.data.image_size=32
(DIR/train/<class>/*.png and DIR/val/<class>/*.png; labels are used only for evaluation.) Other
backbones: `--config configs/byol_small.py:resnet18` (CIFAR-stem ResNet-18) or `:vit,64`.

Measured 2026-12-06 on photo_patches32 (batch 128, 600 steps, 2-core AVX-512 CPU, side by side with
lightly: BENCHMARKS.md "Small images vs lightly"): held-out kNN 0.536 and 0.535 at seeds 0 and 1
(random-init small CNN 0.379 / 0.342), lightly's BYOL with the same network and budget 0.517 /
0.537. Before the small CNN standardised each image at its input: 0.382 at seed 0 (random init
0.327; with BatchNorm on the projector's output, the earlier recipe, 0.342; both views through one
forward, `byol.joint_view_bn`, 0.382 but 20% slower per step). The target's momentum rises to 1 over
total_steps, so very short runs learn little (150 steps at batch 64: 0.321, before the
standardisation; with it, 300 steps at batch 128 reach 0.472, seed 0): give it 300 steps or more.
On clutter_digits32 it falls below its random init with these views (0.265 after 300 steps, seed 0;
random init 0.390); with `:glyphs` (no flips, crops 0.4-1) it reaches 0.410 / 0.458 at seeds 0 / 1
after 600 steps (random init 0.390 / 0.396; lightly's BYOL 0.426 / 0.372 from 0.425 / 0.404).
At 64 px (300 steps, seeds 0 and 1, 2026-12-07) on photo_patches64: 0.591 (0.574, 0.608) vs
lightly's 0.587 (0.588, 0.586). Not yet at 64 px on digits: on clutter_digits64 with `:glyphs` it
falls below its random init after 300 steps (seeds 0, 1), is back above it by 600 (seeds 0-2), stays
short of lightly's BYOL (BENCHMARKS.md, "Small images vs lightly": the row and the notes, with the
six recipe changes tried): start from SimCLR there. README, "Your own images".

common.small_images (small CNN standardising each image at its input, batch 256, AdamW, crops 0.2-1,
flips, colour jitter, no blur) with base_lr 5e-3 and weight decay 1e-4; BYOL's EMA target at tau
0.99 (a short run's faster target) and a 512 -> 128 projector (no output BatchNorm) and a 512-wide
predictor; each view forwarded on its own (BatchNorm statistics per view, as the paper's code).
"""
from ssljax import config as config_lib

common = config_lib.import_sibling(__file__)   # configs/common.py


def get_config(arg=None):
  backbone, size, glyphs = common.small_args(arg)
  config = common.small_images("byol", backbone, size)
  config.optimizer.update(base_lr=5e-3)
  config.byol.update(tau_base=0.99, proj_hidden_dims=(512,), proj_dim=128, proj_last_bn=False,
                     pred_hidden_dims=(512,))
  return common.glyph_views(config) if glyphs else config
