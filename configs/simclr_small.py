"""SimCLR for your own folder of small images (32-64 px): start here.

Run:
  python -m ssljax.main --config configs/simclr_small.py --workdir workdirs/simclr_small \
      --config.data.path=DIR --config.data.image_size=32
(DIR/train/<class>/*.png and DIR/val/<class>/*.png; labels are used only for evaluation.) Other
backbones: `--config configs/simclr_small.py:resnet18` (CIFAR-stem ResNet-18) or `:vit,64`.

Measured on the embedded tasks at 32 and 64 px (`python -m ssljax.data.benchmarks --task
photo_patches32 --out DIR`, ...), side by side with lightly's SimCLR on the same network, budget and
rate: BENCHMARKS.md, "Small images vs lightly". tests/test_small_learning.py checks that 150 steps
at batch 64 beat the random-init backbone (seeds 0 and 1).

common.small_images (small CNN standardising each image at its input, batch 256, AdamW, crops 0.2-1,
flips, colour jitter, no blur) with base_lr 4e-3 for the small CNN (2.7e-3 for the ResNet-18 and
ViT, not re-swept), temperature 0.2 and a 512 -> 128 projector with BatchNorm on its output too
(SimCLR v2's head, and lightly's SimCLRProjectionHead: it learns faster in short runs). The runs
behind these settings: docs/ablations.md#simclr_small.
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
