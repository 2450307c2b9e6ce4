"""MoCo v3 with a ViT-S/16 on ImageNet-1k: the paper's 300-epoch ViT recipe.

Run (DATA_DIR holds train/<class>/*.JPEG and val/<class>/*.JPEG):
  python -m ssljax.main --config configs/mocov3_vit_s16_imagenet.py --workdir workdirs/mocov3_s16 \
      --config.data.path=DATA_DIR

300 epochs at global batch 4096 (93,600 steps) with 40 warm-up epochs, AdamW base lr 1.5e-4 x
batch/256, weight decay 0.1, T = 0.2, momentum 0.99 -> 1 along a cosine, 3-layer projector and
2-layer predictor of width 4096 with output BN, frozen random patch projection.
"An Empirical Study of Training Self-Supervised Vision Transformers" reports 73.2% linear top-1
for ViT-S/16 with this recipe; ssljax has NOT measured this config yet (no time or figure is
claimed for it). The views are the reference's asymmetric ones: view 1 always blurred, view 2
blurred with p=0.1 and solarised with p=0.2 (`data.global_view_*_prob`).
"""
from ssljax import config as config_lib

common = config_lib.import_sibling(__file__)   # configs/common.py


def get_config():
  config = common.byol_jitter(common.imagenet("mocov3", "vit", batch_size=4096, epochs=300))
  config.model.variant = "s"
  config.optimizer.update(name="adamw", base_lr=1.5e-4,   # x batch/256
                          weight_decay=0.1, warmup_steps=40 * common.imagenet_steps(4096))
  config.mocov3.update(temperature=0.2, momentum_base=0.99, proj_hidden_dims=(4096, 4096),
                       proj_dim=256, pred_hidden_dims=(4096,), pred_last_bn=True,
                       freeze_patch_embed=True,
                       loss_impl="auto")   # tiled InfoNCE kernel on GPU/TPU (O(N) memory)
  return config
