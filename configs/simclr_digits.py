"""SimCLR on the embedded digits data: the quickstart.

Run:
  python -m ssljax.main --config configs/simclr_digits.py --workdir workdirs/simclr_digits

Measured 2026-11-24 (benchmarks/methods_digits.py; 2-core AVX-512 CPU, seed 0): 300 steps in 19 s
with compilation and evaluation; kNN top-1 0.908 (random init 0.764), linear probe 0.936.

Data: scikit-learn's bundled `load_digits` (1,437 train / 360 held-out real 8x8 digits,
upsampled to 16 px), nothing downloaded. The shared digits recipe (common.digits_vit: a 3-block
ViT of width 64 with 4x4 patches, AdamW) with temperature 0.2 and a 256 -> 64 projector.
configs/simclr_resnet18_cifar10.py is the ResNet recipe. The runs behind these
settings: docs/ablations.md#simclr_digits.
"""
from ssljax import config as config_lib

common = config_lib.import_sibling(__file__)   # configs/common.py


def get_config():
  config = common.digits_vit("simclr")
  config.simclr.update(temperature=0.2, proj_hidden_dims=(256,), proj_dim=64)
  return config
