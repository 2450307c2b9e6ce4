"""SimCLR for your own folder of small images (32-64 px): start here.

Run:
  python -m ssljax.main --config configs/simclr_small.py --workdir workdirs/simclr_small \
      --config.data.path=DIR --config.data.image_size=32
(DIR/train/<class>/*.png and DIR/val/<class>/*.png; labels are used only for evaluation.) Other
backbones: `--config configs/simclr_small.py:resnet18` (CIFAR-stem ResNet-18) or `:vit,64`.

Measured on photo_patches32 (`python -m ssljax.data.benchmarks --task photo_patches32 --out DIR`;
raw pixels 0.267) and clutter_digits32 (raw pixels 0.415), 2-core AVX-512 CPU, side by side with
lightly at 200 steps, batch 128, seeds 0-4, both sides at this rate (BENCHMARKS.md "Small images vs
lightly", 2026-12-07): held-out kNN 0.569 vs lightly's 0.574 and 0.616 vs 0.605 (random-init small
CNN about 0.38 and 0.39). At the rate before (2.7e-3, lightly at 2e-3) the same runs reached 0.565
vs 0.568 and 0.601 vs 0.599; before the small CNN standardised each image at its input
(model.input_norm) 0.467 vs 0.474 and 0.430 vs 0.442. At 64 px (seeds 0 and 1, 2026-12-07, both at
this rate): photo_patches64 0.657 vs 0.667, clutter_digits64 0.597 vs 0.605 (before the
standardisation, seed 0: 0.514 vs 0.496 and 0.343 vs 0.344). tests/test_small_learning.py checks
150 steps at batch 64 (seeds 0 and 1). The full 1,000-step budget is not measured yet.

common.small_images (small CNN standardising each image at its input, batch 256, AdamW, crops 0.2-1,
flips, colour jitter, no blur) with base_lr 4e-3, temperature 0.2 and a 512 -> 128 projector with
BatchNorm on its output too (SimCLR v2's head, and lightly's SimCLRProjectionHead: it learns faster
in short runs, kNN 0.441 vs 0.393 after 80 steps at batch 128, seed 0). The rate: held-out kNN
after 200 steps at batch 128, mean of seeds 0-2, photo_patches32 / clutter_digits32 (ssljax's side
of benchmarks/small_images.py, 2026-12-07): 2.7e-3 0.562 / 0.601, 4e-3 0.564 / 0.621, 5.5e-3
0.569 / 0.598; 4e-3 has the best mean of the two and beats 2.7e-3 on both (small CNN; the
ResNet-18 and ViT backbones keep 2.7e-3, not re-swept). Swept before the input
standardisation (2026-12-05): 2e-3 0.468 / 0.417, 2.7e-3 0.467 / 0.430, 3.5e-3 0.452 / 0.451; 5e-3
and 7e-3 on clutter_digits32 seeds 0-1: 0.443 and 0.432.
"""
from ssljax import config as config_lib

common = config_lib.import_sibling(__file__)   # configs/common.py


def get_config(arg=None):
  backbone, size, glyphs = common.small_args(arg)
  config = common.small_images("simclr", backbone, size)
  # The rate was re-swept for the small CNN only; the other backbones keep the one before.
  config.optimizer.update(base_lr=4e-3 if backbone == "small_cnn" else 2.7e-3)
  config.simclr.update(temperature=0.2, proj_hidden_dims=(512,), proj_dim=128, proj_last_bn=True)
  return common.glyph_views(config) if glyphs else config
