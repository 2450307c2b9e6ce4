"""NNCLR with a ResNet-50 on ImageNet-1k: the paper's recipe.

Run (DATA_DIR holds train/<class>/*.JPEG and val/<class>/*.JPEG):
  python -m ssljax.main --config configs/nnclr_resnet50_imagenet.py --workdir workdirs/nnclr_r50 \
      --config.data.path=DATA_DIR

1000 epochs at global batch 4096 (312,000 steps), LARS base lr 0.3 x batch/256, weight decay 1e-6,
10 warm-up epochs, T = 0.1, a support queue of 98,304 projections (24 batches), projector 3 layers
2048 -> 256 with BN, predictor 4096 -> 256. "With a Little Help from My Friends: Nearest-Neighbor
Contrastive Learning of Visual Representations" reports 75.4% linear top-1 with this recipe; ssljax
has NOT measured this config yet (no time or figure is claimed for it). The views have BYOL's
asymmetric blur / solarisation, as in the paper (`data.global_view_*_prob`).
"""
from ssljax import config as config_lib

common = config_lib.import_sibling(__file__)   # configs/common.py


def get_config():
  config = common.byol_jitter(common.imagenet("nnclr", "resnet", batch_size=4096, epochs=1000))
  config.optimizer.update(name="lars", base_lr=0.3,   # x batch/256
                          weight_decay=1e-6, warmup_steps=10 * common.imagenet_steps(4096))
  config.nnclr.update(temperature=0.1, queue_size=98_304, proj_hidden_dims=(2048, 2048),
                      proj_dim=256, pred_hidden_dims=(4096,),
                      loss_impl="auto")   # tiled InfoNCE kernel on GPU/TPU (O(N) memory)
  return config
