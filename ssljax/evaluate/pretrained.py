"""A pretrained workdir opened for evaluation: the restored run plus its evaluation banks, cached.

    with PretrainedRun("workdirs/simclr_digits") as run:      # latest checkpoint (or step=N)
      train_f, eval_f = run.features()                        # [N, D], [M, D], computed once

The run is opened by `ssljax.workdir.open_run` (config.json, `ssljax.build.build`, the
checkpoint; nothing is written into the workdir), and the train bank and held-out split are the
online evaluator's (`ssljax.evaluate.online.Evaluator`): the same deterministic centre views and
`config.eval.max_examples`, so a kNN here agrees with the one the trainer logged.
"""
from __future__ import annotations

from typing import Any

import numpy as np


class PretrainedRun:
  """A pretrained workdir opened for evaluation: method, restored state, cached features.

  Attributes:
    workdir, config, method: the run, its config, its `ssljax.methods.base.Method`.
    opened: the `ssljax.workdir.OpenedRun` (built method and mesh, restored state).
    state: the restored `ssljax.build.TrainState`.
    params, method_state: the restored (or, with random_init, freshly initialised) state.
    step: the checkpoint step (0 for random_init).
    random_init: whether the state is the untrained initialisation of the same seed.
    evaluator: the `ssljax.evaluate.online.Evaluator` holding the banks.
    train_y, eval_y: int32 labels [N], [M] of the banks; num_classes of the data source.
  """

  def __init__(self, workdir: str, step: int | None = None, random_init: bool = False,
               max_examples: int | None = None):
    from ssljax import workdir as workdir_lib
    from ssljax.evaluate import online
    self.opened = workdir_lib.open_run(workdir, step=step, random_init=random_init)
    self.workdir, self.config, self.method = (self.opened.workdir, self.opened.config,
                                              self.opened.method)
    if max_examples is not None:
      self.config.eval.max_examples = int(max_examples)
    self.random_init, self.step, self.state = self.opened.random_init, self.opened.step, self.opened.state
    # With config.eval_ema, the weights EMA (`TrainState.eval_params`).
    self.params, self.method_state = self.state.eval_params, self.state.method_state
    self.evaluator = online.Evaluator(self.method, self.config, self.opened.mesh)
    ev = self.evaluator
    self.train_y, self.eval_y, self.num_classes = ev.train_y, ev.eval_y, ev.num_classes
    self._cache: dict[Any, Any] = {}

  def close(self) -> None:
    self._cache.clear()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()

  def _cached(self, key, fn):
    if key not in self._cache:
      self._cache[key] = fn()
    return self._cache[key]

  @property
  def eval_x(self) -> np.ndarray:
    """Model inputs [M, ...] of the held-out bank (this process's rows), computed once."""
    return self._cached("eval_x", lambda: self.evaluator.eval_x)

  @property
  def train_x(self) -> np.ndarray:
    """Model inputs [N, ...] of the train bank (this process's rows), computed once."""
    return self._cached("train_x", lambda: self.evaluator.train_x)

  def features(self) -> tuple[np.ndarray, np.ndarray]:
    """(train [N, D], held-out [M, D]) frozen backbone features, computed once."""
    ev = self.evaluator
    fn = ev._features  # pylint: disable=protected-access  (the evaluator's jitted features)
    return self._cached("features", lambda: tuple(
        bank.features(fn, self.params, self.method_state, ev.sharding)
        for bank in (ev.train_bank, ev.eval_bank)))

  def embeddings(self) -> np.ndarray:
    """[M, E] held-out embeddings (`method.embeddings`: what the loss sees), computed once."""
    ev = self.evaluator
    return self._cached("embeddings", lambda: ev.eval_bank.features(
        ev._embeddings, self.params, self.method_state, ev.sharding))  # pylint: disable=protected-access

  def view_pair_embeddings(self, num: int = 256, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings [num, E] of two random augmented views of the same held-out images."""
    def build():
      from ssljax.data import augment, sources
      from ssljax.evaluate import online
      cfg, ev = self.config.data, self.evaluator
      src = sources.build_source(cfg, cfg.eval_split)
      idx = np.linspace(0, len(src) - 1, min(num, len(src))).astype(np.int64)
      rng = np.random.default_rng(seed)
      views = [np.stack([augment.augment_view(src[int(i)]["image"], rng, cfg.image_size, cfg.augment)
                         for i in idx]) for _ in range(2)]
      fn = ev._embeddings  # pylint: disable=protected-access
      return tuple(online.extract(fn, self.params, self.method_state, v.astype(np.float32),
                                  ev.batch_size, ev.sharding) for v in views)
    return self._cached(("pairs", num, seed), build)

  def backbone(self):
    """The method's `pretrained_backbone` as module, numpy variables and pooling
    (`ssljax.evaluate.backbone.CapturedBackbone`): what `features` runs."""
    from ssljax.evaluate.backbone import backbone_of
    return self._cached("backbone", lambda: backbone_of(self.method, self.params,
                                                        self.method_state))
