"""data2vec 2.0 on the embedded digits data (the quickstart's ViT and data).

Run:
  python -m ssljax.main --config configs/data2vec_digits.py --workdir workdirs/data2vec_digits

Measured 2026-11-24 (benchmarks/methods_digits.py; 2-core AVX-512 CPU, seed 0): 300 steps in 36 s
with compilation and evaluation; kNN top-1 0.772 (random init 0.706), linear probe 0.919.

common.digits_vit + common.crop_only; 4 masked copies per image at ratio 0.5 (the paper: 16 at 0.8
on 196 tokens), targets = the FFN outputs of all 3 teacher blocks, a 2-layer conv decoder of width
64, EMA 0.996 -> 0.999 (the paper's 0.9998 -> 0.99999 is for ~10^5 steps). The runs behind these
settings: docs/ablations.md#data2vec_digits.
"""
from ssljax import config as config_lib

common = config_lib.import_sibling(__file__)   # configs/common.py


def get_config():
  config = common.crop_only(common.digits_vit("data2vec"))
  config.data2vec.update(mask_ratio=0.5, num_masks=4, top_k=3, target_source="ffn",
                         feature_encoder="student", decoder_width=64, decoder_layers=2,
                         decoder_groups=8, ema_start=0.996, ema_end=0.999)
  return config
