"""Few-shot evaluation: closed-form ridge regression on a handful of labels per class.

The protocol of big_vision's few-shot evaluator (used in "Sigmoid Loss for Language Image
Pre-Training" and the ViT papers): draw `shots` training examples per class, standardise the
features with the statistics of that small set, regress onto one-hot targets rescaled to
{-1, +1} with an L2 penalty, and classify the test set by the arg-max of the regression
outputs. Repeating over seeds gives a mean and a spread, which matter at 1-5 shots ("Big
Self-Supervised Models are Strong Semi-Supervised Learners"; "Masked Siamese Networks for
Label-Efficient Learning").
"""
from __future__ import annotations

import logging

import jax
import jax.numpy as jnp
import numpy as np

from ssljax.evaluate.knn import validate_split


@jax.jit
def _ridge_correct(x, y_pm, x_test, y_test, l2_reg):
  """Test hits of ridge regression fit on (x, y_pm).

  The bias is left unregularised by centring: x is standardised with its own mean, and since
  every class has the same number of shots the target mean is the same for every class, so
  the intercept cannot change the arg-max and is dropped.

  Args:
    x: [S, D] few-shot training features (S = shots * C).
    y_pm: [S, C] targets, +1 for the true class and -1 elsewhere.
    x_test: [M, D] test features.
    y_test: [M] int32 test labels.
    l2_reg: ridge penalty lambda > 0 on the weights.

  Returns:
    Scalar int32 number of correctly classified test rows.
  """
  mean = jnp.mean(x, axis=0, keepdims=True)
  std = jnp.std(x, axis=0, keepdims=True)
  std = jnp.where(std > 1e-6, std, 1.0)
  xs = (x - mean) / std
  num, dim = xs.shape
  if num >= dim:  # primal: W = (X^T X + lambda I)^-1 X^T Y, a D x D system.
    w = jax.scipy.linalg.solve(xs.T @ xs + l2_reg * jnp.eye(dim), xs.T @ y_pm, assume_a="pos")
  else:  # dual: W = X^T (X X^T + lambda I)^-1 Y, an S x S system (same W).
    w = xs.T @ jax.scipy.linalg.solve(xs @ xs.T + l2_reg * jnp.eye(num), y_pm, assume_a="pos")
  pred = jnp.argmax(((x_test - mean) / std) @ w, axis=-1)
  return jnp.sum(pred == y_test, dtype=jnp.int32)


def fewshot_ridge(train_feats, train_labels, test_feats, test_labels, num_classes: int,
                  shots=(1, 5, 10, 25), seeds=(0, 1, 2), l2_reg: float = 2.0**10) -> dict:
  """Few-shot top-1 accuracy of closed-form ridge regression, mean and spread over seeds.

  For every shot count s and seed, s training examples per class are drawn without
  replacement (numpy Generator seeded with `seed`, classes in id order), a ridge regressor
  onto {-1, +1} one-hot targets is solved in closed form (primal or dual, whichever system
  is smaller), and the whole test set is classified. A shot count larger than the smallest
  class of the training set is skipped (and logged), so its keys are absent.

  Args:
    train_feats: [N, D] features to draw the labelled shots from.
    train_labels: [N] integer labels in [0, num_classes).
    test_feats: [M, D] test features.
    test_labels: [M] integer labels in [0, num_classes).
    num_classes: number of classes C; every class must be present in train for any shot
      count to be evaluated.
    shots: shot counts per class, each >= 1.
    seeds: one draw per seed.
    l2_reg: ridge penalty lambda > 0. Features are standardised, so a column's squared
      norm is the number of shots drawn (s * C); lambda of that order or larger shrinks
      the solution towards a class-mean (prototype) classifier. The default 2^10 and the
      default shots and seeds are big_vision's standard few-shot configuration.

  Returns:
    {'{s}shot_top1_mean': float, '{s}shot_top1_std': float (population std over seeds,
    0.0 for one seed)} for every evaluated shot count s.

  Raises:
    ValueError: on mismatched shapes, labels outside [0, num_classes), non-positive or
      non-integer shots, an empty seed list or a non-positive l2_reg.
  """
  xtr, ytr, xte, yte = validate_split(train_feats, train_labels, test_feats, test_labels, num_classes)
  shots = tuple(shots)
  seeds = tuple(seeds)
  for s in shots:
    if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1:
      raise ValueError(f"shots must be positive ints, got {s!r} in {shots!r}.")
  if not seeds:
    raise ValueError("seeds must name at least one seed, got an empty sequence.")
  if not np.isfinite(l2_reg) or l2_reg <= 0:
    raise ValueError(f"l2_reg must be a finite float > 0, got {l2_reg!r}.")

  by_class = [np.flatnonzero(ytr == c) for c in range(num_classes)]
  smallest = min(len(idx) for idx in by_class)
  x_test, y_test = jnp.asarray(xte), jnp.asarray(yte)
  targets = {}
  results = {}
  for s in shots:
    s = int(s)
    if s > smallest:
      logging.getLogger(__name__).warning(
          "fewshot_ridge: skipping %d-shot: the smallest training class has %d examples.", s, smallest)
      continue
    if s not in targets:
      targets[s] = jnp.asarray(2.0 * np.repeat(np.eye(num_classes, dtype=np.float32), s, axis=0) - 1.0)
    accs = []
    for seed in seeds:
      rng = np.random.default_rng(seed)
      idx = np.concatenate([rng.choice(members, size=s, replace=False) for members in by_class])
      correct = _ridge_correct(jnp.asarray(xtr[idx]), targets[s], x_test, y_test, jnp.float32(l2_reg))
      accs.append(int(correct) / xte.shape[0])
    results[f"{s}shot_top1_mean"] = float(np.mean(accs))
    results[f"{s}shot_top1_std"] = float(np.std(accs))
  return results
