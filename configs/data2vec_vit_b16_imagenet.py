"""data2vec 2.0 ViT-B/16 on ImageNet-1k.

Run:
  python -m ssljax.main --config configs/data2vec_vit_b16_imagenet.py --workdir workdirs/d2v_b16 \
      --config.data.path=/data/imagenet

"Efficient Self-supervised Learning with Contextualized Target Representations for Vision, Speech
and Language": batch 512 images x 16 masks, mask 0.8, top-10 of 12 teacher blocks, EMA 0.9998 ->
0.99999, AdamW lr 2e-3 (batch 512) with b2 0.95, weight decay 0.05, 150 epochs; reports 84.0%
fine-tuned top-1 for ViT-B (random masks here instead of the paper's inverse block masks).

ssljax has not measured this config yet (no ImageNet run has been made); numbers quoted are the paper's.
"""
from ssljax.config import base_config


def get_config():
  config = base_config(method="data2vec", model="vit")
  config.seed = 0
  config.dtype = "bfloat16"
  config.log_every = 100
  config.eval_every = 10_000
  config.checkpoint_every = 5_000
  config.param_sharding = "fsdp"
  config.model.variant = "b"
  config.model.patch_size = 16
  config.model.image_size = 224

  config.data.source = "image_folder"
  config.data.path = ""              # pass --config.data.path=/path/to/imagenet (train/ and val/)
  config.data.image_size = 224
  config.data.worker_count = 8
  aug = config.data.augment
  aug.crop_scale = (0.2, 1.0)
  aug.hflip_prob = 0.5
  aug.color_jitter_prob = 0.0
  aug.blur_prob = 0.0
  aug.grayscale_prob = 0.0
  aug.mean = (0.485, 0.456, 0.406)
  aug.std = (0.229, 0.224, 0.225)

  config.batch_size = 512
  config.total_steps = 375_300         # 150 epochs
  config.optimizer.name = "adamw"
  config.optimizer.base_lr = 1e-3      # 2e-3 at batch 512
  config.optimizer.b2 = 0.95
  config.optimizer.weight_decay = 0.05
  config.optimizer.warmup_steps = 25_020
  c = config.data2vec
  c.mask_ratio = 0.8
  c.num_masks = 16
  c.top_k = 10
  c.decoder_width = 768
  c.decoder_layers = 6
  c.decoder_groups = 16
  c.ema_start = 0.9998
  c.ema_end = 0.99999
  c.ema_anneal_steps = 75_000
  return config
