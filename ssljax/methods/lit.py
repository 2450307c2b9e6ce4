"""LiT: locked-image tuning. A text tower learns to match a frozen, pretrained image tower.

"LiT: Zero-Shot Transfer with Locked-image text Tuning" (Zhai et al., 2022): the image tower
comes from any ssljax image method (`lit.image_tower`: an export folder written by
`python -m ssljax.export`, or a pretraining workdir, e.g. DINO's), is locked (no gradient, eval
mode, kept in the method state, not in the params) and used without a head; only the text tower,
which projects to the locked features' size, and the loss's scalars train. The loss is CLIP's
(`lit.loss='clip'`, the paper's) or SigLIP's (`'siglip'`).

`lit.feature_norm` (default 'none', the paper) optionally centres ('center') or standardises per
dimension ('standardize') the locked features before the loss and zero-shot, with running
statistics of the training batches (an exponential moving average, bias-corrected, momentum
`lit.feature_norm_momentum`, kept in the method state and used as is in evaluation): nothing is
learned on the image side. Self-supervised features often share a large common component (all
images' cosine similarities near 1); there the class differences are a small part of the
normalised feature, and the loss's temperature cap limits how far the text tower can amplify
them. The linear probe standardises its features the same way (ssljax.evaluate.linear).
"""
from __future__ import annotations

import math
import os

import jax
import jax.numpy as jnp
import numpy as np

from ssljax import losses
from ssljax.errors import ConfigError
from ssljax.methods import _image_text
from ssljax.methods import base

LOSSES = ("clip", "siglip")
FEATURE_NORMS = ("none", "center", "standardize")


def load_image_tower(path: str) -> base.Backbone:
  """The image tower saved at `path`: an export folder (model_card.json) or a workdir."""
  if os.path.isfile(os.path.join(path, "model_card.json")) or path.endswith("model_card.json"):
    from ssljax import export  # pylint: disable=import-outside-toplevel
    module, variables = export.load_backbone(path)
  elif os.path.isfile(os.path.join(path, "config.json")):
    from ssljax import workdir as workdir_lib  # pylint: disable=import-outside-toplevel
    run = workdir_lib.open_run(path, devices=jax.local_devices()[:1])
    module, variables = run.method.pretrained_backbone(run.params, run.method_state)
  else:
    raise FileNotFoundError(f"lit.image_tower={path!r}: expected an export folder (with "
                            f"model_card.json) or a pretraining workdir (with config.json)")
  variables = jax.tree_util.tree_map(np.asarray, jax.device_get(dict(variables)))
  return base.Backbone(module, variables)


class LiT(_image_text.ImageText):
  """LiT. Params: {'text', scalars}; state: {'locked': the image tower's variables}."""

  name = "lit"
  trains_image_tower = False

  @staticmethod
  def default_config():
    return _image_text.default_config(
        image_tower="",            # export folder or workdir of a pretrained image method
        loss="clip",               # 'clip' (the paper) | 'siglip'
        init_log_scale=math.log(1 / 0.07), max_log_scale=math.log(100.0),
        init_log_t=math.log(10.0), init_bias=-10.0,
        feature_norm="none",       # 'none' (the paper) | 'center' | 'standardize' (module doc)
        feature_norm_momentum=0.99)

  @classmethod
  def validate_config(cls, config):
    super().validate_config(config)
    cfg = config.lit
    if cfg.loss not in LOSSES:
      raise ConfigError(f"config.lit.loss={cfg.loss!r}; expected one of {LOSSES}")
    if cfg.feature_norm not in FEATURE_NORMS:
      raise ConfigError(f"config.lit.feature_norm={cfg.feature_norm!r}; expected one of "
                        f"{FEATURE_NORMS}")
    if not 0.0 <= cfg.feature_norm_momentum < 1.0:
      raise ConfigError(f"config.lit.feature_norm_momentum={cfg.feature_norm_momentum}; "
                        f"expected in [0, 1)")
    if not cfg.image_tower:
      raise ConfigError("config.lit.image_tower=''; expected the export folder or workdir of a "
                        "pretrained image method (e.g. a dino_digits run)")
    if not os.path.exists(cfg.image_tower):
      raise ConfigError(f"config.lit.image_tower={cfg.image_tower!r} does not exist")

  def __init__(self, config):
    self._locked = load_image_tower(config.lit.image_tower)
    super().__init__(config)
    self.backbone = self._locked.module

  def _text_dim(self):
    return int(self._feature_dim())

  def _feature_dim(self):
    module = self._locked.module
    return getattr(module, "vit", module).num_features

  def scalars(self):
    if self.cfg.loss == "clip":
      return {"log_scale": self.cfg.init_log_scale}
    return {"log_t": self.cfg.init_log_t, "bias": self.cfg.init_bias}

  def _init_image(self, rng, images):
    del rng, images
    state = {"locked": jax.tree_util.tree_map(jnp.asarray, self._locked.variables)}
    if self.cfg.feature_norm != "none":
      d = int(self._feature_dim())
      # EMA sums of the features and their squares, and the EMA of 1 (bias correction).
      state["feature_stats"] = {"sum": jnp.zeros((d,), jnp.float32),
                                "sq": jnp.zeros((d,), jnp.float32),
                                "weight": jnp.zeros((), jnp.float32)}
    return {}, state

  def _image_embed(self, params, state, images, train, rng=None):
    del params, rng   # locked: eval mode, no gradient
    feats = self._locked.module.apply(jax.lax.stop_gradient(state["locked"]), images, train=False)
    feats = jax.lax.stop_gradient(feats.astype(jnp.float32))
    if self.cfg.feature_norm == "none":
      return feats, state
    stats = state["feature_stats"]
    if train:   # fold this (global) batch into the running statistics, then use them
      stats = update_feature_stats(stats, feats, self.cfg.feature_norm_momentum)
      state = {**state, "feature_stats": stats}
    return normalize_features(feats, stats, self.cfg.feature_norm), state

  def pair_loss(self, params, x, y):
    if self.cfg.loss == "clip":
      log_scale = jnp.minimum(params["log_scale"], self.cfg.max_log_scale)
      return (losses.clip_loss(x, y, log_scale, **self._impl()),
              {"logit_scale": jnp.exp(log_scale)})
    return (losses.sigmoid_contrastive(x, y, params["log_t"], params["bias"], **self._impl()),
            {"logit_scale": jnp.exp(params["log_t"])})

  def pretrained_backbone(self, params, state):
    return base.Backbone(self._locked.module, state["locked"])

  def embedding_head(self, params, state):
    return None


def update_feature_stats(stats, feats, momentum: float):
  """The running statistics ({'sum', 'sq', 'weight'}) with the batch feats [N, D] folded in."""
  m = momentum
  return {"sum": m * stats["sum"] + (1 - m) * jnp.mean(feats, axis=0),
          "sq": m * stats["sq"] + (1 - m) * jnp.mean(jnp.square(feats), axis=0),
          "weight": m * stats["weight"] + (1 - m)}


def normalize_features(feats, stats, how: str):
  """feats [N, D] centred ('center') or standardised ('standardize') with the running `stats`
  ({'sum', 'sq', 'weight'}: EMA sums and the EMA of 1); unchanged before any statistics."""
  weight = jnp.maximum(stats["weight"], 1e-12)
  mean = stats["sum"] / weight
  seen = stats["weight"] > 0
  out = feats - jnp.where(seen, mean, 0.0)
  if how == "standardize":
    var = jnp.maximum(stats["sq"] / weight - jnp.square(mean), 0.0)
    out = out * jnp.where(seen, jax.lax.rsqrt(var + 1e-6), 1.0)
  return out


METHOD = LiT
