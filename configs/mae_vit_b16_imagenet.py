"""MAE ViT-B/16 on ImageNet-1k, the paper's 800-epoch recipe.

Run:
  python -m ssljax.main --config configs/mae_vit_b16_imagenet.py --workdir workdirs/mae_b16 \
      --config.data.path=/data/imagenet
  python -m ssljax.finetune --workdir workdirs/mae_b16 --steps 125000 --layer_decay 0.65

"Masked Autoencoders Are Scalable Vision Learners": batch 4096, AdamW (0.9, 0.95), base lr 1.5e-4,
weight decay 0.05, 40 warm-up epochs, mask 0.75, decoder 8 x 512; reports 83.6% fine-tuned top-1
(68.0% linear) for ViT-B after 1600 epochs.

ssljax has not measured this config yet (no ImageNet run has been made); numbers quoted are the paper's.
"""
from ssljax.config import base_config


def get_config():
  config = base_config(method="mae", model="vit")
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

  config.batch_size = 4096
  config.total_steps = 250_200         # 800 epochs of 1,281,167 images
  config.optimizer.name = "adamw"
  config.optimizer.base_lr = 1.5e-4
  config.optimizer.b2 = 0.95
  config.optimizer.weight_decay = 0.05
  config.optimizer.warmup_steps = 12_510
  config.mae.mask_ratio = 0.75
  config.mae.decoder_width = 512
  config.mae.decoder_depth = 8
  config.mae.decoder_heads = 16
  config.mae.norm_pix = True
  return config
