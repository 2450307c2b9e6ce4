"""NNCLR: contract, nearest-neighbour positives, the support queue as train state, learning."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import learn_on_digits
from conftest import load_config
from ssljax import losses
from ssljax import methods
from ssljax.methods import nnclr


def _setup(tiny_config, **overrides):
  cfg = tiny_config("nnclr")
  cfg.batch_size = 8
  cfg.nnclr.update(dict(proj_hidden_dims=(32, 32), proj_dim=16, pred_hidden_dims=(32,),
                        queue_size=24, **overrides))
  method = methods.get("nnclr")(cfg)
  rng = np.random.default_rng(0)
  batch = {"global": rng.normal(size=(8, 2, 8, 8, 1)).astype(np.float32),
           "label": np.zeros(8, np.int32)}
  params, state = method.init(jax.random.key(0), batch)
  return cfg, method, batch, params, state


def test_registered_and_queue_in_state(tiny_config):
  assert "nnclr" in methods.available()
  _, method, _, _, state = _setup(tiny_config)
  spec = method.view_spec()
  assert spec.global_crops == 2 and spec.local_crops == 0
  assert state["queue"].shape == (24, 16) and state["queue"].dtype == jnp.float32
  np.testing.assert_allclose(jnp.linalg.norm(state["queue"], axis=-1), 1.0, rtol=1e-5)
  assert int(state["queue_ptr"]) == 0


def test_nearest_neighbour_and_enqueue_numpy():
  rng = np.random.default_rng(1)
  queue = np.asarray(losses.l2_normalize(rng.normal(size=(12, 5)).astype(np.float32)))
  z = rng.normal(size=(4, 5)).astype(np.float32) * 3.0
  nn, idx = nnclr.nearest_neighbour(z, queue)
  zn = z / np.linalg.norm(z, axis=-1, keepdims=True)
  want = np.argmax(zn @ queue.T, axis=-1)
  np.testing.assert_array_equal(idx, want)
  np.testing.assert_allclose(nn, queue[want])
  q2, ptr = nnclr.enqueue(queue, jnp.asarray(8, jnp.int32), z)
  np.testing.assert_allclose(q2[8:12], zn, rtol=1e-6)          # oldest rows replaced
  np.testing.assert_allclose(q2[:8], queue[:8])                 # the rest untouched
  assert int(ptr) == 0                                          # wraps around


def test_loss_uses_neighbours_of_old_queue_then_enqueues(tiny_config):
  cfg, method, batch, params, state = _setup(tiny_config)
  loss, (metrics, new_state) = method.loss(params, state, batch, jax.random.key(1), 0)
  (z, p), _ = method.forward(params, state["stats"], batch, jax.random.key(1))
  nn1, _ = nnclr.nearest_neighbour(z[0], state["queue"])
  nn2, _ = nnclr.nearest_neighbour(z[1], state["queue"])
  t = cfg.nnclr.temperature
  want = 0.5 * (losses.info_nce(nn1, p[1], t) + losses.info_nce(nn2, p[0], t))
  np.testing.assert_allclose(loss, want, rtol=1e-5)
  assert set(metrics) >= {"embedding_std", "nn_agreement", "nn_cosine"}
  # The current batch's normalised z1 went into rows [0, 8); pointer advanced by the batch.
  np.testing.assert_allclose(new_state["queue"][:8], losses.l2_normalize(z[0]), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(new_state["queue"][8:], state["queue"][8:])
  assert int(new_state["queue_ptr"]) == 8
  # A second and third step fill the queue and wrap the pointer.
  s = new_state
  for step in (1, 2):
    _, (_, s) = method.loss(params, s, batch, jax.random.key(1), step)
  assert int(s["queue_ptr"]) == 0


def test_neighbour_replaces_z1_once_queue_holds_the_batch(tiny_config):
  """With the batch's own z in the queue, NN(z) is z itself (the positive is the neighbour)."""
  _, method, batch, params, state = _setup(tiny_config)
  (z, _), _ = method.forward(params, state["stats"], batch, jax.random.key(1))
  queue, _ = nnclr.enqueue(state["queue"], state["queue_ptr"], z[0])
  nn1, idx = nnclr.nearest_neighbour(z[0], queue)
  np.testing.assert_array_equal(idx, np.arange(8))
  np.testing.assert_allclose(nn1, losses.l2_normalize(z[0]), rtol=1e-5, atol=1e-6)


def test_gradients_flow_through_predictions_not_the_queue(tiny_config):
  _, method, batch, params, state = _setup(tiny_config, loss_impl="xla")
  g = jax.grad(lambda p: method.loss(p, state, batch, jax.random.key(1), 0)[0])(params)
  for name in ("backbone", "projector", "predictor"):
    assert max(float(jnp.abs(x).max()) for x in jax.tree_util.tree_leaves(g[name])) > 0, name
  gq = jax.grad(lambda q: method.loss(params, {**state, "queue": q}, batch, jax.random.key(1), 0)[0])(
      state["queue"])
  assert float(jnp.abs(gq).max()) == 0


def test_queue_size_must_be_a_multiple_of_the_batch(tiny_config):
  from ssljax import config as config_lib
  cfg = tiny_config("nnclr")
  cfg.nnclr.queue_size = cfg.batch_size * 3 + 1
  with pytest.raises(config_lib.ConfigError, match="queue_size"):
    config_lib.validate(cfg)


def test_real_run_config_is_valid():
  """configs/nnclr_resnet50_imagenet.py passes validation (data swapped for synthetic: no dataset here)."""
  from ssljax import config as config_lib
  cfg = load_config("nnclr_resnet50_imagenet")
  assert cfg.method == "nnclr" and cfg.nnclr.queue_size % cfg.batch_size == 0 and cfg.nnclr.temperature == 0.1
  cfg.data.source = "synthetic"
  config_lib.validate(cfg)


@pytest.mark.slow
def test_digits_learns(tmp_path):
  """configs/nnclr_digits.py beats the random-init backbone on held-out kNN.

  Gains per seed in configs/nnclr_digits.py (the queue holds random vectors for the first 8 steps).
  """
  result = learn_on_digits(load_config("nnclr_digits"), tmp_path, margin=0.04)
  assert result["knn_top1"] > 0.8
