"""SwAV with a ResNet-50 on ImageNet-1k (TFDS imagenet2012): multi-crop 2x224 + 6x96, 800 epochs.

Run:
  python -m ssljax.main --config configs/swav_resnet50_imagenet.py --workdir workdirs/swav_r50 \
      --config.data.path=DATA_DIR

Data: imagenet2012 prepared once in ArrayRecord format in DATA_DIR (tfds.builder('imagenet2012',
data_dir=DATA_DIR, file_format='array_record').download_and_prepare() with the ILSVRC2012 tar files
in DATA_DIR/downloads/manual).
Recipe ("Unsupervised Learning of Visual Features by Contrasting Cluster Assignments", Caron et al.
2020, its reference scripts for batch 4096): 2 global crops (scale 0.14-1) and 6 local 96 px crops
(scale 0.05-0.14), head 2048-2048-128, 3000 prototypes frozen during the first epoch, temperature
0.1, epsilon 0.05, 3 Sinkhorn iterations, LARS lr 0.3 x batch/256 = 4.8, final lr 0.0048, weight
decay 1e-6, 10 warm-up epochs, 800 epochs (249,600 steps), no queue at this batch size. The paper
reports 75.3% linear-probe top-1. ssljax has NOT run this config yet: neither its time nor its
accuracy is measured. For batch 256 set swav.queue_length=3840 and swav.queue_start_step to
epoch 15 (the paper's small-batch recipe).
"""
from ssljax.config import base_config

IMAGENET_TRAIN = 1_281_167


def get_config():
  config = base_config(method="swav", model="resnet")
  config.seed = 0
  config.batch_size = 4096
  steps_per_epoch = IMAGENET_TRAIN // config.batch_size    # 312
  config.total_steps = 800 * steps_per_epoch
  config.log_every = 100
  config.eval_every = 10 * steps_per_epoch
  config.checkpoint_every = 2_000
  config.keep_checkpoints = 3
  config.dtype = "bfloat16"

  config.model.depth = 50
  config.model.cifar_stem = False

  config.data.source = "tfds"
  config.data.tfds_name = "imagenet2012"
  config.data.train_split = "train"
  config.data.eval_split = "validation"
  config.data.image_size = 224
  config.data.worker_count = 32
  config.data.prefetch = 4
  aug = config.data.augment
  aug.crop_scale = (0.14, 1.0)
  aug.hflip_prob = 0.5
  aug.color_jitter_prob = 0.8
  aug.brightness, aug.contrast, aug.saturation, aug.hue = 0.8, 0.8, 0.8, 0.2   # strength 1.0
  aug.grayscale_prob = 0.2
  aug.blur_prob = 0.5
  aug.mean = (0.485, 0.456, 0.406)
  aug.std = (0.229, 0.224, 0.225)

  config.optimizer.name = "lars"
  config.optimizer.base_lr = 0.3       # x batch/256 = 4.8 at batch 4096
  config.optimizer.weight_decay = 1e-6
  config.optimizer.warmup_steps = 10 * steps_per_epoch
  config.optimizer.end_lr_frac = 0.001

  swav = config.swav
  swav.proj_hidden_dims = (2048,)
  swav.proj_dim = 128
  swav.num_prototypes = 3000
  swav.temperature = 0.1
  swav.epsilon = 0.05
  swav.sinkhorn_iters = 3
  swav.assign_views = (0, 1)
  swav.local_crops = 6
  swav.local_size = 96
  swav.local_scale = (0.05, 0.14)
  swav.freeze_prototypes_steps = steps_per_epoch
  swav.queue_length = 0

  config.eval.max_examples = 10_000
  config.eval.linear_epochs = 30
  config.eval.batch_size = 1024
  return config
