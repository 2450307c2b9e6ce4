"""SigLIP ViT-B/16 on a WebDataset of image-text pairs at batch 32,768.

Run (DATA_DIR/train/*.tar and DATA_DIR/val/*.tar hold <key>.jpg + <key>.txt members; TOKENIZER
is a sentencepiece .model file, e.g. the 32k-piece model SigLIP's releases ship):
  python -m ssljax.main --config configs/siglip_b16_webdataset.py --workdir workdirs/siglip_b16 \\
      --config.data.path=DATA_DIR --config.siglip.tokenizer=TOKENIZER

Settings from "Sigmoid Loss for Language Image Pre-Training" (Zhai et al., 2023): batch 32k,
224 px, ViT-B/16 image tower and a B-sized (768-wide, 12-layer) text tower over 16 tokens,
t' = log 10 and b = -10 at initialisation, learning rate 1e-3 and weight decay 1e-4. The paper
trains with Adafactor-style ScalingViT settings on WebLI; here AdamW (beta2 0.95) with 5,000
warm-up steps, cosine decay, and 3B examples seen (91,552 steps; the paper reports several
budgets). The loss runs per data shard with all pairs of the global batch (the tiled sigmoid
kernel under shard_map, O(N / P) memory per device). ssljax has NOT measured this config (no
time or accuracy is claimed for it); `python -m ssljax.plan` compiles it for a TPU slice.

On a v5e:4x4 slice (16 chips of 16 GiB) batch 32,768 does not fit (126.7 GiB per chip; 52.4 GiB
with `model.remat=True`). What fits, compiled 2026-12-05 by
  python -m ssljax.plan --config configs/siglip_b16_webdataset.py --topology v5e:4x4 \
      --config.batch_size=8192 --config.model.remat=True --out /tmp/plan
(libtpu ahead-of-time, on a CPU; mesh data 16): batch 8,192 (512 per chip) with the image
tower's blocks rematerialised, 14.69 GiB of HBM per chip (arguments 2.27 GiB, temporaries 12.34
GiB), 75.6 TFLOP per step per chip, est. 720 ms per step (a roofline lower bound, HBM-bound),
est. MFU 53.3%. Gradient accumulation cannot stand in for the larger batch (the loss's
negatives are the whole batch; `grad_accum_steps` > 1 is refused for it), so a 4x4 slice trains
at batch 8k; set `--config.total_steps` for the examples to be seen (it stays SEEN // 32,768).
"""
from ssljax import config as config_lib

common = config_lib.import_sibling(__file__)   # configs/common.py

SEEN = 3_000_000_000


def get_config():
  batch = 32_768
  config = common.webdataset_image_text("siglip", batch, SEEN // batch, "b", 16)
  config.model.pool = "gap"
  config.data.augment.update(mean=(0.5,), std=(0.5,))
  config.optimizer.update(name="adamw", base_lr=1e-3 * 256 / batch, b2=0.95,
                          weight_decay=1e-4, warmup_steps=5_000)
  config.siglip.update(embed_dim=768, vocab_size=32_000)
  config.siglip.text.update(variant="b768", max_len=16, pool="eos")
  return config
