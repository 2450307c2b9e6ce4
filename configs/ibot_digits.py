"""iBOT on the embedded digits data (a tiny ViT on CPU).

Run:
  python -m ssljax.main --config configs/ibot_digits.py --workdir workdirs/ibot_digits

Run time on 2 free CPU cores not yet measured (300 steps ran at ~75 img/s on a heavily shared machine). Identical to configs/dino_digits.py except
the method block: the same DINO settings scaled down to 16 px digits, plus iBOT's masked patch
distillation with a shared head (iBOT's ViT-S recipe), block masks on 30% of the 16 patches of half
of the global crops, and the patch teacher temperature warmed up like the [CLS] one. Reaches a
held-out kNN top-1 well above the random-init backbone's (both in eval.json; measured figures in
BENCHMARKS.md / README).
"""
from ssljax.config import base_config


def get_config():
  config = base_config(method="ibot", model="vit")
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
  aug.crop_scale = (0.3, 1.0)       # unused (the crop scales are in config.ibot)
  aug.hflip_prob = 0.0              # a flipped digit is another symbol
  aug.blur_prob = 0.2
  aug.grayscale_prob = 0.0          # grayscale input already

  config.optimizer.name = "adamw"
  config.optimizer.base_lr = 2e-3
  config.optimizer.weight_decay = 0.04   # DINO's starting weight decay
  config.optimizer.warmup_steps = 20
  config.optimizer.grad_clip = 3.0       # DINO's clip_grad

  ibot = config.ibot
  ibot.out_dim = 1024
  ibot.hidden_dim = 256
  ibot.bottleneck_dim = 64
  ibot.shared_head = True
  ibot.teacher_temp = 0.07
  ibot.warmup_teacher_temp = 0.04
  ibot.teacher_patch_temp = 0.07
  ibot.warmup_teacher_patch_temp = 0.04
  ibot.warmup_teacher_temp_steps = 60
  ibot.momentum = 0.99
  ibot.freeze_last_layer_steps = 11
  ibot.global_crops_scale = (0.4, 1.0)
  ibot.local_crops = 4
  ibot.local_size = 8
  ibot.local_crops_scale = (0.15, 0.4)
  ibot.mask_ratio = 0.3
  ibot.mask_probability = 0.5

  config.eval.linear_epochs = 100
  return config
