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
from ssljax.data.views import Views


@dataclasses.dataclass(frozen=True)
class MakeViews:
  """grain random-map transform: record -> the spec's fields (`Views.make`) + 'label' int32.

  `spec` is any `ssljax.data.views.Views` (image crops and masks, sequence crops, joint specs):
  the pipeline does not look at what the fields hold. A record without a 'label' gets -1.
  """

  spec: Views
  aug_cfg: Any

  def __call__(self, record: dict[str, Any], rng: np.random.Generator) -> dict[str, np.ndarray]:
    out = dict(self.spec.make(record, rng, self.aug_cfg))
    out["label"] = np.int32(record.get("label", -1))
    return out


def train_dataset(source, spec: Views, aug_cfg, *, seed: int, local_batch_size: int,
                  process_index: int = 0, process_count: int = 1, worker_count: int = 0,
                  prefetch: int = 2, start: int = 0) -> grain.IterDataset:
  """An endless iterable of local batches: dict of numpy arrays with leading dim local_batch_size.

  The record stream (shuffled per epoch from `seed`, each record's views seeded by its position in
  the stream) does not depend on the process count: it is cut into local batches and process p
  takes local batches p, p + P, p + 2P, ... So global batch k holds stream positions
  [k * B, (k + 1) * B) whatever P is, and a run on P hosts sees the same data, in the same rows
  of `make_array_from_process_local_data`, as a run on one host. Each process reads and augments
  only its own records (grain's map datasets are lazy).

  `start` is the number of stream records already consumed (step k of a run at global batch B:
  k * B): the iterator begins at stream position `start`, so a resumed run on any number of
  processes continues the exact global sequence from a description that does not depend on P.
  """
  global_batch = local_batch_size * process_count
  if len(source) < global_batch:
    raise ValueError(f"the train split has {len(source)} examples, fewer than the global batch "
                     f"size {global_batch}")
  ds = grain.MapDataset.source(source).shuffle(seed=seed).repeat()
  ds = ds.random_map(MakeViews(spec, aug_cfg), seed=seed)   # seeds follow the stream position
  if start:
    ds = ds[start:]
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
  """Deterministic eval views of (at most max_examples, evenly spaced) images, all in memory.

  For image-only tools (fine-tuning, the benchmarks); the trainer's evaluator uses `eval_bank`.
  Returns images float32 [N, image_size, image_size, C] and labels int32 [N].
  """
  idx = bank_indices(len(source), max_examples)
  images = np.stack([augment.center_view(source[int(i)]["image"], image_size, aug_cfg) for i in idx])
  labels = np.asarray([source[int(i)]["label"] for i in idx], np.int32)
  return images, labels


def bank_indices(num_records: int, max_examples: int) -> np.ndarray:
  """The records of an evaluation bank: all, or `max_examples` evenly spaced (int64 [N])."""
  if num_records <= max_examples:
    return np.arange(num_records)
  return np.linspace(0, num_records - 1, max_examples).astype(np.int64)


def eval_bank(source, spec: Views, aug_cfg, max_examples: int, *, chunk: int,
              process_index: int = 0, process_count: int = 1) -> tuple[np.ndarray, np.ndarray, int]:
  """This process's part of an evaluation bank, in the spec's stored form (uint8 for images).

  The bank is `bank_indices(len(source), max_examples)` cut into global chunks of `chunk` rows
  (the last one padded); process p keeps rows [p * chunk / P, (p + 1) * chunk / P) of every chunk
  (the rows its devices hold when a chunk is sharded over the batch), so each process decodes and
  stores only 1 / P of the bank.

  Returns:
    (inputs [chunks * chunk / P, ...] stored eval inputs, labels int32 [same], n) where n is the
    bank's true size: global row i of the concatenated chunks is a real record iff i < n.
  """
  if chunk % process_count:
    raise ValueError(f"eval chunk {chunk} is not divisible by the process count {process_count}")
  idx = bank_indices(len(source), max_examples)
  n, per = len(idx), chunk // process_count
  chunks = -(-n // chunk)
  rows = (np.arange(chunks)[:, None] * chunk + process_index * per + np.arange(per)[None]).ravel()
  inputs, labels, example = [], [], None
  for row in rows:
    if row < n:
      record = source[int(idx[row])]
      example = spec.eval_input(record, aug_cfg)
      inputs.append(example)
      labels.append(int(record.get("label", -1)))
    else:
      inputs.append(None)
      labels.append(-1)
  if example is None:  # this process holds only padding
    example = spec.eval_input(source[int(idx[0])], aug_cfg)
  pad = np.zeros_like(example)
  return (np.stack([pad if x is None else x for x in inputs]),
          np.asarray(labels, np.int32), n)
