"""Projection heads, predictors, the DINO head and SwAV-style prototypes.

All heads map [N, D] features to [N, out] float32, computing in `dtype` with float32
params. BatchNorm layers keep running statistics in the 'batch_stats' collection
(momentum 0.9, eps 1e-5); under `jax.jit` with a sharded batch their statistics are over
the global batch.
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssljax import reductions

_BN_MOMENTUM = 0.9
_BN_EPS = 1e-5
_trunc_init = nn.initializers.truncated_normal(stddev=0.02)


def _batch_norm(train: bool, dtype: Any, name: str, use_bias: bool = True) -> nn.BatchNorm:
  return nn.BatchNorm(use_running_average=not train, momentum=_BN_MOMENTUM, epsilon=_BN_EPS,
                      use_bias=use_bias, dtype=dtype, param_dtype=jnp.float32, name=name)


class MLPHead(nn.Module):
  """Linear-BN-ReLU x len(hidden_dims), then Linear(out_dim) [-BN].

  Instances:
    SimCLR v1 projection ("A Simple Framework for Contrastive Learning of Visual
      Representations"): MLPHead([2048], 128).
    SimCLR v2 3-layer projection ("Big Self-Supervised Models are Strong Semi-Supervised
      Learners"): MLPHead([2048, 2048], 128, last_bn=True).
    BYOL projector / predictor ("Bootstrap Your Own Latent"): MLPHead([4096], 256).
    Barlow Twins / VICReg expander: MLPHead([8192, 8192], 8192).
    MoCo v3 projector: MLPHead([4096, 4096], 256, last_bn=True).

  A Linear followed by BN has no bias (BN's shift replaces it); the last BN has no
  shift either (scale only), as in SimCLR v2's output layer.

  Attributes:
    hidden_dims: widths of the hidden layers (may be empty: a single Linear).
    out_dim: output width.
    use_bn: BatchNorm after every hidden Linear.
    last_bn: BatchNorm (without shift) after the output Linear.
    dtype: compute dtype.
  """
  hidden_dims: Sequence[int]
  out_dim: int
  use_bn: bool = True
  last_bn: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """[N, D] -> [N, out_dim] float32."""
    x = x.astype(self.dtype)
    for i, dim in enumerate(self.hidden_dims):
      x = nn.Dense(dim, use_bias=not self.use_bn, dtype=self.dtype, param_dtype=jnp.float32,
                   name=f"linear{i}")(x)
      if self.use_bn:
        x = _batch_norm(train, self.dtype, f"bn{i}")(x)
      x = nn.relu(x)
    i = len(self.hidden_dims)
    x = nn.Dense(self.out_dim, use_bias=not self.last_bn, dtype=self.dtype,
                 param_dtype=jnp.float32, name=f"linear{i}")(x)
    if self.last_bn:
      x = _batch_norm(train, self.dtype, f"bn{i}", use_bias=False)(x)
    return x.astype(jnp.float32)


class DINOHead(nn.Module):
  """DINO projection head.

  From "Emerging Properties in Self-Supervised Vision Transformers" (Caron et al., 2021):
  an n_layers GELU MLP D -> hidden_dim -> ... -> bottleneck_dim, L2 normalisation of the
  bottleneck, then a bias-free weight-normalised Linear ("Weight Normalization",
  Salimans & Kingma, 2016) bottleneck_dim -> out_dim:
      W[:, j] = g[j] * V[:, j] / ||V[:, j]||.
  With norm_last_layer=True, g is fixed to 1 (no `g` param is created), which the paper
  reports stabilises training. DINO also freezes the last layer during the first epoch;
  that is the optimiser's job: mask the params under `last_layer`.

  use_bn=True puts a BatchNorm between every hidden Linear and its GELU (BatchNorm statistics in
  'batch_stats' as `bn{i}`), the reference code's `use_bn_in_head` option (main_dino.py; off in
  its ViT recipes). On a tiny model whose features of different images are nearly parallel at
  init, it standardises the per-image differences, which the centred teacher needs to be
  anything but uniform.

  Attributes:
    out_dim: number of output logits K (65536 in the paper).
    hidden_dim: MLP hidden width.
    bottleneck_dim: width of the L2-normalised bottleneck.
    n_layers: Linear layers before the bottleneck normalisation (>= 1).
    norm_last_layer: fix the weight-norm gain g to 1.
    use_bn: BatchNorm after each hidden Linear (train=True: batch statistics, updated).
    dtype: compute dtype.
    cpu_tuning: the last layer's batch reductions in their XLA:CPU form (`WeightNormDense`).
  """
  out_dim: int
  hidden_dim: int = 2048
  bottleneck_dim: int = 256
  n_layers: int = 3
  norm_last_layer: bool = True
  use_bn: bool = False
  dtype: Any = jnp.float32
  cpu_tuning: bool = False

  def __post_init__(self):
    if self.n_layers < 1:
      raise ValueError(f"DINOHead n_layers={self.n_layers}; expected >= 1")
    super().__post_init__()

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """[N, D] -> [N, out_dim] float32 logits (before the temperature)."""
    x = x.astype(self.dtype)
    dims = [self.hidden_dim] * (self.n_layers - 1) + [self.bottleneck_dim]
    for i, dim in enumerate(dims):
      x = nn.Dense(dim, kernel_init=_trunc_init, dtype=self.dtype, param_dtype=jnp.float32,
                   name=f"mlp{i}")(x)
      if i < len(dims) - 1:
        if self.use_bn:
          x = _batch_norm(train, self.dtype, f"bn{i}")(x)
        x = nn.gelu(x, approximate=False)
    x = x.astype(jnp.float32)
    x = x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
    return WeightNormDense(self.out_dim, learn_gain=not self.norm_last_layer, dtype=self.dtype,
                           cpu_tuning=self.cpu_tuning, name="last_layer")(x)


class WeightNormDense(nn.Module):
  """Bias-free Linear with per-output-unit weight normalisation: W = g * V / ||V||_col.

  Attributes:
    features: output width K.
    learn_gain: create a learnable gain `g` [K] (init 1); otherwise g = 1.
    dtype: compute dtype.
    cpu_tuning: the column norms and the gain's gradient as matvecs (`ssljax.reductions`'s
      XLA:CPU form, `ssljax.cpu.enabled`); off: plain float32 sums.
  """
  features: int
  learn_gain: bool = True
  dtype: Any = jnp.float32
  cpu_tuning: bool = False

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """[N, D] -> [N, features] float32."""
    v = self.param("kernel", _trunc_init, (x.shape[-1], self.features), jnp.float32)  # [D, K]
    # x @ (V / ||V||_col) computed as (x @ V) * (1 / ||V||_col): the [D, K] normalised kernel is
    # never formed. The column norms are a batch reduction over D (ssljax.reductions, float32).
    sq = reductions.leading_sum(v * v, cpu_tuning=self.cpu_tuning)                     # [K]
    scale = 1.0 / jnp.maximum(jnp.sqrt(sq), 1e-12)
    if self.learn_gain:
      scale = scale * self.param("g", nn.initializers.ones, (self.features,), jnp.float32)
    y = jnp.dot(x.astype(self.dtype), v.astype(self.dtype)).astype(jnp.float32)
    return reductions.scale_columns(y, scale, cpu_tuning=self.cpu_tuning)          # [N, K]


class Prototypes(nn.Module):
  """SwAV prototypes: a bias-free Linear D -> num_prototypes.

  From "Unsupervised Learning of Visual Features by Contrasting Cluster Assignments"
  (Caron et al., 2020). The kernel lives at `kernel` with shape [D, num_prototypes]; SwAV
  L2-normalises its columns (axis 0) after every step, which the method does on the params,
  and feeds L2-normalised features, so the outputs are cosine scores.

  Attributes:
    num_prototypes: K.
    dtype: compute dtype.
  """
  num_prototypes: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """[N, D] -> [N, num_prototypes] float32."""
    del train
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        (x.shape[-1], self.num_prototypes), jnp.float32)  # [D, K]
    y = jnp.dot(x.astype(self.dtype), kernel.astype(self.dtype))
    return y.astype(jnp.float32)
