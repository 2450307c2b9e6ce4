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

Parameter names: `stem_conv`, `stem_norm`, `stage{s}_block{b}/{conv1,norm1,...,proj_conv,proj_norm}`.

Three workarounds for XLA:CPU, all inactive on other backends (benchmarks/resnet_cpu_workarounds.py
measures each): every conv input after the stem goes through `computed_once` (XLA:CPU otherwise
recomputes each norm + ReLU (+ residual) chain inside the transposes that feed the convolutions'
weight gradients: a CIFAR ResNet-18 SimCLR step was 1.1-1.3x slower); the stride-2 convs get
their input gradient phase by phase (`_stride2_input_grad`) instead of as a conv over a dilated
array (0.99-1.03x at batch 32, 1.12-1.14x at batch 128 on the same step); and the 3x3 stride-1
convs with at least `CPU_WINOGRAD_MIN_CHANNELS` (128) channels run as Winograd F(4x4, 3x3) or,
from `CPU_WINOGRAD_F2_CHANNELS` (256) on, F(2x2, 3x3) (`ssljax.models.winograd`: batched matrix
products instead of Eigen's convolution; the same step was 1.18x slower at batch 32 and 1.16x at
batch 128 without it, where it replaces the 9 such convs of stages 2-4).
"""
from __future__ import annotations

import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from ssljax.models import winograd

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
  })


def computed_once(x: jax.Array) -> jax.Array:
  """`x`, written once to its own buffer on the CPU backend; `x` itself on every other backend.

  A convolution's weight gradient needs its input with the batch axis moved last, so XLA:CPU
  transposes every conv input in the backward pass. When that input is an elementwise result (a
  norm's scale and shift, ReLU, a residual add), XLA's fusion pass treats it as cheap to recompute
  and fuses the whole chain, back to the last convolution outputs, into the transpose, and its loop
  emitter runs such transposes far slower than a plain one: on [64, 32, 32, 64] float32 (a CIFAR
  ResNet-18 stage 1 at batch 32 x 2 views) a transpose of a stored array took 1.1 ms, the same
  transpose with three norm + ReLU + residual steps fused in 55 ms (2-core AVX-512 machine, jaxlib
  0.10.2). `optimization_barrier` does not stop it (XLA:CPU removes barriers before fusion), but
  fusion never crosses a conditional: this routes `x` through a `lax.cond` whose predicate XLA
  cannot fold (x's first element is not NaN), so the chain is computed once, stored, and the
  transposes read the stored array. The cost is one copy of `x`. A CIFAR ResNet-18 SimCLR train
  step: 1.11-1.23x faster at batch 32, 1.19-1.30x at batch 128 (three runs; both versions in one
  process, alternating: benchmarks/resnet_cpu_workarounds.py). The other branch, taken only when
  that element is NaN, returns NaNs: the step is non-finite either way. Values and gradients are
  those of `x` otherwise (also under `jax.vmap`, where the conditional becomes a select and stops
  being a fusion boundary). Elsewhere (GPU, TPU) `lax.platform_dependent` resolves to the identity
  at lowering time.
  """
  def on_cpu(v):
    first = v.reshape(-1)[0]
    return jax.lax.cond(first == first, lambda: v, lambda: jnp.full_like(v, jnp.nan))
  return jax.lax.platform_dependent(x, cpu=on_cpu, default=lambda v: v)


_NHWC = ("NHWC", "HWIO", "NHWC")


def _plain_conv(x, w, stride, pad, precision=None):
  return jax.lax.conv_general_dilated(x, w, (stride, stride), ((pad, pad), (pad, pad)),
                                      dimension_numbers=_NHWC, precision=precision)


def _stride2_input_grad(dy: jax.Array, w: jax.Array, in_hw: tuple[int, int],
                        precision=None) -> jax.Array:
  """Input gradient of a stride-2 conv (3x3 with padding 1, or 1x1 without), phase by phase.

  The input gradient of a strided conv is a conv over the output gradient dilated by the stride;
  XLA:CPU computes it on the dilated array, three quarters zeros, and at a CIFAR ResNet-18's first
  stride-2 conv ([64, 32, 32, 64] -> 128 channels) that took 23 ms against 7 ms for the forward.
  Each parity class of input positions (even / odd row, even / odd column) sees a fixed subset of
  the kernel taps instead: (even, even) the centre tap (1x1), (even, odd) the centre row's outer
  taps (1x2), (odd, even) the centre column's (2x1), (odd, odd) the four corners (2x2). Four small
  stride-1 convs over the output gradient compute exactly those products (no zeros), and the four
  results interleave into the input's grid: 9.7 ms there, and never slower at the smaller stages.
  """
  n, h, wd, _ = dy.shape
  wt = jnp.swapaxes(w, 2, 3)                                      # [k, k, Cout, Cin]
  if w.shape[0] == 1:                                             # 1x1: only (even, even) positions
    even = _plain_conv(dy, wt, 1, 0, precision)
    zero = jnp.zeros_like(even)
    grid = jnp.stack([jnp.stack([even, zero], 3), jnp.stack([zero, zero], 3)], 2)
  else:
    padded = jnp.pad(dy, ((0, 0), (0, 1), (0, 1), (0, 0)))      # position m + 1 past the end: 0
    conv = lambda inp, k: _plain_conv(inp, k, 1, 0, precision)     # noqa: E731  (stride 1, VALID)
    ee = conv(dy, wt[1:2, 1:2])
    eo = conv(padded[:, :h], jnp.stack([wt[1, 2], wt[1, 0]])[None])
    oe = conv(padded[:, :, :wd], jnp.stack([wt[2, 1], wt[0, 1]])[:, None])
    oo = conv(padded, jnp.stack([jnp.stack([wt[2, 2], wt[2, 0]]), jnp.stack([wt[0, 2], wt[0, 0]])]))
    grid = jnp.stack([jnp.stack([ee, eo], 3), jnp.stack([oe, oo], 3)], 2)   # [N, H, 2, W, 2, C]
  return grid.reshape(n, 2 * h, 2 * wd, -1)[:, :in_hw[0], :in_hw[1]]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _stride2_conv(x: jax.Array, w: jax.Array, pad: int, precision=None) -> jax.Array:
  return _plain_conv(x, w, 2, pad, precision)


def _stride2_conv_fwd(x, w, pad, precision):
  return _plain_conv(x, w, 2, pad, precision), (x, w)


def _stride2_conv_bwd(pad, precision, residuals, dy):
  x, w = residuals
  dw = jax.vjp(lambda w: _plain_conv(x, w, 2, pad, precision), w)[1](dy)[0]
  dx = jax.lax.platform_dependent(
      dy, w, cpu=lambda dy, w: _stride2_input_grad(dy, w, x.shape[1:3], precision),
      default=lambda dy, w: jax.vjp(lambda x: _plain_conv(x, w, 2, pad, precision), x)[1](dy)[0])
  return dx.astype(x.dtype), dw


_stride2_conv.defvjp(_stride2_conv_fwd, _stride2_conv_bwd)


# On the CPU backend, float32 3x3 stride-1 convs with at least CPU_WINOGRAD_MIN_CHANNELS input and
# output channels run as Winograd (ssljax.models.winograd): F(4x4, 3x3) below
# CPU_WINOGRAD_F2_CHANNELS channels, F(2x2, 3x3) from there on. None: never. A CIFAR ResNet-18's
# stage 2 (128 channels) gets F(4x4), stages 3 and 4 (256, 512) F(2x2).
CPU_WINOGRAD_MIN_CHANNELS: int | None = 128
CPU_WINOGRAD_F2_CHANNELS: int = 256


def _nhwc_square(rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
                 feature_group_count, kwargs, lhs_shape) -> bool:
  """A square 1x1 / 3x3 NHWC conv with 'same'-style padding k // 2, no dilation or groups."""
  k = rhs.shape[0]
  pad = k // 2
  return (k in (1, 3) and rhs.shape[1] == k and len(window_strides) == 2
          and [tuple(p) for p in padding] == [(pad, pad)] * 2 and feature_group_count == 1
          and not kwargs
          and all(d is None or tuple(d) == (1, 1) for d in (lhs_dilation, rhs_dilation))
          and dimension_numbers == jax.lax.conv_dimension_numbers(lhs_shape, rhs.shape, _NHWC))


def _winograd_on_cpu(x, w, precision):
  """Winograd on the CPU backend, lax's conv elsewhere (chosen at lowering time)."""
  tile = 2 if min(w.shape[2], w.shape[3]) >= CPU_WINOGRAD_F2_CHANNELS else 4
  return jax.lax.platform_dependent(
      x, w, cpu=lambda x, w: winograd.conv3x3(x, w, tile, precision),
      default=lambda x, w: _plain_conv(x, w, 1, 1, precision))


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                         dimension_numbers=None, feature_group_count=1, precision=None, **kwargs):
  """`lax.conv_general_dilated` for `nn.Conv`, with two CPU-only routes for ResNet's convs (NHWC):

  - stride-2 convs (3x3 padding 1, 1x1 padding 0) get a custom input gradient on CPU
    (`_stride2_input_grad`). They are a `jax.custom_vjp` on every backend, so reverse-mode
    autodiff (`jax.grad`, what training uses) goes through them but forward-mode (`jax.jvp`,
    `jax.jacfwd`) does not. For forward-mode through a ResNet, set
    `ssljax.models.resnet.conv_general_dilated = jax.lax.conv_general_dilated` before tracing it
    (the blocks look this name up when they build their convs); that also turns the next off.
  - float32 3x3 stride-1 convs with at least `CPU_WINOGRAD_MIN_CHANNELS` input and output
    channels run as Winograd on CPU, F(4x4, 3x3) or from `CPU_WINOGRAD_F2_CHANNELS` on F(2x2, 3x3)
    (`ssljax.models.winograd`, plain JAX: every autodiff mode works).
  """
  square = _nhwc_square(rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                        dimension_numbers, feature_group_count, kwargs, lhs.shape)
  k = rhs.shape[0]
  if square and tuple(window_strides) == (2, 2):
    return _stride2_conv(lhs, rhs, k // 2, precision)
  if (square and k == 3 and tuple(window_strides) == (1, 1)
      and CPU_WINOGRAD_MIN_CHANNELS is not None
      and min(rhs.shape[2], rhs.shape[3]) >= CPU_WINOGRAD_MIN_CHANNELS
      and lhs.dtype == rhs.dtype == jnp.float32):
    return _winograd_on_cpu(lhs, rhs, precision)
  return jax.lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                                      dimension_numbers, feature_group_count, precision=precision,
                                      **kwargs)


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


def _conv(features: int, kernel: int, strides: int, dtype: Any, name: str) -> nn.Conv:
  """Bias-free conv with torch-style symmetric padding kernel // 2."""
  pad = kernel // 2
  return nn.Conv(features, (kernel, kernel), strides=(strides, strides),
                 padding=((pad, pad), (pad, pad)), use_bias=False, kernel_init=_conv_init,
                 dtype=dtype, param_dtype=jnp.float32, name=name,
                 conv_general_dilated=conv_general_dilated)


class BasicBlock(nn.Module):
  """Two 3x3 convs; out channels = `features`."""
  features: int
  strides: int = 1
  norm: str = "batch"
  dtype: Any = jnp.float32
  expansion = 1

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    """[N, H, W, Cin] -> [N, H/s, W/s, features]."""
    x = computed_once(x)
    y = _conv(self.features, 3, self.strides, self.dtype, "conv1")(x)
    y = computed_once(nn.relu(_Norm(self.norm, dtype=self.dtype, name="norm1")(y, train)))
    y = _conv(self.features, 3, 1, self.dtype, "conv2")(y)
    y = _Norm(self.norm, zero_init=True, dtype=self.dtype, name="norm2")(y, train)
    return nn.relu(y + _shortcut(x, self.features, self.strides, self.norm, self.dtype, train))


class BottleneckBlock(nn.Module):
  """1x1 reduce, 3x3 (strided), 1x1 expand; out channels = 4 * `features`."""
  features: int
  strides: int = 1
  norm: str = "batch"
  dtype: Any = jnp.float32
  expansion = 4

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    """[N, H, W, Cin] -> [N, H/s, W/s, 4 * features]."""
    out = self.features * self.expansion
    x = computed_once(x)
    y = _conv(self.features, 1, 1, self.dtype, "conv1")(x)
    y = computed_once(nn.relu(_Norm(self.norm, dtype=self.dtype, name="norm1")(y, train)))
    y = _conv(self.features, 3, self.strides, self.dtype, "conv2")(y)
    y = computed_once(nn.relu(_Norm(self.norm, dtype=self.dtype, name="norm2")(y, train)))
    y = _conv(out, 1, 1, self.dtype, "conv3")(y)
    y = _Norm(self.norm, zero_init=True, dtype=self.dtype, name="norm3")(y, train)
    return nn.relu(y + _shortcut(x, out, self.strides, self.norm, self.dtype, train))


def _shortcut(x, features, strides, norm, dtype, train):
  """Identity, or a 1x1 projection + norm where channels or resolution change.

  Called inside a block's compact __call__, so the submodules belong to that block.
  """
  if x.shape[-1] == features and strides == 1:
    return x
  x = _conv(features, 1, strides, dtype, "proj_conv")(x)
  return _Norm(norm, dtype=dtype, name="proj_norm")(x, train)


class ResNet(nn.Module):
  """ResNet backbone returning global-average-pooled features.

  Attributes:
    depth: 18 (basic blocks) or 50 (bottleneck blocks).
    width_multiplier: multiplies every channel count (stem 64, stages 64/128/256/512).
    cifar_stem: 3x3 stride-1 stem without max-pool instead of 7x7 stride-2 + max-pool.
    norm: 'batch' or 'group'.
    dtype: compute dtype (params float32, output float32).
  """
  depth: int = 50
  width_multiplier: float = 1.0
  cifar_stem: bool = False
  norm: str = "batch"
  dtype: Any = jnp.float32

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
    x = images.astype(self.dtype)
    stem = _scaled(64, self.width_multiplier)
    if self.cifar_stem:
      x = _conv(stem, 3, 1, self.dtype, "stem_conv")(x)
      x = nn.relu(_Norm(self.norm, dtype=self.dtype, name="stem_norm")(x, train))
    else:
      x = _conv(stem, 7, 2, self.dtype, "stem_conv")(x)
      x = nn.relu(_Norm(self.norm, dtype=self.dtype, name="stem_norm")(x, train))
      x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    for s, n_blocks in enumerate(blocks):
      features = _scaled(64 * 2 ** s, self.width_multiplier)
      for b in range(n_blocks):
        strides = 2 if (s > 0 and b == 0) else 1
        x = block_cls(features, strides, self.norm, self.dtype, name=f"stage{s + 1}_block{b}")(
            x, train)
    return jnp.mean(x.astype(jnp.float32), axis=(1, 2))
