"""Evaluation during and at the end of training: features of the held-out split, kNN, linear probe.

The eval images (deterministic centre views of the train bank and the held-out split) are decoded
once per run and kept in memory; features are computed by a jitted `Method.features` in fixed-size
chunks (the last one padded) so that every eval reuses one compiled program.
"""
from __future__ import annotations

from typing import Any

import jax
import numpy as np

from ssljax import parallel
from ssljax.data import pipeline
from ssljax.data import sources
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


class Evaluator:
  """kNN monitor and linear probe of a method's features on the config's eval split."""

  def __init__(self, method, config, mesh):
    self.method, self.config = method, config
    data, ev = config.data, config.eval
    train_src = sources.build_source(data, data.train_split)
    eval_src = sources.build_source(data, data.eval_split)
    self.num_classes = train_src.num_classes
    self.train_x, self.train_y = pipeline.eval_arrays(train_src, data.image_size, data.augment, ev.max_examples)
    self.eval_x, self.eval_y = pipeline.eval_arrays(eval_src, data.image_size, data.augment, ev.max_examples)
    dp = parallel.data_parallel_size(mesh)
    self.batch_size = -(-ev.batch_size // dp) * dp   # a multiple of the data-parallel size
    self.sharding = parallel.batch_sharding(mesh)
    # Batches are sharded over the mesh (`extract`): traced under it, kernels run under shard_map.
    self._features = jax.jit(parallel.traced_under(method.features, mesh))
    self._embeddings = jax.jit(parallel.traced_under(method.embeddings, mesh))

  def _feats(self, params, state):
    bs, sh = self.batch_size, self.sharding
    return (extract(self._features, params, state, self.train_x, bs, sh),
            extract(self._features, params, state, self.eval_x, bs, sh))

  def knn(self, params, state) -> dict[str, float]:
    """{'knn_top1', 'embedding_std', 'rankme', 'collapsed'} on the held-out split."""
    ev = self.config.eval
    train_f, eval_f = self._feats(params, state)
    k = min(ev.knn_k, len(train_f))
    acc = knn_top1(train_f, self.train_y, eval_f, self.eval_y, self.num_classes, k=k,
                   temperature=ev.knn_temperature)
    emb = extract(self._embeddings, params, state, self.eval_x, self.batch_size, self.sharding)
    report = collapse_report(emb, centre=self.method.centre_embeddings)
    return {"knn_top1": acc, "embedding_std": report["embedding_std"], "rankme": report["rankme"],
            "collapsed": bool(report["collapsed"])}

  def linear(self, params, state) -> dict[str, float]:
    """Linear probe on frozen features: {'top1', 'train_top1'}."""
    train_f, eval_f = self._feats(params, state)
    return linear_probe(train_f, self.train_y, eval_f, self.eval_y, self.num_classes,
                        epochs=self.config.eval.linear_epochs, seed=self.config.seed)
