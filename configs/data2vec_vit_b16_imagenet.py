"""data2vec 2.0 ViT-B/16 on ImageNet-1k.

Run:
  python -m ssljax.main --config configs/data2vec_vit_b16_imagenet.py --workdir workdirs/d2v_b16 \
      --config.data.path=/data/imagenet

"Efficient Self-supervised Learning with Contextualized Target Representations for Vision, Speech
and Language": batch 512 images x 16 masks, mask 0.8, top-10 of 12 teacher blocks, EMA 0.9998 ->
0.99999, AdamW lr 2e-3 (batch 512) with b2 0.95, weight decay 0.05, 150 epochs; reports 84.0%
fine-tuned top-1 for ViT-B (random masks here instead of the paper's inverse block masks).

ssljax has not measured this config yet (no ImageNet run has been made); numbers quoted are the
paper's."""
from ssljax import config as config_lib

common = config_lib.import_sibling(__file__)   # configs/common.py


def get_config():
  config = common.masked_vit_imagenet("data2vec", "b", batch_size=512,
                                      total_steps=375_300)   # 150 epochs
  common.crop_only(config)
  config.data.augment.crop_scale = (0.2, 1.0)
  config.optimizer.update(base_lr=1e-3, warmup_steps=25_020)   # 2e-3 at batch 512
  config.data2vec.update(mask_ratio=0.8, num_masks=16, top_k=10, decoder_width=768,
                         decoder_layers=6, decoder_groups=16, ema_start=0.9998, ema_end=0.99999,
                         ema_anneal_steps=75_000)
  return config
