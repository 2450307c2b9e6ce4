"""Weighted k-nearest-neighbour classification of frozen features.

The protocol of "Unsupervised Feature Learning via Non-Parametric Instance Discrimination"
(InstDisc), used as the online monitor by "Emerging Properties in Self-Supervised Vision
Transformers" (DINO): features are L2-normalised, each test query takes its k most
cosine-similar training features, and neighbour j votes for its label with weight
exp(sim_j / T). The predicted class is the one with the largest summed weight.

This file also holds the input checks shared by the other protocols (`validate_split`).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np


def _features(x, name: str) -> np.ndarray:
  """[N, D] float32 host copy of `x`, or ValueError naming `name`."""
  x = np.asarray(x)
  if x.ndim != 2:
    raise ValueError(f"{name} must be 2-D [num_examples, dim], got shape {x.shape}.")
  if x.shape[0] == 0 or x.shape[1] == 0:
    raise ValueError(f"{name} must be non-empty, got shape {x.shape}.")
  if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
    raise ValueError(f"{name} must be real numbers, got dtype {x.dtype}.")
  x = x.astype(np.float32)
  if not np.all(np.isfinite(x)):
    bad = int(np.sum(~np.isfinite(x)))
    raise ValueError(f"{name} has {bad} non-finite (NaN or inf) entries; expected finite features.")
  return x


def _labels(y, name: str, num_examples: int, num_classes: int) -> np.ndarray:
  """[N] int32 host copy of `y` with values in [0, num_classes), or ValueError."""
  y = np.asarray(y)
  if y.ndim != 1:
    raise ValueError(f"{name} must be 1-D [num_examples], got shape {y.shape}.")
  if y.shape[0] != num_examples:
    raise ValueError(
        f"{name} has {y.shape[0]} entries but the features have {num_examples} rows; "
        "expected one label per feature row.")
  if np.issubdtype(y.dtype, np.floating):
    if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
      raise ValueError(f"{name} must hold integer class ids, got non-integer values of dtype {y.dtype}.")
  elif not np.issubdtype(y.dtype, np.integer):
    raise ValueError(f"{name} must hold integer class ids, got dtype {y.dtype}.")
  if y.size:
    lo, hi = y.min(), y.max()
    if lo < 0 or hi >= num_classes:
      bad = int(lo if lo < 0 else hi)
      raise ValueError(
          f"{name} contains label {bad}; expected labels in [0, num_classes) = [0, {num_classes}).")
  return y.astype(np.int32)


def validate_split(train_feats, train_labels, test_feats, test_labels, num_classes: int):
  """Checks and converts a train/test split of features and labels.

  Args:
    train_feats: [N, D] real features (numpy or jax).
    train_labels: [N] integer class ids in [0, num_classes).
    test_feats: [M, D] real features with the same D.
    test_labels: [M] integer class ids in [0, num_classes).
    num_classes: number of classes C >= 1.

  Returns:
    (train_feats [N, D] float32, train_labels [N] int32, test_feats [M, D] float32,
    test_labels [M] int32) as numpy arrays.

  Raises:
    ValueError: naming the offending value and what was expected.
  """
  if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
    raise ValueError(f"num_classes must be a positive int, got {num_classes!r}.")
  num_classes = int(num_classes)
  xtr = _features(train_feats, "train_feats")
  xte = _features(test_feats, "test_feats")
  if xtr.shape[1] != xte.shape[1]:
    raise ValueError(
        f"test_feats has dim {xte.shape[1]} but train_feats has dim {xtr.shape[1]}; expected equal dims.")
  ytr = _labels(train_labels, "train_labels", xtr.shape[0], num_classes)
  yte = _labels(test_labels, "test_labels", xte.shape[0], num_classes)
  return xtr, ytr, xte, yte


def _positive_int(value, name: str) -> int:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
    raise ValueError(f"{name} must be a positive int, got {value!r}.")
  return int(value)


def _l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
  """Rows of x [N, D] divided by max(||row||, eps)."""
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), eps)


@functools.partial(jax.jit, static_argnames=("k", "num_classes"))
def _knn_chunk_correct(train_x, train_y, query_x, query_y, valid, *, k, num_classes, temperature):
  """Number of correct weighted-kNN predictions in one chunk of queries.

  Args:
    train_x: [N, D] training features (normalised here: O(N D), small next to the
      O(B N D) similarity matmul).
    train_y: [N] int32 training labels.
    query_x: [B, D] queries (padded rows allowed).
    query_y: [B] int32 query labels.
    valid: [B] bool, False for padding rows.
    k: neighbours per query (static).
    num_classes: C (static).
    temperature: T of the exp(sim / T) vote weights.

  Returns:
    Scalar int32 count of valid rows whose weighted vote equals the label.
  """
  sim = _l2_normalize(query_x) @ _l2_normalize(train_x).T            # [B, N] cosine
  top_sim, top_idx = jax.lax.top_k(sim, k)                           # [B, k]
  # exp((s - s_max) / T): same argmax as exp(s / T), no overflow for small T.
  weights = jnp.exp((top_sim - top_sim[:, :1]) / temperature)        # [B, k]
  rows = jnp.broadcast_to(jnp.arange(weights.shape[0])[:, None], weights.shape)
  scores = jnp.zeros((weights.shape[0], num_classes), jnp.float32)
  scores = scores.at[rows, train_y[top_idx]].add(weights)            # [B, C] summed votes
  pred = jnp.argmax(scores, axis=-1)
  return jnp.sum((pred == query_y) & valid, dtype=jnp.int32)


def knn_top1(train_feats, train_labels, test_feats, test_labels, num_classes: int,
             k: int = 20, temperature: float = 0.07, batch_size: int = 1024) -> float:
  """Top-1 accuracy of the temperature-weighted cosine kNN classifier.

  Each test feature is compared by cosine similarity with every training feature; the k
  most similar vote for their labels with weights exp(sim / T) ("Unsupervised Feature
  Learning via Non-Parametric Instance Discrimination"; k=20, T=0.07 as in DINO's
  evaluation). Ties between classes go to the lowest class id.

  Test queries are processed in chunks of `batch_size` (the last chunk is padded so every
  chunk has one shape and one compilation), so peak memory is O(batch_size * N) for the
  similarity block, not O(M * N).

  Args:
    train_feats: [N, D] features of the labelled reference set.
    train_labels: [N] integer labels in [0, num_classes).
    test_feats: [M, D] features to classify.
    test_labels: [M] integer labels in [0, num_classes).
    num_classes: number of classes C.
    k: neighbours per query, 1 <= k <= N.
    temperature: T > 0 of the vote weights; large T approaches a plain majority vote.
    batch_size: queries per chunk.

  Returns:
    Top-1 accuracy in [0, 1] as a Python float.

  Raises:
    ValueError: on mismatched shapes, labels outside [0, num_classes), k outside [1, N],
      non-positive temperature or batch_size, or non-finite features.
  """
  xtr, ytr, xte, yte = validate_split(train_feats, train_labels, test_feats, test_labels, num_classes)
  k = _positive_int(k, "k")
  batch_size = _positive_int(batch_size, "batch_size")
  if k > xtr.shape[0]:
    raise ValueError(f"k={k} is larger than the training set ({xtr.shape[0]} rows); expected k <= {xtr.shape[0]}.")
  if not np.isfinite(temperature) or temperature <= 0:
    raise ValueError(f"temperature must be a finite float > 0, got {temperature!r}.")

  num_test = xte.shape[0]
  chunk = min(batch_size, num_test)
  num_chunks = -(-num_test // chunk)
  pad = num_chunks * chunk - num_test
  train_x, train_y = jnp.asarray(xtr), jnp.asarray(ytr)
  test_x = np.pad(xte, ((0, pad), (0, 0)))
  test_y = np.pad(yte, (0, pad))
  valid = np.arange(num_chunks * chunk) < num_test
  correct = 0
  for i in range(num_chunks):
    s = slice(i * chunk, (i + 1) * chunk)
    correct += _knn_chunk_correct(train_x, train_y, test_x[s], test_y[s], valid[s],
                                  k=k, num_classes=int(num_classes), temperature=float(temperature))
  return float(int(correct) / num_test)
