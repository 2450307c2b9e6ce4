"""The image-text losses (CLIP's `clip_loss`, SigLIP's `sigmoid_contrastive`) under a batch split
over 8 devices, as the trainer traces them: the global-batch value and gradients (learned scale
and bias included), and per-device memory that grows with N / P, not N^2.

Parity with independent NumPy formulas is in test_losses_parity.py.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from ssljax import losses as L
from ssljax import parallel

LOSSES = {
    "clip": lambda x, y, t, b: L.clip_loss(x, y, t),
    "siglip": lambda x, y, t, b: L.sigmoid_contrastive(x, y, t, b),
}


@pytest.fixture(scope="module")
def mesh():
  devices = jax.devices()
  assert len(devices) >= 8, "tests/conftest.py should force 8 host devices"
  return Mesh(np.array(devices[:8]), ("data",))


def _value_and_grad(name, mesh=None):
  fn = jax.value_and_grad(LOSSES[name], argnums=(0, 1, 2, 3))
  return jax.jit(parallel.traced_under(fn, mesh) if mesh is not None else fn)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_sharded_equals_single_device(name, mesh):
  rng = np.random.default_rng(0)
  x, y = rng.normal(size=(2, 256, 32)).astype(np.float32)
  t, b = np.float32(np.log(10.0)), np.float32(-10.0 if name == "siglip" else 0.0)
  batch = NamedSharding(mesh, P("data"))
  want = _value_and_grad(name)(x, y, t, b)
  got = _value_and_grad(name, mesh)(jax.device_put(x, batch), jax.device_put(y, batch), t, b)
  text = _value_and_grad(name, mesh).lower(jax.device_put(x, batch), jax.device_put(y, batch),
                                           t, b).as_text()
  assert "all-gather" in text or "all_gather" in text   # the keys of the other shards
  (v1, g1), (v8, g8) = want, got
  np.testing.assert_allclose(float(v8), float(v1), rtol=1e-5)
  for a, (gs, g) in enumerate(zip(g8, g1)):
    np.testing.assert_allclose(np.asarray(gs), np.asarray(g), rtol=2e-4, atol=1e-6,
                               err_msg=f"{name} gradient w.r.t. argument {a}")


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_sharded_memory_at_32k(name, mesh):
  """value+grad at global N = 32,768, D = 256 on 8 devices: per-device temporaries < 256 MiB
  (the full logit matrix alone would be 4 GiB; one device's [N/8, N] rows 512 MiB)."""
  n, d = 32768, 256
  batch = NamedSharding(mesh, P("data"))
  rep = NamedSharding(mesh, P())
  emb = jax.ShapeDtypeStruct((n, d), jnp.float32, sharding=batch)
  scalar = jax.ShapeDtypeStruct((), jnp.float32, sharding=rep)
  compiled = _value_and_grad(name, mesh).lower(emb, emb, scalar, scalar).compile()
  temp = compiled.memory_analysis().temp_size_in_bytes
  assert temp < 256 * 2 ** 20, f"{name}: {temp / 2 ** 20:.0f} MiB per device"
