"""MSN on the embedded digits data (same recipe as configs/simclr_digits.py, plus focal crops).

Run:
  python -m ssljax.main --config configs/msn_digits.py --workdir workdirs/msn_digits

NOT YET LEARNING: measured (seed 0) this config's held-out kNN top-1 stays below the random-init
backbone's 0.764 (0.714 at step 100, 0.694 at step 200; with 32 prototypes and proj_dim 64:
0.711 and 0.683). The contract tests pass; tests/test_msn.py marks the learning test xfail until a
digits recipe that learns is found (focal crops of 8 px are nearly empty on digits; mask ratio,
EMA and lr untested).
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
  config.optimizer.base_lr = 2e-3
  config.optimizer.weight_decay = 1e-4
  config.optimizer.warmup_steps = 20

  config.msn.mask_ratio = 0.3         # anchor views keep 11 of 16 patches (focal: 2 of 4)
  config.msn.local_crops = 2          # 2 x 8 px focal views (2 x 2 patches)
  config.msn.local_size = 8
  config.msn.local_scale = (0.1, 0.3)
  config.msn.proj_hidden_dims = (256, 256)
  config.msn.proj_dim = 32
  config.msn.num_prototypes = 64      # > proj_dim, as the paper (1024 vs 256): with fewer prototypes
                                      # than dims, z can sit orthogonal to all of them (uniform p)
  config.msn.ema_momentum = 0.99      # 300 steps: a faster target than the paper's 0.996 over 800 epochs

  config.eval.linear_epochs = 100
  return config
