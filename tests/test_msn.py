"""MSN: masked anchors, EMA target, prototypes outside weight decay, and learning on digits."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import learn_on_digits
from conftest import load_config
from ssljax import config as config_lib
from ssljax import losses
from ssljax import methods
from ssljax import optim
from ssljax.methods import msn as msn_lib


def _config(tiny_config, **kw):
  cfg = tiny_config("msn")
  cfg.msn.update(dict(local_crops=2, local_size=4, proj_hidden_dims=(16,), proj_dim=8,
                      num_prototypes=6, mask_ratio=0.5))
  cfg.msn.update(kw)
  return cfg


def _batch(n=16):
  rng = np.random.default_rng(0)
  return {"global": rng.normal(size=(n, 2, 8, 8, 1)).astype(np.float32),
          "local": rng.normal(size=(n, 2, 4, 4, 1)).astype(np.float32),
          "label": np.zeros(n, np.int32)}


def test_views_and_validation(tiny_config):
  assert "msn" in methods.available()
  spec = methods.get("msn")(_config(tiny_config)).view_spec()
  assert (spec.global_crops, spec.local_crops, spec.local_size) == (2, 2, 4)
  with pytest.raises(config_lib.ConfigError, match="model.name='resnet'"):
    config_lib.validate(_config(lambda m: tiny_config(m, "resnet")))
  with pytest.raises(config_lib.ConfigError, match="local_size=6 is not a multiple"):
    config_lib.validate(_config(tiny_config, local_size=6))
  config_lib.validate(load_config("msn_digits"))


def test_random_keep_indices():
  keep = msn_lib.random_keep_indices(jax.random.key(0), 64, 16, msn_lib.num_kept(16, 0.3))
  assert keep.shape == (64, 11)  # floor(16 * 0.7), as the reference's patch drop
  keep = np.asarray(keep)
  assert (np.diff(keep, axis=1) > 0).all() and keep.min() >= 0 and keep.max() < 16
  assert len({tuple(r) for r in keep}) > 32  # drawn per image
  assert msn_lib.num_kept(4, 0.9) == 1


def test_loss_is_msn_loss_of_masked_anchors_and_ema_target(tiny_config):
  cfg = _config(tiny_config, temperature=0.2, sharpen_temperature=0.5, me_max_weight=0.7,
                sinkhorn_iters=2)
  method = methods.get("msn")(cfg)
  batch = _batch()
  params, state = method.init(jax.random.key(0), batch)
  # Perturb the target so that target and online encoders differ.
  state = dict(state, target_params=jax.tree_util.tree_map(lambda x: x * 0.9, state["target_params"]))
  loss, (metrics, new_state) = method.loss(params, state, batch, jax.random.key(1), 0)
  # Collapse diagnostics are entropies in [0, log K]; the sharpened target is sharper than the
  # anchor predictions of the same (unsharpened) logits would be on average.
  for key in ("anchor_entropy", "mean_anchor_entropy", "target_entropy"):
    assert 0.0 <= float(metrics[key]) <= np.log(6) + 1e-5, key
  assert float(metrics["mean_anchor_entropy"]) >= float(metrics["anchor_entropy"]) - 1e-5
  t_rng, a_rng = jax.random.split(jax.random.key(1))
  target, _ = method._encode(state["target_params"], state["target"], batch["global"][:, 0], t_rng, True)
  anchor, _ = method.anchors(params, state, batch, a_rng)
  assert anchor.shape == (3, 16, 8)  # (1 masked global + 2 focal) views, on their own axis
  expected = losses.msn_loss(anchor, target, params["prototypes"].reshape(6, 8), 0.2, 0.5, 0.7, 2)
  np.testing.assert_allclose(loss, expected, rtol=1e-5)
  # The anchor view 0 is the second global crop encoded from its kept patches only.
  p = cfg.model.patch_size
  g_key = jax.random.split(a_rng, 2)[0]
  m_rng, e_rng = jax.random.split(g_key)
  keep = msn_lib.random_keep_indices(m_rng, 16, (8 // p) ** 2, msn_lib.num_kept(4, 0.5))
  z, _ = method._encode(params, state["online"], batch["global"][:, 1], e_rng, True, keep_indices=keep)
  np.testing.assert_allclose(anchor[0], z, rtol=1e-5)
  # Both encoders' BatchNorm statistics moved.
  assert not np.allclose(new_state["target"]["projector"]["batch_stats"]["bn0"]["mean"], 0.0)
  assert not np.allclose(new_state["online"]["projector"]["batch_stats"]["bn0"]["mean"], 0.0)


def test_gradients_only_to_online_params(tiny_config):
  method = methods.get("msn")(_config(tiny_config))
  batch = _batch()
  params, state = method.init(jax.random.key(0), batch)
  grads = jax.grad(lambda p: method.loss(p, state, batch, jax.random.key(1), 0)[0])(params)
  for part in ("backbone", "projector", "prototypes"):
    assert float(optim_norm(grads[part])) > 0, part
  # The target gets no gradient: differentiating w.r.t. the state's target params gives zero.
  def loss_of_target(tp):
    return method.loss(params, dict(state, target_params=tp), batch, jax.random.key(1), 0)[0]
  assert float(optim_norm(jax.grad(loss_of_target)(state["target_params"]))) == 0.0
  # Prototypes are 1-D params: the optimizer applies neither weight decay nor the LARS trust ratio.
  assert params["prototypes"].ndim == 1 and not optim.decay_mask(params)["prototypes"]


def optim_norm(tree):
  return jnp.sqrt(sum(jnp.sum(jnp.square(g)) for g in jax.tree_util.tree_leaves(tree)))


def test_ema_target_update_and_schedule(tiny_config):
  cfg = _config(tiny_config)
  cfg.total_steps = 100
  method = methods.get("msn")(cfg)
  params, state = method.init(jax.random.key(0), _batch())
  np.testing.assert_allclose(method.momentum(0), 0.996)
  np.testing.assert_allclose(method.momentum(50), 0.996 + 0.004 * 50 / 125, rtol=1e-6)
  np.testing.assert_allclose(method.momentum(125), 1.0)
  moved = jax.tree_util.tree_map(lambda x: x + 1.0, params)
  new = method.after_step(moved, state, jnp.asarray(50))
  m = float(method.momentum(50))
  jax.tree_util.tree_map(
      lambda t, o, n: np.testing.assert_allclose(n, m * t + (1 - m) * o, rtol=1e-6, atol=1e-7),
      state["target_params"], {"backbone": moved["backbone"], "projector": moved["projector"]},
      new["target_params"])
  # Features are the target encoder's (what the reference evaluates).
  x = _batch()["global"][:, 0]
  f_target = method.features(params, new, x)
  f_online = methods.get("msn")(_config(tiny_config, eval_target=False)).features(params, new, x)
  assert not np.allclose(f_target, f_online)


@pytest.mark.slow
def test_digits_learns(tmp_path):
  """configs/msn_digits.py beats the random-init backbone on held-out kNN."""
  config = load_config("msn_digits")
  config.eval.linear_epochs = 20
  learn_on_digits(config, tmp_path, margin=0.05)
