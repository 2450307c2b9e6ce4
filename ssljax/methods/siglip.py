"""SigLIP: an image tower and a text tower trained with the pairwise sigmoid loss.

"Sigmoid Loss for Language Image Pre-Training" (Zhai et al., 2023): every (image, text) pair of
the global batch is a binary classification, logits = exp(t') x y^T + b on normalised
embeddings, with t' and b learned and initialised at log 10 and -10 (the paper's values, which
keep the initial loss from being dominated by the N^2 - N negatives). Under a sharded batch the
loss runs as the tiled kernels over all pairs of the global batch (`losses.sigmoid_contrastive`).
"""
from __future__ import annotations

import math

import jax.numpy as jnp

from ssljax import losses
from ssljax.methods import _image_text


class SigLIP(_image_text.ImageText):
  """SigLIP. Params: {'backbone', 'image_proj', 'text', 'log_t', 'bias'}; state: BN stats."""

  name = "siglip"

  @staticmethod
  def default_config():
    return _image_text.default_config(init_log_t=math.log(10.0), init_bias=-10.0)

  def scalars(self):
    return {"log_t": self.cfg.init_log_t, "bias": self.cfg.init_bias}

  def pair_loss(self, params, x, y):
    loss = losses.sigmoid_contrastive(x, y, params["log_t"], params["bias"], **self._impl())
    return loss, {"logit_scale": jnp.exp(params["log_t"]), "logit_bias": params["bias"]}


METHOD = SigLIP
