"""DINOv2 with a ViT-S/14 + 4 registers on ImageNet-1k (DINOv2's recipe at ImageNet scale).

Run (DATA_DIR holds train/<class>/*.JPEG and val/<class>/*.JPEG):
  python -m ssljax.main --config configs/dinov2_vit_s14_imagenet.py --workdir workdirs/dinov2_s14 \
      --config.data.path=DATA_DIR

100 epochs at global batch 1024 (125,100 steps). Settings from "DINOv2: Learning Robust Visual
Features without Supervision" (dinov2/configs/ssl_default_config.yaml and its train configs):
DINO and iBOT heads sharing 65536 prototypes, Sinkhorn-Knopp teacher targets, teacher temperature
0.04 -> 0.07 over 30 epochs, momentum 0.992 -> 1, KoLeo 0.1, masks on half of the global crops,
2 global crops of 224 px (scale 0.32-1) and 8 local crops of 98 px (0.05-0.32), AdamW at
lr 4e-3 x sqrt(batch / 1024) (= base_lr 1e-3 x batch / 256 at batch 1024), layer-wise lr decay
0.9, weight decay along a cosine from 0.04 to 0.2 (`optimizer.weight_decay_end`), clip 3.0, last
layer frozen for the first epoch, 4 registers. The paper's headline figures are for models trained
on LVD-142M (and ViT-S distilled from ViT-g), not this setting; ssljax has NOT measured this config
(no time or accuracy is claimed). Crop-specific blur / solarisation as the reference
(`data.*_view_*_prob`). Not expressible yet: a per-crop mask ratio drawn from U(0.1, 0.5) (here a
fixed 0.3).
"""
from ssljax import config as config_lib

common = config_lib.import_sibling(__file__)   # configs/common.py


def get_config():
  config = common.imagenet("dinov2", "vit", batch_size=1024, epochs=100)
  common.byol_jitter(config, blur_prob=0.5, local_blur_prob=0.5)
  steps_per_epoch = common.imagenet_steps(config.batch_size)   # 1251
  config.model.update(variant="s", patch_size=14, num_registers=4,
                      drop_path=0.1)   # student only: the teacher has no drop path
  config.optimizer.update(name="adamw", base_lr=1e-3,   # x batch/256: 4e-3 at batch 1024
                          weight_decay=0.04, weight_decay_end=0.2,
                          warmup_steps=10 * steps_per_epoch,
                          end_lr_frac=1e-6 / 4e-3, grad_clip=3.0, layer_decay=0.9)  # min_lr 1e-6
  config.dinov2.update(out_dim=65536, shared_head=True, teacher_temp=0.07,
                       warmup_teacher_temp=0.04, teacher_patch_temp=0.07,
                       warmup_teacher_patch_temp=0.04,
                       warmup_teacher_temp_steps=30 * steps_per_epoch, momentum=0.992,
                       freeze_last_layer_steps=steps_per_epoch, global_crops_scale=(0.32, 1.0),
                       local_crops=8, local_size=98, local_crops_scale=(0.05, 0.32),
                       mask_ratio=0.3, mask_probability=0.5, koleo_weight=0.1,
                       centering="sinkhorn_knopp")
  return config
