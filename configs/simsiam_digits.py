"""SimSiam on the embedded digits data (the quickstart's recipe, 500 steps).

Run:
  python -m ssljax.main --config configs/simsiam_digits.py --workdir workdirs/simsiam_digits

Measured 2026-11-24 (benchmarks/methods_digits.py; 2-core AVX-512 CPU, seed 0): 500 steps in 29 s
with compilation and evaluation; kNN top-1 0.900 (random init 0.764), linear probe 0.922.

common.digits_vit with base_lr 5e-3, weight decay 0.05 and the paper's heads scaled down: a 3-layer
projector with output BatchNorm and a 2x bottleneck predictor (128 -> 64 -> 128). The runs behind
these settings: docs/ablations.md#simsiam_digits.
"""
from ssljax import config as config_lib

common = config_lib.import_sibling(__file__)   # configs/common.py


def get_config():
  config = common.digits_vit("simsiam", total_steps=500)
  config.optimizer.update(base_lr=5e-3, weight_decay=0.05)
  config.simsiam.update(proj_hidden_dims=(256, 256), proj_dim=128, pred_hidden_dims=(64,))
  return config
