"""Losses that use batch statistics give the same value and gradients with a sharded batch.

Each loss runs under `jax.jit` twice: with its batch axis sharded over a Mesh of the 8 CPU
devices (tests/conftest.py forces 8 host devices) and with every input on one device. The
loss sees the GLOBAL batch either way, so the value and the gradients must agree to float32
round-off; a loss that silently computed per-shard statistics (a local Sinkhorn, a per-device
covariance, a local nearest neighbour) would not.
"""
import functools

import jax
import numpy as np
import pytest
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from ssljax import losses as L

N = 32  # global batch: 4 samples per device
D = 6
K = 5
B = "batch"
_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}


def _normal(seed, *shape):
  return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _unit(seed, d, s):
  a = np.random.default_rng(seed).normal(size=(d, s))
  return (a / np.linalg.norm(a, axis=0, keepdims=True)).astype(np.float32)


# name -> (loss function, inputs, partition spec of each input, argnums to differentiate).
# A spec of P() means replicated (parameters, temperatures, PRNG keys).
CASES = {
    "nt_xent": (functools.partial(L.nt_xent, temperature=0.5),
                [_normal(0, N, D), _normal(1, N, D)], [P(B), P(B)], (0, 1)),
    "info_nce": (functools.partial(L.info_nce, temperature=0.2),
                 [_normal(2, N, D), _normal(3, N, D)], [P(B), P(B)], (0, 1)),
    "sigmoid_contrastive": (L.sigmoid_contrastive,
                            [_normal(4, N, D), _normal(5, N, D), np.float32(np.log(10.0)), np.float32(-5.0)],
                            [P(B), P(B), P(), P()], (0, 1, 2, 3)),
    "clip_loss": (L.clip_loss, [_normal(26, N, D), _normal(27, N, D), np.float32(np.log(10.0))],
                  [P(B), P(B), P()], (0, 1, 2)),
    "supcon": (lambda z, labels: L.supcon(z, labels, 0.1),
               [_normal(6, 2, N, D), np.random.default_rng(7).integers(0, 4, N).astype(np.int32)],
               [P(None, B), P(B)], (0,)),
    "update_center": (functools.partial(L.update_center, momentum=0.9),
                      [_normal(8, K), _normal(9, 2, N, K)], [P(), P(None, B)], None),
    "sinkhorn_knopp": (functools.partial(L.sinkhorn_knopp, epsilon=0.05, n_iters=3),
                       [np.tanh(_normal(10, N, K))], [P(B)], None),
    "swav_loss": (functools.partial(L.swav_loss, assign_views=(0, 1), temperature=0.1),
                  [np.tanh(_normal(11, 3, N, K))], [P(None, B)], (0,)),
    "barlow_twins": (functools.partial(L.barlow_twins, lambd=5e-3),
                     [_normal(12, N, D), _normal(13, N, D)], [P(B), P(B)], (0, 1)),
    "vicreg": (L.vicreg, [_normal(14, N, D), 0.5 * _normal(15, N, D)], [P(B), P(B)], (0, 1)),
    # Whitening sub-batches of 16 span two devices each.
    "wmse": (functools.partial(L.wmse, w_size=16), [_normal(16, 2, N, 4)], [P(None, B)], (0,)),
    "koleo": (L.koleo, [_normal(17, N, D)], [P(B)], (0,)),
    "msn_loss": (functools.partial(L.msn_loss, n_sinkhorn=3),
                 [_normal(18, 2 * N, D), _normal(19, N, D), _normal(20, K, D)], [P(B), P(B), P()], (0, 2)),
    "sigreg": (lambda x, a: L.sigreg(x, a), [_normal(21, N, D), _unit(22, D, 16)], [P(B), P()], (0,)),
    "sigreg_key": (lambda x, key: L.sigreg(x, key=key, num_slices=16),
                   [_normal(23, N, D), np.asarray(jax.random.PRNGKey(0))], [P(B), P()], (0,)),
    "lejepa_loss": (lambda g, a, key: L.lejepa_loss(g, a, 0.05, key, num_slices=16),
                    [_normal(24, 2, N, D), _normal(25, 4, N, D), np.asarray(jax.random.PRNGKey(1))],
                    [P(None, B), P(None, B), P()], (0, 1)),
}


@pytest.fixture(scope="module")
def mesh():
  devices = jax.devices()
  assert len(devices) >= 8, "tests/conftest.py should force 8 host devices"
  return Mesh(np.array(devices[:8]), (B,))


def _close(got, want, what):
  got, want = np.asarray(got), np.asarray(want)
  scale = max(1.0, float(np.abs(want).max()))
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * scale, err_msg=what)


@pytest.mark.parametrize("name", sorted(CASES))
def test_sharded_matches_single_device(name, mesh):
  fn, inputs, specs, argnums = CASES[name]
  f = jax.jit(fn if argnums is None else jax.value_and_grad(fn, argnums=argnums))
  # Compile for each placement explicitly; XLA backend optimisation level 0 halves compile
  # time (the SPMD partitioning, which is what is under test, is unchanged).
  run = lambda args: f.lower(*args).compile(_COMPILER_OPTIONS)(*args)

  sharded = [jax.device_put(x, NamedSharding(mesh, s)) for x, s in zip(inputs, specs)]
  for x, s in zip(sharded, specs):
    if s != P():  # the batch really is split: 8 shards, each holding N / 8 of the batch
      assert len({str(sh.index) for sh in x.addressable_shards}) == 8
  single = [jax.device_put(x, jax.devices()[0]) for x in inputs]

  out_sharded = run(sharded)
  out_single = run(single)
  if argnums is None:
    _close(out_sharded, out_single, f"{name} value")
    return
  (v_sh, g_sh), (v_1, g_1) = out_sharded, out_single
  assert np.isfinite(float(v_1))
  _close(v_sh, v_1, f"{name} value")
  for a, gs, g1 in zip(argnums, g_sh, g_1):
    assert np.all(np.isfinite(np.asarray(g1)))
    _close(gs, g1, f"{name} gradient w.r.t. argument {a}")


def test_per_shard_statistics_would_be_caught(mesh):
  """The comparison above has teeth: Barlow Twins on each device's local batch (then averaged)
  differs from the global-batch loss by far more than the tolerance."""
  z1, z2 = _normal(12, N, D), _normal(13, N, D)
  local = jax.jit(jax.shard_map(lambda a, b: jax.lax.pmean(L.barlow_twins(a, b), B), mesh=mesh,
                                in_specs=(P(B), P(B)), out_specs=P()))
  sharding = NamedSharding(mesh, P(B))
  per_shard = float(local(jax.device_put(z1, sharding), jax.device_put(z2, sharding)))
  global_ = float(jax.jit(L.barlow_twins)(z1, z2))
  assert abs(per_shard - global_) > 100 * 1e-5 * abs(global_), (per_shard, global_)
