"""Properties of the losses that a wrong implementation would break (Sinkhorn marginals, SIGReg on
Gaussian vs non-Gaussian samples, zero-loss inputs, ...); the formula parity tests are in
test_losses_parity.py.
"""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssljax import losses as L

from loss_helpers import _rng, arr, J, np_msn_targets, np_normalize, np_softmax, run


# ----------------------------------------------------------------------------- behaviour

def test_sinkhorn_rows_sum_to_one_columns_near_uniform_no_grad():
  n, k = 64, 8
  feats = np_normalize(_rng(60).normal(size=(n, 16)))
  protos = np_normalize(_rng(61).normal(size=(k, 16)))
  scores = (feats @ protos.T).astype(np.float32)  # cosine scores, as in SwAV
  sk = lambda s, eps, iters: run(L.sinkhorn_knopp, s, eps, n_iters=iters)
  spread = lambda q: float(np.abs(np.asarray(q).sum(axis=0) - n / k).max())
  q3 = np.asarray(sk(scores, 0.05, 3))
  np.testing.assert_allclose(q3.sum(axis=1), 1.0, atol=1e-5)
  assert np.all(q3 >= 0)
  # Column marginals (mass per prototype) approach the uniform N / K as the iterations go on.
  s1, s3, s10, s50 = (spread(sk(scores, 0.05, i)) for i in (1, 3, 10, 50))
  assert s1 > s3 > s10 > s50 and s50 < 1e-2 * n / k, (s1, s3, s10, s50)
  # With a softer epsilon, SwAV's 3 iterations already give near equipartition.
  np.testing.assert_allclose(np.asarray(sk(scores, 0.2, 3)).sum(axis=0), n / k, rtol=0.02)
  # A biased score (every sample prefers prototype 0) is spread out anyway.
  biased = scores.copy()
  biased[:, 0] += 2.0
  assert np.argmax(np.asarray(biased), axis=1).tolist() == [0] * n
  assert spread(sk(biased, 0.05, 50)) < 1e-2 * n / k
  g = run(jax.grad(lambda s: jnp.sum(L.sinkhorn_knopp(s) * s)), scores)  # only the explicit factor s
  np.testing.assert_allclose(np.asarray(g), q3, atol=1e-6)


def test_sinkhorn_large_scores_stay_finite():
  scores = 50.0 * _rng(62).normal(size=(16, 4)).astype(np.float32)  # exp(score/eps) overflows float32
  q = np.asarray(J("sinkhorn_knopp")(scores))
  assert np.all(np.isfinite(q))
  np.testing.assert_allclose(q.sum(axis=1), 1.0, atol=1e-5)


def test_sigreg_small_for_gaussian_large_for_non_gaussian():
  n = 4096
  kd = jax.random.PRNGKey(0)
  stat_axes = lambda x: J("sigreg")(x, np.eye(x.shape[1], dtype=np.float32))
  stat_rand = lambda x: J("sigreg")(x, key=kd, num_slices=32)
  r = _rng(63)
  uniform = lambda d: r.uniform(-math.sqrt(3), math.sqrt(3), size=(n, d)).astype(np.float32)
  gauss4, gauss2 = r.normal(size=(n, 4)).astype(np.float32), r.normal(size=(n, 2)).astype(np.float32)
  # Under H0 the statistic is O(1): its mean is the integral of (1 - phi^2) phi, about 1.06.
  g_axes, g_rand = float(stat_axes(gauss4)), float(stat_rand(gauss2))
  assert g_axes < 3.0 and g_rand < 3.0, (g_axes, g_rand)
  # Uniform with unit variance: right mean and covariance, wrong shape. Along the axes the
  # marginals are uniform; along random directions in 2-D they are trapezoidal.
  u_axes, u_rand = float(stat_axes(uniform(4))), float(stat_rand(uniform(2)))
  assert u_axes > 10 * g_axes and u_rand > 4 * g_rand, (u_axes, g_axes, u_rand, g_rand)
  # Collapsed (constant) and wrongly scaled embeddings: far larger still.
  for bad in (np.ones((n, 4), np.float32), np.zeros((n, 4), np.float32), 3.0 * gauss4, 0.1 * gauss4):
    assert float(stat_axes(bad)) > 50 * g_axes
  assert float(stat_rand(np.ones((n, 2), np.float32))) > 50 * g_rand


def test_lejepa_pieces():
  key = jax.random.PRNGKey(5)
  x = _rng(64).normal(size=(256, 8)).astype(np.float32)
  views = np.stack([x, x, x])
  lejepa = J("lejepa_loss")
  # Identical views: the invariance term vanishes, only lamb * SIGReg remains.
  np.testing.assert_allclose(float(lejepa(views[:2], views, 0.3, key)),
                             0.3 * float(J("sigreg")(x, key=key)), rtol=1e-5)
  np.testing.assert_allclose(float(lejepa(views[:2], views + 1.0, 0.0, key)), 1.0, rtol=1e-6)


def test_koleo_decreases_when_points_spread_out():
  base = np.ones((1, 8), np.float32)
  noise = _rng(65).normal(size=(32, 8)).astype(np.float32)
  koleo = J("koleo")
  clustered = float(koleo(base + 0.01 * noise))
  medium = float(koleo(base + 0.3 * noise))
  spread = float(koleo(noise))
  assert clustered > medium > spread, (clustered, medium, spread)
  # Duplicated points give a large but finite loss and a finite gradient.
  dup = np.concatenate([noise[:16], noise[:16]])
  assert np.isfinite(float(koleo(dup))) and float(koleo(dup)) > 15
  assert np.all(np.isfinite(np.asarray(run(jax.grad(L.koleo), dup))))


def test_barlow_twins_zero_for_identical_decorrelated_standardised_inputs():
  n, d = 64, 8
  x = _rng(50).normal(size=(n, d))
  x -= x.mean(axis=0)
  q, _ = np.linalg.qr(x)  # orthonormal, centred columns
  z = q * math.sqrt(n)  # unit biased variance per dim, identity correlation
  loss = float(J("barlow_twins")(arr(z, jnp.float32), arr(z, jnp.float32)))
  assert loss < 1e-6, loss
  # Swap two dims in one branch: two diagonal entries become 0 and two off-diagonal ones 1.
  z2 = z[:, [1, 0] + list(range(2, d))]
  loss2 = float(J("barlow_twins")(arr(z, jnp.float32), arr(z2, jnp.float32), lambd=0.01))
  np.testing.assert_allclose(loss2, 2.0 + 0.01 * 2.0, rtol=1e-3)


def test_vicreg_terms():
  n, d = 64, 8
  x = _rng(51).normal(size=(n, d))
  x -= x.mean(axis=0)
  q, _ = np.linalg.qr(x)
  z = arr(2.0 * q * math.sqrt(n - 1), jnp.float32)  # unbiased std 2, zero covariance
  assert float(J("vicreg")(z, z)) < 1e-4
  # Collapse: std term is std_coeff * 2 branches * (1 - sqrt(eps)) / 2; no covariance; no MSE.
  const = np.ones((n, d), np.float32)
  np.testing.assert_allclose(float(J("vicreg")(const, const)), 25.0 * (1 - math.sqrt(1e-4)), rtol=1e-5)
  # Invariance term alone.
  invariance_only = float(J("vicreg")(z, z + 0.1, std_coeff=0.0, cov_coeff=0.0))
  np.testing.assert_allclose(invariance_only, 25.0 * 0.01, rtol=1e-4)


def test_wmse_whitening_and_invariance():
  from ssljax.losses.redundancy import whiten
  x = _rng(52).normal(size=(32, 4)) @ _rng(53).normal(size=(4, 4))
  w = np.asarray(run(whiten, x), np.float64)
  np.testing.assert_allclose(w.T @ w / 31, np.eye(4), atol=1e-3)
  z = arr(np.stack([x, x]), jnp.float32)
  assert float(J("wmse")(z, w_size=16)) < 1e-5  # identical views: zero loss
  with pytest.raises(ValueError):
    J("wmse")(z, w_size=10)  # 32 is not a multiple of 10


def test_dino_equals_teacher_entropy_when_student_matches():
  r = _rng(54)
  t1 = r.normal(size=(1, 4, 6))
  teacher = np.concatenate([t1, t1])  # two identical teacher views
  center = 0.1 * r.normal(size=6)
  st, tt = 0.1, 0.04
  # Student logits with s / st == (t - c) / tt in all 3 views: every (i != j) pair is CE(p, p) = H(p).
  student = (np.concatenate([teacher, teacher[:1]]) - center) * st / tt
  got = float(J("dino_loss")(arr(student, jnp.float32), arr(teacher, jnp.float32),
                          arr(center, jnp.float32), st, tt))
  p = np.stack([np_softmax((t1[0, b] - center) / tt) for b in range(4)])
  entropy = float(np.mean(-np.sum(p * np.log(p), axis=1)))
  np.testing.assert_allclose(got, entropy, rtol=1e-4, atol=1e-6)
  with pytest.raises(ValueError):
    L.dino_loss(np.zeros((1, 2, 3)), np.zeros((1, 2, 3)), np.zeros(3))  # no (i != j) pair


def test_update_center_converges_to_constant_teacher():
  target = np.arange(5.0, dtype=np.float32)
  teacher = np.broadcast_to(target, (2, 3, 5))
  c = np.zeros(5, np.float32)
  update = J("update_center")
  for _ in range(200):
    c = update(c, teacher, 0.9)
  np.testing.assert_allclose(np.asarray(c), np.asarray(target), atol=1e-5)
  np.testing.assert_allclose(np.asarray(J("update_center")(c, teacher + 1.0, 0.0)), np.asarray(target) + 1.0)


def test_ibot_ignores_unmasked_patches():
  r = _rng(55)
  s, t = r.normal(size=(2, 4, 5)), r.normal(size=(2, 4, 5))
  mask = np.array([[1, 1, 0, 0], [0, 0, 0, 0]], bool)
  f = lambda s: float(J("ibot_patch_loss")(arr(s, jnp.float32), arr(t, jnp.float32),
                                        mask, np.zeros(5, np.float32)))
  s2 = s.copy()
  s2[0, 2:] += 10.0
  s2[1] += 10.0
  assert f(s) == f(s2)
  assert float(J("ibot_patch_loss")(s, t, np.zeros((2, 4)), np.zeros(5))) == 0.0


def test_mae_perfect_prediction_and_mask():
  r = _rng(56)
  target = 5.0 + 2.0 * r.normal(size=(2, 4, 6))
  mean = target.mean(-1, keepdims=True)
  normed = (target - mean) / np.sqrt(target.var(-1, ddof=1, keepdims=True) + 1e-6)
  mask = arr([[1, 0, 1, 0], [0, 1, 1, 1]], bool)
  assert float(J("mae_loss")(arr(normed, jnp.float32), arr(target, jnp.float32), mask)) < 1e-10
  assert float(J("mae_loss")(arr(target), arr(target), mask, norm_pix=False)) == 0.0
  worse = normed.copy()
  worse[0, 1] += 100.0  # a visible patch: not scored
  assert float(J("mae_loss")(arr(worse, jnp.float32), arr(target, jnp.float32), mask)) < 1e-10


def test_smooth_l1_regimes():
  pred = arr([[[0.1, -0.2, 3.0, -4.0]]])
  target = np.zeros_like(pred)
  mask = np.ones((1, 1), bool)
  # beta = 1: quadratic below 1, linear above; scale 1/sqrt(4) = 0.5.
  want = 0.5 * (0.5 * 0.01 + 0.5 * 0.04 + (3.0 - 0.5) + (4.0 - 0.5))
  np.testing.assert_allclose(float(J("smooth_l1_regression")(pred, target, mask, 1.0)), want, rtol=1e-6)
  # beta = 0 is the squared error (data2vec 2.0 convention), not L1.
  np.testing.assert_allclose(float(J("smooth_l1_regression")(pred, target, mask, 0.0, loss_scale=1.0)),
                             0.01 + 0.04 + 9.0 + 16.0, rtol=1e-6)


def test_data2vec_targets_are_instance_normalised():
  layers = (3.0 + 5.0 * _rng(66).normal(size=(4, 2, 16, 8))).astype(np.float32)
  y = np.asarray(J("data2vec_targets")(layers, top_k=1))
  np.testing.assert_allclose(y.mean(axis=1), 0.0, atol=1e-5)  # over patches, per image and channel
  np.testing.assert_allclose(y.var(axis=1), 1.0, rtol=1e-4)
  y3 = np.asarray(J("data2vec_targets")(layers, top_k=3))
  np.testing.assert_allclose(y3.mean(axis=1), 0.0, atol=1e-5)
  assert y3.shape == (2, 16, 8)
  with pytest.raises(ValueError):
    J("data2vec_targets")(layers, top_k=5)


def test_msn_me_max_and_sharpening():
  r = _rng(57)
  k, d = 4, 4
  protos = np.eye(k, d)
  # Anchors at the prototypes, one each: mean prediction is uniform, me-max term is 0.
  anchor = np.eye(k, d)
  with_reg = float(J("msn_loss")(arr(anchor), arr(anchor), arr(protos), me_max_weight=1.0))
  without = float(J("msn_loss")(arr(anchor), arr(anchor), arr(protos), me_max_weight=0.0))
  np.testing.assert_allclose(with_reg, without, atol=1e-6)
  # All anchors on one prototype: me-max approaches log K.
  collapsed = np.tile(protos[:1], (k, 1))
  reg = float(J("msn_loss")(arr(collapsed), arr(collapsed), arr(protos), 0.01,
                         me_max_weight=1.0)) - float(J("msn_loss")(arr(collapsed), arr(collapsed),
                                                                 arr(protos), 0.01, me_max_weight=0.0))
  np.testing.assert_allclose(reg, math.log(k), rtol=1e-3)
  # Sinkhorn-balanced targets: every prototype gets N / K of the target mass.
  target = r.normal(size=(8, d))
  t = np_msn_targets(target, protos, n_sinkhorn=50)
  np.testing.assert_allclose(t.sum(0), 8 / k, rtol=1e-3)


def test_negative_cosine_extremes_and_contrastive_sanity():
  z = _rng(67).normal(size=(8, 4)).astype(np.float32)
  np.testing.assert_allclose(float(J("negative_cosine")(3.0 * z, z)), -1.0, rtol=1e-6)
  np.testing.assert_allclose(float(J("negative_cosine")(-z, z)), 1.0, rtol=1e-6)
  # Orthogonal, perfectly aligned pairs at a low temperature: contrastive losses near 0.
  e = np.eye(4, dtype=np.float32)
  assert float(J("nt_xent")(e, e, 0.05)) < 1e-6
  assert float(J("info_nce")(e, e, 0.05)) < 1e-6
  assert float(J("info_nce")(e, e[::-1], 0.05)) > 10  # wrong positives
