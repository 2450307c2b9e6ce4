"""iBOT with a ViT-S/16 on ImageNet-1k (iBOT's ViT-S/16 settings, 100 epochs).

Run (DATA_DIR holds train/<class>/*.JPEG and val/<class>/*.JPEG):
  python -m ssljax.main --config configs/ibot_vit_s16_imagenet.py --workdir workdirs/ibot_s16 \
      --config.data.path=DATA_DIR

100 epochs at global batch 1024 (125,100 steps); set total_steps = 800 epochs for the paper's run.
"iBOT: Image BERT Pre-Training with Online Tokenizer" reports 75.2% k-NN / 77.9% linear for ViT-S/16
after 800 epochs; ssljax has NOT measured this config (no time or accuracy is claimed). Settings: a
shared head of 8192 prototypes without a fixed weight-norm gain, [CLS] and patch teacher
temperatures 0.04 -> 0.07 over 30 epochs, 10 local crops of 96 px (scale 0.05-0.25), global scale
0.25-1, block masks on half of the global crops, momentum 0.996 -> 1, AdamW lr 5e-4 x batch/256,
weight decay along a cosine from 0.04 to 0.4 (`optimizer.weight_decay_end`), clip 3.0, drop path
0.1, crop-specific blur / solarisation as the reference (`data.*_view_*_prob`). Not expressible
yet: a per-crop mask ratio drawn from U(0.1, 0.5) (here a fixed 0.3).
"""
from ssljax import config as config_lib

common = config_lib.import_sibling(__file__)   # configs/common.py


def get_config():
  config = common.imagenet("ibot", "vit", batch_size=1024, epochs=100)
  common.byol_jitter(config, blur_prob=0.5, local_blur_prob=0.5)
  steps_per_epoch = common.imagenet_steps(config.batch_size)   # 1251
  config.model.update(variant="s", drop_path=0.1)   # student only: the teacher has no drop path
  config.optimizer.update(name="adamw", base_lr=5e-4,   # x batch/256
                          weight_decay=0.04, weight_decay_end=0.4,
                          warmup_steps=10 * steps_per_epoch,
                          end_lr_frac=1e-6 / 2e-3, grad_clip=3.0)   # min_lr 1e-6
  config.ibot.update(out_dim=8192, shared_head=True, norm_last_layer=False, teacher_temp=0.07,
                     warmup_teacher_temp=0.04, teacher_patch_temp=0.07,
                     warmup_teacher_patch_temp=0.04, warmup_teacher_temp_steps=30 * steps_per_epoch,
                     momentum=0.996, freeze_last_layer_steps=steps_per_epoch,
                     global_crops_scale=(0.25, 1.0), local_crops=10, local_size=96,
                     local_crops_scale=(0.05, 0.25), mask_ratio=0.3, mask_probability=0.5)
  return config
