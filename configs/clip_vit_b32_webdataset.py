"""CLIP ViT-B/32 on a WebDataset of image-text pairs: the paper's recipe at batch 32,768.

Run (DATA_DIR/train/*.tar and DATA_DIR/val/*.tar hold <key>.jpg + <key>.txt members, the layout
LAION / DataComp / CC12M ship in; TOKENIZER is a sentencepiece .model file):
  python -m ssljax.main --config configs/clip_vit_b32_webdataset.py --workdir workdirs/clip_b32 \\
      --config.data.path=DATA_DIR --config.clip.tokenizer=TOKENIZER

Settings from "Learning Transferable Visual Models From Natural Language Supervision" (Radford
et al., 2021; its hyper-parameter tables): batch 32,768, 32 epochs of the 400M pairs, AdamW
lr 5e-4 (beta2 0.98, eps 1e-6), weight decay 0.2, 2,000 warm-up steps, cosine decay; a
12-layer, 512-wide, 8-head causal text transformer of 76 tokens + EOS pooled at EOS; a joint
embedding of 512; the learned temperature starts at 0.07 and is clipped at 100. The paper uses a
49,152-token byte-level BPE; name any sentencepiece model here (a model trained at build time on
hundreds of millions of captions is not practical). ssljax has NOT measured this config (no
time or accuracy is claimed for it); the steps below assume 400M pairs.
"""
from ssljax import config as config_lib

common = config_lib.import_sibling(__file__)   # configs/common.py

PAIRS = 400_000_000


def get_config():
  batch = 32_768
  config = common.webdataset_image_text("clip", batch, 32 * PAIRS // batch, "b", 32)
  config.model.pool = "cls"
  config.data.augment.update(mean=common.IMAGENET_MEAN, std=common.IMAGENET_STD)
  config.optimizer.update(name="adamw", base_lr=5e-4 * 256 / batch, b2=0.98,
                          weight_decay=0.2, warmup_steps=2_000)
  config.clip.update(embed_dim=512, vocab_size=49_152)
  config.clip.text.update(variant="b", max_len=77, pool="eos", causal=True)
  return config
