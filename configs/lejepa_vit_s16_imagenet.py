"""LeJEPA ViT-S/16 on ImageNet-1k.

Run:
  python -m ssljax.main --config configs/lejepa_vit_s16_imagenet.py --workdir workdirs/lejepa_s16 \
      --config.data.path=/data/imagenet

"LeJEPA: Provable and Scalable Self-Supervised Learning Without the Heuristics": 2 global 224 px +
6 local 96 px crops, projector (2048, 2048) -> 128, lamb 0.05, AdamW lr 5e-4, weight decay 0.05,
DINO-style augmentations.

ssljax has not measured this config yet (no ImageNet run has been made); numbers quoted are the
paper's."""
from ssljax import config as config_lib

common = config_lib.import_sibling(__file__)   # configs/common.py


def get_config():
  config = common.masked_vit_imagenet("lejepa", "s", batch_size=512,
                                      total_steps=250_200)   # 100 epochs
  config.data.augment.crop_scale = (0.3, 1.0)
  config.optimizer.update(base_lr=2.5e-4, weight_decay=0.05,   # 5e-4 at batch 512
                          warmup_steps=25_020)
  config.lejepa.update(lamb=0.05, global_crops=2, global_scale=(0.3, 1.0), local_crops=6,
                       local_size=96, local_scale=(0.05, 0.3), proj_hidden_dims=(2048, 2048),
                       proj_dim=128)
  return config
