"""DINO with a ViT-S/16 on ImageNet-1k: the reference's 100-epoch recipe (main_dino.py defaults).

Run (DATA_DIR holds train/<class>/*.JPEG and val/<class>/*.JPEG):
  python -m ssljax.main --config configs/dino_vit_s16_imagenet.py --workdir workdirs/dino_s16 \
      --config.data.path=DATA_DIR

100 epochs at global batch 1024 (125,100 steps). "Emerging Properties in Self-Supervised Vision
Transformers" reports for ViT-S/16 74.5% k-NN / 77.0% linear after 800 epochs with this family of
settings; ssljax has NOT measured this config yet (no time or figure is claimed for it). Weight
decay follows the reference's cosine from 0.04 to 0.4 (`optimizer.weight_decay_end`); the crops
are the reference's: global crop 1 always blurred, crop 2 blurred with p=0.1 and solarised with
p=0.2, local crops blurred with p=0.5 (`data.*_view_*_prob`). Difference from the reference that
ssljax cannot express yet: global-norm instead of per-tensor gradient clipping.
"""
from ssljax import config as config_lib

common = config_lib.import_sibling(__file__)   # configs/common.py


def get_config():
  config = common.imagenet("dino", "vit", batch_size=1024, epochs=100)
  common.byol_jitter(config, blur_prob=0.5, local_blur_prob=0.5)
  config.model.update(variant="s", drop_path=0.1)   # student only: the teacher has no drop path
  config.optimizer.update(name="adamw", base_lr=5e-4,   # x batch/256
                          weight_decay=0.04, weight_decay_end=0.4,
                          warmup_steps=10 * common.imagenet_steps(1024),
                          end_lr_frac=1e-6 / 2e-3, grad_clip=3.0)   # min_lr 1e-6
  config.dino.update(out_dim=65536, teacher_temp=0.04, warmup_teacher_temp=0.04, momentum=0.996,
                     freeze_last_layer_steps=common.imagenet_steps(1024),
                     global_crops_scale=(0.4, 1.0), local_crops=8, local_size=96,
                     local_crops_scale=(0.05, 0.4))
  return config
