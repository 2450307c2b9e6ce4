"""iBOT on the embedded digits data (configs/dino_digits.py plus masked patches).

Run:
  python -m ssljax.main --config configs/ibot_digits.py --workdir workdirs/ibot_digits

Measured 2026-11-24 (benchmarks/methods_digits.py; 2-core AVX-512 CPU, seed 0): 300 steps in 37 s
with compilation and evaluation; kNN top-1 0.847 (random init 0.764), linear probe 0.928.

common.digits_vit + common.distill_digits (as configs/dino_digits.py) plus iBOT's masked patch
distillation: block masks on 30% of the 16 patches of half of the global crops and a separate patch
head (`shared_head=False`; iBOT's ViT-S recipe shares it). The runs behind these settings:
docs/ablations.md#ibot_digits.
"""
from ssljax import config as config_lib

common = config_lib.import_sibling(__file__)   # configs/common.py


def get_config():
  config = common.distill_digits(common.digits_vit("ibot"))
  config.ibot.update(mask_ratio=0.3, mask_probability=0.5)
  return config
