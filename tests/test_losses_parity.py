"""Every loss in ssljax.losses against an independent float64 NumPy version written from the formula.

The NumPy references below use explicit loops and sums, on purpose: each should be readable
against METHODS.md (and the papers' reference code) without trusting any vectorisation.
Values are compared on random inputs of several shapes; gradients (jax.grad, float32) are
compared to central finite differences of the NumPy reference (float64) on small inputs.
Behavioural checks at the end test properties that a wrong implementation would break.
"""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssljax import losses as L

SHAPES_ND = [(4, 3), (8, 5), (16, 8)]


# ----------------------------------------------------------------------------- helpers

def arr(a, dtype=None):
  """A host numpy array, float64 cast to float32: goes into jitted code without an on-device cast."""
  a = np.asarray(a, dtype)
  return a.astype(np.float32) if a.dtype == np.float64 else a


def _rng(*seed):
  return np.random.default_rng(seed)


# XLA's backend optimisation level 0 halves compile time on CPU, which dominates this file's
# run time; the numbers computed are the same float32 program.
_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}
_COMPILED = {}


def run(fn, *args, **kwargs):
  """fn(*args, **kwargs) under jit, compiled once per (fn, static kwargs, argument shapes).

  Array keyword arguments are traced; other keyword arguments are static.
  """
  args = tuple(arr(a) if isinstance(a, np.ndarray) else a for a in args)
  dyn = {k: arr(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()
         if isinstance(v, (np.ndarray, jax.Array))}
  static = {k: v for k, v in kwargs.items() if k not in dyn}
  leaves, tree = jax.tree.flatten((args, dyn))
  sig = (fn, tuple(sorted(static.items())), tree,
         tuple((np.shape(x), np.result_type(x), isinstance(x, (int, float))) for x in leaves))
  if sig not in _COMPILED:
    _COMPILED[sig] = jax.jit(functools.partial(fn, **static)).lower(*args, **dyn).compile(_COMPILER_OPTIONS)
  return _COMPILED[sig](*args, **dyn)


def jval(fn, *args, **static):
  """fn(*args, **static) as a float64 numpy value, computed by the jitted float32 function."""
  return np.asarray(run(fn, *args, **static), np.float64)


@functools.lru_cache(maxsize=None)
def _grad_fn(fn, argnums):
  return jax.grad(fn, argnums=argnums)


def jgrad(fn, args, argnums, **static):
  """jax.grad of fn w.r.t. argnums (tuple), float32 inputs, returned as float64 arrays."""
  return [np.asarray(x, np.float64) for x in run(_grad_fn(fn, tuple(argnums)), *args, **static)]


def fd_grad(f, args, argnum, h=1e-6):
  """Central finite difference of the float64 function f w.r.t. args[argnum]."""
  args = [np.array(a, np.float64) if isinstance(a, np.ndarray) and a.dtype.kind == "f" else a for a in args]
  x = args[argnum]
  g = np.zeros_like(x, dtype=np.float64)
  for idx in np.ndindex(x.shape):
    old = x[idx]
    x[idx] = old + h
    fp = f(*args)
    x[idx] = old - h
    fm = f(*args)
    x[idx] = old
    g[idx] = (fp - fm) / (2 * h)
  return g


def check_grad(jax_fn, np_fn, args, argnums, static=None, rtol=2e-3, atol=2e-5):
  static = static or {}
  got = jgrad(jax_fn, args, tuple(argnums), **static)
  for a, g in zip(argnums, got):
    want = fd_grad(lambda *xs: np_fn(*xs, **static), args, a)
    np.testing.assert_allclose(g, want, rtol=rtol, atol=atol * max(1.0, np.abs(want).max()),
                               err_msg=f"gradient w.r.t. argument {a}")


def np_normalize(x, eps=1e-12):
  out = np.zeros_like(x, dtype=np.float64)
  for i in np.ndindex(x.shape[:-1]):
    out[i] = x[i] / max(math.sqrt(sum(v * v for v in x[i])), eps)
  return out


def np_log_softmax(v):
  m = max(v)
  lse = m + math.log(sum(math.exp(a - m) for a in v))
  return np.array([a - lse for a in v])


def np_softmax(v):
  return np.exp(np_log_softmax(v))


def np_sinkhorn_matrix(q_nk, n_iters):
  """SwAV/MSN Sinkhorn loop on a non-negative [N, K] matrix, written on Q = [K, N] as the paper."""
  q = np.array(q_nk, np.float64).T
  k, b = q.shape
  q = q / q.sum()
  for _ in range(n_iters):
    for r in range(k):  # each prototype: total 1/K
      q[r] = q[r] / q[r].sum() / k
    for c in range(b):  # each sample: total 1/B
      q[:, c] = q[:, c] / q[:, c].sum() / b
  return (q * b).T


def np_sinkhorn(scores, epsilon=0.05, n_iters=3):
  return np_sinkhorn_matrix(np.exp(np.asarray(scores, np.float64) / epsilon), n_iters)


# ----------------------------------------------------------------------------- NumPy references

def np_nt_xent(z1, z2, temperature=0.5):
  n = len(z1)
  z = np_normalize(np.concatenate([z1, z2]))
  total = 0.0
  for i in range(2 * n):
    pos = (i + n) % (2 * n)
    logits = {j: float(z[i] @ z[j]) / temperature for j in range(2 * n) if j != i}
    total += -logits[pos] + math.log(sum(math.exp(v) for v in logits.values()))
  return total / (2 * n)


def np_info_nce(q, k, temperature=0.2):
  q, k = np_normalize(q), np_normalize(k)
  n = len(q)
  total = 0.0
  for i in range(n):
    logits = [float(q[i] @ k[j]) / temperature for j in range(n)]
    total += -logits[i] + math.log(sum(math.exp(v) for v in logits))
  return total / n


def np_sigmoid_contrastive(x, y, log_t, b):
  x, y = np_normalize(x), np_normalize(y)
  n = len(x)
  total = 0.0
  for i in range(n):
    for j in range(n):
      label = 1.0 if i == j else -1.0
      logit = math.exp(float(log_t)) * float(x[i] @ y[j]) + float(b)
      total += math.log1p(math.exp(-label * logit))  # -log sigmoid(label * logit)
  return total / n


def np_supcon(z, labels, temperature=0.1):
  v, n, _ = z.shape
  f = np_normalize(z.reshape(v * n, -1))
  lab = [labels[a % n] for a in range(v * n)]
  total = 0.0
  for a in range(v * n):
    others = [k for k in range(v * n) if k != a]
    log_den = math.log(sum(math.exp(float(f[a] @ f[k]) / temperature) for k in others))
    pos = [p for p in others if lab[p] == lab[a]]
    if pos:
      total += -sum(float(f[a] @ f[p]) / temperature - log_den for p in pos) / len(pos)
  return total / (v * n)


def np_negative_cosine(p, z):
  p, z = np_normalize(p), np_normalize(z)
  return -sum(float(p[i] @ z[i]) for i in range(len(p))) / len(p)


def np_dino(student, teacher, center, student_temp=0.1, teacher_temp=0.04):
  vs, n, _ = student.shape
  vt = teacher.shape[0]
  total, pairs = 0.0, 0
  for i in range(vt):
    for j in range(vs):
      if i == j:
        continue
      ce = 0.0
      for b in range(n):
        t = np_softmax((teacher[i, b] - center) / teacher_temp)
        ls = np_log_softmax(student[j, b] / student_temp)
        ce += -sum(t[c] * ls[c] for c in range(len(t)))
      total += ce / n
      pairs += 1
  return total / pairs


def np_update_center(center, teacher, momentum=0.9):
  vt, n, k = teacher.shape
  mean = np.zeros(k)
  for v in range(vt):
    for b in range(n):
      mean += teacher[v, b]
  mean /= vt * n
  return center * momentum + mean * (1 - momentum)


def np_ibot(student, teacher, mask, center, student_temp=0.1, teacher_temp=0.07):
  n, p, _ = student.shape
  total = 0.0
  for b in range(n):
    s, cnt = 0.0, 0
    for q in range(p):
      if mask[b, q]:
        t = np_softmax((teacher[b, q] - center) / teacher_temp)
        ls = np_log_softmax(student[b, q] / student_temp)
        s += -float(t @ ls)
        cnt += 1
    total += s / max(cnt, 1)
  return total / n


def np_koleo(x, eps=1e-8):
  x = np_normalize(x)
  n = len(x)
  total = 0.0
  for i in range(n):
    j = max((j for j in range(n) if j != i), key=lambda j: float(x[i] @ x[j]))
    total += -math.log(math.sqrt(sum((x[i] - x[j]) ** 2)) + eps)
  return total / n


def np_swav(scores, assign_views=(0, 1), temperature=0.1, epsilon=0.05, n_iters=3, codes=None):
  v, n, _ = scores.shape
  total = 0.0
  for a in assign_views:
    q = np_sinkhorn(scores[a], epsilon, n_iters) if codes is None else codes[a]
    sub = 0.0
    for w in range(v):
      if w == a:
        continue
      sub += -sum(float(q[b] @ np_log_softmax(scores[w, b] / temperature)) for b in range(n)) / n
    total += sub / (v - 1)
  return total / len(assign_views)


def np_msn(anchor, target, prototypes, temperature=0.1, sharpen_temperature=0.25, me_max_weight=1.0,
           n_sinkhorn=0, fixed_targets=None):
  protos = np_normalize(prototypes)
  k = len(protos)

  def snn(x):
    x = np_normalize(x)
    return np.stack([np_softmax(np.array([float(x[i] @ protos[c]) for c in range(k)]) / temperature)
                     for i in range(len(x))])

  probs = snn(anchor)
  if fixed_targets is None:
    t = snn(target) ** (1.0 / sharpen_temperature)
    t = t / t.sum(axis=1, keepdims=True)
    if n_sinkhorn:
      t = np_sinkhorn_matrix(t, n_sinkhorn)
    fixed_targets = np.concatenate([t] * (len(anchor) // len(target)))
  ce = sum(-sum(fixed_targets[i, c] * math.log(probs[i, c]) for c in range(k)) for i in range(len(probs)))
  ce /= len(probs)
  avg = probs.mean(axis=0)
  entropy = -sum(p * math.log(p) for p in avg)
  return ce + me_max_weight * (math.log(k) - entropy)


def np_msn_targets(target, prototypes, temperature=0.1, sharpen_temperature=0.25, n_sinkhorn=0, views=1):
  protos = np_normalize(prototypes)
  x = np_normalize(target)
  t = np.stack([np_softmax(np.array([float(x[i] @ c) for c in protos]) / temperature) for i in range(len(x))])
  t = t ** (1 / sharpen_temperature)
  t = t / t.sum(axis=1, keepdims=True)
  if n_sinkhorn:
    t = np_sinkhorn_matrix(t, n_sinkhorn)
  return np.concatenate([t] * views)


def np_standardise(z, eps=1e-5):
  n, d = z.shape
  out = np.zeros_like(z, dtype=np.float64)
  for j in range(d):
    mean = sum(z[:, j]) / n
    var = sum((z[:, j] - mean) ** 2) / n  # biased
    out[:, j] = (z[:, j] - mean) / math.sqrt(var + eps)
  return out


def np_barlow(z1, z2, lambd=5e-3):
  n, d = z1.shape
  a, b = np_standardise(z1), np_standardise(z2)
  total = 0.0
  for i in range(d):
    for j in range(d):
      c = sum(a[k, i] * b[k, j] for k in range(n)) / n
      total += (1 - c) ** 2 if i == j else lambd * c ** 2
  return total


def np_vicreg(z1, z2, sim_coeff=25.0, std_coeff=25.0, cov_coeff=1.0, eps=1e-4):
  n, d = z1.shape
  repr_loss = sum((z1[i, j] - z2[i, j]) ** 2 for i in range(n) for j in range(d)) / (n * d)
  std_loss, cov_loss = 0.0, 0.0
  for z in (z1, z2):
    zc = z - z.mean(axis=0)
    std_loss += sum(max(0.0, 1 - math.sqrt(sum(zc[:, j] ** 2) / (n - 1) + eps)) for j in range(d)) / d / 2
    for i in range(d):
      for j in range(d):
        if i != j:
          cov_loss += (sum(zc[:, i] * zc[:, j]) / (n - 1)) ** 2 / d
  return sim_coeff * repr_loss + std_coeff * std_loss + cov_coeff * cov_loss


def np_whiten(x, eps=0.0):
  m, d = x.shape
  xc = x - x.mean(axis=0)
  cov = xc.T @ xc / (m - 1)
  cov = (1 - eps) * cov + eps * np.eye(d)
  w = np.linalg.inv(np.linalg.cholesky(cov))
  return xc @ w.T


def np_wmse(z, w_size, eps=0.0):
  v, n, _ = z.shape
  white = np.zeros_like(z, dtype=np.float64)
  for view in range(v):
    for start in range(0, n, w_size):
      white[view, start:start + w_size] = np_whiten(z[view, start:start + w_size], eps)
  white = np_normalize(white)
  total, pairs = 0.0, 0
  for i in range(v):
    for j in range(i + 1, v):
      total += 2 - 2 * sum(float(white[i, b] @ white[j, b]) for b in range(n)) / n
      pairs += 1
  return total / pairs


def np_mae(pred, target, mask, norm_pix=True):
  n, p, c = pred.shape
  num, den = 0.0, 0.0
  for b in range(n):
    for q in range(p):
      t = target[b, q].astype(np.float64)
      if norm_pix:
        mean = sum(t) / c
        var = sum((t - mean) ** 2) / (c - 1)  # unbiased, as torch.var
        t = (t - mean) / math.sqrt(var + 1e-6)
      if mask[b, q]:
        num += sum((pred[b, q] - t) ** 2) / c
        den += 1
  return num / max(den, 1)


def np_smooth_l1(pred, target, mask, beta, loss_scale=None):
  n, p, d = pred.shape
  scale = 1 / math.sqrt(d) if loss_scale is None else loss_scale
  num, den = 0.0, 0
  for b in range(n):
    for q in range(p):
      if not mask[b, q]:
        continue
      den += 1
      for c in range(d):
        e = pred[b, q, c] - target[b, q, c]
        if beta == 0:
          num += scale * e * e
        elif abs(e) < beta:
          num += scale * 0.5 * e * e / beta
        else:
          num += scale * (abs(e) - 0.5 * beta)
  return num / max(den, 1)


def np_data2vec_targets(layers, top_k, eps=1e-5, layer_norm_targets=False):
  l, n, p, d = layers.shape
  out = np.zeros((n, p, d))
  for layer in range(l - top_k, l):
    for b in range(n):
      for c in range(d):
        col = layers[layer, b, :, c]
        mean = sum(col) / p
        var = sum((col - mean) ** 2) / p
        out[b, :, c] += (col - mean) / math.sqrt(var + eps) / top_k
  if layer_norm_targets:
    for b in range(n):
      for q in range(p):
        row = out[b, q]
        mean = sum(row) / d
        var = sum((row - mean) ** 2) / d
        out[b, q] = (row - mean) / math.sqrt(var + 1e-5)
  return out


def np_sigreg(x, directions, knots=17, t_max=3.0):
  """Epps-Pulley with complex exponentials, integrated over the FULL symmetric range [-t_max, t_max]."""
  n = x.shape[0]
  ts = np.linspace(-t_max, t_max, 2 * knots - 1)
  stats = []
  for s in range(directions.shape[1]):
    proj = x @ directions[:, s]
    integrand = []
    for t in ts:
      ecf = sum(np.exp(1j * t * proj)) / n
      phi = math.exp(-t * t / 2)
      integrand.append(abs(ecf - phi) ** 2 * phi)
    stats.append(n * np.trapezoid(integrand, ts))
  return float(np.mean(stats))


def np_lejepa(global_proj, all_proj, directions, lamb=0.05):
  center = global_proj.mean(axis=0)
  inv = float(np.mean((center[None] - all_proj) ** 2))
  reg = sum(np_sigreg(all_proj[v], directions) for v in range(len(all_proj))) / len(all_proj)
  return (1 - lamb) * inv + lamb * reg


def unit_directions(d, s, seed):
  a = _rng(seed).normal(size=(d, s))
  return a / np.linalg.norm(a, axis=0, keepdims=True)


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


# ----------------------------------------------------------------------------- behaviour

def J(name):
  """ssljax.losses.<name>, jitted (see `run`): the behavioural checks run compiled, as in training."""
  return functools.partial(run, getattr(L, name))


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
