"""MAE ViT-B/16 on ImageNet-1k, the paper's 800-epoch recipe.

Run:
  python -m ssljax.main --config configs/mae_vit_b16_imagenet.py --workdir workdirs/mae_b16 \
      --config.data.path=/data/imagenet
  python -m ssljax.finetune --workdir workdirs/mae_b16 --steps 125000 --layer_decay 0.65

"Masked Autoencoders Are Scalable Vision Learners": batch 4096, AdamW (0.9, 0.95), base lr 1.5e-4,
weight decay 0.05, 40 warm-up epochs, mask 0.75, decoder 8 x 512; reports 83.6% fine-tuned top-1
(68.0% linear) for ViT-B after 1600 epochs.

ssljax has not measured this config yet (no ImageNet run has been made); numbers quoted are the
paper's."""
from ssljax import config as config_lib

common = config_lib.import_sibling(__file__)   # configs/common.py


def get_config():
  config = common.masked_vit_imagenet("mae", "b", batch_size=4096,
                                      total_steps=250_200)   # 800 epochs of 1,281,167 images
  common.crop_only(config)
  config.data.augment.crop_scale = (0.2, 1.0)
  config.optimizer.update(base_lr=1.5e-4, warmup_steps=12_510)
  config.mae.update(mask_ratio=0.75, decoder_width=512, decoder_depth=8, decoder_heads=16,
                    norm_pix=True)
  return config
