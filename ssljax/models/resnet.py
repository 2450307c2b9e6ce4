"""ResNet-18 / ResNet-50 backbones.

From "Deep Residual Learning for Image Recognition" (He et al., 2016): basic blocks for
ResNet-18, bottleneck blocks for ResNet-50 (stride on the 3x3 conv, the "v1.5" layout
torchvision uses), projection shortcuts (1x1 conv + norm) where the shape changes.

- Norm: BatchNorm ("Batch Normalization", Ioffe & Szegedy, 2015) with running statistics
  in the 'batch_stats' collection, momentum 0.9, eps 1e-5. With train=True the batch
  statistics are used and the running averages updated (pass mutable=['batch_stats']).
  Under `jax.jit` with the batch sharded over devices the mean/variance reduce over the
  GLOBAL batch (XLA inserts the all-reduce), i.e. SyncBN for free. Or GroupNorm
  ("Group Normalization", Wu & He, 2018) with gcd(32, channels) groups.
- The last norm scale of every residual block is zero-initialised, so each block starts
  as the identity ("Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour",
  Goyal et al., 2017). Conv kernels: He-normal, fan_out ("Delving Deep into Rectifiers").
- `cifar_stem`: a 3x3 stride-1 conv and no max-pool, for 32x32 (or smaller) images,
  as in the SimCLR CIFAR-10 experiments.

Parameter names: `stem_conv`, `stem_norm`,
`stage{s}_block{b}/{conv1,norm1,...,proj_conv,proj_norm}`.

Plain Flax: the convolutions call `conv_general_dilated` (lax's by default) and every conv input
after the stem goes through `store_once` (the identity by default), both module fields.
`ssljax.models.build_backbone` sets them to XLA:CPU's versions (`ssljax.cpu.conv`) when the
model config's `cpu_tuning` says so, and only then.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from ssljax.models import vit as vit_lib

# depth -> (block kind, blocks per stage)
DEPTHS = {18: ("basic", (2, 2, 2, 2)), 50: ("bottleneck", (3, 4, 6, 3))}
NORMS = ("batch", "group")
_BN_MOMENTUM = 0.9
_BN_EPS = 1e-5
_conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def default_config() -> ml_collections.ConfigDict:
  """Every ResNet key with its default (a standard ResNet-50 with BatchNorm)."""
  return ml_collections.ConfigDict({
      "name": "resnet",
      "dtype": "float32",         # compute dtype; params are always float32
      "depth": 50,                # 18 | 50
      "width_multiplier": 1.0,    # scales every channel count
      "cifar_stem": False,        # 3x3 stride-1 stem conv, no max-pool
      "norm": "batch",            # 'batch' | 'group'
      "remat": False,             # recompute each residual block's activations in the backward pass
      "remat_policy": "full",     # with remat: what a block keeps (ssljax.models.vit.REMAT_POLICIES)
  })


def _identity(x: jax.Array) -> jax.Array:
  return x


def _scaled(channels: int, width_multiplier: float) -> int:
  return max(1, int(channels * width_multiplier))


class _Norm(nn.Module):
  """BatchNorm or GroupNorm over the channel axis of [N, H, W, C]."""
  kind: str
  zero_init: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    scale_init = nn.initializers.zeros if self.zero_init else nn.initializers.ones
    if self.kind == "batch":
      return nn.BatchNorm(use_running_average=not train, momentum=_BN_MOMENTUM, epsilon=_BN_EPS,
                          scale_init=scale_init, dtype=self.dtype, param_dtype=jnp.float32,
                          name="bn")(x)
    groups = math.gcd(32, x.shape[-1])
    return nn.GroupNorm(num_groups=groups, epsilon=_BN_EPS, scale_init=scale_init,
                        dtype=self.dtype, param_dtype=jnp.float32, name="gn")(x)


def _conv(features: int, kernel: int, strides: int, name: str, owner: nn.Module) -> nn.Conv:
  """Bias-free conv with torch-style symmetric padding kernel // 2, in `owner`'s dtype, calling
  `owner.conv_general_dilated`."""
  pad = kernel // 2
  return nn.Conv(features, (kernel, kernel), strides=(strides, strides),
                 padding=((pad, pad), (pad, pad)), use_bias=False, kernel_init=_conv_init,
                 dtype=owner.dtype, param_dtype=jnp.float32, name=name,
                 conv_general_dilated=owner.conv_general_dilated)


class BasicBlock(nn.Module):
  """Two 3x3 convs; out channels = `features`. The op fields are ResNet's."""
  features: int
  strides: int = 1
  norm: str = "batch"
  dtype: Any = jnp.float32
  conv_general_dilated: Callable = jax.lax.conv_general_dilated
  store_once: Callable[[jax.Array], jax.Array] = _identity
  expansion = 1

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    """[N, H, W, Cin] -> [N, H/s, W/s, features]."""
    x = self.store_once(x)
    y = _conv(self.features, 3, self.strides, "conv1", self)(x)
    y = self.store_once(nn.relu(_Norm(self.norm, dtype=self.dtype, name="norm1")(y, train)))
    y = _conv(self.features, 3, 1, "conv2", self)(y)
    y = _Norm(self.norm, zero_init=True, dtype=self.dtype, name="norm2")(y, train)
    return nn.relu(y + _shortcut(x, self.features, self.strides, train, self))


class BottleneckBlock(nn.Module):
  """1x1 reduce, 3x3 (strided), 1x1 expand; out channels = 4 * `features`. The op fields are
  ResNet's."""
  features: int
  strides: int = 1
  norm: str = "batch"
  dtype: Any = jnp.float32
  conv_general_dilated: Callable = jax.lax.conv_general_dilated
  store_once: Callable[[jax.Array], jax.Array] = _identity
  expansion = 4

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    """[N, H, W, Cin] -> [N, H/s, W/s, 4 * features]."""
    out = self.features * self.expansion
    x = self.store_once(x)
    y = _conv(self.features, 1, 1, "conv1", self)(x)
    y = self.store_once(nn.relu(_Norm(self.norm, dtype=self.dtype, name="norm1")(y, train)))
    y = _conv(self.features, 3, self.strides, "conv2", self)(y)
    y = self.store_once(nn.relu(_Norm(self.norm, dtype=self.dtype, name="norm2")(y, train)))
    y = _conv(out, 1, 1, "conv3", self)(y)
    y = _Norm(self.norm, zero_init=True, dtype=self.dtype, name="norm3")(y, train)
    return nn.relu(y + _shortcut(x, out, self.strides, train, self))


def _shortcut(x, features, strides, train, block):
  """Identity, or a 1x1 projection + norm where channels or resolution change.

  Called inside `block`'s compact __call__, so the submodules belong to that block.
  """
  if x.shape[-1] == features and strides == 1:
    return x
  x = _conv(features, 1, strides, "proj_conv", block)(x)
  return _Norm(block.norm, dtype=block.dtype, name="proj_norm")(x, train)


class ResNet(nn.Module):
  """ResNet backbone returning global-average-pooled features.

  Attributes:
    depth: 18 (basic blocks) or 50 (bottleneck blocks).
    width_multiplier: multiplies every channel count (stem 64, stages 64/128/256/512).
    cifar_stem: 3x3 stride-1 stem without max-pool instead of 7x7 stride-2 + max-pool.
    norm: 'batch' or 'group'.
    dtype: compute dtype (params float32, output float32).
    conv_general_dilated: the op every conv calls, with `lax.conv_general_dilated`'s signature
      (what `nn.Conv` takes); lax's by default.
    store_once: applied to every conv input after the stem, [N, H, W, C] -> the same values;
      the identity by default. (XLA:CPU versions of both: `ssljax.cpu.conv.resnet_ops`.)
    remat, remat_policy, full_remat: wrap each residual block in `nn.remat` with that policy (as
      the ViT's; `full_remat` replaces nn.remat for policy 'full', on CPU).
  """
  depth: int = 50
  width_multiplier: float = 1.0
  cifar_stem: bool = False
  norm: str = "batch"
  dtype: Any = jnp.float32
  conv_general_dilated: Callable = jax.lax.conv_general_dilated
  store_once: Callable[[jax.Array], jax.Array] = _identity
  remat: bool = False
  remat_policy: str = "full"
  full_remat: Callable | None = None

  def __post_init__(self):
    if self.depth not in DEPTHS:
      raise ValueError(f"ResNet depth={self.depth!r}; expected one of {tuple(DEPTHS)}")
    if self.norm not in NORMS:
      raise ValueError(f"ResNet norm={self.norm!r}; expected one of {NORMS}")
    if not self.width_multiplier > 0:
      raise ValueError(f"ResNet width_multiplier={self.width_multiplier!r}; expected > 0")
    super().__post_init__()

  @property
  def num_features(self) -> int:
    """Channels of the last stage: 512 * w (ResNet-18) or 2048 * w (ResNet-50)."""
    kind, _ = DEPTHS[self.depth]
    expansion = 4 if kind == "bottleneck" else 1
    return _scaled(512, self.width_multiplier) * expansion

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
    """Encodes images.

    Args:
      images: [N, H, W, C] float, already normalised.
      train: use batch statistics and update the running averages (BatchNorm).

    Returns:
      [N, num_features] float32 global-average-pooled features.
    """
    kind, blocks = DEPTHS[self.depth]
    block_cls = BottleneckBlock if kind == "bottleneck" else BasicBlock
    block_cls = vit_lib.remat_block(block_cls, self.remat, self.remat_policy,   # train static
                                    full_remat=self.full_remat)
    x = images.astype(self.dtype)
    stem = _scaled(64, self.width_multiplier)
    if self.cifar_stem:
      x = _conv(stem, 3, 1, "stem_conv", self)(x)
      x = nn.relu(_Norm(self.norm, dtype=self.dtype, name="stem_norm")(x, train))
    else:
      x = _conv(stem, 7, 2, "stem_conv", self)(x)
      x = nn.relu(_Norm(self.norm, dtype=self.dtype, name="stem_norm")(x, train))
      x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    for s, n_blocks in enumerate(blocks):
      features = _scaled(64 * 2 ** s, self.width_multiplier)
      for b in range(n_blocks):
        strides = 2 if (s > 0 and b == 0) else 1
        x = block_cls(features, strides, self.norm, self.dtype, self.conv_general_dilated,
                      self.store_once, name=f"stage{s + 1}_block{b}")(x, train)
    return jnp.mean(x.astype(jnp.float32), axis=(1, 2))
