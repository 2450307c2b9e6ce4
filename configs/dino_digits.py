"""DINO on the embedded digits data (a tiny ViT on CPU).

Run:
  python -m ssljax.main --config configs/dino_digits.py --workdir workdirs/dino_digits

Measured 2026-11-24 (benchmarks/methods_digits.py; 2-core AVX-512 CPU, seed 0): 300 steps in 27 s
with compilation and evaluation; kNN top-1 0.903 (random init 0.764), linear probe 0.919.

common.digits_vit + common.distill_digits: DINO's recipe scaled to 16 px digits and a few hundred
steps (BatchNorm in the head's MLP, 2 global crops and no local crops, base_lr 5e-3, teacher
temperature 0.04, momentum 0.99, weight decay 0.04, clip 3.0). The runs behind these settings:
docs/ablations.md#dino_digits.
"""
from ssljax import config as config_lib

common = config_lib.import_sibling(__file__)   # configs/common.py


def get_config():
  return common.distill_digits(common.digits_vit("dino"))
