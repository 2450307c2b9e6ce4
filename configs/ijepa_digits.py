"""I-JEPA on the embedded digits data (the quickstart's ViT and data, 600 steps).

Run:
  python -m ssljax.main --config configs/ijepa_digits.py --workdir workdirs/ijepa_digits

Measured 2026-11-24 (benchmarks/methods_digits.py; 2-core AVX-512 CPU, seed 0): 600 steps in 65 s
with compilation and evaluation; kNN top-1 0.817 (random init 0.625), linear probe 0.872.

common.digits_vit + common.crop_only with learned position embeddings; a 2-block predictor of width
32; random masks (8 context patches predict the other 8, 4 masks per image), data2vec-style targets,
EMA 0.999 -> 1 and features from the context encoder. The runs behind these settings:
docs/ablations.md#ijepa_digits.
"""
from ssljax import config as config_lib

common = config_lib.import_sibling(__file__)   # configs/common.py


def get_config():
  config = common.crop_only(common.digits_vit("ijepa", total_steps=600))
  config.eval_every = 200
  config.checkpoint_every = 200
  config.model.posemb = "learned"
  config.ijepa.update(predictor_width=32, predictor_depth=2, predictor_heads=4, ema_start=0.999,
                      ema_end=1.0, mask="random", mask_ratio=0.5, num_masks=4, targets="data2vec",
                      target_top_k=3, feature_encoder="context")
  return config
