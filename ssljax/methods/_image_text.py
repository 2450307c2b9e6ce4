"""The image-text methods' shared half: two towers, a tokenizer, paired views, the encoders.

`ImageText` is the base of `clip`, `siglip` and `lit`. Its batch is one lightly cropped image per
record ('global' [B, 1, H, W, C]) and one of the record's captions as token ids with their mask
('tokens', 'tokens_mask' [B, L]), from a paired source (ssljax.data.paired). The image tower is
the run's backbone (`config.model`), the text tower `ssljax.models.text.TextEncoder` from the
method's `text` block; both end in `embed_dim` (a bias-free linear map each). Subclasses give the
pairwise loss and its learned scalars.

Evaluation: `features` (kNN, probes, export) are the image tower's features; `encode_image` and
`encode_text` (normalised embeddings) drive zero-shot classification and retrieval
(ssljax.evaluate.zeroshot), which the evaluator runs for any method that has them.
"""
from __future__ import annotations

import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from ssljax import losses
from ssljax import models
from ssljax.data import sources
from ssljax.data import text as text_data
from ssljax.data.views import Joint, ViewSpec
from ssljax.errors import ConfigError
from ssljax.methods import base
from ssljax.methods import common
from ssljax.models import text as text_model


def default_config(**overrides) -> ml_collections.ConfigDict:
  """The keys every image-text method has (its block: `config.clip`, `config.siglip`, ...)."""
  cfg = ml_collections.ConfigDict(dict(
      embed_dim=128,          # joint embedding size (LiT: the locked tower's feature size)
      text=text_model.default_config(),
      tokenizer="",           # a sentencepiece .model file; '' = train one on the captions
      vocab_size=128,         # pieces of a tokenizer trained on the captions; >= the table's rows
      loss_impl="auto",       # auto | reference | xla | pallas (losses.contrastive)
      prompts=(),             # zero-shot prompt templates ('{}' = class name); () = the source's
  ))
  cfg.update(overrides)
  return cfg


class ImageText(base.Method):
  """Two towers and a pairwise loss over the global batch (subclasses: `pair_loss`, `scalars`)."""

  trains_image_tower = True

  @classmethod
  def validate_config(cls, config):
    cfg = config[cls.name]
    if cfg.embed_dim < 1 and cls.trains_image_tower:
      raise ConfigError(f"config.{cls.name}.embed_dim={cfg.embed_dim}; expected >= 1")
    if cfg.text.pool not in text_model.POOLS:
      raise ConfigError(f"config.{cls.name}.text.pool={cfg.text.pool!r}; expected one of "
                        f"{text_model.POOLS}")
    if cfg.text.max_len < 3:
      raise ConfigError(f"config.{cls.name}.text.max_len={cfg.text.max_len}; expected >= 3")
    if cfg.tokenizer and not os.path.isfile(cfg.tokenizer):
      raise ConfigError(f"config.{cls.name}.tokenizer={cfg.tokenizer!r} does not exist; "
                        f"expected a sentencepiece .model file (or '' to train one)")
    data = config.data
    if data.source == "tfds_captions" and not data.tfds_name:
      raise ConfigError("config.data.tfds_name='' with data.source='tfds_captions'; expected a "
                        "TFDS name such as 'coco_captions'")
    if data.source in ("captions", "webdataset") and not os.path.isdir(data.path or ""):
      raise ConfigError(f"config.data.path={data.path!r} with data.source={data.source!r}; "
                        f"expected a folder with train/ and {data.eval_split}/ inside")

  def __init__(self, config):
    super().__init__(config)
    data = config.data
    self.tokenizer = text_data.tokenizer_for(
        self.cfg.tokenizer, lambda: sources.build_source(data, data.train_split),
        self.cfg.vocab_size)
    self.backbone = common.backbone_from_config(config)
    self.image_proj = Projection(int(self.cfg.embed_dim))
    # The embedding table holds vocab_size rows at least (a tokenizer trained on few captions
    # may have fewer pieces; ids never exceed the tokenizer's own).
    vocab = max(self.tokenizer.vocab_size, int(self.cfg.vocab_size))
    self.text_tower = text_model.build(self.cfg.text, vocab,
                                       self._text_dim(), models.parse_dtype(config.dtype))

  def _text_dim(self) -> int:
    return int(self.cfg.embed_dim)

  def view_spec(self) -> Joint:
    """One light crop of the image (`data.augment`: the configs turn colour changes and flips
    off where captions name colours and sides) and one caption."""
    image = ViewSpec(global_crops=1, global_size=self.config.data.image_size,
                     global_scale=tuple(self.config.data.augment.crop_scale))
    caption = text_data.CaptionViews(self.tokenizer.proto, int(self.cfg.text.max_len))
    return Joint((image, caption))

  def artifacts(self):
    return {"tokenizer.model": self.tokenizer.proto}

  # -- parameters --------------------------------------------------------------------------
  def scalars(self) -> dict[str, float]:
    """Must: the learned scalars of the loss and their initial values."""
    raise NotImplementedError

  def init(self, rng, batch):
    k_img, k_txt = jax.random.split(rng)
    images = batch["global"][:, 0]
    params, state = self._init_image(k_img, images)
    params["text"], _ = common.init_module(self.text_tower, k_txt, batch["tokens"],
                                           mask=batch["tokens_mask"])
    params.update({k: jnp.asarray(v, jnp.float32) for k, v in self.scalars().items()})
    return params, state

  def _init_image(self, rng, images):
    params, state = common.init_chain(rng, images, {"backbone": self.backbone,
                                                    "image_proj": self.image_proj})
    return params, {"backbone": state["backbone"]}

  # -- encoders ----------------------------------------------------------------------------
  def _image_embed(self, params, state, images, train, rng=None):
    """images -> (unnormalised image embeddings [N, E] float32, state)."""
    feats, collections = common.apply_module(self.backbone, params["backbone"],
                                             state["backbone"], images, train=train, rng=rng)
    emb = self.image_proj.apply({"params": params["image_proj"]}, feats.astype(jnp.float32))
    return emb.astype(jnp.float32), {**state, "backbone": collections}

  def _text_embed(self, params, tokens, mask, train, rng=None):
    rngs = {"dropout": rng} if (train and rng is not None) else None
    return self.text_tower.apply({"params": params["text"]}, tokens, mask, train=train,
                                 rngs=rngs).astype(jnp.float32)

  def encode_image(self, params, state, images):
    """Normalised image embeddings [N, E] float32 (eval mode)."""
    return losses.l2_normalize(self._image_embed(params, state, images, train=False)[0])

  def encode_text(self, params, state, tokens, mask):
    """Normalised text embeddings [N, E] float32 of token ids [N, L] and their mask."""
    del state
    return losses.l2_normalize(self._text_embed(params, tokens, mask, train=False))

  # -- the step ----------------------------------------------------------------------------
  def pair_loss(self, params, x, y):
    """Must: the loss of paired embeddings x, y [N, E] (the global batch) and its metrics."""
    raise NotImplementedError

  def loss(self, params, state, batch, rng, step):
    del step
    k_img, k_txt = jax.random.split(rng)
    x, state = self._image_embed(params, state, batch["global"][:, 0], train=True, rng=k_img)
    y = self._text_embed(params, batch["tokens"], batch["tokens_mask"], train=True, rng=k_txt)
    loss, metrics = self.pair_loss(params, x, y)
    xn, yn = losses.l2_normalize(x), losses.l2_normalize(y)
    metrics.update(positive_cosine=jnp.mean(jnp.sum(xn * yn, -1)),
                   embedding_std=jnp.mean(jnp.std(xn, axis=0)))
    return loss, (metrics, state)

  def _impl(self):
    return {"impl": self.cfg.loss_impl}

  def embedding_head(self, params, state):
    del state
    return base.Backbone(self.image_proj, {"params": params["image_proj"]})


class Projection(nn.Module):
  """A bias-free linear map to the joint embedding (CLIP's and SigLIP's image projection)."""
  features: int

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    del train
    return nn.Dense(self.features, use_bias=False, param_dtype=jnp.float32, name="dense")(x)
