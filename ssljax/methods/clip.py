"""CLIP: an image tower and a text tower trained with the symmetric InfoNCE over the global batch.

"Learning Transferable Visual Models From Natural Language Supervision" (Radford et al., 2021):
logits = exp(t) x y^T on normalised embeddings with a learned log scale t, initialised at
log(1 / 0.07) and clipped at log(100) as in the paper. Under a sharded batch the loss runs as the
tiled kernels with global negatives (`losses.clip_loss`).
"""
from __future__ import annotations

import math

import jax.numpy as jnp

from ssljax import losses
from ssljax.methods import _image_text


class CLIP(_image_text.ImageText):
  """CLIP. Params: {'backbone', 'image_proj', 'text', 'log_scale'}; state: BatchNorm stats."""

  name = "clip"

  @staticmethod
  def default_config():
    return _image_text.default_config(init_log_scale=math.log(1 / 0.07),
                                      max_log_scale=math.log(100.0))

  def scalars(self):
    return {"log_scale": self.cfg.init_log_scale}

  def pair_loss(self, params, x, y):
    log_scale = jnp.minimum(params["log_scale"], self.cfg.max_log_scale)
    loss = losses.clip_loss(x, y, log_scale, **self._impl())
    return loss, {"logit_scale": jnp.exp(log_scale)}


METHOD = CLIP
