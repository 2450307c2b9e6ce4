"""SimCLR with a CIFAR-stem ResNet-18 on CIFAR-10 from TFDS (for users who have the data).

Run (after `tfds build cifar10 --file_format=array_record` or with an ArrayRecord copy in DATA_DIR):
  python -m ssljax.main --config configs/simclr_resnet18_cifar10.py --workdir workdirs/simclr_c10 \
      --config.data.path=DATA_DIR

Takes 1,000 epochs (97,600 steps at batch 512) like the SimCLR paper's CIFAR-10 runs; on one
A100/H100-class GPU expect on the order of a day (not yet measured by ssljax). The SimCLR paper
("A Simple Framework for Contrastive Learning of Visual Representations", appendix B.9) reports
about 94% linear-probe accuracy for a ResNet-50; CIFAR ResNet-18 SimCLR re-implementations
typically report 90-91% kNN/linear accuracy. ssljax's own figure for this config is not yet measured.
The test suite builds this config and compiles one step on synthetic 32x32 data.
"""
from ssljax.config import base_config


def get_config():
  config = base_config(method="simclr", model="resnet")
  config.seed = 0
  config.batch_size = 512
  config.total_steps = 97_600          # 1000 epochs of 50,000 images
  config.log_every = 100
  config.eval_every = 5_000
  config.checkpoint_every = 2_000
  config.dtype = "bfloat16"

  config.model.depth = 18
  config.model.cifar_stem = True

  config.data.source = "tfds"
  config.data.tfds_name = "cifar10"
  config.data.train_split = "train"
  config.data.eval_split = "test"
  config.data.image_size = 32
  config.data.worker_count = 8
  aug = config.data.augment
  aug.crop_scale = (0.08, 1.0)
  aug.brightness, aug.contrast, aug.saturation, aug.hue = 0.4, 0.4, 0.4, 0.1
  aug.blur_prob = 0.0                  # SimCLR drops blur on 32x32 images
  aug.mean = (0.4914, 0.4822, 0.4465)
  aug.std = (0.2470, 0.2435, 0.2616)

  config.optimizer.name = "lars"
  config.optimizer.base_lr = 0.3       # x batch/256, the SimCLR paper's scaling rule
  config.optimizer.weight_decay = 1e-6
  config.optimizer.warmup_steps = 976  # 10 epochs

  config.simclr.temperature = 0.5
  config.simclr.proj_hidden_dims = (2048,)
  config.simclr.proj_dim = 128
  return config
