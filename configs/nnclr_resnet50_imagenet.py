"""NNCLR with a ResNet-50 on ImageNet-1k: the paper's recipe.

Run (DATA_DIR holds train/<class>/*.JPEG and val/<class>/*.JPEG):
  python -m ssljax.main --config configs/nnclr_resnet50_imagenet.py --workdir workdirs/nnclr_r50 \
      --config.data.path=DATA_DIR

1000 epochs at global batch 4096 (312,000 steps), LARS base lr 0.3 x batch/256, weight decay 1e-6,
10 warm-up epochs, T = 0.1, a support queue of 98,304 projections (24 batches), projector 3 layers
2048 -> 256 with BN, predictor 4096 -> 256. "With a Little Help from My Friends: Nearest-Neighbor
Contrastive Learning of Visual Representations" reports 75.4% linear top-1 with this recipe; ssljax
has NOT measured this config yet (no time or figure is claimed for it). Difference from the paper
that ssljax cannot express yet: both views get the same augmentation distribution (the paper uses
BYOL's asymmetric blur / solarisation).
"""
from ssljax.config import base_config

_STEPS_PER_EPOCH = 1_281_167 // 4096   # 312


def get_config():
  config = base_config(method="nnclr", model="resnet")
  config.seed = 0
  config.batch_size = 4096
  config.total_steps = 1000 * _STEPS_PER_EPOCH
  config.log_every = 100
  config.eval_every = 10 * _STEPS_PER_EPOCH
  config.checkpoint_every = 2_000
  config.dtype = "bfloat16"

  config.model.depth = 50

  config.data.source = "image_folder"
  config.data.train_split = "train"
  config.data.eval_split = "val"
  config.data.image_size = 224
  config.data.worker_count = 16
  aug = config.data.augment
  aug.crop_scale = (0.08, 1.0)
  aug.hflip_prob = 0.5
  aug.color_jitter_prob = 0.8
  aug.brightness, aug.contrast, aug.saturation, aug.hue = 0.4, 0.4, 0.2, 0.1
  aug.grayscale_prob = 0.2
  aug.blur_prob = 0.55                 # mean of BYOL's 1.0 and 0.1
  aug.solarize_prob = 0.1              # mean of BYOL's 0.0 and 0.2
  aug.mean = (0.485, 0.456, 0.406)
  aug.std = (0.229, 0.224, 0.225)

  config.optimizer.name = "lars"
  config.optimizer.base_lr = 0.3       # x batch/256
  config.optimizer.weight_decay = 1e-6
  config.optimizer.warmup_steps = 10 * _STEPS_PER_EPOCH

  nnclr = config.nnclr
  nnclr.temperature = 0.1
  nnclr.queue_size = 98_304
  nnclr.proj_hidden_dims = (2048, 2048)
  nnclr.proj_dim = 256
  nnclr.pred_hidden_dims = (4096,)
  nnclr.loss_impl = "auto"             # tiled InfoNCE kernel on GPU/TPU (O(N) memory)
  return config
