"""VICReg with a ResNet-50 on ImageNet-1k (TFDS imagenet2012): the paper's 1000-epoch recipe.

Run:
  python -m ssljax.main --config configs/vicreg_resnet50_imagenet.py --workdir workdirs/vicreg_r50 \
      --config.data.path=DATA_DIR

Data: imagenet2012 prepared once in ArrayRecord format in DATA_DIR (tfds.builder('imagenet2012',
data_dir=DATA_DIR, file_format='array_record').download_and_prepare() with the ILSVRC2012 tar files
in DATA_DIR/downloads/manual).
Recipe ("VICReg: Variance-Invariance-Covariance Regularization for Self-Supervised Learning",
Bardes et al. 2022, and its reference code): expander 8192-8192-8192, coefficients 25 / 25 / 1,
batch 2048, LARS with base lr 0.2 x batch/256, weight decay 1e-6, 10 warm-up epochs, cosine to
0.002 of the peak, 1000 epochs (625,000 steps). The paper reports 73.2% linear-probe top-1. ssljax
has NOT run this config yet: neither its time nor its accuracy is measured. The two views share one
augmentation config here (the reference's blur and solarisation differ between the views).
"""
from ssljax.config import base_config

IMAGENET_TRAIN = 1_281_167


def get_config():
  config = base_config(method="vicreg", model="resnet")
  config.seed = 0
  config.batch_size = 2048
  steps_per_epoch = IMAGENET_TRAIN // config.batch_size    # 625
  config.total_steps = 1000 * steps_per_epoch
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
  aug.crop_scale = (0.08, 1.0)
  aug.hflip_prob = 0.5
  aug.color_jitter_prob = 0.8
  aug.brightness, aug.contrast, aug.saturation, aug.hue = 0.4, 0.4, 0.2, 0.1
  aug.grayscale_prob = 0.2
  aug.blur_prob = 0.55                 # the reference: 1.0 on view 1, 0.1 on view 2 (mean 0.55)
  aug.solarize_prob = 0.1              # the reference: 0.0 on view 1, 0.2 on view 2
  aug.mean = (0.485, 0.456, 0.406)
  aug.std = (0.229, 0.224, 0.225)

  config.optimizer.name = "lars"
  config.optimizer.base_lr = 0.2       # x batch/256 = 1.6 at batch 2048
  config.optimizer.weight_decay = 1e-6
  config.optimizer.warmup_steps = 10 * steps_per_epoch
  config.optimizer.end_lr_frac = 0.002

  config.vicreg.sim_coeff = 25.0
  config.vicreg.std_coeff = 25.0
  config.vicreg.cov_coeff = 1.0
  config.vicreg.expander_hidden_dims = (8192, 8192)
  config.vicreg.expander_dim = 8192

  config.eval.max_examples = 10_000
  config.eval.linear_epochs = 30
  config.eval.batch_size = 1024
  return config
