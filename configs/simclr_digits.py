"""SimCLR on the embedded digits data: the quickstart.

Run:
  python -m ssljax.main --config configs/simclr_digits.py --workdir workdirs/simclr_digits

Takes about 2 minutes on 2 CPU cores (compile included). Data: scikit-learn's bundled `load_digits`
(1,437 train / 360 held-out real 8x8 handwritten digits, upsampled to 16x16), nothing downloaded.
Backbone: a CIFAR-stem ResNet-18 at 1/4 width. Reaches a held-out kNN top-1 above the random-init
backbone's (both are in eval.json; see BENCHMARKS.md / README for the measured figures).
"""
from ssljax.config import base_config


def get_config():
  config = base_config(method="simclr", model="resnet")
  config.seed = 0
  config.batch_size = 256
  config.total_steps = 300
  config.log_every = 10
  config.eval_every = 100
  config.checkpoint_every = 100

  config.model.depth = 18
  config.model.width_multiplier = 0.25
  config.model.cifar_stem = True

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

  config.simclr.temperature = 0.2
  config.simclr.proj_hidden_dims = (256,)
  config.simclr.proj_dim = 64

  config.eval.linear_epochs = 100
  return config
