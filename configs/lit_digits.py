"""LiT on the embedded captioned digits: a text tower tuned to a locked, pretrained image tower.

Run (first pretrain an image tower on the same images, any image method, e.g. DINO):
  python -m ssljax.main --config configs/dino_digits.py --workdir workdirs/dino_cd \\
      --config.data.source=captioned_digits --config.data.synthetic_size=24 \\
      --config.data.image_size=24 --config.model.image_size=24
  python -m ssljax.main --config configs/lit_digits.py --workdir workdirs/lit_digits \\
      --config.lit.image_tower=workdirs/dino_cd

`lit.image_tower` is that workdir (or an export folder from `python -m ssljax.export`); the
image tower's model keys must match this config's (`config.model`). Only the text tower and the
loss's scale train. eval.json: zero-shot top-1 and retrieval R@k; compare with the locked
tower's own linear probe (`linear_top1` of the same eval.json).

Measured 2026-12-04 (benchmarks/image_text_digits.py, seed 0, under load: 1,369 s with the
tower's 300 DINO steps): zero-shot top-1 0.178 (random text tower 0.086), image->text R@1 0.269
(0.006), against the locked DINO tower's linear probe of 0.314 (its kNN 0.189): LiT learns, but
is not yet within a few points of the tower's probe (base_lr 3e-3 gave 0.206; SigLIP's loss,
`lit.loss='siglip'`, 0.097).
"""
from ssljax import config as config_lib

common = config_lib.import_sibling(__file__)   # configs/common.py


def get_config():
  config = common.captioned_digits_vit("lit")
  return config
