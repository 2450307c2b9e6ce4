"""BYOL: the method's contract with the trainer, its EMA target, and that it learns on digits."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import learn_on_digits
from conftest import load_config
from ssljax import losses
from ssljax import methods
from ssljax import schedules


def _setup(tiny_config, **overrides):
  cfg = tiny_config("byol")
  cfg.byol.update(dict(proj_hidden_dims=(32,), proj_dim=16, pred_hidden_dims=(32,), **overrides))
  method = methods.get("byol")(cfg)
  rng = np.random.default_rng(0)
  batch = {"global": rng.normal(size=(8, 2, 8, 8, 1)).astype(np.float32),
           "label": np.zeros(8, np.int32)}
  params, state = method.init(jax.random.key(0), batch)
  return cfg, method, batch, params, state


def _close(a, b, **kw):
  jax.tree_util.tree_map(lambda x, y: np.testing.assert_allclose(x, y, **kw), a, b)


def test_registered_two_views(tiny_config):
  assert "byol" in methods.available()
  _, method, _, params, state = _setup(tiny_config)
  spec = method.view_spec()
  assert spec.global_crops == 2 and spec.local_crops == 0
  assert set(params) == {"backbone", "projector", "predictor"}
  # The target starts equal to the online backbone + projector and has no predictor.
  assert set(state["target"]["params"]) == {"backbone", "projector"}
  _close(state["target"]["params"]["backbone"], params["backbone"])
  _close(state["target"]["params"]["projector"], params["projector"])


def test_loss_is_symmetric_negative_cosine_of_own_outputs(tiny_config):
  _, method, batch, params, state = _setup(tiny_config)
  loss, (metrics, new_state) = method.loss(params, state, batch, jax.random.key(1), 0)
  (q, z), _ = method.forward(params, state, batch, jax.random.key(1))
  assert q.shape == z.shape == (2, 8, 16)
  want = (2 + 2 * losses.negative_cosine(q[0], z[1])) + (2 + 2 * losses.negative_cosine(q[1], z[0]))
  np.testing.assert_allclose(loss, want, rtol=1e-5)
  assert 0.0 <= float(loss) <= 8.0
  assert set(metrics) >= {"embedding_std", "prediction_cosine"}
  # The forward updates BatchNorm statistics (heads have BN) of online and target, not target params.
  assert not np.allclose(new_state["online"]["projector"]["batch_stats"]["bn0"]["mean"],
                         state["online"]["projector"]["batch_stats"]["bn0"]["mean"])
  assert not np.allclose(new_state["target"]["stats"]["projector"]["batch_stats"]["bn0"]["mean"],
                         state["target"]["stats"]["projector"]["batch_stats"]["bn0"]["mean"])
  _close(new_state["target"]["params"], state["target"]["params"])
  feats = method.features(params, state, batch["global"][:, 0])
  assert feats.shape == (8, method.backbone.num_features)
  assert method.embeddings(params, state, batch["global"][:, 0]).shape == (8, 16)


def test_gradients_only_through_online_branch(tiny_config):
  _, method, batch, params, state = _setup(tiny_config)
  # Make the target differ from the online network, so a missing stop_gradient would show.
  state["target"]["params"] = jax.tree_util.tree_map(lambda t: t * 0.5 + 0.01,
                                                     state["target"]["params"])
  g = jax.grad(lambda p: method.loss(p, state, batch, jax.random.key(1), 0)[0])(params)
  for name in ("backbone", "projector", "predictor"):
    assert max(float(jnp.abs(x).max()) for x in jax.tree_util.tree_leaves(g[name])) > 0, name

  def via_target(tp):
    s = {**state, "target": {**state["target"], "params": tp}}
    return method.loss(params, s, batch, jax.random.key(1), 0)[0]

  gt = jax.grad(via_target)(state["target"]["params"])
  assert all(float(jnp.abs(x).max()) == 0 for x in jax.tree_util.tree_leaves(gt))


def test_ema_target_follows_cosine_tau_schedule(tiny_config):
  cfg, method, _, params, state = _setup(tiny_config, tau_base=0.9)
  new_params = jax.tree_util.tree_map(lambda p: p + 1.0, params)
  for step in (0, 3, cfg.total_steps):
    tau = float(schedules.cosine_increase(step, cfg.total_steps, 0.9, 1.0))
    out = method.after_step(new_params, state, jnp.asarray(step))
    want = jax.tree_util.tree_map(lambda t, o: tau * t + (1 - tau) * o, state["target"]["params"],
                                  {"backbone": new_params["backbone"],
                                   "projector": new_params["projector"]})
    _close(out["target"]["params"], want, rtol=1e-6, atol=1e-6)
  assert float(method.momentum(0)) == pytest.approx(0.9)
  assert float(method.momentum(cfg.total_steps)) == pytest.approx(1.0)
  # At the end of training the target no longer moves.
  out = method.after_step(new_params, state, jnp.asarray(cfg.total_steps))
  _close(out["target"]["params"], state["target"]["params"])


def test_bad_tau_is_a_config_error(tiny_config):
  from ssljax import config as config_lib
  cfg = tiny_config("byol")
  cfg.byol.tau_base = 1.5
  with pytest.raises(config_lib.ConfigError, match="tau_base"):
    config_lib.validate(cfg)


def test_real_run_config_is_valid():
  """configs/byol_resnet50_imagenet.py passes validation (data swapped for synthetic: no dataset here)."""
  from ssljax import config as config_lib
  cfg = load_config("byol_resnet50_imagenet")
  assert cfg.method == "byol" and cfg.byol.tau_base == 0.996 and cfg.optimizer.name == "lars"
  cfg.data.source = "synthetic"
  config_lib.validate(cfg)


def test_projector_last_bn_centres_the_batch(tiny_config):
  """proj_last_bn: in training mode each projection dim is zero-mean over the batch (scale-only BN)."""
  _, method, batch, params, state = _setup(tiny_config, proj_last_bn=True)
  assert "bn1" in params["projector"] and "bias" not in params["projector"]["bn1"]
  x = batch["global"][:, 0]
  z, _ = method._encode(params, state["online"], x, jax.random.key(0), train=True)
  np.testing.assert_allclose(jnp.mean(z, axis=0), 0.0, atol=1e-4)
  _, _, _, params_plain, _ = _setup(tiny_config)
  assert "bn1" not in params_plain["projector"]


def test_joint_view_bn_forwards_both_views_as_one_batch(tiny_config):
  """joint_view_bn: BatchNorm statistics over both views; with identical views they equal one view's,
  so the outputs equal the per-view forward's, row for row (the merge / split keeps sample order)."""
  _, per_view, batch, params, state = _setup(tiny_config)
  _, joint, _, _, _ = _setup(tiny_config, joint_view_bn=True)
  rng = np.random.default_rng(1)
  other = rng.normal(size=(8, 8, 8, 1)).astype(np.float32)
  same = {**batch, "global": np.stack([other, other], axis=1)}
  (q_a, z_a), _ = per_view.forward(params, state, same, jax.random.key(1))
  (q_b, z_b), _ = joint.forward(params, state, same, jax.random.key(1))
  _close((q_a, z_a), (q_b, z_b), rtol=1e-4, atol=1e-5)
  # Different views: the statistics are over both, so the outputs differ from the per-view ones.
  (q_a, _), _ = per_view.forward(params, state, batch, jax.random.key(1))
  (q_b, _), _ = joint.forward(params, state, batch, jax.random.key(1))
  assert q_b.shape == q_a.shape == (2, 8, 16) and not np.allclose(q_a, q_b, atol=1e-4)
  loss, (metrics, _) = joint.loss(params, state, batch, jax.random.key(1), 0)
  assert np.isfinite(float(loss)) and 0.0 <= float(loss) <= 8.0


@pytest.mark.slow
def test_digits_learns(tmp_path):
  """configs/byol_digits.py beats the random-init backbone on held-out kNN."""
  result = learn_on_digits(load_config("byol_digits"), tmp_path, margin=0.05)
  assert result["knn_top1"] > 0.8
