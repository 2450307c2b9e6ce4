"""Flash attention: pallas (interpret), blockwise XLA and the TPU splash kernel (interpreted) against
the jnp reference.

Values and gradients in f32 (tight) and bf16 (looser), lengths that are not multiples of the
tile, a key padding mask, linear temp memory of the XLA path, and GPU (Triton) lowering.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssljax.kernels import attention as A


def _qkv(b, lq, lk, h, d, dtype, seed=0):
  ks = jax.random.split(jax.random.PRNGKey(seed), 4)
  q = jax.random.normal(ks[0], (b, lq, h, d), jnp.float32)
  k = jax.random.normal(ks[1], (b, lk, h, d), jnp.float32)
  v = jax.random.normal(ks[2], (b, lk, h, d), jnp.float32)
  w = jax.random.normal(ks[3], (b, lq, h, d), jnp.float32)  # output cotangent weights
  return q.astype(dtype), k.astype(dtype), v.astype(dtype), w


@functools.lru_cache(maxsize=None)
def _value_and_grad(impl, masked, block=16):
  def objective(q, k, v, w, mask):
    kw = dict(block_q=block, block_k=block) if impl != "reference" else {}
    out = A.dot_product_attention(q, k, v, mask if masked else None, impl=impl, **kw)
    return jnp.sum(out.astype(jnp.float32) * w)
  return jax.jit(jax.value_and_grad(objective, argnums=(0, 1, 2)))


def _check(impl, shape, dtype, masked, tol_v, tol_g, block=16):
  """`impl` against the reference; tiles of `block` (None: the impl's default tiles)."""
  b, lq, lk, h, d = shape
  q, k, v, w = _qkv(b, lq, lk, h, d, dtype)
  # Batch row 0 attends to every key; row 1 only to its first lk - 7 keys.
  mask = jnp.arange(lk)[None, :] < jnp.array([lk, lk - 7])[:, None]
  want_v, want_g = _value_and_grad("reference", masked)(q, k, v, w, mask)
  got_v, got_g = _value_and_grad(impl, masked, block)(q, k, v, w, mask)
  np.testing.assert_allclose(got_v, want_v, rtol=tol_v, atol=tol_v)
  for got, want in zip(got_g, want_g):
    assert got.dtype == dtype
    got, want = np.asarray(got, np.float32), np.asarray(want, np.float32)
    np.testing.assert_allclose(got, want, rtol=0, atol=tol_g * max(1.0, np.abs(want).max()))


@pytest.mark.parametrize("impl", ["xla", "pallas"])
@pytest.mark.parametrize("shape,masked", [
    ((2, 37, 29, 2, 32), True),   # lengths not multiples of the 16-tile, cross-attention
    ((1, 32, 32, 2, 64), False),  # exact tiles, self-attention, no mask
])
def test_matches_reference_f32(impl, shape, masked):
  _check(impl, shape, jnp.float32, masked, 1e-5, 2e-5)


def test_xla_single_unpadded_tile_matches_reference():
  """Default tiles: a 65-token sequence (a ViT-Tiny/4's at 32 px) is one tile, not padded to 72."""
  assert A._tiles("xla", 65, 65, None, None) == (65, 65)
  assert A._tiles("xla", 300, 65, None, None) == (A.XLA_BLOCK_Q, 65)
  _check("xla", (2, 65, 65, 3, 16), jnp.float32, True, 1e-5, 2e-5, block=None)


@pytest.mark.parametrize("impl", ["xla", "pallas"])
def test_matches_reference_bf16(impl):
  _check(impl, (2, 24, 40, 2, 32), jnp.bfloat16, True, 2e-2, 3e-2)


def test_xla_temp_memory_is_linear_in_length():
  def temp_bytes(impl, length):
    x = jax.ShapeDtypeStruct((1, length, 2, 32), jnp.float32)
    fn = lambda q, k, v: A.dot_product_attention(q, k, v, impl=impl, block_q=128,
                                                 block_k=128).sum()
    compiled = jax.jit(jax.value_and_grad(fn, argnums=(0, 1, 2))).lower(x, x, x).compile()
    return compiled.memory_analysis().temp_size_in_bytes

  xla_ratio = temp_bytes("xla", 4096) / temp_bytes("xla", 1024)
  ref_ratio = temp_bytes("reference", 4096) / temp_bytes("reference", 1024)
  assert xla_ratio < 6.0, xla_ratio
  assert ref_ratio > 10.0, ref_ratio


@pytest.mark.parametrize("d,length,dtype", [(32, 150, jnp.float32), (64, 197, jnp.bfloat16),
                                             (96, 64, jnp.bfloat16), (128, 100, jnp.float32)])
def test_pallas_lowers_for_gpu(d, length, dtype):
  """Forward + both backward kernels lower to Triton (CUDA) for head dims 32-128, no GPU needed."""
  x = jax.ShapeDtypeStruct((2, length, 3, d), dtype)
  m = jax.ShapeDtypeStruct((2, length), jnp.bool_)

  def fn(q, k, v, mask):
    out = A.dot_product_attention(q, k, v, mask, impl="pallas", interpret=False)
    return out.astype(jnp.float32).sum()

  lowered = jax.jit(jax.grad(fn, argnums=(0, 1, 2))).trace(x, x, x, m).lower(
      lowering_platforms=("cuda",))
  assert lowered.as_text().count("xla.gpu.triton") == 3


def test_impl_switch():
  x = jnp.ones((1, 4, 1, 8))
  with pytest.raises(ValueError):
    A.dot_product_attention(x, x, x, impl="cudnn")
  np.testing.assert_allclose(A.dot_product_attention(x, x, x, impl="auto"), x, rtol=1e-6)


@pytest.mark.parametrize("masked", [False, True])
def test_tpu_splash_kernel_matches_reference_in_the_interpreter(masked):
  """The TPU kernel (JAX's splash attention, padded to 128 rows, keys masked by segment ids), run
  by Pallas' interpreter: values and q, k, v gradients against the reference."""
  b, lq, lk, h, d = 2, 50, 37, 2, 32
  q, k, v, w = _qkv(b, lq, lk, h, d, jnp.float32)
  mask = jnp.arange(lk)[None, :] < jnp.array([lk, lk - 7])[:, None]

  def objective(fn):
    return jax.value_and_grad(
        lambda q, k, v: jnp.sum(fn(q, k, v, mask if masked else None) * w), argnums=(0, 1, 2))

  want = objective(A.attention_reference)(q, k, v)
  got = objective(functools.partial(A._mosaic_splash, interpret=True))(q, k, v)
  for a, g in zip(jax.tree.leaves(want), jax.tree.leaves(got)):
    np.testing.assert_allclose(np.asarray(g), np.asarray(a), atol=2e-5, rtol=2e-5)


def _fake_cudnn(seen, refuse=False):
  """Stands in for jax.nn.dot_product_attention(implementation='cudnn') on CPU: records the
  (padded) lengths it is given and computes with JAX's XLA implementation, which honours
  key_value_seq_lengths the same way."""
  real = jax.nn.dot_product_attention

  def fake(q, k, v, *, scale=None, key_value_seq_lengths=None, implementation=None):
    assert implementation == "cudnn"
    seen.append((q.shape[1], k.shape[1], key_value_seq_lengths is not None))
    if refuse:
      raise NotImplementedError(f"Unsupported sequence length Q {q.shape[1]}")
    return real(q, k, v, scale=scale, key_value_seq_lengths=key_value_seq_lengths,
                implementation="xla")
  return fake


@pytest.mark.parametrize("lq,lk", [(197, 197), (37, 197), (128, 128)])
def test_cudnn_attention_pads_to_tiles_and_masks_the_padding(monkeypatch, lq, lk):
  """ViT's 197 tokens go to cuDNN as 256 with the 59 padded keys masked: value and gradients
  equal the reference at the true length (JAX 0.11.2 refuses cuDNN's gradient at L = 197)."""
  seen = []
  monkeypatch.setattr(jax.nn, "dot_product_attention", _fake_cudnn(seen))
  rng = np.random.default_rng(0)
  q = jnp.asarray(rng.normal(size=(2, lq, 2, 16)), jnp.float32)
  k, v = (jnp.asarray(rng.normal(size=(2, lk, 2, 16)), jnp.float32) for _ in range(2))
  w = jnp.asarray(rng.normal(size=(2, lq, 2, 16)), jnp.float32)
  loss = lambda f: lambda q, k, v: jnp.sum(f(q, k, v) * w)  # noqa: E731
  got = jax.value_and_grad(loss(A.cudnn_attention), argnums=(0, 1, 2))(q, k, v)
  want = jax.value_and_grad(loss(A.attention_reference), argnums=(0, 1, 2))(q, k, v)
  for g, r in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_allclose(g, r, rtol=2e-4, atol=2e-4)
  pad = lambda n: -(-n // A.CUDNN_SEQ_MULTIPLE) * A.CUDNN_SEQ_MULTIPLE  # noqa: E731
  assert seen[0] == (pad(lq), pad(lk), (pad(lq), pad(lk)) != (lq, lk))


def test_cudnn_refusal_falls_back_to_the_triton_kernel(monkeypatch, capsys):
  seen, flash = [], []
  monkeypatch.setattr(jax.nn, "dot_product_attention", _fake_cudnn(seen, refuse=True))
  monkeypatch.setattr(A, "_ssljax_flash", lambda kernel, q, k, v, m, *a: flash.append(kernel)
                      or A.attention_reference(q, k, v, m))
  monkeypatch.setattr(A, "_CUDNN_REFUSED", set())
  q = jnp.ones((1, 197, 2, 16), jnp.bfloat16)
  for _ in range(2):
    out = A._local_attention("cudnn", q, q, q, None, None, None, None)  # pylint: disable=protected-access
  assert out.shape == q.shape and flash == ["triton", "triton"]
  lines = [l for l in capsys.readouterr().out.splitlines() if "cuDNN attention refused" in l]
  assert len(lines) == 1 and "197" in lines[0]
