"""DINOv2 with a ViT-S/14 + 4 registers on ImageNet-1k (DINOv2's recipe at ImageNet scale).

Run (DATA_DIR holds train/<class>/*.JPEG and val/<class>/*.JPEG):
  python -m ssljax.main --config configs/dinov2_vit_s14_imagenet.py --workdir workdirs/dinov2_s14 \
      --config.data.path=DATA_DIR

100 epochs at global batch 1024 (125,100 steps). Settings from "DINOv2: Learning Robust Visual
Features without Supervision" (dinov2/configs/ssl_default_config.yaml and its train configs):
DINO and iBOT heads sharing 65536 prototypes, Sinkhorn-Knopp teacher targets, teacher temperature
0.04 -> 0.07 over 30 epochs, momentum 0.992 -> 1, KoLeo 0.1, masks on half of the global crops,
2 global crops of 224 px (scale 0.32-1) and 8 local crops of 98 px (0.05-0.32), AdamW at
lr 4e-3 x sqrt(batch / 1024) (= base_lr 1e-3 x batch / 256 at batch 1024), layer-wise lr decay 0.9,
weight decay 0.04, clip 3.0, last layer frozen for the first epoch, 4 registers. The paper's headline
figures are for models trained on LVD-142M (and ViT-S distilled from ViT-g), not this setting; ssljax
has NOT measured this config (no time or accuracy is claimed). Not expressible yet: the weight-decay
cosine 0.04 -> 0.2, a per-crop mask ratio drawn from U(0.1, 0.5) (here a fixed 0.3), and
crop-specific blur/solarisation.
"""
from ssljax.config import base_config

_STEPS_PER_EPOCH = 1_281_167 // 1024   # 1251


def get_config():
  config = base_config(method="dinov2", model="vit")
  config.seed = 0
  config.batch_size = 1024
  config.total_steps = 100 * _STEPS_PER_EPOCH
  config.log_every = 100
  config.eval_every = 10 * _STEPS_PER_EPOCH
  config.checkpoint_every = 2_000
  config.dtype = "bfloat16"

  config.model.variant = "s"
  config.model.patch_size = 14
  config.model.image_size = 224
  config.model.num_registers = 4
  config.model.drop_path = 0.1       # student only: the teacher runs without stochastic depth

  config.data.source = "image_folder"
  config.data.train_split = "train"
  config.data.eval_split = "val"
  config.data.image_size = 224
  config.data.worker_count = 16
  aug = config.data.augment
  aug.hflip_prob = 0.5
  aug.color_jitter_prob = 0.8
  aug.brightness, aug.contrast, aug.saturation, aug.hue = 0.4, 0.4, 0.2, 0.1
  aug.grayscale_prob = 0.2
  aug.blur_prob = 0.5
  aug.solarize_prob = 0.1
  aug.mean = (0.485, 0.456, 0.406)
  aug.std = (0.229, 0.224, 0.225)

  config.optimizer.name = "adamw"
  config.optimizer.base_lr = 1e-3         # x batch/256: 4e-3 at batch 1024
  config.optimizer.weight_decay = 0.04
  config.optimizer.warmup_steps = 10 * _STEPS_PER_EPOCH
  config.optimizer.end_lr_frac = 1e-6 / 4e-3   # min_lr 1e-6
  config.optimizer.grad_clip = 3.0
  config.optimizer.layer_decay = 0.9

  v2 = config.dinov2
  v2.out_dim = 65536
  v2.shared_head = True
  v2.teacher_temp = 0.07
  v2.warmup_teacher_temp = 0.04
  v2.teacher_patch_temp = 0.07
  v2.warmup_teacher_patch_temp = 0.04
  v2.warmup_teacher_temp_steps = 30 * _STEPS_PER_EPOCH
  v2.momentum = 0.992
  v2.freeze_last_layer_steps = _STEPS_PER_EPOCH
  v2.global_crops_scale = (0.32, 1.0)
  v2.local_crops = 8
  v2.local_size = 98
  v2.local_crops_scale = (0.05, 0.32)
  v2.mask_ratio = 0.3
  v2.mask_probability = 0.5
  v2.koleo_weight = 0.1
  v2.centering = "sinkhorn_knopp"
  return config
