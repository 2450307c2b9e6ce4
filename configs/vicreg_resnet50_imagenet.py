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
has NOT run this config yet: neither its time nor its accuracy is measured. The views are the
reference's asymmetric ones (BYOL's blur / solarisation, `data.global_view_*_prob`).
"""
from ssljax import config as config_lib

common = config_lib.import_sibling(__file__)   # configs/common.py


def get_config():
  config = common.imagenet("vicreg", "resnet", batch_size=2048, epochs=1000, tfds=True)
  common.byol_jitter(config)
  config.optimizer.update(name="lars", base_lr=0.2,   # x batch/256 = 1.6 at batch 2048
                          weight_decay=1e-6, end_lr_frac=0.002,
                          warmup_steps=10 * common.imagenet_steps(config.batch_size))
  config.vicreg.update(sim_coeff=25.0, std_coeff=25.0, cov_coeff=1.0,
                       expander_hidden_dims=(8192, 8192), expander_dim=8192)
  return config
