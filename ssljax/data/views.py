"""What the pipeline makes of one record for a method: the batch fields, their kinds, and how.

A method's `view_spec()` returns a `Views`: it declares the batch fields it makes (`fields()`:
name -> `Field(kind, views)`), makes them from one record (`make`), and gives the deterministic
input that evaluation feeds to `Method.features` (`eval_input`, stored compactly, and `prepare`,
which turns the stored form into the model's input). The pipeline and the trainer carry any
fields of any kind, so a new modality adds a `Views` (and a source and a method), not edits.

Kinds and their per-example shapes (a field with `views=V` has a leading view axis [V, ...]; the
batch adds the leading batch axis [B, ...]):

  image        [H, W, C]       float32 normalised (uint8 where a spec says so)
  clip         [T, H, W, C]    video frames
  spectrogram  [F, T]          frequency bins x time frames
  waveform     [S]             audio samples
  tokens       [L]             int32 token ids (with a 'mask' field for padding)
  mask         [P]             bool or 0/1, per patch / token
  indices      [K]             int32 positions into a patch / token sequence
  label        []              int32 class id (-1 where a record has none)
  params       [P]             per-example parameters (e.g. a view's photometric draws)

`ViewSpec` (image crops and patch masks) is the spec of the 18 image methods; `SequenceViews`
crops any sequence kind along its last axis; `Joint` makes several specs' fields from one record
(e.g. image crops + caption tokens).

A leaf module: it imports nothing from ssljax at import time, so that methods, the pipeline and
the config can all import it without cycles. `ssljax.data.augment.ViewSpec` is the same class.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np

MASK_KINDS = ("", "random", "block", "multiblock")

# kind -> (rank of one example without a view axis, shape in words)
KINDS: dict[str, tuple[int, str]] = {
    "image": (3, "[H, W, C]"),
    "clip": (4, "[T, H, W, C]"),
    "spectrogram": (2, "[F, T]"),
    "waveform": (1, "[S]"),
    "tokens": (1, "[L]"),
    "mask": (1, "[P]"),
    "indices": (1, "[K]"),
    "label": (0, "[]"),
    "params": (1, "[P]"),
}


@dataclasses.dataclass(frozen=True)
class Field:
  """One batch field: its kind (a key of KINDS) and its number of stacked views (0: none)."""
  kind: str
  views: int = 0

  def __post_init__(self):
    if self.kind not in KINDS:
      raise ValueError(f"Field kind={self.kind!r}; expected one of {tuple(KINDS)}")
    if self.views < 0:
      raise ValueError(f"Field views={self.views}; expected >= 0")

  @property
  def rank(self) -> int:
    """Rank of one example of this field (the batch adds one leading axis)."""
    return KINDS[self.kind][0] + (1 if self.views else 0)

  def describe(self) -> str:
    shape = KINDS[self.kind][1]
    return f"{self.kind} [V={self.views}, {shape[1:]}" if self.views else f"{self.kind} {shape}"


LABEL = Field("label")


def check_example(fields: Mapping[str, Field], example: Mapping[str, Any], where: str = "") -> None:
  """Raises ValueError (one line) unless `example` (one record's views) has exactly the declared
  fields (plus 'label'), each of its kind's rank and, for fields with views, that many views."""
  declared = dict(fields, label=LABEL)
  where = f"{where}: " if where else ""
  missing = sorted(set(declared) - set(example))
  extra = sorted(set(example) - set(declared))
  if missing or extra:
    raise ValueError(f"{where}the views made {sorted(example)} but the spec declares "
                     f"{sorted(declared)} (missing {missing}, undeclared {extra})")
  for name, field in declared.items():
    shape = np.shape(example[name])
    if len(shape) != field.rank or (field.views and shape[0] != field.views):
      raise ValueError(f"{where}field {name!r} has shape {shape}; expected {field.describe()} "
                       f"(rank {field.rank})")


class Views:
  """The protocol of a method's view specification (see the module docstring).

  Subclasses are frozen dataclasses (hashable, picklable into grain workers) that implement
  `fields`, `make`, `eval_kind`, `eval_input` and, where the stored form is not the model's
  input, `prepare`.
  """

  def fields(self) -> dict[str, Field]:
    """The batch fields `make` returns (without 'label', which the pipeline adds)."""
    raise NotImplementedError

  def make(self, record: Mapping[str, Any], rng: np.random.Generator,
           aug_cfg: Any) -> dict[str, np.ndarray]:
    """One record -> {field: array} (random views drawn from `rng` only)."""
    raise NotImplementedError

  @property
  def eval_kind(self) -> str:
    """The kind of `eval_input` (what `Method.features` takes, one example)."""
    raise NotImplementedError

  def eval_input(self, record: Mapping[str, Any], aug_cfg: Any) -> np.ndarray:
    """The deterministic evaluation input of one record, in its compact stored form."""
    raise NotImplementedError

  def prepare(self, stored: np.ndarray, aug_cfg: Any) -> np.ndarray:
    """A batch of stored eval inputs [N, ...] -> the model's input [N, ...]. Default: as is."""
    del aug_cfg
    return stored

  def with_augment_on(self, where: str) -> "Views":
    """This spec with its augmentation split 'host' (all in the pipeline) or 'device' (the
    pipeline crops, `on_device` does the rest in the train step). Default: host only."""
    del where
    return self

  def with_view_overrides(self, view_overrides, local_overrides) -> "Views":
    """This spec with per-view augmentation settings (see `ViewSpec`). Default: unchanged."""
    del view_overrides, local_overrides
    return self

  def on_device(self, batch: dict, aug_cfg: Any, dtype: Any) -> dict:
    """Inside the jitted step, before the method sees it: the batch's device-side work (jnp).
    Default: none."""
    del aug_cfg, dtype
    return batch


@dataclasses.dataclass(frozen=True)
class ViewSpec(Views):
  """Image views per record: global / local crops (multi-crop) and patch masks.

  Fields: 'global' image [G, S, S, C]; 'local' image [L, s, s, C] when local_crops > 0; and the
  masks of `mask` (ssljax.data.masks.masks_for_spec): 'random': 'mask' [P], 'keep_indices' [K],
  'masked_indices' [P-K]; 'block': 'mask' [P]; 'multiblock': 'context_keep' [Kc],
  'target_indices' [num_targets, Kt]. Records are {'image': uint8 [H, W, C], 'label': int}.
  Evaluation: the centre crop at global_size, stored as uint8 and normalised by `prepare`.

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
    augment_on: 'host' (crops and photometric augmentation in the pipeline) or 'device' (the
      pipeline makes uint8 crops and their photometric draws, 'global_aug' / 'local_aug'
      params [V, 14]; `on_device` applies ssljax.data.augment_jax in the train step).
    view_overrides: per global crop i (cycled), (key, value) pairs replacing single settings of
      the augmentation config, e.g. BYOL's ((('blur_prob', 1.0),), (('blur_prob', 0.1),
      ('solarize_prob', 0.2))); () = the config for every crop.
    local_overrides: the same for every local crop (DINO: (('blur_prob', 0.5),)).
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
  augment_on: str = "host"
  view_overrides: tuple[tuple[tuple[str, float], ...], ...] = ()
  local_overrides: tuple[tuple[str, float], ...] = ()

  def __post_init__(self):
    if self.augment_on not in ("host", "device"):
      raise ValueError(f"ViewSpec: augment_on={self.augment_on!r}; expected 'host' or 'device'")
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

  def fields(self) -> dict[str, Field]:
    out = {"global": Field("image", self.global_crops)}
    if self.local_crops:
      out["local"] = Field("image", self.local_crops)
    if self.augment_on == "device":
      out.update({f"{name}_aug": Field("params", out[name].views) for name in list(out)})
    if self.mask == "random":
      out.update(mask=Field("mask"), keep_indices=Field("indices"), masked_indices=Field("indices"))
    elif self.mask == "block":
      out["mask"] = Field("mask")
    elif self.mask == "multiblock":
      out.update(context_keep=Field("indices"), target_indices=Field("indices", self.num_targets))
    return out

  def make(self, record, rng, aug_cfg):
    from ssljax.data import augment, crops, masks  # pylint: disable=g-import-not-at-top
    make = crops.multicrop_uint8 if self.augment_on == "device" else augment.multicrop_views
    out = make(record["image"], rng, self, aug_cfg)
    out.update(masks.masks_for_spec(rng, self))
    return out

  def with_augment_on(self, where: str) -> "ViewSpec":
    return dataclasses.replace(self, augment_on=where)

  def with_view_overrides(self, view_overrides, local_overrides) -> "ViewSpec":
    return dataclasses.replace(self, view_overrides=tuple(view_overrides),
                               local_overrides=tuple(local_overrides))

  def on_device(self, batch, aug_cfg, dtype):
    """'device': the photometric half of each view (ssljax.data.augment_jax) on the crops."""
    if self.augment_on != "device":
      return batch
    from ssljax.data import augment_jax  # pylint: disable=g-import-not-at-top
    batch = dict(batch)
    for name in ("global", "local"):
      if name in batch:
        overrides = (self.view_overrides if name == "global" else
                     ((self.local_overrides,) if self.local_overrides else ()))
        batch[name] = augment_jax.photometric_views(batch[name], batch.pop(f"{name}_aug"),
                                                    aug_cfg, dtype, overrides)
    return batch

  @property
  def eval_kind(self) -> str:
    return "image"

  def eval_input(self, record, aug_cfg):
    """uint8 [S, S, C]: the centre square crop resized to global_size (not normalised)."""
    from ssljax.data import crops  # pylint: disable=g-import-not-at-top
    del aug_cfg
    return crops.center_crop_uint8(record["image"], self.global_size)

  def prepare(self, stored, aug_cfg):
    """uint8 [N, S, S, C] -> float32 normalised, bitwise `augment.center_view`'s output."""
    from ssljax.data import crops  # pylint: disable=g-import-not-at-top
    return crops.normalize_uint8(stored, aug_cfg)


_SEQUENCE_KINDS = ("spectrogram", "waveform", "tokens", "clip")


@dataclasses.dataclass(frozen=True)
class SequenceViews(Views):
  """`num_views` random crops of `length` steps along the time axis of record[`key`].

  The time axis is the last one for 'spectrogram' [F, T], 'waveform' [S] and 'tokens' [L], the
  first for 'clip' [T, H, W, C]. Field `name`: [V, ..., length, ...] (float32; int32 for tokens).
  Evaluation: the centre crop. Records shorter than `length` raise one line naming the record.
  """
  kind: str = "spectrogram"
  length: int = 32
  num_views: int = 2
  key: str = "spectrogram"
  name: str = "views"

  def __post_init__(self):
    if self.kind not in _SEQUENCE_KINDS:
      raise ValueError(f"SequenceViews: kind={self.kind!r}; expected one of {_SEQUENCE_KINDS}")
    if self.length < 1 or self.num_views < 1:
      raise ValueError(f"SequenceViews: length={self.length} and num_views={self.num_views} "
                       f"must be >= 1")

  @property
  def _axis(self) -> int:
    return 0 if self.kind == "clip" else -1

  def _crop(self, x: np.ndarray, start: int) -> np.ndarray:
    x = np.take(x, np.arange(start, start + self.length), axis=self._axis)
    return x.astype(np.int32 if self.kind == "tokens" else np.float32)

  def _steps(self, record) -> np.ndarray:
    x = np.asarray(record[self.key])
    if x.ndim != KINDS[self.kind][0]:
      raise ValueError(f"record[{self.key!r}] has shape {x.shape}; expected {self.kind} "
                       f"{KINDS[self.kind][1]}")
    if x.shape[self._axis] < self.length:
      raise ValueError(f"record[{self.key!r}] has {x.shape[self._axis]} steps; SequenceViews "
                       f"needs at least length={self.length}")
    return x

  def fields(self) -> dict[str, Field]:
    return {self.name: Field(self.kind, self.num_views)}

  def make(self, record, rng, aug_cfg):
    del aug_cfg
    x = self._steps(record)
    starts = rng.integers(0, x.shape[self._axis] - self.length + 1, size=self.num_views)
    return {self.name: np.stack([self._crop(x, int(s)) for s in starts])}

  @property
  def eval_kind(self) -> str:
    return self.kind

  def eval_input(self, record, aug_cfg):
    del aug_cfg
    x = self._steps(record)
    return self._crop(x, (x.shape[self._axis] - self.length) // 2)


@dataclasses.dataclass(frozen=True)
class Joint(Views):
  """Several specs' fields from one record (e.g. image crops + caption tokens), drawn in order
  from the record's one Generator; evaluation uses `parts[eval_part]`."""
  parts: tuple[Views, ...]
  eval_part: int = 0

  def __post_init__(self):
    if not self.parts:
      raise ValueError("Joint: needs at least one part")
    seen: dict[str, int] = {}
    for i, part in enumerate(self.parts):
      for name in part.fields():
        if name in seen:
          raise ValueError(f"Joint: field {name!r} is made by parts {seen[name]} and {i}")
        seen[name] = i
    if not 0 <= self.eval_part < len(self.parts):
      raise ValueError(f"Joint: eval_part={self.eval_part}; expected 0..{len(self.parts) - 1}")

  def fields(self) -> dict[str, Field]:
    out = {}
    for part in self.parts:
      out.update(part.fields())
    return out

  def make(self, record, rng, aug_cfg):
    out = {}
    for part in self.parts:
      out.update(part.make(record, rng, aug_cfg))
    return out

  @property
  def eval_kind(self) -> str:
    return self.parts[self.eval_part].eval_kind

  def eval_input(self, record, aug_cfg):
    return self.parts[self.eval_part].eval_input(record, aug_cfg)

  def prepare(self, stored, aug_cfg):
    return self.parts[self.eval_part].prepare(stored, aug_cfg)

  def with_augment_on(self, where: str) -> "Joint":
    return dataclasses.replace(self, parts=tuple(p.with_augment_on(where) for p in self.parts))

  def with_view_overrides(self, view_overrides, local_overrides) -> "Joint":
    return dataclasses.replace(self, parts=tuple(
        p.with_view_overrides(view_overrides, local_overrides) for p in self.parts))

  def on_device(self, batch, aug_cfg, dtype):
    for part in self.parts:
      batch = part.on_device(batch, aug_cfg, dtype)
    return batch
