"""The grain pipeline: source -> shuffle (per epoch) -> views -> batch -> this process's batches.

Augmentations are seeded per record by grain's `random_map` (from `seed` and the record's
position in the repeated stream), so the same seed gives the same views, and the iterator state
(a position) is all a checkpoint needs to continue the data order exactly.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import grain
import numpy as np

from ssljax.data import augment
from ssljax.data import masks
from ssljax.data.augment import ViewSpec


@dataclasses.dataclass(frozen=True)
class MakeViews:
  """grain random-map transform: record -> {'global': [G,S,S,C], 'local'?: [L,s,s,C], 'label'}."""

  spec: ViewSpec
  aug_cfg: Any

  def __call__(self, record: dict[str, Any], rng: np.random.Generator) -> dict[str, np.ndarray]:
    out = augment.multicrop_views(record["image"], rng, self.spec, self.aug_cfg)
    out["label"] = np.int32(record["label"])
    out.update(masks.masks_for_spec(rng, self.spec))
    return out


def train_dataset(source, spec: ViewSpec, aug_cfg, *, seed: int, local_batch_size: int,
                  process_index: int = 0, process_count: int = 1, worker_count: int = 0,
                  prefetch: int = 2) -> grain.IterDataset:
  """An endless iterable of local batches: dict of numpy arrays with leading dim local_batch_size.

  The record stream (shuffled per epoch from `seed`, each record's views seeded by its position in
  the stream) does not depend on the process count: it is cut into local batches and process p
  takes local batches p, p + P, p + 2P, ... So global batch k holds stream positions
  [k * B, (k + 1) * B) whatever P is, and a run on P hosts sees the same data, in the same rows
  of `make_array_from_process_local_data`, as a run on one host. Each process reads and augments
  only its own records (grain's map datasets are lazy).
  """
  global_batch = local_batch_size * process_count
  if len(source) < global_batch:
    raise ValueError(f"the train split has {len(source)} examples, fewer than the global batch "
                     f"size {global_batch}")
  ds = grain.MapDataset.source(source).shuffle(seed=seed).repeat()
  ds = ds.random_map(MakeViews(spec, aug_cfg), seed=seed)
  ds = ds.batch(local_batch_size, drop_remainder=True)
  if process_count > 1:
    ds = ds[process_index::process_count]
  it = ds.to_iter_dataset(grain.ReadOptions(num_threads=max(1, min(4, worker_count or 1)),
                                            prefetch_buffer_size=prefetch))
  if worker_count > 0:
    from absl import flags
    if not flags.FLAGS.is_parsed():  # grain workers read absl flags; notebooks and tests never parse them
      flags.FLAGS.mark_as_parsed()
    it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count))
  return it


def eval_arrays(source, image_size: int, aug_cfg, max_examples: int) -> tuple[np.ndarray, np.ndarray]:
  """Deterministic eval views of (at most max_examples, evenly spaced) records.

  Returns images float32 [N, image_size, image_size, C] and labels int32 [N].
  """
  n = len(source)
  idx = np.arange(n) if n <= max_examples else np.linspace(0, n - 1, max_examples).astype(np.int64)
  images = np.stack([augment.center_view(source[int(i)]["image"], image_size, aug_cfg) for i in idx])
  labels = np.asarray([source[int(i)]["label"] for i in idx], np.int32)
  return images, labels
