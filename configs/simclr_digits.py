"""SimCLR on the embedded digits data: the quickstart.

Run:
  python -m ssljax.main --config configs/simclr_digits.py --workdir workdirs/simclr_digits

Takes about 2 minutes on 2 CPU cores (compile included). Data: scikit-learn's bundled `load_digits`
(1,437 train / 360 held-out real 8x8 handwritten digits, upsampled to 16x16), nothing downloaded.
Backbone: a 3-block ViT of width 64 with 4x4 patches (XLA's CPU matmuls are much faster than its
convolutions; configs/simclr_resnet18_cifar10.py is the ResNet recipe). Reaches a held-out kNN top-1 above the random-init
backbone's (both are in eval.json; see BENCHMARKS.md / README for the measured figures).
"""
from ssljax.config import base_config


def get_config():
  config = base_config(method="simclr", model="vit")
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

  config.simclr.temperature = 0.2
  config.simclr.proj_hidden_dims = (256,)
  config.simclr.proj_dim = 64

  config.eval.linear_epochs = 100
  return config
