"""CLIP on the embedded captioned digits (image-text; a few minutes on a CPU).

Run:
  python -m ssljax.main --config configs/clip_digits.py --workdir workdirs/clip_digits

Data: `captioned_digits` (ssljax.data.paired): the real 8x8 digits on 24 px colour canvases with
templated captions; the held-out split has held-out digit images and (digit, colour) pairs never
seen in training. eval.json gets zero-shot top-1 (10 digit classes, prompt ensemble) and
retrieval R@1/5/10 both ways, with the random-init towers' values beside them. The recipe:
configs/common.py `captioned_digits_vit`.

Measured 2026-12-04 (benchmarks/image_text_digits.py, seed 0, on the project's 2-core machine
while other jobs ran: 846 s with compilation and evaluation): held-out zero-shot top-1 0.697
(random-init towers 0.097), image->text R@1 0.639 (0.017), text->image R@1 0.678; the image
tower's kNN 0.494 and linear probe 0.708.
"""
from ssljax import config as config_lib

common = config_lib.import_sibling(__file__)   # configs/common.py


def get_config():
  return common.captioned_digits_vit("clip")
