"""MAE on the embedded digits data (the quickstart's ViT and data; MAE's own block).

Run:
  python -m ssljax.main --config configs/mae_digits.py --workdir workdirs/mae_digits

Measured 2026-11-24 (benchmarks/methods_digits.py; 2-core AVX-512 CPU, seed 0): 300 steps in 19 s
with compilation and evaluation; kNN top-1 0.658 (random init 0.625), linear probe 0.797.

common.digits_vit + common.crop_only (crops only, AdamW b2 0.95, weight decay 0.05); learned
position embeddings (the fixed sin-cos table swamps 16-pixel patches), mask ratio 0.75 (4 of 16
tokens kept) and a 1-block decoder of width 64. The runs behind these settings:
docs/ablations.md#mae_digits.
"""
from ssljax import config as config_lib

common = config_lib.import_sibling(__file__)   # configs/common.py


def get_config():
  config = common.crop_only(common.digits_vit("mae"))
  config.model.posemb = "learned"
  config.mae.update(mask_ratio=0.75, decoder_width=64, decoder_depth=1, decoder_heads=4)
  return config
