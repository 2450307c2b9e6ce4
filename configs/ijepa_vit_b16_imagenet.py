"""I-JEPA ViT-B/16 on ImageNet-1k (the paper's ViT-H/14 recipe scaled to B/16).

Run:
  python -m ssljax.main --config configs/ijepa_vit_b16_imagenet.py --workdir workdirs/ijepa_b16 \
      --config.data.path=/data/imagenet

"Self-Supervised Learning from Images with a Joint-Embedding Predictive Architecture": batch 2048,
AdamW lr 1e-3, weight decay 0.04 (the paper ramps it to 0.4), 40 warm-up epochs, EMA 0.996 -> 1,
predictor depth 12 width 384, crop (0.3, 1) only, 300 epochs; reports 72.9% linear for ViT-B/16
(600 epochs) and 77.3% for ViT-H/14.

ssljax has not measured this config yet (no ImageNet run has been made); numbers quoted are the
paper's."""
from ssljax import config as config_lib

common = config_lib.import_sibling(__file__)   # configs/common.py


def get_config():
  config = common.masked_vit_imagenet("ijepa", "b", batch_size=2048,
                                      total_steps=187_650)   # 300 epochs
  common.crop_only(config)
  config.model.pool = "gap"
  config.data.augment.crop_scale = (0.3, 1.0)
  config.optimizer.update(base_lr=1.25e-4, b2=0.999, weight_decay=0.04,   # 1e-3 at batch 2048
                          warmup_steps=25_020)
  config.ijepa.update(predictor_width=384, predictor_depth=12, predictor_heads=12,
                      ema_start=0.996, ema_end=1.0)
  return config
