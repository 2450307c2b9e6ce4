"""Tests of ssljax.evaluate: each checks a number that would be wrong if the protocol were."""
import json

import jax.numpy as jnp
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
  acc = evaluate.knn_top1(xtr, ytr, xte, yte, NUM_CLASSES)
  assert isinstance(acc, float) and acc > 0.9
  # jax arrays in, same answer out.
  assert evaluate.knn_top1(jnp.asarray(xtr), jnp.asarray(ytr), jnp.asarray(xte), jnp.asarray(yte),
                           NUM_CLASSES) == acc


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
  # 597 test rows: 85 chunks of 7 plus a padded one; 10 of 64 minus 43 rows; one chunk.
  accs = {bs: evaluate.knn_top1(xtr, ytr, xte, yte, NUM_CLASSES, batch_size=bs) for bs in (7, 64, 597, 4096)}
  assert len(set(accs.values())) == 1, accs


# ----------------------------------------------------------------------------- linear probe

def test_linear_probe_digits_pixels(digits):
  xtr, ytr, xte, yte = digits
  out = evaluate.linear_probe(xtr, ytr, xte, yte, NUM_CLASSES)
  assert out["top1"] > 0.9 and out["train_top1"] > 0.95
  assert all(isinstance(v, float) for v in out.values())
  json.dumps(out)


def test_linear_probe_shuffled_labels_near_chance(digits):
  xtr, ytr, xte, yte = digits
  shuffled = np.random.default_rng(2).permutation(ytr)
  out = evaluate.linear_probe(xtr, shuffled, xte, yte, NUM_CLASSES, epochs=30)
  assert out["top1"] < 0.2


# ----------------------------------------------------------------------------- few-shot

def test_fewshot_accuracy_grows_with_shots_and_reports_spread(digits):
  xtr, ytr, xte, yte = digits
  out = evaluate.fewshot_ridge(xtr, ytr, xte, yte, NUM_CLASSES, shots=(1, 5, 25, 1000))
  json.dumps(out)
  # The smallest digits class has ~110 training examples: 1000 shots is skipped.
  assert sorted(out) == sorted(f"{s}shot_top1_{m}" for s in (1, 5, 25) for m in ("mean", "std"))
  means = [out[f"{s}shot_top1_mean"] for s in (1, 5, 25)]
  assert 0.2 < means[0] < means[1] < means[2], means
  assert means[2] > 0.8
  assert 0.0 < out["1shot_top1_std"] < 0.15  # three different draws, three different accuracies


def _ridge_reference(x, y, x_test, y_test, num_classes, shots, seed, l2_reg):
  """float64 numpy primal ridge with the documented sampling (per class, in class order)."""
  rng = np.random.default_rng(seed)
  idx = np.concatenate([rng.choice(np.flatnonzero(y == c), size=shots, replace=False)
                        for c in range(num_classes)])
  xs, targets = x[idx].astype(np.float64), 2.0 * np.eye(num_classes)[y[idx]] - 1.0
  mean, std = xs.mean(0), xs.std(0)
  std[std <= 1e-6] = 1.0
  xs = (xs - mean) / std
  w = np.linalg.solve(xs.T @ xs + l2_reg * np.eye(xs.shape[1]), xs.T @ targets)
  return np.mean(np.argmax(((x_test - mean) / std) @ w, axis=1) == y_test)


def test_fewshot_matches_float64_primal_reference(digits):
  # 5 shots x 10 classes = 50 points < 64 dims: the dual system is solved; 25 shots: primal.
  xtr, ytr, xte, yte = digits
  for shots in (5, 25):
    out = evaluate.fewshot_ridge(xtr, ytr, xte, yte, NUM_CLASSES, shots=(shots,), seeds=(0, 1), l2_reg=50.0)
    ref = [_ridge_reference(xtr, ytr, xte, yte, NUM_CLASSES, shots, seed, 50.0) for seed in (0, 1)]
    np.testing.assert_allclose(out[f"{shots}shot_top1_mean"], np.mean(ref), atol=2.5 / len(yte))
    np.testing.assert_allclose(out[f"{shots}shot_top1_std"], np.std(ref), atol=2.5 / len(yte))


# ----------------------------------------------------------------------------- diagnostics

def test_collapsed_embedding_is_flagged():
  rng = np.random.default_rng(3)
  z = np.tile(rng.normal(size=(1, 64)), (1000, 1)) + 1e-4 * rng.normal(size=(1000, 64))
  report = evaluate.collapse_report(z)
  json.dumps(report)
  assert report["embedding_std"] < 1e-3 * (1 / 8)
  assert report["rankme"] < 1.1
  assert report["uniformity"] > -1e-3  # all points coincide on the sphere
  assert report["collapsed"] is True


def test_gaussian_embedding_is_healthy():
  z = np.random.default_rng(4).normal(size=(1000, 64))
  report = evaluate.collapse_report(z)
  assert report["embedding_std_ratio"] == pytest.approx(1.0, abs=0.05)
  assert evaluate.embedding_std(z) == pytest.approx(1 / 8, rel=0.05)
  assert report["rankme"] > 0.9 * 64
  assert report["collapsed"] is False


def test_centring_ignores_a_shared_vector_but_not_a_collapse():
  """A large vector common to every row (pooled positional content) is not collapse when centred."""
  rng = np.random.default_rng(6)
  spread = rng.normal(size=(1000, 64))
  shifted = 20.0 * rng.normal(size=(1, 64)) + spread
  assert evaluate.collapse_report(shifted)["collapsed"] is True        # un-centred: looks collapsed
  report = evaluate.collapse_report(shifted, centre=True)
  assert report["collapsed"] is False
  assert report["embedding_std"] == pytest.approx(evaluate.embedding_std(spread - spread.mean(0)), rel=1e-4)
  # Rows that differ only by jitter: centring alone is scale-free and would call them healthy.
  point = np.tile(rng.normal(size=(1, 64)), (1000, 1)) + 1e-4 * rng.normal(size=(1000, 64))
  jitter = evaluate.collapse_report(point, centre=True)
  assert jitter["embedding_std_ratio"] > 0.9 and jitter["collapsed"] is True
  # A shared vector that dwarfs a healthy spread (data2vec's pooled tokens: un-centred spread 0.0025
  # at D=64) is still not collapse.
  far = 50.0 * shifted[:1] / 20.0 + spread
  assert 1e-3 < evaluate.embedding_std(far) < 0.1 * 0.2 / 8
  assert evaluate.collapse_report(far, threshold=0.2, centre=True)["collapsed"] is False


def test_rankme_counts_directions():
  # Data spanning exactly 3 orthogonal directions with equal energy: effective rank 3.
  rng = np.random.default_rng(5)
  basis = np.linalg.qr(rng.normal(size=(32, 3)))[0].T        # [3, 32] orthonormal rows
  z = np.kron(np.eye(3), np.ones((50, 1))) @ basis          # 50 copies of each direction
  assert evaluate.rankme(z) == pytest.approx(3.0, rel=1e-3)


def test_alignment_and_uniformity():
  rng = np.random.default_rng(6)
  z = rng.normal(size=(1000, 64))
  assert evaluate.alignment(z, z) == 0.0
  assert evaluate.alignment(z, 5.0 * z) < 1e-10                # direction only
  assert evaluate.alignment(z, -z) == pytest.approx(4.0)       # antipodal: |2u|^2
  # Uniformity against a brute-force float64 reference, chunked or not.
  zn = z / np.linalg.norm(z, axis=1, keepdims=True)
  sq = (2.0 - 2.0 * zn @ zn.T)[~np.eye(1000, dtype=bool)]
  ref = np.log(np.mean(np.exp(-2.0 * sq)))
  for bs in (1024, 300):  # one chunk; four chunks, the last one padded
    assert evaluate.uniformity(z, batch_size=bs) == pytest.approx(ref, abs=1e-4)


# ----------------------------------------------------------------------------- input checks

def test_bad_inputs_raise_value_errors_naming_the_value(digits):
  xtr, ytr, xte, yte = digits
  with pytest.raises(ValueError, match="train_labels has 1199 entries"):
    evaluate.knn_top1(xtr, ytr[:-1], xte, yte, NUM_CLASSES)
  with pytest.raises(ValueError, match="k=5000 is larger than the training set"):
    evaluate.knn_top1(xtr, ytr, xte, yte, NUM_CLASSES, k=5000)
  with pytest.raises(ValueError, match=r"label 10; expected labels in \[0, num_classes\)"):
    evaluate.linear_probe(xtr, np.where(ytr == 0, 10, ytr), xte, yte, NUM_CLASSES)
  with pytest.raises(ValueError, match="label -1"):
    evaluate.fewshot_ridge(xtr, ytr, xte, yte - 1, NUM_CLASSES)
  with pytest.raises(ValueError, match="test_feats has dim 63"):
    evaluate.knn_top1(xtr, ytr, xte[:, :63], yte, NUM_CLASSES)
  with pytest.raises(ValueError, match="non-finite"):
    evaluate.knn_top1(np.where(xtr == 0, np.nan, xtr), ytr, xte, yte, NUM_CLASSES)
  with pytest.raises(ValueError, match="z1 has shape"):
    evaluate.alignment(xtr, xte)
  with pytest.raises(ValueError, match="temperature"):
    evaluate.knn_top1(xtr, ytr, xte, yte, NUM_CLASSES, temperature=0.0)
