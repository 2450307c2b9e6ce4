"""LeJEPA ViT-S/16 on ImageNet-1k.

Run:
  python -m ssljax.main --config configs/lejepa_vit_s16_imagenet.py --workdir workdirs/lejepa_s16 \
      --config.data.path=/data/imagenet

"LeJEPA: Provable and Scalable Self-Supervised Learning Without the Heuristics": 2 global 224 px +
6 local 96 px crops, projector (2048, 2048) -> 128, lamb 0.05, AdamW lr 5e-4, weight decay 0.05,
DINO-style augmentations.

ssljax has not measured this config yet (no ImageNet run has been made); numbers quoted are the paper's.
"""
from ssljax.config import base_config


def get_config():
  config = base_config(method="lejepa", model="vit")
  config.seed = 0
  config.dtype = "bfloat16"
  config.log_every = 100
  config.eval_every = 10_000
  config.checkpoint_every = 5_000
  config.param_sharding = "fsdp"
  config.model.variant = "s"
  config.model.patch_size = 16
  config.model.image_size = 224

  config.data.source = "image_folder"
  config.data.path = ""              # pass --config.data.path=/path/to/imagenet (train/ and val/)
  config.data.image_size = 224
  config.data.worker_count = 8
  aug = config.data.augment
  aug.crop_scale = (0.3, 1.0)
  aug.hflip_prob = 0.5
  aug.color_jitter_prob = 0.8
  aug.blur_prob = 0.5
  aug.grayscale_prob = 0.2
  aug.mean = (0.485, 0.456, 0.406)
  aug.std = (0.229, 0.224, 0.225)

  config.batch_size = 512
  config.total_steps = 250_200         # 100 epochs
  config.optimizer.name = "adamw"
  config.optimizer.base_lr = 2.5e-4    # 5e-4 at batch 512
  config.optimizer.weight_decay = 0.05
  config.optimizer.warmup_steps = 25_020
  c = config.lejepa
  c.lamb = 0.05
  c.global_crops = 2
  c.global_scale = (0.3, 1.0)
  c.local_crops = 6
  c.local_size = 96
  c.local_scale = (0.05, 0.3)
  c.proj_hidden_dims = (2048, 2048)
  c.proj_dim = 128
  return config
