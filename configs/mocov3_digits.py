"""MoCo v3 on the embedded digits data (the quickstart's recipe).

Run:
  python -m ssljax.main --config configs/mocov3_digits.py --workdir workdirs/mocov3_digits

Measured 2026-11-24 (benchmarks/methods_digits.py; 2-core AVX-512 CPU, seed 0): 300 steps in 23 s
with compilation and evaluation; kNN top-1 0.889 (random init 0.764), linear probe 0.925.

common.digits_vit with the paper's ViT recipe scaled down: T 0.2, momentum 0.99 increased to 1 along
a cosine, 3-layer projector and 2-layer predictor, frozen random patch projection. About twice
SimCLR's step time (two encoders, views forwarded separately). The runs behind these settings:
docs/ablations.md#mocov3_digits.
"""
from ssljax import config as config_lib

common = config_lib.import_sibling(__file__)   # configs/common.py


def get_config():
  config = common.digits_vit("mocov3")
  config.mocov3.update(temperature=0.2, momentum_base=0.99, proj_hidden_dims=(256, 256),
                       proj_dim=64, pred_hidden_dims=(256,), freeze_patch_embed=True)
  return config
