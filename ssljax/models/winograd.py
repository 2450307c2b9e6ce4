"""3x3 stride-1 convolutions by Winograd's minimal filtering, F(2x2, 3x3), in plain JAX.

"Fast Algorithms for Convolutional Neural Networks" (Lavin & Gray, 2016): each 2x2 block of
outputs is computed from the 4x4 input tile around it as A^T [(G g G^T) * (B^T d B)] A, so the
16 elementwise products in the transformed domain replace the 36 multiplies of the direct form.
Over a batch the products become 16 independent matrix products, [tiles, C_in] x [C_in, C_out],
one per transformed position: 2.25x fewer multiply-adds than the direct convolution, paid for by
the transforms, which are additions over arrays the size of the input, the output and the kernel.

Why ssljax has it: XLA:CPU runs convolutions with Eigen, and on a 2-core AVX-512 machine its 3x3
convolutions with many channels at small spatial size (a CIFAR ResNet-18's stages 3 and 4:
256 channels at 8x8, 512 at 4x4) ran at 0.92-0.94x torch's oneDNN ones (forward + both
gradients), while the batched matrix products of this form run through XLA's dot path at close to
the machine's peak. At fewer channels the transforms cost as much as they save (stage 2, 128
channels at 16x16, measured at parity; stage 1 slower), so `ssljax.models.resnet` uses this only
from `CPU_WINOGRAD_MIN_CHANNELS` channels on and only on the CPU backend (benchmarks/
resnet_cpu_workarounds.py measures it in the train step).

Numerics: the transforms' coefficients are 0, +-1 and +-1/2, exact in binary floating point; the
result differs from the direct convolution by rounding only (float32: ~1e-6 relative, the size of
the difference between two direct-convolution algorithms). Gradients come from JAX's autodiff of
the same arithmetic, so the input and kernel gradients are those of this function exactly.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

# F(2, 3) in one dimension: input transform B^T (4x4), kernel transform G (4x3), output A^T (2x4).
_BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float32)
_G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], np.float32)
_AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float32)
# Two dimensions: Kronecker products, rows / columns in (row, column) order.
_G2 = np.kron(_G, _G)       # [16, 9]: transformed position <- kernel tap
_AT2 = np.kron(_AT, _AT)    # [4, 16]: output position in the 2x2 block <- transformed position


def _input_transform_1d(d):
  """B^T d over a list of the 4 tile rows (or columns) d[0..3]."""
  return [d[0] - d[2], d[1] + d[2], d[2] - d[1], d[1] - d[3]]


def conv3x3(x: jax.Array, w: jax.Array, precision=None) -> jax.Array:
  """`lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)))` in NHWC / HWIO, by F(2x2, 3x3).

  Args:
    x: [N, H, W, C_in] (any H, W >= 1: odd sizes get one more zero row / column, cropped after).
    w: [3, 3, C_in, C_out].
    precision: passed to the matrix products.

  Returns:
    [N, H, W, C_out], x's dtype.
  """
  if w.shape[:2] != (3, 3) or x.ndim != 4 or x.shape[-1] != w.shape[2]:
    raise ValueError(f"winograd.conv3x3 takes x [N, H, W, C] and w [3, 3, C, K]; got x "
                     f"{tuple(x.shape)} and w {tuple(w.shape)}")
  n, h, wd, c = x.shape
  k = w.shape[-1]
  th, tw = -(-h // 2), -(-wd // 2)          # 2x2 output blocks per column / row
  # Tile (i, j) reads padded rows 2i..2i+3 and columns 2j..2j+3.
  xp = jnp.pad(x, ((0, 0), (1, 1 + 2 * th - h), (1, 1 + 2 * tw - wd), (0, 0)))
  rows = _input_transform_1d([xp[:, r:r + 2 * th:2] for r in range(4)])        # 4 x [N, th, W', C]
  tiles = [v for row in rows
           for v in _input_transform_1d([row[:, :, s:s + 2 * tw:2] for s in range(4)])]
  v = jnp.stack(tiles).reshape(16, n * th * tw, c)                              # B^T d B
  g2 = jnp.asarray(_G2, w.dtype)
  u = jnp.dot(g2, w.reshape(9, c * k), precision=precision).reshape(16, c, k)    # G g G^T
  m = jax.lax.dot_general(v, u, (((2,), (1,)), ((0,), (0,))), precision=precision)  # [16, T, K]
  at2 = jnp.asarray(_AT2, m.dtype)
  y = jnp.dot(at2, m.reshape(16, -1), precision=precision).reshape(2, 2, n, th, tw, k)
  y = y.transpose(2, 3, 0, 4, 1, 5).reshape(n, 2 * th, 2 * tw, k)
  return y[:, :h, :wd].astype(x.dtype)
