"""ResNet's XLA:CPU ops: a convolution for `nn.Conv` and a "store this once" for conv inputs.

`ssljax.models.build_backbone` hands them to `ssljax.models.ResNet` (its `conv_general_dilated`
and `store_once` fields, see `resnet_ops`) when the CPU tuning is on (`ssljax.cpu.enabled`); the
ResNet's own defaults are lax's convolution and the identity. Each one is switched off alone in
benchmarks/resnet_cpu_workarounds.py (BENCHMARKS.md, section "ResNet CPU workarounds (each off vs
all on)"):

- `computed_once`: every conv input after the stem is stored once, instead of XLA:CPU recomputing
  the norm + ReLU (+ residual) chain that produced it inside each weight-gradient transpose.
- `Conv`: stride-2 convs compute their input gradient phase by phase (`stride2_conv`) instead of as
  a conv over the output gradient dilated by 2; wide float32 3x3 stride-1 convs run as Winograd
  (`ssljax.cpu.winograd`) instead of Eigen's convolution.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Optional

import jax
import jax.numpy as jnp

from ssljax.cpu import winograd

_NHWC = ("NHWC", "HWIO", "NHWC")


def computed_once(x: jax.Array) -> jax.Array:
  """`x`, which XLA:CPU then computes once and stores. [any non-empty shape] -> the same.

  A convolution's weight gradient needs its input with the batch axis moved last, so XLA:CPU
  transposes every conv input in the backward pass. When that input is an elementwise result (a
  norm's scale and shift, ReLU, a residual add), XLA's fusion pass treats it as cheap to recompute
  and fuses the whole chain, back to the last convolution outputs, into the transpose, and its
  loop emitter runs such transposes far slower than a plain one. `optimization_barrier` does not
  stop it (XLA:CPU removes barriers before fusion), but fusion never crosses a conditional: this
  routes `x` through a `lax.cond` whose predicate XLA cannot fold (x's first element is not NaN),
  so the chain is computed once, stored, and the transposes read the stored array. The cost is one
  copy of `x`. The other branch, taken only when that element is NaN, returns NaNs: the step is
  non-finite either way. Values and gradients are those of `x` otherwise (also under `jax.vmap`,
  where the conditional becomes a select and stops being a fusion boundary).
  """
  first = x.reshape(-1)[0]
  return jax.lax.cond(first == first, lambda: x, lambda: jnp.full_like(x, jnp.nan))


def _plain_conv(x, w, stride, pad, precision=None):
  return jax.lax.conv_general_dilated(x, w, (stride, stride), ((pad, pad), (pad, pad)),
                                      dimension_numbers=_NHWC, precision=precision)


def stride2_input_grad(dy: jax.Array, w: jax.Array, in_hw: tuple[int, int],
                       precision=None) -> jax.Array:
  """Input gradient of a stride-2 NHWC conv (3x3 padding 1, or 1x1 padding 0), phase by phase.

  Args:
    dy: [N, h, w, C_out] output gradient.
    w: [k, k, C_in, C_out] kernel, k = 1 or 3.
    in_hw: (H, W) of the conv's input (h = ceil(H / 2), w = ceil(W / 2)).
    precision: passed to the convolutions.

  Returns:
    [N, H, W, C_in], the gradient of the conv's input.

  The input gradient of a strided conv is a conv over the output gradient dilated by the stride;
  XLA:CPU computes it on the dilated array, three quarters zeros. Each parity class of input
  positions (even / odd row, even / odd column) sees a fixed subset of the kernel taps instead:
  (even, even) the centre tap (1x1), (even, odd) the centre row's outer taps (1x2), (odd, even)
  the centre column's (2x1), (odd, odd) the four corners (2x2). Four small stride-1 convs over the
  output gradient compute exactly those products (no zeros), and the four results interleave into
  the input's grid.
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
def stride2_conv(x: jax.Array, w: jax.Array, pad: int, precision=None) -> jax.Array:
  """Stride-2 NHWC conv, [N, H, W, C_in] x [k, k, C_in, C_out] -> [N, H/2, W/2, C_out], padding
  `pad` on each side, whose input gradient is `stride2_input_grad`. A `jax.custom_vjp`: reverse-mode
  autodiff (`jax.grad`) goes through it, forward-mode (`jax.jvp`) does not."""
  return _plain_conv(x, w, 2, pad, precision)


def _stride2_conv_fwd(x, w, pad, precision):
  return _plain_conv(x, w, 2, pad, precision), (x, w)


def _stride2_conv_bwd(pad, precision, residuals, dy):
  x, w = residuals
  dw = jax.vjp(lambda w: _plain_conv(x, w, 2, pad, precision), w)[1](dy)[0]
  dx = stride2_input_grad(dy, w, x.shape[1:3], precision)
  return dx.astype(x.dtype), dw


stride2_conv.defvjp(_stride2_conv_fwd, _stride2_conv_bwd)


def _nhwc_square(rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
                 feature_group_count, kwargs, lhs_shape) -> bool:
  """A square 1x1 / 3x3 NHWC conv with 'same'-style padding k // 2, no dilation or groups."""
  k = rhs.shape[0]
  pad = k // 2
  return (k in (1, 3) and rhs.shape[1] == k and len(window_strides) == 2
          and not isinstance(padding, str) and [tuple(p) for p in padding] == [(pad, pad)] * 2
          and feature_group_count == 1 and not kwargs
          and all(d is None or tuple(d) == (1, 1) for d in (lhs_dilation, rhs_dilation))
          and dimension_numbers == jax.lax.conv_dimension_numbers(lhs_shape, rhs.shape, _NHWC))


@dataclasses.dataclass(frozen=True)
class Conv:
  """`lax.conv_general_dilated` (same arguments) with XLA:CPU routes for ResNet's convs.

  Routes only NHWC / HWIO convs with a square 1x1 or 3x3 kernel, padding k // 2, no dilation and
  no groups; every other conv is lax's.

  Attributes:
    stride2_input_grad: stride-2 convs get their input gradient phase by phase (`stride2_conv`, a
      custom_vjp: `jax.jvp` does not go through it).
    winograd_min_channels: float32 3x3 stride-1 convs with at least this many input and output
      channels run as Winograd (`ssljax.cpu.winograd.conv3x3`, plain JAX: every autodiff mode
      works); None: never. A CIFAR ResNet-18's stages 2-4 (128, 256, 512 channels) at 128.
    winograd_f2_channels: from this many channels on F(2x2, 3x3), below it F(4x4, 3x3).
  """
  stride2_input_grad: bool = True
  winograd_min_channels: Optional[int] = 128
  winograd_f2_channels: int = 256

  def __call__(self, lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
               dimension_numbers=None, feature_group_count=1, precision=None, **kwargs):
    """[N, H, W, C_in] x [k, k, C_in, C_out] -> [N, H', W', C_out], as lax computes it."""
    square = _nhwc_square(rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                          dimension_numbers, feature_group_count, kwargs, lhs.shape)
    k = rhs.shape[0]
    if square and self.stride2_input_grad and tuple(window_strides) == (2, 2):
      return stride2_conv(lhs, rhs, k // 2, precision)
    channels = min(rhs.shape[2], rhs.shape[3])
    if (square and k == 3 and tuple(window_strides) == (1, 1)
        and self.winograd_min_channels is not None and channels >= self.winograd_min_channels
        and lhs.dtype == rhs.dtype == jnp.float32):
      tile = 2 if channels >= self.winograd_f2_channels else 4
      return winograd.conv3x3(lhs, rhs, tile, precision)
    return jax.lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation,
                                        rhs_dilation, dimension_numbers, feature_group_count,
                                        precision=precision, **kwargs)


def resnet_ops(**conv_options: Any) -> dict[str, Any]:
  """`ssljax.models.ResNet`'s op fields with the CPU ops: {'conv_general_dilated':
  Conv(**conv_options), 'store_once': computed_once}."""
  return {"conv_general_dilated": Conv(**conv_options), "store_once": computed_once}
