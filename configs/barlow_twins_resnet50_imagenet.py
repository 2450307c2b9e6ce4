"""Barlow Twins with a ResNet-50 on ImageNet-1k (TFDS imagenet2012): the paper's 1000-epoch recipe.

Run:
  python -m ssljax.main --config configs/barlow_twins_resnet50_imagenet.py \
      --workdir workdirs/barlow_twins_r50 --config.data.path=DATA_DIR

Data: imagenet2012 prepared once in ArrayRecord format in DATA_DIR (tfds.builder('imagenet2012',
data_dir=DATA_DIR, file_format='array_record').download_and_prepare() with the ILSVRC2012 tar files
in DATA_DIR/downloads/manual).
Recipe ("Barlow Twins: Self-Supervised Learning via Redundancy Reduction", Zbontar et al. 2021, and
its reference code): projector 8192-8192-8192, lambda 0.0051, batch 2048, LARS with lr 0.2 x
batch/256 for weights (biases and BatchNorm are excluded from weight decay and the trust ratio, as
there), weight decay 1.5e-6, 10 warm-up epochs, 1000 epochs (625,000 steps). The paper reports 73.2%
linear-probe top-1. ssljax has NOT run this config yet: neither its time nor its accuracy is
measured. The views are the reference's asymmetric ones (BYOL's blur / solarisation,
`data.global_view_*_prob`). Difference ssljax cannot express yet: one learning rate for weights
and biases (the reference uses 0.0048 x batch/256 for biases and BatchNorm).
"""
from ssljax import config as config_lib

common = config_lib.import_sibling(__file__)   # configs/common.py


def get_config():
  config = common.imagenet("barlow_twins", "resnet", batch_size=2048, epochs=1000, tfds=True)
  common.byol_jitter(config)
  config.optimizer.update(name="lars", base_lr=0.2,   # x batch/256 = 1.6 at batch 2048
                          weight_decay=1.5e-6, end_lr_frac=0.001,
                          warmup_steps=10 * common.imagenet_steps(config.batch_size))
  config.barlow_twins.update(lambd=0.0051, proj_hidden_dims=(8192, 8192), proj_dim=8192)
  return config
