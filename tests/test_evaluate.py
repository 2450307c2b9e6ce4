"""Tests of ssljax.evaluate: each checks a number that would be wrong if the protocol were."""
import numpy as np
import pytest
from sklearn.datasets import load_digits

from ssljax import evaluate

NUM_CLASSES = 10


@pytest.fixture(scope="module")
def digits():
  """sklearn's real 8x8 digits, shuffled, split 1200 train / 597 held-out test."""
  x, y = load_digits(return_X_y=True)
  perm = np.random.default_rng(0).permutation(len(y))
  x, y = x[perm].astype(np.float32), y[perm]
  return x[:1200], y[:1200], x[1200:], y[1200:]


# ----------------------------------------------------------------------------- kNN

def test_knn_digits_pixels_high_accuracy(digits):
  xtr, ytr, xte, yte = digits
  assert evaluate.knn_top1(xtr, ytr, xte, yte, NUM_CLASSES) > 0.9


def test_knn_random_labels_or_features_near_chance(digits):
  xtr, ytr, xte, yte = digits
  rng = np.random.default_rng(1)
  random_labels = rng.integers(0, NUM_CLASSES, size=ytr.shape)
  assert evaluate.knn_top1(xtr, random_labels, xte, yte, NUM_CLASSES) < 0.2
  random_tr = rng.normal(size=xtr.shape).astype(np.float32)
  random_te = rng.normal(size=xte.shape).astype(np.float32)
  assert evaluate.knn_top1(random_tr, ytr, random_te, yte, NUM_CLASSES) < 0.2


def test_knn_weighted_vote_beats_majority():
  # Query at angle 0. One class-0 neighbour at cosine 1.0, two class-1 neighbours at
  # cosine 0.5. Majority (k=3) says class 1; exp(sim / 0.07) weights say class 0:
  # exp(1 / 0.07) = 1.6e6 > 2 * exp(0.5 / 0.07) = 2.5e3.
  half = np.array([0.5, np.sqrt(0.75)], np.float32)
  train = np.stack([[1.0, 0.0], half, half * [1, -1]]).astype(np.float32)
  train_labels = np.array([0, 1, 1])
  query = np.array([[3.0, 0.0]], np.float32)  # norm 3: cosine, not dot product
  assert evaluate.knn_top1(train, train_labels, query, [0], 2, k=3, temperature=0.07) == 1.0
  # A huge temperature makes all weights ~1: plain majority vote, class 1 wins.
  assert evaluate.knn_top1(train, train_labels, query, [1], 2, k=3, temperature=1e4) == 1.0
  # k=1 only sees the nearest neighbour.
  assert evaluate.knn_top1(train, train_labels, query, [0], 2, k=1, temperature=1e4) == 1.0


def test_knn_chunking_is_exact(digits):
  xtr, ytr, xte, yte = digits
  accs = {bs: evaluate.knn_top1(xtr, ytr, xte, yte, NUM_CLASSES, k=5, batch_size=bs)
          for bs in (1, 64, 597, 4096)}
  assert len(set(accs.values())) == 1, accs


# ----------------------------------------------------------------------------- linear probe

def test_linear_probe_digits_pixels(digits):
  xtr, ytr, xte, yte = digits
  out = evaluate.linear_probe(xtr, ytr, xte, yte, NUM_CLASSES, epochs=30)
  assert out["top1"] > 0.9 and out["train_top1"] > 0.95
  assert all(isinstance(v, float) for v in out.values())


def test_linear_probe_shuffled_labels_near_chance(digits):
  xtr, ytr, xte, yte = digits
  shuffled = np.random.default_rng(2).permutation(ytr)
  out = evaluate.linear_probe(xtr, shuffled, xte, yte, NUM_CLASSES, epochs=30)
  assert out["top1"] < 0.2
