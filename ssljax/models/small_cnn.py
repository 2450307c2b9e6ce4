"""A small CNN for 32-64 px images: the size of the "small ConvNet" baselines users compare against.

Four stages of (3x3 conv, norm, ReLU) x `convs_per_stage`, a 2x2 max-pool between stages, global
average pooling: [N, H, W, C] -> [N, widths[-1]]. The default widths (32, 64, 128, 256) with one
conv per stage have 0.39 M parameters (lightly's and solo-learn's CIFAR examples use a ResNet-18,
11 M, for which `resnet` with `cifar_stem=True, depth=18` is the backbone; this one trains about
an order of magnitude faster on a CPU). BatchNorm statistics live in 'batch_stats' as in
ssljax.models.resnet; GroupNorm with `norm='group'`. `input_norm='per_image'` standardises each
input image (mean 0, standard deviation 1 over its pixels and channels) before the first conv, so
that brightness and contrast, nuisances on most small-image data, cannot carry the features; the
small-image recipes (configs/*_small.py) set it.

Plain Flax. The conv op and the per-input hook are module fields, as in ResNet, so
`ssljax.models.build_backbone` gives it XLA:CPU's ops (`ssljax.cpu.conv.resnet_ops`) when the
model config's `cpu_tuning` says so.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

NORMS = ("batch", "group")
INPUT_NORMS = ("none", "per_image")
# 'he': He et al.'s fan-out normal (std sqrt(2 / (9 C_out))), as ssljax's ResNet. 'torch': PyTorch's
# default nn.Conv2d initialisation, kaiming-uniform with a = sqrt(5), i.e. uniform with variance
# 1 / (3 fan_in): the weights the small-CNN baselines written in torch start from.
CONV_INITS = {"he": nn.initializers.variance_scaling(2.0, "fan_out", "normal"),
              "torch": nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")}


def default_config() -> ml_collections.ConfigDict:
  """Every small-CNN key with its default."""
  return ml_collections.ConfigDict({
      "name": "small_cnn",
      "dtype": "float32",          # compute dtype; params are always float32
      "widths": (32, 64, 128, 256),   # channels per stage; 2x2 max-pool between stages
      "convs_per_stage": 1,
      "norm": "batch",             # 'batch' | 'group'
      "input_norm": "none",        # 'none' | 'per_image': standardise each image (mean 0, std 1)
      "conv_init": "he",           # 'he' (fan-out normal) | 'torch' (PyTorch's Conv2d default)
  })


def _identity(x: jax.Array) -> jax.Array:
  return x


def per_image_standardize(x: jax.Array, eps: float = 1e-6) -> jax.Array:
  """[N, H, W, C] -> float32: each image minus its mean over (H, W, C), over its standard
  deviation."""
  x = x.astype(jnp.float32)
  x = x - jnp.mean(x, axis=(1, 2, 3), keepdims=True)
  return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=(1, 2, 3), keepdims=True) + eps)


class SmallCNN(nn.Module):
  """[N, H, W, C] float -> [N, widths[-1]] float32 globally average-pooled features.

  Attributes:
    widths: output channels of each stage.
    convs_per_stage: 3x3 conv + norm + ReLU layers per stage.
    norm: 'batch' (running statistics in 'batch_stats') or 'group' (gcd(32, C) groups).
    input_norm: 'none', or 'per_image': each image minus its mean over (H, W, C), divided by its
      standard deviation, before the first conv (for data whose brightness and contrast are
      nuisances; README, "Your own images").
    conv_init: the conv kernels' initialisation, a key of CONV_INITS ('he' or 'torch').
    dtype: compute dtype (params float32, output float32).
    conv_general_dilated / store_once: the conv op and the hook on every conv input after the
      first (lax's conv and the identity by default; see ssljax.cpu.conv.resnet_ops).
  """
  widths: tuple[int, ...] = (32, 64, 128, 256)
  convs_per_stage: int = 1
  norm: str = "batch"
  input_norm: str = "none"
  conv_init: str = "he"
  dtype: Any = jnp.float32
  conv_general_dilated: Callable = jax.lax.conv_general_dilated
  store_once: Callable[[jax.Array], jax.Array] = _identity

  def __post_init__(self):
    if self.norm not in NORMS:
      raise ValueError(f"small_cnn norm={self.norm!r}; expected one of {NORMS}")
    if self.input_norm not in INPUT_NORMS:
      raise ValueError(f"small_cnn input_norm={self.input_norm!r}; expected one of {INPUT_NORMS}")
    if self.conv_init not in CONV_INITS:
      raise ValueError(f"small_cnn conv_init={self.conv_init!r}; expected one of {tuple(CONV_INITS)}")
    if not self.widths or any(int(w) < 1 for w in self.widths):
      raise ValueError(f"small_cnn widths={self.widths!r}; expected a non-empty tuple of positive ints")
    if self.convs_per_stage < 1:
      raise ValueError(f"small_cnn convs_per_stage={self.convs_per_stage!r}; expected >= 1")
    super().__post_init__()

  @property
  def num_features(self) -> int:
    return int(self.widths[-1])

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
    """images [N, H, W, C] (normalised) -> [N, widths[-1]] float32."""
    x = per_image_standardize(images) if self.input_norm == "per_image" else images
    x = x.astype(self.dtype)
    for s, width in enumerate(self.widths):
      if s > 0:
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
      for c in range(self.convs_per_stage):
        if s or c:
          x = self.store_once(x)
        x = nn.Conv(int(width), (3, 3), padding=((1, 1), (1, 1)), use_bias=False,
                    kernel_init=CONV_INITS[self.conv_init], dtype=self.dtype, param_dtype=jnp.float32,
                    conv_general_dilated=self.conv_general_dilated, name=f"conv{s}_{c}")(x)
        if self.norm == "batch":
          x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                           dtype=self.dtype, param_dtype=jnp.float32, name=f"norm{s}_{c}")(x)
        else:
          x = nn.GroupNorm(num_groups=math.gcd(32, int(width)), epsilon=1e-5, dtype=self.dtype,
                           param_dtype=jnp.float32, name=f"norm{s}_{c}")(x)
        x = nn.relu(x)
    return jnp.mean(x.astype(jnp.float32), axis=(1, 2))
