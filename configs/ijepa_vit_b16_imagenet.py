"""I-JEPA ViT-B/16 on ImageNet-1k (the paper's ViT-H/14 recipe scaled to B/16).

Run:
  python -m ssljax.main --config configs/ijepa_vit_b16_imagenet.py --workdir workdirs/ijepa_b16 \
      --config.data.path=/data/imagenet

"Self-Supervised Learning from Images with a Joint-Embedding Predictive Architecture": batch 2048,
AdamW lr 1e-3, weight decay 0.04 (the paper ramps it to 0.4), 40 warm-up epochs, EMA 0.996 -> 1,
predictor depth 12 width 384, crop (0.3, 1) only, 300 epochs; reports 72.9% linear for ViT-B/16
(600 epochs) and 77.3% for ViT-H/14.

ssljax has not measured this config yet (no ImageNet run has been made); numbers quoted are the paper's.
"""
from ssljax.config import base_config


def get_config():
  config = base_config(method="ijepa", model="vit")
  config.seed = 0
  config.dtype = "bfloat16"
  config.log_every = 100
  config.eval_every = 10_000
  config.checkpoint_every = 5_000
  config.param_sharding = "fsdp"
  config.model.variant = "b"
  config.model.patch_size = 16
  config.model.pool = "gap"
  config.model.image_size = 224

  config.data.source = "image_folder"
  config.data.path = ""              # pass --config.data.path=/path/to/imagenet (train/ and val/)
  config.data.image_size = 224
  config.data.worker_count = 8
  aug = config.data.augment
  aug.crop_scale = (0.3, 1.0)
  aug.hflip_prob = 0.5
  aug.color_jitter_prob = 0.0
  aug.blur_prob = 0.0
  aug.grayscale_prob = 0.0
  aug.mean = (0.485, 0.456, 0.406)
  aug.std = (0.229, 0.224, 0.225)

  config.batch_size = 2048
  config.total_steps = 187_650         # 300 epochs
  config.optimizer.name = "adamw"
  config.optimizer.base_lr = 1.25e-4   # 1e-3 at batch 2048
  config.optimizer.weight_decay = 0.04
  config.optimizer.warmup_steps = 25_020
  c = config.ijepa
  c.predictor_width = 384
  c.predictor_depth = 12
  c.predictor_heads = 12
  c.ema_start = 0.996
  c.ema_end = 1.0
  return config
