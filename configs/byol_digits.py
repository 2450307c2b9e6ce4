"""BYOL on the embedded digits data (CPU quickstart recipe of configs/simclr_digits.py).

Run:
  python -m ssljax.main --config configs/byol_digits.py --workdir workdirs/byol_digits

Same data, ViT, augmentations and optimizer as the SimCLR quickstart; only the method block differs.
tau_base is the paper's 0.996 (0.99 until 2026-11-24, see the end).

Heads: the paper's projector/predictor (Linear-BN-ReLU-Linear, Grill et al. 2020) with the paper's
widths scaled down did not learn in 300 steps (measured, seed 0: kNN 0.728 at base_lr 2e-3, 0.642
at 5e-4, 0.778 at 5e-3 vs 0.764 random-init; the kNN dropped below the random init first). This
recipe uses configs/simsiam_digits.py's heads instead: a 3-layer projector with a BatchNorm on its
output (`proj_last_bn`, SimCLR v2 / SimSiam style) and a bottleneck predictor (256 -> 32 -> 128,
SimSiam's 4x bottleneck), keeping BYOL's EMA target and symmetric loss. Measured (seed 0, this
config, 100 steps, base_lr 5e-3, 2 CPU cores shared): kNN 0.822 at step 50, 0.842 at step 100 vs
0.764 for the random-init backbone.

200 steps since 2026-11-23: at 100 steps the result sat too close to the test's margin (0.833,
then 0.814 = exactly random-init + 0.05 after the ViT patch embedding became a matmul, a change in
the last bits only). With the CI's slow-step flags, 200 steps reach kNN 0.856 (linear 0.914) vs
0.764 random-init.

2026-11-24: the recipe above learned at seed 0 only: kNN gain over the random init +0.083 /
-0.014 / +0.044 at seeds 0 / 1 / 2 (the test wants +0.05). Now 300 steps, weight decay 0.05 (as
configs/simsiam_digits.py), tau_base 0.996 and a predictor of hidden width 128 = proj_dim (no
bottleneck; the paper's predictor widens, 256 -> 4096 -> 256): +0.150 / +0.069 / +0.142. On the
way: weight decay 0.05 alone +0.100 / +0.000 / +0.064; with tau 0.996 +0.122 / +0.033 / +0.097 (300
steps); predictor width 64 +0.142 / +0.067 / +0.078 (300 steps, tau 0.99).
"""
from ssljax.config import base_config


def get_config():
  config = base_config(method="byol", model="vit")
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
  aug.blur_prob = 0.2
  aug.grayscale_prob = 0.0          # grayscale input already

  config.optimizer.name = "adamw"
  config.optimizer.base_lr = 5e-3      # best of 5e-4 / 2e-3 / 5e-3 (see above)
  config.optimizer.weight_decay = 0.05   # 1e-4 was seed-fragile (see above)
  config.optimizer.warmup_steps = 20

  config.byol.tau_base = 0.996
  config.byol.proj_hidden_dims = (256, 256)
  config.byol.proj_dim = 128
  config.byol.proj_last_bn = True
  config.byol.pred_hidden_dims = (128,)   # 32 (a 4x bottleneck) was seed-fragile

  config.eval.linear_epochs = 100
  return config
