"""SigLIP on the embedded captioned digits (image-text; a few minutes on a CPU).

Run:
  python -m ssljax.main --config configs/siglip_digits.py --workdir workdirs/siglip_digits

The recipe of configs/clip_digits.py with the sigmoid loss (learned t' = log 10 and b = -10 at
initialisation, the paper's values). eval.json: zero-shot top-1 and retrieval R@k.
"""
from ssljax import config as config_lib

common = config_lib.import_sibling(__file__)   # configs/common.py


def get_config():
  return common.captioned_digits_vit("siglip")
