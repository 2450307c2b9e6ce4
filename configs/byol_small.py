"""BYOL for your own folder of small images (32-64 px).

Run:
  python -m ssljax.main --config configs/byol_small.py --workdir workdirs/byol_small \
      --config.data.path=DIR --config.data.image_size=32
(DIR/train/<class>/*.png and DIR/val/<class>/*.png; labels are used only for evaluation.) Other
backbones: `--config configs/byol_small.py:resnet18` (CIFAR-stem ResNet-18) or `:vit,64`.

Measured on the embedded tasks, side by side with lightly's BYOL on the same network, budget and
rate: BENCHMARKS.md, "Small images vs lightly". For digits, letters and symbols use `:glyphs` (no
flips, larger crops): with the default views BYOL falls below its random init on clutter_digits32.
Digits at 64 px (`:glyphs,64`) train the predictor at 10x the rate (`optimizer.lr_scales`): with
one rate for all, BYOL on clutter_digits64 needed 600 steps to end above its random init and stayed
short of lightly's BYOL there. Elsewhere the predictor keeps the common rate (the 10x is not
measured there).
The target's momentum rises to 1 over total_steps, so very short runs learn little: give it 300
steps or more.

common.small_images (small CNN standardising each image at its input, batch 256, AdamW, crops 0.2-1,
flips, colour jitter, no blur) with base_lr 5e-3 and weight decay 1e-4; BYOL's EMA target at tau
0.99 (a short run's faster target) and a 512 -> 128 projector (no output BatchNorm) and a 512-wide
predictor; each view forwarded on its own (BatchNorm statistics per view, as the paper's code). The
runs behind these settings: docs/ablations.md#byol_small.
"""
from ssljax import config as config_lib

common = config_lib.import_sibling(__file__)   # configs/common.py


def get_config(arg=None):
  backbone, size, glyphs = common.small_args(arg)
  config = common.small_images("byol", backbone, size)
  config.optimizer.update(base_lr=5e-3)
  config.byol.update(tau_base=0.99, proj_hidden_dims=(512,), proj_dim=128, proj_last_bn=False,
                     pred_hidden_dims=(512,))
  if not glyphs:
    return config
  if size > 48:   # digits at 64 px: the predictor at 10x the rate (measured there only)
    config.optimizer.lr_scales = "predictor:10"
  return common.glyph_views(config)
