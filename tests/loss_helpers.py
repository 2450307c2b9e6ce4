"""Shared by test_losses_parity.py and test_losses_behaviour.py: a compile-once jit runner, finite
differences, and the float64 NumPy reference of every loss, written from its formula.

The NumPy references use explicit loops and sums, on purpose: each should be readable against
docs/losses.md (and the papers' reference code) without trusting any vectorisation.
"""
import functools
import math

import jax
import numpy as np

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


def J(name):
  """ssljax.losses.<name>, jitted (see `run`): checks run compiled, as in training."""
  return functools.partial(run, getattr(L, name))


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


def np_clip(x, y, log_scale):
  """CLIP: mean of the row (image->text) and column (text->image) cross-entropies."""
  x, y = np_normalize(x), np_normalize(y)
  n = len(x)
  scale = math.exp(float(log_scale))
  logits = [[scale * float(x[i] @ y[j]) for j in range(n)] for i in range(n)]
  def lse(vals):
    m = max(vals)
    return m + math.log(sum(math.exp(v - m) for v in vals))
  row = sum(lse(logits[i]) - logits[i][i] for i in range(n)) / n
  col = sum(lse([logits[i][j] for i in range(n)]) - logits[j][j] for j in range(n)) / n
  return 0.5 * (row + col)


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
