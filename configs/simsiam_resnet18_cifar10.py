"""SimSiam with a CIFAR-stem ResNet-18 on CIFAR-10 from TFDS: the paper's CIFAR recipe (appendix D).

Run (after `tfds build cifar10 --file_format=array_record` or with an ArrayRecord copy in DATA_DIR):
  python -m ssljax.main --config configs/simsiam_resnet18_cifar10.py --workdir workdirs/simsiam_c10 \
      --config.data.path=DATA_DIR

800 epochs at batch 512 (78,000 steps), SGD momentum 0.9, base lr 0.03 x batch/256, weight decay
5e-4, a 2-layer projector of 2048 with output BN and a 512-wide predictor bottleneck.
"Exploring Simple Siamese Representation Learning" reports 91.8% kNN accuracy on CIFAR-10 with
this recipe; ssljax has NOT measured this config yet (no time or figure is claimed for it).
Difference: the reference does not decay the predictor's learning rate (here it follows the one
cosine schedule).
"""
from ssljax.config import base_config


def get_config():
  config = base_config(method="simsiam", model="resnet")
  config.seed = 0
  config.batch_size = 512
  config.total_steps = 78_000          # 800 epochs of 50,000 images
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
  config.optimizer.base_lr = 0.03      # x batch/256
  config.optimizer.weight_decay = 5e-4
  config.optimizer.momentum = 0.9
  config.optimizer.warmup_steps = 0    # the reference has no warm-up

  config.simsiam.proj_hidden_dims = (2048,)
  config.simsiam.proj_dim = 2048
  config.simsiam.pred_hidden_dims = (512,)
  return config
