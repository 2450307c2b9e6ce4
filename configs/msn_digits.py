"""MSN on the embedded digits data (data, ViT and optimizer of configs/simclr_digits.py).

Run:
  python -m ssljax.main --config configs/msn_digits.py --workdir workdirs/msn_digits

Measured (seed 0, 2 CPU cores shared; kNN on the target encoder's features vs 0.764 for the
random-init backbone): 0.775 at step 50, 0.800 at step 100 (still rising) with these settings in
a 100-step run; this config (150 steps): 0.803 at step 100, 0.831 at step 150 (linear 0.864 vs
0.850 random-init), about 4.7 min of wall time for the learning test on the shared machine.

What changed from the first digits config (diagnosed with the logged anchor_entropy,
mean_anchor_entropy and target_entropy; log K = 4.16 is uniform):
  * temperature 0.3 instead of the paper's 0.1 (Assran et al. 2022): at 0.1 the anchor predictions
    went uniform within 30 steps (anchor entropy 4.08 of 4.16 while the sharpened targets had
    ~1-2 nats) and the kNN fell below the random init (0.714 at step 100 with lr 5e-3). Me-max
    does not stop this: it only keeps the MEAN prediction uniform. The sharpening temperature
    stays the paper's 0.25 (targets at an effective 0.075).
  * the head's output BatchNorm (`proj_last_bn`, as configs/simsiam_digits.py);
  * EMA momentum 0.95 (linear to 1 over 1.25 x the run, as the paper's schedule), mask ratio 0.15
    (the paper's ViT-S/16 value): 0.99 / 0.3 gave kNN 0.767 at step 100;
  * no focal crops: 8 px crops (2 x 2 patches) of 16 px digits carry little of the digit.
2026-11-24: the 150-step recipe above learned at seed 0 only (kNN gain over the random init
+0.069 / +0.006 / -0.017 at seeds 0 / 1 / 2; the test wants +0.05). Now 300 steps, base_lr 5e-3
and 128 prototypes: +0.133 / +0.089 / +0.097. On the way: 300 steps +0.081 / +0.019 / +0.008;
with base_lr 5e-3 +0.042 / +0.078 (seeds 1 / 2); adding weight decay 0.05 +0.114 / +0.019 / +0.097,
or EMA 0.99 +0.128 / +0.044 / +0.033; proj_dim 64 with 128 prototypes +0.111 / +0.031 / +0.111.
"""
from ssljax.config import base_config


def get_config():
  config = base_config(method="msn", model="vit")
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
  config.optimizer.base_lr = 5e-3
  config.optimizer.weight_decay = 1e-4
  config.optimizer.warmup_steps = 20

  config.msn.mask_ratio = 0.15        # anchor views keep 13 of 16 patches (paper, ViT-S/16)
  config.msn.local_crops = 0          # focal crops off: 8 px crops hurt on 16 px digits
  config.msn.proj_hidden_dims = (256, 256)
  config.msn.proj_dim = 32
  config.msn.proj_last_bn = True
  config.msn.num_prototypes = 128     # > proj_dim, as the paper (1024 vs 256): with fewer prototypes
                                      # than dims, z can sit orthogonal to all of them (uniform p)
  config.msn.temperature = 0.3        # the paper's 0.1 sends the anchor predictions to uniform (above)
  config.msn.ema_momentum = 0.95      # a short run: a faster target than the paper's 0.996 over 800 epochs

  config.eval.linear_epochs = 100
  return config
