"""DINO for your own folder of small images (32-64 px).

Run:
  python -m ssljax.main --config configs/dino_small.py --workdir workdirs/dino_small \
      --config.data.path=DIR --config.data.image_size=32
(DIR/train/<class>/*.png and DIR/val/<class>/*.png; labels are used only for evaluation.) Other
backbones: `--config configs/dino_small.py:resnet18` (CIFAR-stem ResNet-18) or `:vit,64`.

Measured on the embedded tasks, side by side with lightly's DINO on the same network, budget and
rates: BENCHMARKS.md, "Small images vs lightly". For digits, letters and symbols use `:glyphs` (no
flips, larger crops): without it DINO falls below its random init on clutter_digits32. The
teacher's momentum rises to 1 over total_steps, so very short runs learn little: give it 300 steps
or more.

common.small_images (small CNN standardising each image at its input, batch 256, AdamW, crops,
flips, colour jitter, no blur) with DINO's recipe scaled down as for the digits
(common.distill_digits: a 1024-prototype head with BatchNorm in its MLP, teacher temperature 0.04,
momentum 0.99, clip 3.0; DINO's weight decay 0.04 for `:vit`, the small recipe's 1e-4 for the
CNNs), base_lr 3e-3 for the small CNN (the digits' 5e-3 for `:resnet18` and `:vit`, not measured on
small images), 2 global crops of scale 0.2-1 (the small recipe's crops) and no local crops. The
runs behind these settings: docs/ablations.md#dino_small.
"""
from ssljax import config as config_lib

common = config_lib.import_sibling(__file__)   # configs/common.py


def get_config(arg=None):
  backbone, size, glyphs = common.small_args(arg)
  config = common.distill_digits(common.small_images("dino", backbone, size))
  config.dino.update(global_crops_scale=(0.2, 1.0), local_crops=0, local_size=max(8, size // 2),
                     freeze_last_layer_steps=0)
  if backbone != "vit":
    config.optimizer.weight_decay = 1e-4
  if backbone == "small_cnn":
    config.optimizer.base_lr = 3e-3
  return common.glyph_views(config) if glyphs else config
