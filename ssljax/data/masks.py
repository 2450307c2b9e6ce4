"""Patch-mask generators for masked-image methods (MAE, BEiT/iBOT, I-JEPA), seeded per record.

Every generator takes the record's `np.random.Generator` (the only source of randomness) and works
on a patch grid flattened row-major: patch (i, j) of a (gh, gw) grid has index i * gw + j.

Static-shape rule: for a given configuration (grid, ratio, scales) every output has the SAME shape
for every record, so batches stack without padding and the jitted train step never recompiles:
  * `random_mask` keeps exactly K = round(P * (1 - ratio)) patches;
  * `block_mask` masks exactly round(ratio * P) patches (blocks, then a random top-up next to them);
  * `multiblock_masks` returns exactly Kc context and Kt target indices per block
    (`multiblock_sizes`), truncating by a random subset or padding by random choice.
A boolean mask [P] is static whatever its count, so a per-record ratio (iBOT samples one per image)
is fine for `block_mask`; index outputs need a fixed ratio.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np


def num_keep(num_patches: int, ratio: float) -> int:
  """K = round(P * (1 - ratio)), the number of visible patches of `random_mask` (static)."""
  if not 0.0 <= ratio <= 1.0:
    raise ValueError(f"mask ratio {ratio} must be in [0, 1]")
  return int(round(num_patches * (1.0 - ratio)))


def random_mask(rng: np.random.Generator, num_patches: int,
                ratio: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """MAE's uniform random masking ("Masked Autoencoders Are Scalable Vision Learners").

  Args:
    rng: the record's Generator.
    num_patches: P.
    ratio: fraction of patches masked (MAE: 0.75).

  Returns:
    mask: bool [P], True = masked (removed from the encoder input).
    keep_indices: int32 [K], sorted, K = round(P * (1 - ratio)) for every record.
    masked_indices: int32 [P - K], sorted; disjoint from keep_indices, together they cover 0..P-1.
  """
  k = num_keep(num_patches, ratio)
  perm = rng.permutation(num_patches)
  keep = np.sort(perm[:k]).astype(np.int32)
  masked = np.sort(perm[k:]).astype(np.int32)
  mask = np.ones(num_patches, bool)
  mask[keep] = False
  return mask, keep, masked


def _neighbours(mask: np.ndarray) -> np.ndarray:
  """[gh, gw] bool: unmasked cells 4-adjacent to a masked cell."""
  near = np.zeros_like(mask)
  near[1:] |= mask[:-1]
  near[:-1] |= mask[1:]
  near[:, 1:] |= mask[:, :-1]
  near[:, :-1] |= mask[:, 1:]
  return near & ~mask


def block_mask(rng: np.random.Generator, grid: tuple[int, int], ratio: float,
               min_aspect: float = 0.3, min_block_patches: int = 4,
               max_block_patches: int | None = None, max_failures: int = 20) -> np.ndarray:
  """Block-wise masking of BEiT ("BERT Pre-Training of Image Transformers"), as used by iBOT.

  Rectangles of area uniform in [min_block_patches, remaining] (capped by max_block_patches) and
  log-uniform aspect ratio in [min_aspect, 1 / min_aspect] are placed at random; a rectangle is
  kept when it masks at least one new patch and does not overshoot the target count. After
  `max_failures` consecutive rejected rectangles the remainder is topped up with random unmasked
  patches adjacent to the mask (any unmasked patch if none is adjacent), so the count is exact.

  Args:
    rng: the record's Generator.
    grid: (gh, gw) patch grid.
    ratio: fraction of the P = gh * gw patches to mask.
    min_aspect: smallest block aspect ratio (BEiT: 0.3).
    min_block_patches: smallest block area in patches (BEiT: 16 at 14x14; 4 suits small grids).
    max_block_patches: largest block area (None: no cap beyond the remaining count).
    max_failures: consecutive rejected rectangles before topping up.

  Returns:
    bool [gh * gw], row-major, True = masked; exactly round(ratio * P) True for every record.
  """
  if not 0.0 <= ratio <= 1.0:
    raise ValueError(f"mask ratio {ratio} must be in [0, 1]")
  gh, gw = grid
  target = int(round(ratio * gh * gw))
  mask = np.zeros((gh, gw), bool)
  count = 0
  log_aspect = (math.log(min_aspect), -math.log(min_aspect))
  failures = 0
  while count < target and failures < max_failures:
    remaining = target - count
    hi = remaining if max_block_patches is None else min(remaining, max_block_patches)
    lo = min(min_block_patches, hi)
    area = rng.uniform(lo, hi)
    aspect = math.exp(rng.uniform(*log_aspect))
    bh = int(round(math.sqrt(area * aspect)))
    bw = int(round(math.sqrt(area / aspect)))
    if 1 <= bh <= gh and 1 <= bw <= gw:
      top = int(rng.integers(0, gh - bh + 1))
      left = int(rng.integers(0, gw - bw + 1))
      new = bh * bw - int(mask[top:top + bh, left:left + bw].sum())
      if 0 < new <= remaining:
        mask[top:top + bh, left:left + bw] = True
        count += new
        failures = 0
        continue
    failures += 1
  while count < target:
    cand = np.flatnonzero(_neighbours(mask))
    if cand.size == 0:
      cand = np.flatnonzero(~mask)
    pick = rng.choice(cand, size=min(target - count, cand.size), replace=False)
    mask.flat[pick] = True
    count += pick.size
  return mask.reshape(-1)


def multiblock_problem(num_targets: int, target_scale, context_scale) -> str | None:
  """What is wrong with a multi-block mask setting, as 'name=value, expected ...', or None.

  ViewSpec and the I-JEPA config check with it, each naming the field its own way.
  """
  if num_targets < 1:
    return f"num_targets={num_targets}, expected >= 1"
  for name, (lo, hi) in (("target_scale", target_scale), ("context_scale", context_scale)):
    if not 0.0 < lo <= hi <= 1.0:
      return f"{name}={(lo, hi)}, expected 0 < low <= high <= 1"
  return None


def multiblock_sizes(grid: tuple[int, int], num_targets: int = 4,
                     target_scale: tuple[float, float] = (0.15, 0.2),
                     context_scale: tuple[float, float] = (0.85, 1.0)) -> tuple[int, int]:
  """The static (Kc, Kt) of `multiblock_masks` for a configuration.

  Kt = max(1, int(P * target_scale[0])): the patch budget of the smallest target block.
  Kc = max(1, int(P * context_scale[0]) - num_targets * Kt): the smallest context block minus
  disjoint minimal targets. This plays the role of the I-JEPA collator's "min over the batch"
  truncation, but is fixed per configuration instead of per batch (e.g. 14x14 grid, defaults:
  Kc = 50, Kt = 29; 4x4: Kc = 5, Kt = 2).
  """
  p = grid[0] * grid[1]
  kt = max(1, int(p * target_scale[0]))
  kc = max(1, int(p * context_scale[0]) - num_targets * kt)
  return kc, kt


def _block_shape(rng: np.random.Generator, grid: tuple[int, int], scale: tuple[float, float],
                 aspect: tuple[float, float]) -> tuple[int, int]:
  """I-JEPA block size: area int(P * uniform(scale)), aspect uniform(aspect), within the grid."""
  gh, gw = grid
  area = int(gh * gw * rng.uniform(*scale))
  ar = rng.uniform(*aspect)
  bh = min(max(int(round(math.sqrt(area * ar))), 1), gh)
  bw = min(max(int(round(math.sqrt(area / ar))), 1), gw)
  return bh, bw


def _place(rng: np.random.Generator, grid: tuple[int, int], shape: tuple[int, int]) -> np.ndarray:
  gh, gw = grid
  bh, bw = shape
  top = int(rng.integers(0, gh - bh + 1))
  left = int(rng.integers(0, gw - bw + 1))
  block = np.zeros((gh, gw), bool)
  block[top:top + bh, left:left + bw] = True
  return block


def _fit(rng: np.random.Generator, indices: np.ndarray, k: int,
         extra: np.ndarray | None = None) -> np.ndarray:
  """Exactly k sorted int32 indices: a random subset of `indices` if too many; if too few, padded
  with a random subset of `extra` (distinct new indices) and then by random repeats of what is
  there."""
  if indices.size > k:
    indices = rng.choice(indices, size=k, replace=False)
  elif indices.size < k:
    if extra is not None and extra.size:
      indices = np.concatenate(
          [indices, rng.choice(extra, size=min(k - indices.size, extra.size), replace=False)])
    if indices.size < k:
      indices = np.concatenate([indices, rng.choice(indices, size=k - indices.size)])
  return np.sort(indices).astype(np.int32)


def multiblock_masks(rng: np.random.Generator, grid: tuple[int, int], num_targets: int = 4,
                     target_scale: tuple[float, float] = (0.15, 0.2),
                     target_aspect: tuple[float, float] = (0.75, 1.5),
                     context_scale: tuple[float, float] = (0.85, 1.0),
                     context_aspect: tuple[float, float] = (1.0, 1.0),
                     min_context: int = 4, max_tries: int = 20) -> dict[str, np.ndarray]:
  """I-JEPA multi-block masks ("Self-Supervised Learning from Images with a Joint-Embedding
  Predictive Architecture").

  One target block shape (area fraction uniform in target_scale, aspect uniform in target_aspect)
  is drawn per record and placed num_targets times independently (targets may overlap each other).
  The context is one block (area fraction in context_scale, aspect in context_aspect) minus all
  target patches; up to max_tries placements are tried until at least min_context patches remain
  (else the best try is used). Shapes are static (see `multiblock_sizes`): each target keeps a
  random subset of Kt of its patches, or is padded by random repeats of its own patches; the
  context keeps a random subset of Kc, or is padded first with random non-target patches outside
  the context block, so the context never contains a target patch.

  Args:
    rng: the record's Generator.
    grid: (gh, gw) patch grid.
    num_targets: number of target blocks (I-JEPA: 4).
    target_scale, target_aspect: target block area fraction and aspect (h / w) ranges.
    context_scale, context_aspect: context block area fraction and aspect ranges.
    min_context: context patches wanted before accepting a context placement.
    max_tries: context placements tried.

  Returns:
    {'context_keep': int32 [Kc] sorted, 'target_indices': int32 [num_targets, Kt], rows sorted},
    with (Kc, Kt) = multiblock_sizes(grid, num_targets, target_scale, context_scale); no context
    index is a target index (unless every patch is a target, a degenerate configuration).
  """
  kc, kt = multiblock_sizes(grid, num_targets, target_scale, context_scale)
  shape = _block_shape(rng, grid, target_scale, target_aspect)
  union = np.zeros(grid, bool)
  targets = []
  for _ in range(num_targets):
    block = _place(rng, grid, shape)
    union |= block
    targets.append(_fit(rng, np.flatnonzero(block), kt))
  best = None
  for _ in range(max_tries):
    ctx_block = _place(rng, grid, _block_shape(rng, grid, context_scale, context_aspect))
    ctx = ctx_block & ~union
    if best is None or ctx.sum() > best[1].sum():
      best = (ctx_block, ctx)
    if ctx.sum() >= min(min_context, kc):
      break
  ctx_block, ctx = best
  context = np.flatnonzero(ctx)
  outside = np.flatnonzero(~ctx_block & ~union)
  if context.size == 0 and outside.size == 0:  # every patch is a target: nothing hidden is left
    context = np.arange(union.size)
  context = _fit(rng, context, kc, extra=outside)
  return {"context_keep": context, "target_indices": np.stack(targets)}


def masks_for_spec(rng: np.random.Generator, spec: Any) -> dict[str, np.ndarray]:
  """The masks a ViewSpec (ssljax.data.augment) asks for, on its global-crop patch grid.

  Args:
    rng: the record's Generator.
    spec: a ViewSpec (mask, mask_ratio, patch_size, global_size; for 'multiblock' also
      num_targets, target_scale, context_scale).

  Returns:
    '': {}; 'random': {'mask': bool [P], 'keep_indices': int32 [K], 'masked_indices': int32 [P-K]};
    'block': {'mask': bool [P]}; 'multiblock': {'context_keep': int32 [Kc],
    'target_indices': int32 [num_targets, Kt]} (spec.num_targets, target_scale, context_scale).
  """
  if not spec.mask:
    return {}
  g = spec.global_size // spec.patch_size
  if spec.mask == "random":
    mask, keep, masked = random_mask(rng, g * g, spec.mask_ratio)
    return {"mask": mask, "keep_indices": keep, "masked_indices": masked}
  if spec.mask == "block":
    return {"mask": block_mask(rng, (g, g), spec.mask_ratio)}
  if spec.mask == "multiblock":
    return multiblock_masks(rng, (g, g), num_targets=spec.num_targets,
                            target_scale=tuple(spec.target_scale),
                            context_scale=tuple(spec.context_scale))
  raise ValueError(f"mask={spec.mask!r}, expected one of '', 'random', 'block', 'multiblock'")
