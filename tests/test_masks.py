"""Mask generators: exact static counts, disjointness, determinism, block structure."""
import numpy as np
import pytest

from ssljax.data import masks
from ssljax.data.augment import ViewSpec


def _adjacent_pairs(mask_flat, grid):
  m = mask_flat.reshape(grid)
  return int((m[1:] & m[:-1]).sum() + (m[:, 1:] & m[:, :-1]).sum())


@pytest.mark.parametrize("p,ratio", [(16, 0.75), (196, 0.75), (49, 0.5), (10, 0.0), (10, 1.0),
                                     (64, 0.6)])
def test_random_mask_exact_disjoint_covering(p, ratio):
  k = int(round(p * (1 - ratio)))
  for seed in range(5):
    mask, keep, masked = masks.random_mask(np.random.default_rng(seed), p, ratio)
    assert mask.shape == (p,) and mask.dtype == bool
    assert keep.shape == (k,) and keep.dtype == np.int32
    assert masked.shape == (p - k,) and masked.dtype == np.int32
    assert np.intersect1d(keep, masked).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([keep, masked])), np.arange(p))
    assert not mask[keep].any() and mask[masked].all()
    assert np.all(np.diff(keep) > 0) and np.all(np.diff(masked) > 0)


def test_random_mask_seeded():
  a = masks.random_mask(np.random.default_rng(3), 196, 0.75)
  b = masks.random_mask(np.random.default_rng(3), 196, 0.75)
  c = masks.random_mask(np.random.default_rng(4), 196, 0.75)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x, y)
  assert not np.array_equal(a[0], c[0])


def test_random_mask_rejects_bad_ratio():
  with pytest.raises(ValueError):
    masks.random_mask(np.random.default_rng(0), 16, 1.5)


@pytest.mark.parametrize("grid,ratio", [((14, 14), 0.4), ((14, 14), 0.1), ((4, 4), 0.3),
                                        ((8, 8), 0.5), ((7, 5), 0.75), ((4, 4), 1.0),
                                        ((4, 4), 0.0), ((1, 6), 0.5)])
def test_block_mask_exact_count(grid, ratio):
  want = int(round(ratio * grid[0] * grid[1]))
  for seed in range(20):
    m = masks.block_mask(np.random.default_rng(seed), grid, ratio)
    assert m.shape == (grid[0] * grid[1],) and m.dtype == bool
    assert m.sum() == want


def test_block_mask_seeded():
  a = masks.block_mask(np.random.default_rng(1), (14, 14), 0.4)
  b = masks.block_mask(np.random.default_rng(1), (14, 14), 0.4)
  c = masks.block_mask(np.random.default_rng(2), (14, 14), 0.4)
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)


@pytest.mark.parametrize("grid,ratio", [((14, 14), 0.4), ((8, 8), 0.3)])
def test_block_mask_is_blocky(grid, ratio):
  """Block masks have far more masked 4-neighbour pairs than random masks of the same count."""
  block, rand = [], []
  for seed in range(40):
    rng = np.random.default_rng(seed)
    block.append(_adjacent_pairs(masks.block_mask(rng, grid, ratio), grid))
    rand.append(_adjacent_pairs(masks.random_mask(rng, grid[0] * grid[1], ratio)[0], grid))
  assert np.mean(block) > 1.5 * np.mean(rand)


def test_multiblock_sizes():
  assert masks.multiblock_sizes((14, 14)) == (50, 29)
  assert masks.multiblock_sizes((4, 4)) == (5, 2)


@pytest.mark.parametrize("grid", [(14, 14), (4, 4), (8, 8), (6, 10)])
def test_multiblock_static_and_disjoint(grid):
  kc, kt = masks.multiblock_sizes(grid)
  p = grid[0] * grid[1]
  for seed in range(30):
    out = masks.multiblock_masks(np.random.default_rng(seed), grid)
    ctx, tgt = out["context_keep"], out["target_indices"]
    assert ctx.shape == (kc,) and ctx.dtype == np.int32
    assert tgt.shape == (4, kt) and tgt.dtype == np.int32
    assert ctx.min() >= 0 and ctx.max() < p and tgt.min() >= 0 and tgt.max() < p
    assert np.intersect1d(ctx, tgt.reshape(-1)).size == 0
    if p >= 36:  # enough non-target patches: padded with new ones, never repeated
      assert np.unique(ctx).size == kc
    for row in tgt:
      r, c = np.divmod(np.unique(row), grid[1])
      # every target's patches lie within one block no larger than the max target area allows
      box = (r.max() - r.min() + 1) * (c.max() - c.min() + 1)
      assert box <= int(p * 0.2) + 2 * max(grid) + 1


def test_multiblock_targets_are_rectangles_on_large_grid():
  """On 14x14 the target budget Kt is <= the block area, so a target is a subset of a rectangle
  that is filled more than half."""
  out = masks.multiblock_masks(np.random.default_rng(0), (14, 14))
  for row in out["target_indices"]:
    assert np.unique(row).size == row.size
    r, c = np.divmod(row, 14)
    box = (r.max() - r.min() + 1) * (c.max() - c.min() + 1)
    assert row.size >= 0.5 * box


def test_multiblock_seeded():
  a = masks.multiblock_masks(np.random.default_rng(5), (14, 14))
  b = masks.multiblock_masks(np.random.default_rng(5), (14, 14))
  c = masks.multiblock_masks(np.random.default_rng(6), (14, 14))
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])
  assert not np.array_equal(a["target_indices"], c["target_indices"])


def test_masks_for_spec():
  rng = np.random.default_rng(0)
  assert masks.masks_for_spec(rng, ViewSpec(global_size=32)) == {}
  out = masks.masks_for_spec(rng, ViewSpec(global_size=32, mask="random", mask_ratio=0.75,
                                           patch_size=4))
  assert out["mask"].shape == (64,) and out["keep_indices"].shape == (16,)
  assert out["masked_indices"].shape == (48,)
  out = masks.masks_for_spec(rng, ViewSpec(global_size=32, mask="block", mask_ratio=0.25,
                                           patch_size=4))
  assert out["mask"].shape == (64,) and out["mask"].sum() == 16
  out = masks.masks_for_spec(rng, ViewSpec(global_size=32, mask="multiblock", patch_size=4))
  kc, kt = masks.multiblock_sizes((8, 8))
  assert out["context_keep"].shape == (kc,) and out["target_indices"].shape == (4, kt)
  # The spec's multi-block settings reach the generator: 2 targets of at least 30% of 64 patches.
  out = masks.masks_for_spec(rng, ViewSpec(global_size=32, mask="multiblock", patch_size=4,
                                           num_targets=2, target_scale=(0.3, 0.4),
                                           context_scale=(0.9, 1.0)))
  kc, kt = masks.multiblock_sizes((8, 8), 2, (0.3, 0.4), (0.9, 1.0))
  assert (kc, kt) == (19, 19)
  assert out["context_keep"].shape == (kc,) and out["target_indices"].shape == (2, kt)
