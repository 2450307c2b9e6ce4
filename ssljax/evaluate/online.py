"""Evaluation during and at the end of training: features of the held-out split, kNN, linear probe.

The eval inputs (deterministic centre views of the train bank and the held-out split, stored as
uint8 for images) are decoded once per run, each process keeping only the rows its devices
compute; features are computed by a jitted `Method.features` in fixed-size chunks (the last one
padded) so that every eval reuses one compiled program.
"""
from __future__ import annotations

from typing import Any

import jax
import numpy as np

from ssljax import parallel
from ssljax.data import pipeline
from ssljax.data import sources
from ssljax.evaluate import zeroshot
from ssljax.evaluate.diagnostics import collapse_report
from ssljax.evaluate.knn import knn_top1
from ssljax.evaluate.linear import linear_probe


def extract(fn, params: Any, state: Any, images: np.ndarray, batch_size: int, sharding=None) -> np.ndarray:
  """Runs the jitted `fn(params, state, images[chunk]) -> [chunk, D]` over images [N, ...] -> [N, D]."""
  n = len(images)
  out = []
  for start in range(0, n, batch_size):
    chunk = images[start:start + batch_size]
    pad = batch_size - len(chunk)
    if pad:
      chunk = np.concatenate([chunk, np.zeros((pad,) + chunk.shape[1:], chunk.dtype)])
    x = jax.device_put(chunk, sharding) if sharding is not None else chunk
    y = fn(params, state, x)
    if isinstance(y, jax.Array) and not y.is_fully_addressable:  # multi-host: gather the batch shards
      from jax.experimental import multihost_utils
      y = multihost_utils.process_allgather(y, tiled=True)
    out.append(np.asarray(jax.device_get(y))[:batch_size - pad])
  return np.concatenate(out)


class Bank:
  """This process's part of an evaluation bank (`pipeline.eval_bank`): stored inputs (uint8 for
  images), their global row layout, and the bank's labels in global order."""

  def __init__(self, source, spec, aug_cfg, max_examples: int, chunk: int):
    p, count = jax.process_index(), jax.process_count()
    self.inputs, local_labels, self.n = pipeline.eval_bank(
        source, spec, aug_cfg, max_examples, chunk=chunk, process_index=p, process_count=count)
    self.spec, self.aug_cfg, self.chunk, self.per = spec, aug_cfg, chunk, chunk // count
    self.labels = _global_rows(local_labels.reshape(-1, self.per), self.n)

  def local_inputs(self, count: int | None = None) -> np.ndarray:
    """Model inputs (`spec.prepare`) of this process's real rows (the first `count`), in bank order."""
    p = jax.process_index()
    rows = np.arange(len(self.inputs))
    real = rows[(rows // self.per) * self.chunk + p * self.per + rows % self.per < self.n]
    return self.spec.prepare(self.inputs[real[:count]], self.aug_cfg)

  def features(self, fn, params: Any, state: Any, sharding) -> np.ndarray:
    """fn(params, state, x [chunk, ...]) -> [chunk, D] over the bank, chunk by chunk, sharded over
    `sharding`'s devices; returns float32 [n, D] in bank order on every process."""
    out = []
    for start in range(0, len(self.inputs), self.per):
      local = self.spec.prepare(self.inputs[start:start + self.per], self.aug_cfg)
      x = jax.make_array_from_process_local_data(sharding, np.asarray(local),
                                                 (self.chunk,) + local.shape[1:])
      y = fn(params, state, x)
      if isinstance(y, jax.Array) and not y.is_fully_addressable:
        from jax.experimental import multihost_utils
        y = multihost_utils.process_allgather(y, tiled=True)
      out.append(np.asarray(jax.device_get(y)))
    return np.concatenate(out)[:self.n]


def _global_rows(local: np.ndarray, n: int) -> np.ndarray:
  """Per-process rows [chunks, per, ...] -> the bank's rows in global order [n, ...]."""
  if jax.process_count() == 1:
    return local.reshape((-1,) + local.shape[2:])[:n]
  from jax.experimental import multihost_utils
  every = np.asarray(multihost_utils.process_allgather(local))        # [P, chunks, per, ...]
  every = np.swapaxes(every, 0, 1)                                     # [chunks, P, per, ...]
  return every.reshape((-1,) + every.shape[3:])[:n]


class Evaluator:
  """kNN monitor and linear probe of a method's features on the config's eval split.

  The banks (train split: the kNN memory and probe training set; eval split: the queries) are
  the method's view spec's eval inputs (`Views.eval_input`: uint8 centre crops for images) of at
  most `eval.max_examples` records each. Each process decodes and keeps only the rows its
  devices compute (1 / process count of each bank), turns them into model inputs chunk by chunk
  and holds features, not model inputs, on the host.
  """

  def __init__(self, method, config, mesh):
    self.method, self.config = method, config
    data, ev = config.data, config.eval
    spec = method.view_spec()
    train_src = sources.build_source(data, data.train_split)
    eval_src = sources.build_source(data, data.eval_split)
    self.num_classes = train_src.num_classes
    dp = parallel.data_parallel_size(mesh)
    self.batch_size = -(-ev.batch_size // dp) * dp   # a multiple of the data-parallel size
    self.sharding = parallel.batch_sharding(mesh)
    self.train_bank = Bank(train_src, spec, data.augment, ev.max_examples, self.batch_size)
    self.eval_bank = Bank(eval_src, spec, data.augment, ev.max_examples, self.batch_size)
    self.train_y, self.eval_y = self.train_bank.labels, self.eval_bank.labels
    # Batches are sharded over the mesh: traced under it, kernels run under shard_map.
    self._features = jax.jit(parallel.traced_under(method.features, mesh))
    self._embeddings = jax.jit(parallel.traced_under(method.embeddings, mesh))
    # Image-text methods: zero-shot classification and retrieval on the held-out split too.
    self.zeroshot = None
    if zeroshot.is_image_text(method):
      self.zeroshot = zeroshot.ZeroShot(method, eval_src,
                                        pipeline.bank_indices(len(eval_src), ev.max_examples), mesh)
      self._encode_image = jax.jit(parallel.traced_under(method.encode_image, mesh))

  @property
  def extra_keys(self) -> tuple[str, ...]:
    """The keys `knn` adds for this method beyond kNN and collapse (zero-shot, retrieval)."""
    if self.zeroshot is None:
      return ()
    return ((("zeroshot_top1",) if self.zeroshot.class_names else ()) +
            tuple(f"{d}_r{k}" for d in ("i2t", "t2i") for k in zeroshot.RECALL_AT))

  @property
  def train_x(self) -> np.ndarray:
    """Model inputs of this process's rows of the train bank (all of it on one process)."""
    return self.train_bank.local_inputs()

  @property
  def eval_x(self) -> np.ndarray:
    """Model inputs of this process's rows of the eval bank (all of it on one process)."""
    return self.eval_bank.local_inputs()

  def _feats(self, params, state):
    return (self.train_bank.features(self._features, params, state, self.sharding),
            self.eval_bank.features(self._features, params, state, self.sharding))

  def knn(self, params, state) -> dict[str, float]:
    """{'knn_top1', 'embedding_std', 'rankme', 'collapsed'} on the held-out split, and for
    image-text methods the `extra_keys` (ssljax.evaluate.zeroshot)."""
    ev = self.config.eval
    train_f, eval_f = self._feats(params, state)
    k = min(ev.knn_k, len(train_f))
    acc = knn_top1(train_f, self.train_y, eval_f, self.eval_y, self.num_classes, k=k,
                   temperature=ev.knn_temperature)
    emb = self.eval_bank.features(self._embeddings, params, state, self.sharding)
    report = collapse_report(emb, centre=self.method.centre_embeddings)
    row = {"knn_top1": acc, "embedding_std": report["embedding_std"], "rankme": report["rankme"],
           "collapsed": bool(report["collapsed"])}
    if self.zeroshot is not None:
      image_emb = self.eval_bank.features(self._encode_image, params, state, self.sharding)
      row.update(self.zeroshot.evaluate(params, state, image_emb, self.eval_y))
    return row

  def linear(self, params, state) -> dict[str, float]:
    """Linear probe on frozen features: {'top1', 'train_top1'}."""
    train_f, eval_f = self._feats(params, state)
    return linear_probe(train_f, self.train_y, eval_f, self.eval_y, self.num_classes,
                        epochs=self.config.eval.linear_epochs, seed=self.config.seed)
