"""Tiled contrastive kernels: pallas (interpret) and blockwise XLA against the jnp reference.

Values and gradients (inputs, scale, bias) over small shapes, with N and M not multiples of the
tile; linear memory of the XLA path; the Pallas kernels lower for GPU (Triton) without a GPU.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssljax.kernels import contrastive as C

TILES = dict(block_q=16, block_k=16)


def _normed(key, n, d, dtype=jnp.float32):
  x = jax.random.normal(key, (n, d), jnp.float32)
  return (x / jnp.linalg.norm(x, axis=-1, keepdims=True)).astype(dtype)


def _pair(n, m, d, dtype=jnp.float32, seed=0):
  k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
  return _normed(k1, n, d, dtype), _normed(k2, m, d, dtype)


def _close(a, b, tol):
  a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
  scale = max(1.0, float(np.max(np.abs(b))))
  np.testing.assert_allclose(a, b, rtol=0, atol=tol * scale)


def _primitive_objective(impl, q, k, s, b):
  """Weighted sums of every output of both primitives (row/col lse, masked, shifted diagonal).

  The one-directional (with_col=False) path is covered by the loss tests.
  """
  kw = TILES if impl != "reference" else {}
  n, m = q.shape[0], k.shape[0]
  row, col = C.similarity_lse(q, k, s, with_col=True, exclude_diagonal=True, diag_offset=3,
                              impl=impl, **kw)
  sig = C.sigmoid_pair_sums(q, k, s, b, diag_offset=-2, impl=impl, **kw)
  w = jnp.arange(n, dtype=jnp.float32) / n
  return (jnp.sum(row * w) + jnp.sum(col * jnp.cos(jnp.arange(m)))
          + jnp.sum(sig * jnp.sin(jnp.arange(n))))


@functools.lru_cache(maxsize=None)
def _value_and_grad(impl):
  return jax.jit(jax.value_and_grad(functools.partial(_primitive_objective, impl),
                                    argnums=(0, 1, 2, 3)))


@pytest.mark.parametrize("impl", ["xla", "pallas"])
@pytest.mark.parametrize("n,m,d", [(37, 29, 20), (16, 48, 32)])
def test_primitives_match_reference_f32(impl, n, m, d):
  q, k = _pair(n, m, d)
  s, b = jnp.float32(6.0), jnp.float32(-1.5)
  ref_v, ref_g = _value_and_grad("reference")(q, k, s, b)
  v, g = _value_and_grad(impl)(q, k, s, b)
  _close(v, ref_v, 1e-5)
  for got, want in zip(g, ref_g):
    _close(got, want, 2e-5)


@pytest.mark.parametrize("impl", ["xla", "pallas"])
def test_primitives_match_reference_bf16(impl):
  q, k = _pair(24, 40, 32, jnp.bfloat16, seed=1)
  s, b = jnp.float32(6.0), jnp.float32(-1.5)
  ref_v, ref_g = _value_and_grad("reference")(q, k, s, b)
  v, g = _value_and_grad(impl)(q, k, s, b)
  assert g[0].dtype == jnp.bfloat16 and g[1].dtype == jnp.bfloat16
  _close(v, ref_v, 1e-4)  # logits are float32 on both sides
  for got, want in zip(g, ref_g):
    _close(got, want, 2e-2)


def _losses(impl, x, y, s, b):
  kw = TILES if impl != "reference" else {}
  return (C.info_nce_loss(x, y, s, impl=impl, **kw),
          C.info_nce_loss(x, y, s, bidirectional=True, impl=impl, **kw),
          C.nt_xent_loss(x, y, s, impl=impl, **kw),
          C.sigmoid_loss(x, y, s, b, impl=impl, **kw))


@functools.lru_cache(maxsize=None)
def _loss_grads(impl):
  def each(x, y, s, b):
    return [jax.value_and_grad(lambda *a, i=i: _losses(impl, *a)[i], argnums=(0, 1, 2, 3))(
        x, y, s, b) for i in range(4)]
  return jax.jit(each)


@pytest.mark.parametrize("impl", ["xla", "pallas"])
def test_losses_match_reference(impl):
  x, y = _pair(21, 21, 24, seed=2)
  s, b = jnp.float32(10.0), jnp.float32(-3.0)
  want = _loss_grads("reference")(x, y, s, b)
  got = _loss_grads(impl)(x, y, s, b)
  for (v, g), (rv, rg) in zip(got, want):
    _close(v, rv, 1e-5)
    for a, r in zip(g, rg):
      _close(a, r, 2e-5)


def test_reference_losses_match_formula():
  """The kernel-level references agree with the textbook full-matrix formulas."""
  x, y = _pair(6, 6, 5, seed=3)
  s, b = 4.0, -1.0
  xn, yn = np.asarray(x, np.float64), np.asarray(y, np.float64)
  lg = s * xn @ yn.T

  def lse(a, axis):
    mx = a.max(axis=axis, keepdims=True)
    return (mx + np.log(np.exp(a - mx).sum(axis=axis, keepdims=True))).squeeze(axis)

  info = np.mean(lse(lg, 1) - np.diag(lg))
  clip = 0.5 * (info + np.mean(lse(lg, 0) - np.diag(lg)))
  z = np.concatenate([xn, yn])
  zz = s * z @ z.T
  np.fill_diagonal(zz, -np.inf)
  ntx = np.mean(lse(zz, 1) - zz[np.arange(12), (np.arange(12) + 6) % 12])
  lab = 2 * np.eye(6) - 1
  sig = np.sum(np.log1p(np.exp(-lab * (lg + b)))) / 6
  got = jax.jit(functools.partial(_losses, "reference"))(x, y, jnp.float32(s), jnp.float32(b))
  np.testing.assert_allclose(np.asarray(got), [info, clip, ntx, sig], rtol=1e-5)


def test_xla_temp_memory_is_linear_in_n():
  """Compiled temp memory of value_and_grad: xla grows ~N (ratio ~4 for 4x N); naive ~N^2."""
  def temp_bytes(impl, n):
    x = jax.ShapeDtypeStruct((n, 64), jnp.float32)
    fn = lambda q, k: C.info_nce_loss(q, k, 10.0, bidirectional=True, impl=impl)
    compiled = jax.jit(jax.value_and_grad(fn, argnums=(0, 1))).lower(x, x).compile()
    return compiled.memory_analysis().temp_size_in_bytes

  xla_ratio = temp_bytes("xla", 8192) / temp_bytes("xla", 2048)
  ref_ratio = temp_bytes("reference", 8192) / temp_bytes("reference", 2048)
  assert xla_ratio < 6.0, xla_ratio
  assert ref_ratio > 10.0, ref_ratio  # sanity: the naive loss is quadratic
  assert temp_bytes("xla", 8192) < temp_bytes("reference", 8192) / 8


def test_pallas_lowers_for_gpu():
  """The Pallas path (interpret=False) lowers to Triton for CUDA on a CPU-only machine."""
  q, k = jnp.ones((40, 96), jnp.bfloat16), jnp.ones((24, 96), jnp.bfloat16)

  def fn(q, k, s, b):
    kw = dict(impl="pallas", interpret=False)
    row, col = C.similarity_lse(q, k, s, with_col=True, exclude_diagonal=True, **kw)
    return row.sum() + col.sum() + C.sigmoid_pair_sums(q, k, s, b, **kw).sum()

  lowered = jax.jit(jax.value_and_grad(fn, argnums=(0, 1, 2, 3))).trace(
      q, k, 1.0, 0.0).lower(lowering_platforms=("cuda",))
  assert lowered.as_text().count("triton") >= 7  # 3 forward + 4 backward kernels


def test_impl_switch():
  assert C.resolve_impl("auto") == ("pallas" if jax.default_backend() == "gpu" else "xla")
  with pytest.raises(ValueError):
    C.similarity_lse(jnp.ones((4, 4)), jnp.ones((4, 4)), impl="cuda")


def test_losses_module_impl_switch():
  """ssljax.losses' contrastive losses give the same values and gradients through the kernels.

  impl is passed straight through to the kernels, whose impls are compared above; 'xla' only.
  """
  impl = "xla"
  from ssljax import losses as L  # pylint: disable=g-import-not-at-top

  def all_losses(x, y, t, log_t, b, impl):
    return (L.nt_xent(x, y, t, impl=impl), L.info_nce(x, y, t, impl=impl),
            L.sigmoid_contrastive(x, y, log_t, b, impl=impl))

  def grads(impl):
    return jax.jit(lambda *a: [jax.value_and_grad(lambda *a, i=i: all_losses(*a, impl)[i],
                                                  argnums=(0, 1, 2, 3, 4))(*a)
                               for i in range(3)])

  k1, k2 = jax.random.split(jax.random.PRNGKey(4))
  x, y = 3.0 * jax.random.normal(k1, (13, 8)), jax.random.normal(k2, (13, 8))
  args = (x, y, jnp.float32(0.3), jnp.float32(2.0), jnp.float32(-4.0))
  for (v, g), (rv, rg) in zip(grads(impl)(*args), grads("reference")(*args)):
    _close(v, rv, 1e-5)
    for a, r in zip(g, rg):
      _close(a, r, 2e-5)
  with pytest.raises(ValueError):
    L.info_nce(x, y, impl="fast")


@pytest.mark.parametrize("n,m,d", [(200, 200, 32), (130, 300, 128)])
def test_mosaic_kernels_match_the_reference_in_the_tpu_interpreter(n, m, d):
  """The TPU (Mosaic) kernels, run by Pallas' TPU interpreter: values and all four gradients of
  row and column logsumexps with an excluded, offset diagonal, and of the sigmoid sums."""
  from ssljax.kernels import _common
  rng = np.random.default_rng(0)
  unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
  q = jnp.asarray(unit(rng.normal(size=(n, d))), jnp.float32)
  k = jnp.asarray(unit(rng.normal(size=(m, d))), jnp.float32)

  def objective(q, k, s, b, impl, interpret=None):
    r, c = C.similarity_lse(q, k, s, with_col=True, exclude_diagonal=True, diag_offset=2,
                            impl=impl, interpret=interpret)
    sig = C.sigmoid_pair_sums(q, k, s, b, diag_offset=1, impl=impl, interpret=interpret)
    return jnp.sum(r * jnp.arange(n)) + jnp.sum(c ** 2) + jnp.sum(sig * jnp.cos(jnp.arange(n)))

  grad = jax.value_and_grad(objective, argnums=(0, 1, 2, 3))
  want = grad(q, k, 5.0, -1.0, "reference")
  with _common.lowering_for("tpu"):
    got = grad(q, k, 5.0, -1.0, "pallas", True)
    cfg = C._make_config("softmax", True, True, "pallas", n, m, None, None, True, None)
  assert cfg.backend == "mosaic" and cfg.block_q % 128 == 0 and cfg.block_k % 128 == 0
  for a, b in zip(jax.tree.leaves(want), jax.tree.leaves(got)):
    np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-4)
