"""NNCLR on the embedded digits data (CPU quickstart recipe of configs/simclr_digits.py).

Run:
  python -m ssljax.main --config configs/nnclr_digits.py --workdir workdirs/nnclr_digits

Same data, ViT, augmentations and optimizer as the SimCLR quickstart; only the method block differs.
The support queue holds 1,024 projections (8 batches; the paper's 98,304 is more than the
1,437 training digits), T = 0.1 as in the paper. Measured (seed 0, 300 steps): held-out kNN top-1
0.839 (linear 0.933) against 0.764 (0.897) for the random-init backbone; 160 s of CPU time
(user + system, compile and evaluations included).
Weight decay 0.05 (was 1e-4, 2026-11-24): with 1e-4 the kNN gain over the random init was
+0.075 / +0.039 / +0.106 at seeds 0 / 1 / 2 (seed 1 under the test's +0.04 margin); with 0.05
+0.094 / +0.081 / +0.117 (benchmarks/learning_seeds.py measures the tests across seeds).
"""
from ssljax.config import base_config


def get_config():
  config = base_config(method="nnclr", model="vit")
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
  config.optimizer.weight_decay = 0.05   # 1e-4 passed at seed 0 only by luck (see above)
  config.optimizer.warmup_steps = 20

  config.nnclr.temperature = 0.1
  config.nnclr.queue_size = 1024
  config.nnclr.proj_hidden_dims = (256, 256)
  config.nnclr.proj_dim = 64
  config.nnclr.pred_hidden_dims = (256,)

  config.eval.linear_epochs = 100
  return config
