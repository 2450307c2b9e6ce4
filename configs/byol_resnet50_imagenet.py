"""BYOL with a ResNet-50 on ImageNet-1k: the paper's 300-epoch recipe.

Run (DATA_DIR holds train/<class>/*.JPEG and val/<class>/*.JPEG):
  python -m ssljax.main --config configs/byol_resnet50_imagenet.py --workdir workdirs/byol_r50 \
      --config.data.path=DATA_DIR

300 epochs at global batch 4096 (93,600 steps), LARS with base lr 0.2 x batch/256, weight decay
1.5e-6 (biases and BN excluded from decay and from the trust ratio, as in the paper), 10 warm-up
epochs, tau 0.996 -> 1 along a cosine, projector and predictor MLPHead([4096], 256).
"Bootstrap your own latent" reports 72.5% linear top-1 after 300 epochs (74.3% after 1000);
ssljax has NOT measured this config yet (no time or figure is claimed for it). The views are the
paper's asymmetric ones: view 1 always blurred, view 2 blurred with p=0.1 and solarised with
p=0.2 (`data.global_view_blur_prob`, `data.global_view_solarize_prob`).
"""
from ssljax import config as config_lib

common = config_lib.import_sibling(__file__)   # configs/common.py


def get_config():
  config = common.byol_jitter(common.imagenet("byol", "resnet", batch_size=4096, epochs=300))
  config.optimizer.update(name="lars", base_lr=0.2,   # x batch/256
                          weight_decay=1.5e-6, warmup_steps=10 * common.imagenet_steps(4096))
  config.byol.update(tau_base=0.996, proj_hidden_dims=(4096,), proj_dim=256,
                     pred_hidden_dims=(4096,))
  return config
