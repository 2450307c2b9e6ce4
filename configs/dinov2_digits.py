"""DINOv2 on the embedded digits data (a tiny ViT with 4 registers on CPU).

Run:
  python -m ssljax.main --config configs/dinov2_digits.py --workdir workdirs/dinov2_digits

Run time on 2 free CPU cores not yet measured (300 steps ran at ~75 img/s on a heavily shared machine). Identical to configs/dino_digits.py except
the method block and `model.num_registers = 4` (DINOv2's register tokens, "Vision Transformers Need
Registers"): DINO's settings scaled down to 16 px digits plus iBOT's masked patch loss (block masks
on 30% of the patches of half of the global crops, shared head) and KoLeo (weight 0.1) on the
student's [CLS]. `centering='center'`; `--config.dinov2.centering=sinkhorn_knopp` switches to
Sinkhorn-Knopp teacher targets. STATUS: NOT YET LEARNING. Measured on 60-300 step runs: the teacher collapses to a uniform
output within ~30 steps (teacher_entropy -> log(out_dim)) and the kNN stays at the random-init level
(~0.76). At init the tiny ViT's [CLS] features of different digits have mean cosine 0.994, so the
centred teacher logits barely differ between images (std 0.011) and centring wins over sharpening;
teacher_temp 0.01 flips it to a one-hot collapse, and lower lr, 256 prototypes, frozen prototypes
or pool='gap' did not help. The learning test is marked xfail until a recipe is found.
"""
from ssljax.config import base_config


def get_config():
  config = base_config(method="dinov2", model="vit")
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
  config.model.num_registers = 4   # DINOv2 recipe key: registers

  config.data.source = "digits"
  config.data.image_size = 16
  aug = config.data.augment
  aug.crop_scale = (0.3, 1.0)       # unused (the crop scales are in config.dinov2)
  aug.hflip_prob = 0.0              # a flipped digit is another symbol
  aug.blur_prob = 0.2
  aug.grayscale_prob = 0.0          # grayscale input already

  config.optimizer.name = "adamw"
  config.optimizer.base_lr = 2e-3
  config.optimizer.weight_decay = 0.04   # DINO's starting weight decay
  config.optimizer.warmup_steps = 20
  config.optimizer.grad_clip = 3.0       # DINO's clip_grad

  v2 = config.dinov2
  v2.out_dim = 1024
  v2.hidden_dim = 256
  v2.bottleneck_dim = 64
  v2.shared_head = True
  v2.teacher_temp = 0.07
  v2.warmup_teacher_temp = 0.04
  v2.teacher_patch_temp = 0.07
  v2.warmup_teacher_patch_temp = 0.04
  v2.warmup_teacher_temp_steps = 60
  v2.momentum = 0.99
  v2.freeze_last_layer_steps = 11
  v2.global_crops_scale = (0.4, 1.0)
  v2.local_crops = 4
  v2.local_size = 8
  v2.local_crops_scale = (0.15, 0.4)
  v2.mask_ratio = 0.3
  v2.mask_probability = 0.5
  v2.koleo_weight = 0.1
  v2.centering = "center"

  config.eval.linear_epochs = 100
  return config
