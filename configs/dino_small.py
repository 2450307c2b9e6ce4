"""DINO for your own folder of small images (32-64 px).

Run:
  python -m ssljax.main --config configs/dino_small.py --workdir workdirs/dino_small \
      --config.data.path=DIR --config.data.image_size=32
(DIR/train/<class>/*.png and DIR/val/<class>/*.png; labels are used only for evaluation.) Other
backbones: `--config configs/dino_small.py:resnet18` (CIFAR-stem ResNet-18) or `:vit,64`.

Measured 2026-12-06 on photo_patches32 (batch 128, 600 steps, 2-core AVX-512 CPU, side by side with
lightly: BENCHMARKS.md "Small images vs lightly"): held-out kNN 0.546 over seeds 0-3 (0.547, 0.534,
0.554, 0.550; random-init small CNN 0.379 / 0.342 / 0.394 / 0.401), lightly's DINO with the same
network, budget and rates 0.549 (0.548, 0.538, 0.550, 0.561). With `:glyphs` (no flips, crops 0.4-1)
on clutter_digits32: 0.524 (0.518, 0.499, 0.532, 0.549; random init 0.390 / 0.396 / 0.372 / 0.358;
lightly 0.503: 0.526, 0.526, 0.457, 0.503); without `:glyphs` it falls below its random init there
(0.349 after 300 steps, seed 0). At 64 px (300 steps, 2026-12-07): photo_patches64, seeds 0 and 1,
0.616 (0.611, 0.621) vs lightly's 0.607 (0.624, 0.590); clutter_digits64 with `:glyphs`, seeds 0 and
1, 0.411 (0.396, 0.426; random init 0.338, 0.322) vs lightly's 0.418 (0.467, 0.369): one side's
seeds differ by up to 0.1 there. base_lr 3e-3 for the small CNN: at 5e-3 (the
digits rate) 0.533 / 0.532 and 0.500 / 0.461 in the same settings; on clutter_digits32:glyphs at
seed 0, 2e-3 gave 0.519 (3e-3: 0.518), 8e-3 0.482, momentum 0.996 0.463 and teacher temperature
0.06 0.457 (at 5e-3); PyTorch's conv initialisation (`model.conv_init='torch'`) 0.479. The
teacher's momentum rises to 1 over total_steps, so very short runs learn little (150 steps at batch
64: 0.331, before the input standardisation): give it 300 steps or more. README, "Your own
images".

common.small_images (small CNN standardising each image at its input, batch 256, AdamW, crops,
flips, colour jitter, no blur) with DINO's recipe scaled down as for the digits
(common.distill_digits: a 1024-prototype head with BatchNorm in its MLP, teacher temperature 0.04,
momentum 0.99, weight decay 0.04, clip 3.0), base_lr 3e-3 for the small CNN (the digits' 5e-3 for
`:resnet18` and `:vit`, not measured on small images), 2 global crops of scale 0.2-1 (the small
recipe's crops; 0.3-1: 0.398 against 0.403 at seed 0, before the input standardisation) and no
local crops.
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
