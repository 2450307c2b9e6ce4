"""What the pipeline produces per image for a method: global / local crops and masks.

A leaf module (it imports nothing from ssljax at import time), so that methods, the pipeline and
the config can all import `ViewSpec` without import cycles. `ssljax.data.augment.ViewSpec` is the
same class (re-exported from its old home).
"""
from __future__ import annotations

import dataclasses

MASK_KINDS = ("", "random", "block", "multiblock")


@dataclasses.dataclass(frozen=True)
class ViewSpec:
  """Which views the pipeline makes per image (per method).

  Attributes:
    global_crops: number G of global crops (2 for the two-view methods).
    global_size: side of a global crop in pixels.
    global_scale: crop area fraction range of the global crops (DINO: (0.4, 1.0)).
    local_crops: number L of local crops (0: no 'local' entry).
    local_size: side of a local crop in pixels (0 = unused; must be > 0 when local_crops > 0).
    local_scale: crop area fraction range of the local crops (DINO: (0.05, 0.4)).
    mask: '' (no mask), 'random' (MAE), 'block' (BEiT/iBOT) or 'multiblock' (I-JEPA); see
      ssljax.data.masks.
    mask_ratio: fraction of patches masked for 'random' and 'block'.
    patch_size: ViT patch size; the mask grid is global_size // patch_size on each side.
    num_targets, target_scale, context_scale: 'multiblock' only: number of target blocks and
      the area fraction ranges of a target block and of the context block (I-JEPA's defaults).
  """
  global_crops: int = 2
  global_size: int = 224
  global_scale: tuple[float, float] = (0.08, 1.0)
  local_crops: int = 0
  local_size: int = 0
  local_scale: tuple[float, float] = (0.05, 0.4)
  mask: str = ""
  mask_ratio: float = 0.75
  patch_size: int = 16
  num_targets: int = 4
  target_scale: tuple[float, float] = (0.15, 0.2)
  context_scale: tuple[float, float] = (0.85, 1.0)

  def __post_init__(self):
    if self.global_crops < 1 or self.global_size < 1:
      raise ValueError(f"ViewSpec: global_crops={self.global_crops} and global_size="
                       f"{self.global_size} must be >= 1")
    if self.local_crops < 0:
      raise ValueError(f"ViewSpec: local_crops={self.local_crops} must be >= 0")
    if self.local_crops > 0 and self.local_size < 1:
      raise ValueError(f"ViewSpec: local_crops={self.local_crops} needs local_size >= 1, "
                       f"got {self.local_size}")
    if self.mask not in MASK_KINDS:
      raise ValueError(f"ViewSpec: mask={self.mask!r}, expected one of {MASK_KINDS}")
    if self.mask:
      if not 0.0 <= self.mask_ratio <= 1.0:
        raise ValueError(f"ViewSpec: mask_ratio={self.mask_ratio}, expected in [0, 1]")
      if self.patch_size < 1 or self.global_size % self.patch_size:
        raise ValueError(f"ViewSpec: patch_size={self.patch_size} must divide "
                         f"global_size={self.global_size}")
    if self.mask == "multiblock":
      from ssljax.data import masks
      problem = masks.multiblock_problem(self.num_targets, self.target_scale, self.context_scale)
      if problem:
        raise ValueError(f"ViewSpec: {problem}")

  @property
  def grid(self) -> tuple[int, int]:
    """(gh, gw) patch grid of a global crop."""
    g = self.global_size // self.patch_size
    return (g, g)

