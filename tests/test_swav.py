"""SwAV: multi-crop views, prototype normalisation and freeze, the queue, and learning on digits."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import learn_on_digits
from conftest import load_config
from ssljax import config as config_lib
from ssljax import losses
from ssljax import methods
from ssljax.methods import swav as swav_lib


def _config(tiny_config, **kw):
  cfg = tiny_config("swav")
  cfg.swav.update(dict(local_crops=2, local_size=4, proj_hidden_dims=(16,), proj_dim=8,
                       num_prototypes=6, freeze_prototypes_steps=3))
  cfg.swav.update(kw)
  return cfg


def _batch(n=16, seed=0):
  rng = np.random.default_rng(seed)
  return {"global": rng.normal(size=(n, 2, 8, 8, 1)).astype(np.float32),
          "local": rng.normal(size=(n, 2, 4, 4, 1)).astype(np.float32),
          "label": np.zeros(n, np.int32)}


def test_multicrop_view_spec_and_validation(tiny_config):
  assert "swav" in methods.available()
  spec = methods.get("swav")(_config(tiny_config, local_scale=(0.1, 0.2))).view_spec()
  assert (spec.global_crops, spec.local_crops, spec.local_size, spec.local_scale) == (2, 2, 4, (0.1, 0.2))
  config_lib.validate(_config(tiny_config, queue_length=32))
  with pytest.raises(config_lib.ConfigError, match="queue_length=24 is not a multiple of config.batch_size=16"):
    config_lib.validate(_config(tiny_config, queue_length=24))
  with pytest.raises(config_lib.ConfigError, match="assign_views"):
    config_lib.validate(_config(tiny_config, assign_views=(0, 2)))
  config_lib.validate(load_config("swav_digits"))


def test_loss_is_swav_loss_of_normalised_scores(tiny_config):
  cfg = _config(tiny_config, temperature=0.2, epsilon=0.1, sinkhorn_iters=4)
  method = methods.get("swav")(cfg)
  batch = _batch()
  params, state = method.init(jax.random.key(0), batch)
  loss, _ = method.loss(params, state, batch, jax.random.key(1), 0)
  z, _ = method.embed(params, state, batch, jax.random.key(1))
  assert z.shape == (4, 16, 8)  # globals then locals
  np.testing.assert_allclose(jnp.linalg.norm(z, axis=-1), 1.0, rtol=1e-5)
  kernel = params["prototypes"]["kernel"]
  kernel = kernel / jnp.linalg.norm(kernel, axis=0, keepdims=True)
  scores = jnp.einsum("vne,ek->vnk", z, kernel)
  np.testing.assert_allclose(loss, losses.swav_loss(scores, (0, 1), 0.2, 0.1, 4), rtol=1e-5)
  # Collapse diagnostics: entropies of view 0's codes and predictions, in [0, log K].
  _, (metrics, _) = method.loss(params, state, batch, jax.random.key(1), 0)
  for key in ("code_entropy", "pred_entropy", "mean_pred_entropy"):
    assert 0.0 <= float(metrics[key]) <= np.log(6) + 1e-5, key
  s0 = scores[0]
  np.testing.assert_allclose(metrics["score_spread"], jnp.mean(s0.max(-1) - s0.min(-1)), rtol=1e-5)
  # Prototypes are used normalised: rescaling each one changes nothing.
  scaled = dict(params, prototypes={"kernel": params["prototypes"]["kernel"] * jnp.arange(1.0, 7.0)})
  np.testing.assert_allclose(method.loss(scaled, state, batch, jax.random.key(1), 0)[0], loss, rtol=1e-5)


def test_prototypes_frozen_then_trained(tiny_config):
  method = methods.get("swav")(_config(tiny_config, freeze_prototypes_steps=3))
  batch = _batch()
  params, state = method.init(jax.random.key(0), batch)
  grads = jax.grad(lambda p: method.loss(p, state, batch, jax.random.key(1), 0)[0])(params)
  assert float(jnp.abs(grads["prototypes"]["kernel"]).max()) > 0
  # Gradient through the normalisation is tangential: orthogonal to each prototype.
  k = params["prototypes"]["kernel"]
  np.testing.assert_allclose(jnp.sum(grads["prototypes"]["kernel"] * k, axis=0), 0.0, atol=1e-6)
  for step, frozen in ((0, True), (2, True), (3, False)):
    out = method.transform_grads(grads, state, jnp.asarray(step))
    assert (float(jnp.abs(out["prototypes"]["kernel"]).max()) == 0.0) == frozen, step
    jax.tree_util.tree_map(np.testing.assert_array_equal, out["backbone"], grads["backbone"])
    jax.tree_util.tree_map(np.testing.assert_array_equal, out["head"], grads["head"])


def test_queue_fills_newest_first_and_joins_sinkhorn_when_full(tiny_config):
  cfg = _config(tiny_config, queue_length=32, queue_start_step=5)
  method = methods.get("swav")(cfg)
  batch = _batch()
  params, state = method.init(jax.random.key(0), batch)
  assert state["queue"].shape == (32, 2, 8) and int(state["queue_count"]) == 0
  no_queue = methods.get("swav")(_config(tiny_config))

  # Before queue_start_step: no fill, and the loss is plain swav_loss.
  loss, (metrics, s) = method.loss(params, state, batch, jax.random.key(1), jnp.asarray(4))
  assert int(s["queue_count"]) == 0 and float(jnp.abs(s["queue"]).max()) == 0.0
  np.testing.assert_allclose(loss, no_queue.loss(params, state, batch, jax.random.key(1), 4)[0], rtol=1e-6)
  assert float(metrics["queue_in_use"]) == 0.0

  # Filling: the assignment views' embeddings enter at the front, older rows shift back.
  z, _ = method.embed(params, state, batch, jax.random.key(1))
  _, (_, s1) = method.loss(params, state, batch, jax.random.key(1), jnp.asarray(5))
  np.testing.assert_allclose(s1["queue"][:16], jnp.stack([z[0], z[1]], axis=1), rtol=1e-6)
  assert int(s1["queue_count"]) == 16
  batch2 = _batch(seed=1)  # other images: the queue then differs from the batch
  _, (_, s2) = method.loss(params, s1, batch2, jax.random.key(1), jnp.asarray(6))
  np.testing.assert_allclose(s2["queue"][16:], s1["queue"][:16])
  assert int(s2["queue_count"]) == 32

  # Full: codes from Sinkhorn over [queue; batch], keeping the batch rows.
  loss3, (metrics3, s3) = method.loss(params, s2, batch, jax.random.key(1), jnp.asarray(7))
  assert float(metrics3["queue_in_use"]) == 1.0 and int(s3["queue_count"]) == 32
  kernel = swav_lib.normalize_prototypes(params["prototypes"]["kernel"])
  scores = jnp.einsum("vne,ek->vnk", z, kernel)
  codes = {a: losses.sinkhorn_knopp(jnp.concatenate([s2["queue"][:, a] @ kernel, scores[a]]),
                                    cfg.swav.epsilon, cfg.swav.sinkhorn_iters)[-16:] for a in (0, 1)}
  np.testing.assert_allclose(loss3, swav_lib.swapped_prediction(scores, codes, cfg.swav.temperature),
                             rtol=1e-5)
  # swapped_prediction with the batch's own codes is swav_loss (same formula).
  own = {a: losses.sinkhorn_knopp(scores[a], cfg.swav.epsilon, cfg.swav.sinkhorn_iters) for a in (0, 1)}
  np.testing.assert_allclose(swav_lib.swapped_prediction(scores, own, cfg.swav.temperature),
                             losses.swav_loss(scores, (0, 1), cfg.swav.temperature, cfg.swav.epsilon,
                                              cfg.swav.sinkhorn_iters), rtol=1e-6)
  assert abs(float(loss3) - float(loss)) > 1e-6


@pytest.mark.slow
def test_digits_learns(tmp_path):
  """configs/swav_digits.py beats the random-init backbone on held-out kNN."""
  config = load_config("swav_digits")
  config.eval.linear_epochs = 20
  result = learn_on_digits(config, tmp_path, margin=0.05)
  assert result["knn_top1"] > 0.8
