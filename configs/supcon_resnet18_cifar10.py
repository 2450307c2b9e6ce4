"""SupCon with a CIFAR-stem ResNet-18 on CIFAR-10 from TFDS: the reference code's CIFAR recipe.

Run (after `tfds build cifar10 --file_format=array_record` or with an ArrayRecord copy in DATA_DIR):
  python -m ssljax.main --config configs/supcon_resnet18_cifar10.py --workdir workdirs/supcon_c10 \
      --config.data.path=DATA_DIR

1000 epochs at batch 1024 (48,800 steps), SGD momentum 0.9, lr 0.5 at batch 1024 (base lr 0.125 x
batch/256), weight decay 1e-4, 10 warm-up epochs, T = 0.1, projection head 512 -> 512 -> 128 without
BN (the reference's 'mlp' head for a 512-d ResNet-18). Uses the CIFAR-10 labels (supervised).
"Supervised Contrastive Learning" reports 96.0% top-1 on CIFAR-10 for a ResNet-50; ssljax has NOT
measured this config yet (no time or figure is claimed for it).
"""
from ssljax.config import base_config


def get_config():
  config = base_config(method="supcon", model="resnet")
  config.seed = 0
  config.batch_size = 1024
  config.total_steps = 48_800          # 1000 epochs of 50,000 images
  config.log_every = 100
  config.eval_every = 5_000
  config.checkpoint_every = 2_000

  config.model.depth = 18
  config.model.cifar_stem = True

  config.data.source = "tfds"
  config.data.tfds_name = "cifar10"
  config.data.train_split = "train"
  config.data.eval_split = "test"
  config.data.image_size = 32
  config.data.worker_count = 8
  aug = config.data.augment
  aug.crop_scale = (0.2, 1.0)
  aug.brightness, aug.contrast, aug.saturation, aug.hue = 0.4, 0.4, 0.4, 0.1
  aug.blur_prob = 0.0                  # no blur on 32x32 images
  aug.mean = (0.4914, 0.4822, 0.4465)
  aug.std = (0.2470, 0.2435, 0.2616)

  config.optimizer.name = "sgd"
  config.optimizer.base_lr = 0.125     # x batch/256 = 0.5 at batch 1024
  config.optimizer.weight_decay = 1e-4
  config.optimizer.momentum = 0.9
  config.optimizer.warmup_steps = 490  # 10 epochs

  config.supcon.temperature = 0.1
  config.supcon.proj_hidden_dims = (512,)
  config.supcon.proj_dim = 128
  config.supcon.proj_use_bn = False
  return config
