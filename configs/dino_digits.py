"""DINO on the embedded digits data (a tiny ViT on CPU).

Run:
  python -m ssljax.main --config configs/dino_digits.py --workdir workdirs/dino_digits

Run time on 2 free CPU cores not yet measured (300 steps ran at ~75 img/s on a heavily shared machine). Same data, backbone, batch and optimizer as
configs/simclr_digits.py (16x16 digits, 3-block ViT of width 64 with 4x4 patches, AdamW); the
method block scales DINO's recipe down to 16 px digits and 300 steps: a 1024-prototype head, 2
global crops of scale (0.4, 1) plus 4 local 8x8 crops of scale (0.15, 0.4) (DINO's 96/224 local
side is 7 px here; 8 keeps the 4 px patch grid), a faster teacher (momentum 0.99 -> 1 over 300
steps instead of 0.996 -> 1 over ~100k), teacher temperature 0.04 -> 0.07 over the first 60 steps,
last layer frozen for the first ~epoch (11 steps of 128 of the 1,437 train images), gradient
clipping 3.0 and weight decay 0.04 as in the reference. STATUS: NOT YET LEARNING. Measured on 60-300 step runs: the teacher collapses to a uniform
output within ~30 steps (teacher_entropy -> log(out_dim)) and the kNN stays at the random-init level
(~0.76). At init the tiny ViT's [CLS] features of different digits have mean cosine 0.994, so the
centred teacher logits barely differ between images (std 0.011) and centring wins over sharpening;
teacher_temp 0.01 flips it to a one-hot collapse, and lower lr, 256 prototypes, frozen prototypes
or pool='gap' did not help. The learning test is marked xfail until a recipe is found.
"""
from ssljax.config import base_config


def get_config():
  config = base_config(method="dino", model="vit")
  config.seed = 0
  config.batch_size = 128
  config.total_steps = 300
  config.log_every = 10
  config.eval_every = 100
  config.checkpoint_every = 100

  config.model.patch_size = 4      # 16x16 input -> 4x4 = 16 patch tokens + CLS
  config.model.width = 64
  config.model.depth = 3
  config.model.num_heads = 4
  config.model.image_size = 16

  config.data.source = "digits"
  config.data.image_size = 16
  aug = config.data.augment
  aug.crop_scale = (0.3, 1.0)       # unused by DINO (its crop scales are in config.dino)
  aug.hflip_prob = 0.0              # a flipped digit is another symbol
  aug.blur_prob = 0.2
  aug.grayscale_prob = 0.0          # grayscale input already

  config.optimizer.name = "adamw"
  config.optimizer.base_lr = 2e-3
  config.optimizer.weight_decay = 0.04   # DINO's starting weight decay
  config.optimizer.warmup_steps = 20
  config.optimizer.grad_clip = 3.0       # DINO's clip_grad

  dino = config.dino
  dino.out_dim = 1024
  dino.hidden_dim = 256
  dino.bottleneck_dim = 64
  dino.teacher_temp = 0.07
  dino.warmup_teacher_temp = 0.04
  dino.warmup_teacher_temp_steps = 60
  dino.momentum = 0.99
  dino.freeze_last_layer_steps = 11
  dino.global_crops_scale = (0.4, 1.0)
  dino.local_crops = 4
  dino.local_size = 8
  dino.local_crops_scale = (0.15, 0.4)

  config.eval.linear_epochs = 100
  return config
