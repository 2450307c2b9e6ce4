"""Patch and position embeddings of the ViT (ssljax/models/vit.py), and the patch order they share.

- `patchify` / `unpatchify`: images <-> flattened patches in the encoder's token order (MAE's
  pixel targets);
- `PatchEmbed`: the linear patch embedding, as patchify + one matmul;
- `sincos_2d_posemb`: fixed 2-D sin-cos positional embeddings, "Masked Autoencoders Are
  Scalable Vision Learners" (He et al., 2022), rescaled to a reference grid for small crops.

`ssljax.models.vit` re-exports all four.
"""
from __future__ import annotations

from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

_dense_init = nn.initializers.xavier_uniform()


def sincos_2d_posemb(grid_h: int, grid_w: int, width: int, ref_grid: Optional[int] = None,
                     temperature: float = 10000.0) -> jax.Array:
  """Fixed 2-D sin-cos positional embeddings (MAE style), float32.

  The first width/2 channels encode the row, the last width/2 the column; each half is
  [sin(pos * w_k), cos(pos * w_k)] with w_k = temperature^(-k / (width/4)).
  When `ref_grid` is given and differs from the grid, positions are rescaled to the
  reference grid, pos = (i + 0.5) * ref_grid / grid - 0.5: a 96 px local crop then gets
  the embedding a 224 px image would have at the same relative place (what DINO obtains by
  interpolating learned embeddings). With grid == ref_grid this is MAE's integer grid.

  Args:
    grid_h, grid_w: number of patch rows and columns.
    width: embedding dimension, a multiple of 4.
    ref_grid: patches per side at the reference resolution, or None for the grid itself.
    temperature: the frequency base.

  Returns:
    [grid_h * grid_w, width] row-major over (row, column).
  """
  if width % 4:
    raise ValueError(f"sincos2d positional embedding needs width % 4 == 0, got width={width}")

  def coords(n):
    pos = np.arange(n, dtype=np.float64)
    if ref_grid is not None and ref_grid != n:
      pos = (pos + 0.5) * ref_grid / n - 0.5
    return pos

  omega = 1.0 / temperature ** (np.arange(width // 4, dtype=np.float64) / (width // 4))
  ang_h = coords(grid_h)[:, None] * omega[None, :]        # [gh, width/4]
  ang_w = coords(grid_w)[:, None] * omega[None, :]        # [gw, width/4]
  emb_h = np.concatenate([np.sin(ang_h), np.cos(ang_h)], axis=1)  # [gh, width/2]
  emb_w = np.concatenate([np.sin(ang_w), np.cos(ang_w)], axis=1)  # [gw, width/2]
  emb = np.concatenate([
      np.broadcast_to(emb_h[:, None, :], (grid_h, grid_w, width // 2)),
      np.broadcast_to(emb_w[None, :, :], (grid_h, grid_w, width // 2)),
  ], axis=-1)
  return jnp.asarray(emb.reshape(grid_h * grid_w, width), dtype=jnp.float32)


class PatchEmbed(nn.Module):
  """Linear patch embedding [N, H, W, C] -> [N, (H/p) (W/p), width], rows of patches row-major.

  The parameters are a stride-p convolution's ({'kernel': [p, p, C, width], 'bias': [width]}), but
  it is computed as patchify + one matmul: the same function, with no convolution in the program
  (XLA:CPU's convolution paths were slower than its dots for this shape; see ssljax/xla_flags.py).
  """
  width: int
  patch_size: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images: jax.Array) -> jax.Array:
    p, c = self.patch_size, images.shape[-1]
    kernel = self.param("kernel", _dense_init, (p, p, c, self.width), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (self.width,), jnp.float32)
    patches = patchify(images.astype(self.dtype), p)                      # [N, P, p*p*C]
    w = kernel.reshape(p * p * c, self.width).astype(self.dtype)
    return jnp.dot(patches, w) + bias.astype(self.dtype)


def patchify(images: jax.Array, patch_size: int) -> jax.Array:
  """Cuts images into flattened patches in the ViT's token order (MAE's pixel targets).

  Args:
    images: [N, H, W, C]; H and W multiples of patch_size.
    patch_size: p.

  Returns:
    [N, (H/p) * (W/p), p * p * C]: patches row-major over the grid, each flattened in
    (row, column, channel) order, which is also the order of the flattened patch_embed kernel
    ([p, p, C, D] -> [p*p*C, D]).
  """
  n, h, w, c = images.shape
  p = patch_size
  if h % p or w % p:
    raise ValueError(f"image size {h}x{w} is not divisible by patch_size={p}")
  x = images.reshape(n, h // p, p, w // p, p, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(n, (h // p) * (w // p), p * p * c)


def unpatchify(patches: jax.Array, patch_size: int, grid_h: int, grid_w: int) -> jax.Array:
  """Inverse of `patchify`: [N, grid_h * grid_w, p * p * C] -> [N, grid_h * p, grid_w * p, C]."""
  n, num, dim = patches.shape
  p = patch_size
  if num != grid_h * grid_w or dim % (p * p):
    raise ValueError(f"patches shape {patches.shape} does not fit a {grid_h}x{grid_w} grid of "
                     f"{p}x{p} patches")
  c = dim // (p * p)
  x = patches.reshape(n, grid_h, grid_w, p, p, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(n, grid_h * p, grid_w * p, c)
