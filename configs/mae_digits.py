"""MAE on the embedded digits data (the quickstart's ViT, data and optimizer; MAE's own block).

Run:
  python -m ssljax.main --config configs/mae_digits.py --workdir workdirs/mae_digits

Takes about 2 minutes on 2 CPU cores (compile included). Same tiny ViT as configs/simclr_digits.py
(16x16 input, 4x4 patches -> 16 tokens; MAE keeps 4 of them), a 1-block decoder of width 64.
Recipe keys that differ from the quickstart, as in the MAE paper: crop + (no) flip only, no colour
jitter / blur (masking is the augmentation), AdamW betas (0.9, 0.95), weight decay 0.05.
Measured (300 steps): training loss 1.06 -> 0.66; held-out masked-patch loss 0.597 vs 0.520 for the
mean-train-patch-per-position baseline (0.584 when that mean is taken over the training crops);
kNN 0.54 vs 0.71 random-init. Tried (all still at the baseline, see tests/test_mae.py): raw pixels
(norm_pix off: a 4x4 patch of an upsampled 8x8 digit is often almost flat, and per-patch
normalisation blows its faint interpolation fringes up to unit variance), no crop, patch 2 (8x8
grid), mask ratio 0.5 with a 2-block decoder, base lr 4e-3.
"""
from ssljax.config import base_config


def get_config():
  config = base_config(method="mae", model="vit")
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
  aug.crop_scale = (0.3, 1.0)       # 16 px digits: tiny crops destroy the digit
  aug.hflip_prob = 0.0              # a flipped digit is another symbol
  aug.color_jitter_prob = 0.0       # MAE: crop (+ flip) only
  aug.blur_prob = 0.0
  aug.grayscale_prob = 0.0

  config.optimizer.name = "adamw"
  config.optimizer.base_lr = 2e-3
  config.optimizer.b2 = 0.95        # MAE
  config.optimizer.weight_decay = 0.05
  config.optimizer.warmup_steps = 20

  config.mae.mask_ratio = 0.75
  config.mae.decoder_width = 64
  config.mae.decoder_depth = 1
  config.mae.decoder_heads = 4

  config.eval.linear_epochs = 100
  return config
