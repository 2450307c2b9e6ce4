"""3x3 stride-1 convolutions by Winograd's minimal filtering, F(2x2, 3x3) and F(4x4, 3x3), in JAX.

"Fast Algorithms for Convolutional Neural Networks" (Lavin & Gray, 2016): each m x m block of
outputs is computed from the (m+2) x (m+2) input tile around it as A^T [(G g G^T) * (B^T d B)] A,
so (m+2)^2 elementwise products in the transformed domain replace the 9 m^2 multiplies of the
direct form. Over a batch the products become (m+2)^2 independent matrix products,
[tiles, C_in] x [C_in, C_out], one per transformed position: 2.25x (m = 2) or 4x (m = 4) fewer
multiply-adds than the direct convolution, paid for by the transforms, which are additions over
arrays the size of the input, the output and the kernel.

Why ssljax has it: XLA:CPU runs convolutions with Eigen, and its 3x3 convolutions with 128 or
more channels (a CIFAR ResNet-18's stages 2-4) ran slower than torch's oneDNN ones, while the
batched matrix products of this form run through XLA's dot path near the machine's peak. At fewer
channels (64: stage 1) the transforms cost more than they save, so `ssljax.cpu.conv.Conv` uses
this from `winograd_min_channels` on, F(4x4) below `winograd_f2_channels` and F(2x2) from there
(as fast or faster there, and more exact), and only in models built with the CPU tuning on
(BENCHMARKS.md, sections "ResNet-18 convolutions alone vs torch" and "ResNet CPU workarounds (each
off vs all on)").

Numerics: F(2x2)'s coefficients are 0, +-1 and +-1/2, exact in binary floating point, and its
float32 results differ from the direct convolution's by ~1e-6 of their largest magnitude (the size
of the difference between two direct-convolution algorithms); F(4x4)'s reach 8 and 1/24, ~1e-5.
Gradients come from JAX's autodiff of the same arithmetic, so the input and kernel gradients are
those of this function exactly.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

# F(m, 3) in one dimension, for m = 2 and 4 output points per tile (alpha = m + 2 input points):
# input transform B^T [alpha, alpha], kernel transform G [alpha, 3], output transform
# A^T [m, alpha]. F(2, 3) interpolates at 0, 1, -1 and infinity; F(4, 3) at 0, 1, -1, 2, -2 and
# infinity (Lavin & Gray's matrices).
_MATRICES = {
    2: (np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float64),
        np.array([[1, 0, 0], [1 / 2, 1 / 2, 1 / 2], [1 / 2, -1 / 2, 1 / 2], [0, 0, 1]], np.float64),
        np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float64)),
    4: (np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                  [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], np.float64),
        np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
                  [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]], np.float64),
        np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0],
                  [0, 1, -1, 8, -8, 1]], np.float64)),
}
TILES = tuple(_MATRICES)


def _combine(coefficients, parts):
  """sum_i coefficients[i] * parts[i], skipping zeros and multiplying only where |c| != 1."""
  out = None
  for c, part in zip(coefficients, parts):
    if c == 0:
      continue
    term = part if c == 1 else -part if c == -1 else float(c) * part
    out = term if out is None else out + term
  return out


def conv3x3(x: jax.Array, w: jax.Array, tile: int = 2, precision=None) -> jax.Array:
  """`lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)))` in NHWC / HWIO, by F(m x m, 3x3).

  Args:
    x: [N, H, W, C_in] (any H, W >= 1: sizes that are not a multiple of `tile` get zero rows /
      columns more, cropped after).
    w: [3, 3, C_in, C_out].
    tile: m, output points per tile side: 2 (F(2x2, 3x3): 16 products per 4 outputs, 2.25x fewer
      multiply-adds, coefficients 0, +-1, +-1/2) or 4 (F(4x4, 3x3): 36 per 16 outputs, 4x fewer,
      and smaller transformed arrays, but coefficients up to 8 and down to 1/24, so float32
      results are ~10x further from the direct convolution's).
    precision: passed to the matrix products.

  Returns:
    [N, H, W, C_out], x's dtype.
  """
  if w.shape[:2] != (3, 3) or x.ndim != 4 or x.shape[-1] != w.shape[2]:
    raise ValueError(f"winograd.conv3x3 takes x [N, H, W, C] and w [3, 3, C, K]; got x "
                     f"{tuple(x.shape)} and w {tuple(w.shape)}")
  if tile not in _MATRICES:
    raise ValueError(f"winograd.conv3x3 tile={tile!r}; expected one of {TILES}")
  bt, g, at = _MATRICES[tile]
  alpha = tile + 2
  n, h, wd, c = x.shape
  k = w.shape[-1]
  th, tw = -(-h // tile), -(-wd // tile)      # output tiles per column / row
  # Tile (i, j) reads padded rows tile*i .. tile*i + alpha - 1, and the same columns.
  xp = jnp.pad(x, ((0, 0), (1, 1 + tile * th - h), (1, 1 + tile * tw - wd), (0, 0)))
  row_parts = [xp[:, r:r + tile * th:tile] for r in range(alpha)]              # [N, th, W', C]
  rows = [_combine(bt[a], row_parts) for a in range(alpha)]
  tiles = []
  for row in rows:
    col_parts = [row[:, :, s:s + tile * tw:tile] for s in range(alpha)]        # [N, th, tw, C]
    tiles.extend(_combine(bt[b], col_parts) for b in range(alpha))
  v = jnp.stack(tiles).reshape(alpha * alpha, n * th * tw, c)                  # B^T d B
  g2 = jnp.asarray(np.kron(g, g), w.dtype)                                     # [alpha^2, 9]
  u = jnp.dot(g2, w.reshape(9, c * k), precision=precision).reshape(-1, c, k)  # G g G^T
  m = jax.lax.dot_general(v, u, (((2,), (1,)), ((0,), (0,))), precision=precision)
  at2 = jnp.asarray(np.kron(at, at), m.dtype)                                  # [tile^2, alpha^2]
  y = jnp.dot(at2, m.reshape(alpha * alpha, -1), precision=precision)
  y = y.reshape(tile, tile, n, th, tw, k).transpose(2, 3, 0, 4, 1, 5)
  return y.reshape(n, tile * th, tile * tw, k)[:, :h, :wd].astype(x.dtype)
