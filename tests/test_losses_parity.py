"""Every loss in ssljax.losses against an independent float64 NumPy version written from the formula.

The NumPy references are in loss_helpers.py. Values are compared on random inputs of several
shapes; gradients (jax.grad, float32) are compared to central finite differences of the NumPy
reference (float64) on small inputs. Behavioural checks are in test_losses_behaviour.py.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssljax import losses as L

from loss_helpers import (
    _rng, arr, check_grad, fd_grad, J, jgrad, jval, np_barlow, np_data2vec_targets, np_dino,
    np_ibot, np_info_nce, np_koleo, np_lejepa, np_mae, np_msn, np_msn_targets, np_negative_cosine,
    np_nt_xent, np_clip, np_sigmoid_contrastive, np_sigreg, np_sinkhorn, np_smooth_l1, np_supcon, np_swav,
    np_update_center, np_vicreg, np_wmse, run, SHAPES_ND, unit_directions)


# ----------------------------------------------------------------------------- contrastive (existing)

@pytest.mark.parametrize("n,d", SHAPES_ND)
def test_nt_xent_value(n, d):
  z1, z2 = _rng(1, n, d).normal(size=(2, n, d))
  np.testing.assert_allclose(jval(L.nt_xent, z1, z2, temperature=0.3), np_nt_xent(z1, z2, 0.3), rtol=1e-5)


def test_nt_xent_grad():
  z1, z2 = _rng(2).normal(size=(2, 4, 3))
  check_grad(L.nt_xent, np_nt_xent, [z1, z2], (0, 1), {"temperature": 0.5})


@pytest.mark.parametrize("n,d", SHAPES_ND)
def test_info_nce_value(n, d):
  q, k = _rng(3, n, d).normal(size=(2, n, d))
  np.testing.assert_allclose(jval(L.info_nce, q, k, temperature=0.2), np_info_nce(q, k, 0.2), rtol=1e-5)


def test_info_nce_grad():
  q, k = _rng(4).normal(size=(2, 4, 3))
  check_grad(L.info_nce, np_info_nce, [q, k], (0, 1), {"temperature": 0.2})


@pytest.mark.parametrize("n,d", SHAPES_ND)
def test_sigmoid_contrastive_value(n, d):
  x, y = _rng(5, n, d).normal(size=(2, n, d))
  log_t, b = np.log(10.0), -10.0
  got = jval(L.sigmoid_contrastive, x, y, np.float32(log_t), np.float32(b))
  np.testing.assert_allclose(got, np_sigmoid_contrastive(x, y, log_t, b), rtol=1e-5)


def test_sigmoid_contrastive_grad():
  x, y = _rng(6).normal(size=(2, 4, 3))
  args = [x, y, np.array(np.log(5.0)), np.array(-2.0)]
  check_grad(L.sigmoid_contrastive, np_sigmoid_contrastive, args, (0, 1, 2, 3))


@pytest.mark.parametrize("impl", ["reference", "xla", "pallas"])
@pytest.mark.parametrize("n,d", SHAPES_ND)
def test_clip_loss_value(n, d, impl):
  x, y = _rng(31, n, d).normal(size=(2, n, d))
  got = jval(L.clip_loss, x, y, np.float32(np.log(1 / 0.07)), impl=impl)
  np.testing.assert_allclose(got, np_clip(x, y, np.log(1 / 0.07)), rtol=1e-5)


@pytest.mark.parametrize("impl", ["reference", "xla"])
def test_clip_loss_grad(impl):
  """Gradients in both towers' embeddings and the learned log scale."""
  x, y = _rng(32).normal(size=(2, 4, 3))
  check_grad(lambda x, y, s: L.clip_loss(x, y, s, impl=impl), np_clip,
             [x, y, np.array(np.log(3.0))], (0, 1, 2))


@pytest.mark.parametrize("impl", ["xla", "pallas"])
def test_sigmoid_contrastive_tiled_grad(impl):
  """The tiled path's gradients, learned temperature and bias included."""
  x, y = _rng(33).normal(size=(2, 4, 3))
  check_grad(lambda x, y, t, b: L.sigmoid_contrastive(x, y, t, b, impl=impl),
             np_sigmoid_contrastive, [x, y, np.array(np.log(5.0)), np.array(-2.0)], (0, 1, 2, 3))


@pytest.mark.parametrize("v,n,d", [(2, 4, 3), (2, 8, 5), (3, 6, 4)])
def test_supcon_value(v, n, d):
  z = _rng(7, n, d).normal(size=(v, n, d))
  labels = _rng(8, n).integers(0, 3, size=n)
  got = jval(L.supcon, z, arr(labels), temperature=0.1)
  np.testing.assert_allclose(got, np_supcon(z, labels, 0.1), rtol=1e-5)


def test_supcon_grad():
  z = _rng(9).normal(size=(2, 4, 3))
  labels = np.array([0, 1, 0, 2])
  check_grad(lambda z, temperature: L.supcon(z, arr(labels), temperature),
             lambda z, temperature: np_supcon(z, labels, temperature), [z], (0,), {"temperature": 0.5})


# ----------------------------------------------------------------------------- distillation

@pytest.mark.parametrize("n,d", SHAPES_ND)
def test_negative_cosine_value(n, d):
  p, z = _rng(10, n, d).normal(size=(2, n, d))
  np.testing.assert_allclose(jval(L.negative_cosine, p, z), np_negative_cosine(p, z), rtol=1e-5, atol=1e-7)


def test_negative_cosine_grad():
  p, z = _rng(11).normal(size=(2, 4, 3))
  check_grad(L.negative_cosine, np_negative_cosine, [p, z], (0, 1))


@pytest.mark.parametrize("vs,vt,n,k", [(2, 2, 4, 5), (4, 2, 3, 7), (6, 2, 8, 16), (3, 1, 4, 6)])
def test_dino_value(vs, vt, n, k):
  r = _rng(12, vs, vt, n, k)
  s, t, c = r.normal(size=(vs, n, k)), r.normal(size=(vt, n, k)), 0.3 * r.normal(size=k)
  got = jval(L.dino_loss, s, t, c, student_temp=0.1, teacher_temp=0.04)
  np.testing.assert_allclose(got, np_dino(s, t, c, 0.1, 0.04), rtol=1e-5)


def test_dino_grad_flows_to_student_only():
  r = _rng(13)
  s, t, c = r.normal(size=(3, 2, 4)), r.normal(size=(2, 2, 4)), 0.1 * r.normal(size=4)
  static = {"student_temp": 0.5, "teacher_temp": 0.2}
  check_grad(L.dino_loss, np_dino, [s, t, c], (0,), static)
  g_t, g_c = jgrad(L.dino_loss, [s, t, c], (1, 2), **static)
  assert np.all(g_t == 0) and np.all(g_c == 0)


@pytest.mark.parametrize("vt,n,k", [(2, 4, 5), (2, 16, 3)])
def test_update_center_value_and_no_grad(vt, n, k):
  r = _rng(14, vt, n, k)
  c, t = r.normal(size=k), r.normal(size=(vt, n, k))
  np.testing.assert_allclose(jval(L.update_center, c, t, momentum=0.9), np_update_center(c, t, 0.9),
                             rtol=1e-5, atol=1e-6)
  g = run(jax.grad(lambda c, t: jnp.sum(L.update_center(c, t)), argnums=(0, 1)), c, t)
  assert all(np.all(np.asarray(x) == 0) for x in g)


@pytest.mark.parametrize("n,p,k", [(2, 3, 4), (4, 6, 8)])
def test_ibot_patch_value(n, p, k):
  r = _rng(15, n, p, k)
  s, t, c = r.normal(size=(n, p, k)), r.normal(size=(n, p, k)), 0.2 * r.normal(size=k)
  mask = r.random((n, p)) < 0.5
  mask[0] = False  # an image with no masked patch: counts as 0 in the mean over images
  got = jval(L.ibot_patch_loss, s, t, arr(mask), c, student_temp=0.1, teacher_temp=0.07)
  np.testing.assert_allclose(got, np_ibot(s, t, mask, c, 0.1, 0.07), rtol=1e-5)


def test_ibot_patch_grad():
  r = _rng(16)
  s, t, c = r.normal(size=(2, 3, 4)), r.normal(size=(2, 3, 4)), np.zeros(4)
  mask = np.array([[1, 0, 1], [0, 1, 0]], bool)
  fj = lambda s, t, c, **kw: L.ibot_patch_loss(s, t, arr(mask), c, **kw)
  fn = lambda s, t, c, **kw: np_ibot(s, t, mask, c, **kw)
  check_grad(fj, fn, [s, t, c], (0,), {"student_temp": 0.3, "teacher_temp": 0.2})
  assert np.all(jgrad(fj, [s, t, c], (1,), student_temp=0.3, teacher_temp=0.2)[0] == 0)


@pytest.mark.parametrize("n,d", SHAPES_ND)
def test_koleo_value(n, d):
  x = _rng(17, n, d).normal(size=(n, d))
  np.testing.assert_allclose(jval(L.koleo, x), np_koleo(x), rtol=1e-5)


def test_koleo_grad():
  x = _rng(18).normal(size=(5, 3))
  check_grad(L.koleo, np_koleo, [x], (0,))


# ----------------------------------------------------------------------------- clustering

@pytest.mark.parametrize("n,k,iters", [(4, 3, 3), (8, 5, 3), (16, 4, 10)])
def test_sinkhorn_value(n, k, iters):
  scores = np.tanh(_rng(19, n, k).normal(size=(n, k)))  # cosine-like, in [-1, 1]
  got = jval(L.sinkhorn_knopp, scores, epsilon=0.05, n_iters=iters)
  np.testing.assert_allclose(got, np_sinkhorn(scores, 0.05, iters), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("v,n,k,assign", [(2, 4, 3, (0, 1)), (4, 8, 5, (0, 1)), (3, 6, 4, (1,))])
def test_swav_value(v, n, k, assign):
  scores = np.tanh(_rng(20, v, n, k).normal(size=(v, n, k)))
  got = jval(L.swav_loss, scores, assign_views=assign, temperature=0.1)
  np.testing.assert_allclose(got, np_swav(scores, assign, 0.1), rtol=1e-4)


def test_swav_grad_codes_fixed():
  scores = np.tanh(_rng(21).normal(size=(3, 4, 3)))
  codes = {a: np_sinkhorn(scores[a]) for a in (0, 1)}
  static = {"assign_views": (0, 1), "temperature": 0.5}
  got, = jgrad(L.swav_loss, [scores], (0,), **static)
  want = fd_grad(lambda s: np_swav(s, (0, 1), 0.5, codes=codes), [scores], 0)
  np.testing.assert_allclose(got, want, rtol=2e-3, atol=1e-5)


@pytest.mark.parametrize("va,n,k,d,n_sk", [(1, 4, 3, 5, 0), (2, 4, 5, 3, 0), (3, 8, 6, 4, 3)])
def test_msn_value(va, n, k, d, n_sk):
  r = _rng(22, va, n, k, d)
  anchor, target, protos = r.normal(size=(va * n, d)), r.normal(size=(n, d)), r.normal(size=(k, d))
  got = jval(L.msn_loss, anchor, target, protos, temperature=0.1, sharpen_temperature=0.25,
             me_max_weight=1.0, n_sinkhorn=n_sk)
  np.testing.assert_allclose(got, np_msn(anchor, target, protos, 0.1, 0.25, 1.0, n_sk), rtol=1e-4)
  # The same anchors as [Va, N, D] (the views on their own axis): the same loss.
  stacked = jval(L.msn_loss, anchor.reshape(va, n, d), target, protos, temperature=0.1,
                 sharpen_temperature=0.25, me_max_weight=1.0, n_sinkhorn=n_sk)
  np.testing.assert_allclose(stacked, got, rtol=1e-6)


def test_msn_grad_targets_fixed():
  r = _rng(23)
  anchor, target, protos = r.normal(size=(4, 3)), r.normal(size=(2, 3)), r.normal(size=(3, 3))
  static = dict(temperature=0.5, sharpen_temperature=0.5, me_max_weight=0.7)
  fixed = np_msn_targets(target, protos, 0.5, 0.5, views=2)
  got_a, got_t, got_p = jgrad(L.msn_loss, [anchor, target, protos], (0, 1, 2), **static)
  want_a = fd_grad(lambda a: np_msn(a, target, protos, fixed_targets=fixed, **static), [anchor], 0)
  want_p = fd_grad(lambda p: np_msn(anchor, target, p, fixed_targets=fixed, **static), [protos], 0)
  np.testing.assert_allclose(got_a, want_a, rtol=2e-3, atol=1e-5)
  np.testing.assert_allclose(got_p, want_p, rtol=2e-3, atol=1e-5)
  assert np.all(got_t == 0)  # the target branch carries no gradient


# ----------------------------------------------------------------------------- redundancy

@pytest.mark.parametrize("n,d", SHAPES_ND)
def test_barlow_twins_value(n, d):
  z1, z2 = _rng(24, n, d).normal(size=(2, n, d))
  np.testing.assert_allclose(jval(L.barlow_twins, z1, z2, lambd=5e-3), np_barlow(z1, z2, 5e-3), rtol=1e-5)


def test_barlow_twins_grad():
  z1, z2 = _rng(25).normal(size=(2, 5, 3))
  check_grad(L.barlow_twins, np_barlow, [z1, z2], (0, 1), {"lambd": 0.1})


@pytest.mark.parametrize("n,d", SHAPES_ND)
def test_vicreg_value(n, d):
  z1, z2 = _rng(26, n, d).normal(size=(2, n, d))
  z2 = 0.3 * z2  # some dims under std 1, so the hinge is active
  np.testing.assert_allclose(jval(L.vicreg, z1, z2), np_vicreg(z1, z2), rtol=1e-5)


def test_vicreg_grad():
  r = _rng(27)
  z1, z2 = r.normal(size=(5, 3)), 0.5 * r.normal(size=(5, 3))
  check_grad(L.vicreg, np_vicreg, [z1, z2], (0, 1))


@pytest.mark.parametrize("v,n,d,w,eps", [(2, 8, 3, 8, 0.0), (2, 16, 4, 8, 0.0), (3, 12, 3, 6, 0.1)])
def test_wmse_value(v, n, d, w, eps):
  z = _rng(28, v, n, d).normal(size=(v, n, d))
  np.testing.assert_allclose(jval(L.wmse, z, w_size=w, eps=eps), np_wmse(z, w, eps), rtol=1e-4)


def test_wmse_grad():
  z = _rng(29).normal(size=(2, 6, 2))
  check_grad(L.wmse, np_wmse, [z], (0,), {"w_size": 6, "eps": 0.0}, rtol=5e-3)


# ----------------------------------------------------------------------------- masked modelling

@pytest.mark.parametrize("n,p,c,norm_pix", [(2, 3, 4, True), (3, 5, 6, False), (4, 8, 12, True)])
def test_mae_value(n, p, c, norm_pix):
  r = _rng(30, n, p, c)
  pred, target = r.normal(size=(n, p, c)), 2.0 + 3.0 * r.normal(size=(n, p, c))
  mask = r.random((n, p)) < 0.6
  got = jval(L.mae_loss, pred, target, arr(mask), norm_pix=norm_pix)
  np.testing.assert_allclose(got, np_mae(pred, target, mask, norm_pix), rtol=1e-5)


def test_mae_grad():
  r = _rng(31)
  pred, target = r.normal(size=(2, 3, 4)), r.normal(size=(2, 3, 4))
  mask = np.array([[1, 0, 1], [1, 1, 0]], bool)
  fj = lambda p, t, **kw: L.mae_loss(p, t, arr(mask), **kw)
  fn = lambda p, t, **kw: np_mae(p, t, mask, **kw)
  check_grad(fj, fn, [pred, target], (0, 1), {"norm_pix": True})


@pytest.mark.parametrize("beta,scale", [(0.0, None), (0.5, None), (2.0, 1.0)])
def test_smooth_l1_value(beta, scale):
  r = _rng(32)
  pred, target = r.normal(size=(3, 5, 6)), r.normal(size=(3, 5, 6))
  mask = r.random((3, 5)) < 0.5
  got = jval(L.smooth_l1_regression, pred, target, arr(mask), beta=beta, loss_scale=scale)
  np.testing.assert_allclose(got, np_smooth_l1(pred, target, mask, beta, scale), rtol=1e-5)


def test_smooth_l1_grad():
  r = _rng(33)
  pred, target = r.normal(size=(2, 3, 4)), r.normal(size=(2, 3, 4))
  mask = np.array([[1, 0, 1], [0, 1, 1]], bool)
  fj = lambda p, t, **kw: L.smooth_l1_regression(p, t, arr(mask), **kw)
  fn = lambda p, t, **kw: np_smooth_l1(p, t, mask, **kw)
  check_grad(fj, fn, [pred, target], (0, 1), {"beta": 0.7})


@pytest.mark.parametrize("l,n,p,d,k,ln",
                         [(3, 2, 4, 3, 2, False), (4, 2, 6, 5, 3, True), (2, 3, 5, 4, 1, False)])
def test_data2vec_targets_value_and_no_grad(l, n, p, d, k, ln):
  layers = 1.0 + 2.0 * _rng(34, l, n, p, d).normal(size=(l, n, p, d))
  got = jval(L.data2vec_targets, layers, top_k=k, layer_norm_targets=ln)
  np.testing.assert_allclose(got, np_data2vec_targets(layers, k, layer_norm_targets=ln), rtol=1e-5, atol=1e-5)
  g = run(jax.grad(lambda x: jnp.sum(L.data2vec_targets(x, k) ** 2)), layers)
  assert np.all(np.asarray(g) == 0)


# ----------------------------------------------------------------------------- LeJEPA

@pytest.mark.parametrize("n,d,s,knots,t_max", [(8, 3, 4, 17, 3.0), (16, 5, 6, 9, 2.0), (32, 4, 3, 17, 5.0)])
def test_sigreg_value_explicit_directions(n, d, s, knots, t_max):
  x = _rng(35, n, d).normal(size=(n, d))
  a = unit_directions(d, s, 36)
  got = jval(L.sigreg, x, a, knots=knots, t_max=t_max)
  np.testing.assert_allclose(got, np_sigreg(x, a, knots, t_max), rtol=1e-4)


def test_sigreg_normalises_the_directions_it_is_given():
  """Directions of any length give the unit-direction statistic (raw Gaussian ones would not)."""
  x = _rng(38, 16, 5).normal(size=(16, 5))
  a = unit_directions(5, 6, 39)
  scaled = a * np.array([0.3, 1.0, 2.0, 5.0, 0.7, 1.5])
  np.testing.assert_allclose(jval(L.sigreg, x, scaled), np_sigreg(x, a), rtol=1e-4)


def test_sigreg_value_random_directions_from_key():
  x = _rng(37).normal(size=(16, 4))
  key = jax.random.PRNGKey(3)
  a = np.asarray(run(lambda k: jax.random.normal(k, (4, 8), jnp.float32), key), np.float64)
  a /= np.linalg.norm(a, axis=0, keepdims=True)
  sig = J("sigreg")
  got = np.asarray(sig(arr(x), key=key, num_slices=8))
  np.testing.assert_allclose(got, np_sigreg(x, a), rtol=1e-4)
  other = np.asarray(sig(arr(x), key=jax.random.PRNGKey(4), num_slices=8))
  assert abs(other - got) > 1e-4  # a new key draws new directions
  with pytest.raises(ValueError):
    L.sigreg(arr(x))


def test_sigreg_grad():
  x = _rng(38).normal(size=(5, 3))
  a = unit_directions(3, 2, 39)
  check_grad(lambda x: L.sigreg(x, arr(a, jnp.float32)), lambda x: np_sigreg(x, a), [x], (0,))


@pytest.mark.parametrize("vg,v,n,d", [(2, 2, 8, 3), (2, 4, 6, 4)])
def test_lejepa_value(vg, v, n, d):
  r = _rng(40, vg, v, n, d)
  g, a = r.normal(size=(vg, n, d)), r.normal(size=(v, n, d))
  dirs = unit_directions(d, 5, 41)
  got = jval(L.lejepa_loss, g, a, 0.05, None, dirs)
  np.testing.assert_allclose(got, np_lejepa(g, a, dirs, 0.05), rtol=1e-4)


def test_lejepa_grad():
  r = _rng(42)
  g, a = r.normal(size=(2, 4, 2)), r.normal(size=(3, 4, 2))
  dirs = unit_directions(2, 3, 43)
  fj = lambda g, a: L.lejepa_loss(g, a, 0.3, directions=arr(dirs, jnp.float32))
  check_grad(fj, lambda g, a: np_lejepa(g, a, dirs, 0.3), [g, a], (0, 1))
