"""SimSiam: the method's contract with the trainer, its stop-gradient, and that it learns on digits."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import learn_on_digits
from conftest import load_config
from ssljax import losses
from ssljax import methods


def _setup(tiny_config):
  cfg = tiny_config("simsiam")
  cfg.simsiam.update(dict(proj_hidden_dims=(32, 32), proj_dim=16, pred_hidden_dims=(8,)))
  method = methods.get("simsiam")(cfg)
  rng = np.random.default_rng(0)
  batch = {"global": rng.normal(size=(8, 2, 8, 8, 1)).astype(np.float32),
           "label": np.zeros(8, np.int32)}
  params, state = method.init(jax.random.key(0), batch)
  return method, batch, params, state


def test_registered_two_views_no_target(tiny_config):
  assert "simsiam" in methods.available()
  method, _, params, state = _setup(tiny_config)
  spec = method.view_spec()
  assert spec.global_crops == 2 and spec.local_crops == 0
  assert set(params) == {"backbone", "projector", "predictor"}
  assert set(state) == {"backbone", "projector", "predictor"}   # no momentum encoder
  assert "bn2" in params["projector"]                             # BN on the projector output


def test_loss_is_half_symmetric_negative_cosine(tiny_config):
  method, batch, params, state = _setup(tiny_config)
  loss, (metrics, new_state) = method.loss(params, state, batch, jax.random.key(1), 0)
  (p, z), _ = method.forward(params, state, batch, jax.random.key(1))
  assert p.shape == z.shape == (2, 8, 16)
  want = 0.5 * (losses.negative_cosine(p[0], z[1]) + losses.negative_cosine(p[1], z[0]))
  np.testing.assert_allclose(loss, want, rtol=1e-5)
  assert -1.0 <= float(loss) <= 1.0
  assert "embedding_std" in metrics
  assert not np.allclose(new_state["projector"]["batch_stats"]["bn0"]["mean"],
                         state["projector"]["batch_stats"]["bn0"]["mean"])
  assert method.features(params, state, batch["global"][:, 0]).shape == (8, method.backbone.num_features)
  assert method.embeddings(params, state, batch["global"][:, 0]).shape == (8, 16)


def test_stop_gradient_on_targets(tiny_config):
  """The gradient equals that of the loss with z held constant, and differs from the no-sg one."""
  method, batch, params, state = _setup(tiny_config)
  (_, z), _ = method.forward(params, state, batch, jax.random.key(1))
  z = np.asarray(z)

  def with_fixed_targets(prm):
    (p, _), _ = method.forward(prm, state, batch, jax.random.key(1))
    return 0.5 * (losses.negative_cosine(p[0], z[1]) + losses.negative_cosine(p[1], z[0]))

  def without_sg(prm):
    (p, zz), _ = method.forward(prm, state, batch, jax.random.key(1))
    return 0.5 * (losses.negative_cosine(p[0], zz[1]) + losses.negative_cosine(p[1], zz[0]))

  g = jax.grad(lambda prm: method.loss(prm, state, batch, jax.random.key(1), 0)[0])(params)
  g_fixed = jax.grad(with_fixed_targets)(params)
  g_nosg = jax.grad(without_sg)(params)
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7),
                         g, g_fixed)
  diff = max(float(jnp.abs(a - b).max()) for a, b in zip(jax.tree_util.tree_leaves(g),
                                                          jax.tree_util.tree_leaves(g_nosg)))
  assert diff > 1e-6
  assert max(float(jnp.abs(x).max()) for x in jax.tree_util.tree_leaves(g["backbone"])) > 0


def test_real_run_config_is_valid():
  """configs/simsiam_resnet18_cifar10.py passes validation (data swapped for synthetic: no dataset here)."""
  from ssljax import config as config_lib
  cfg = load_config("simsiam_resnet18_cifar10")
  assert cfg.method == "simsiam" and cfg.simsiam.pred_hidden_dims == (512,) and cfg.optimizer.name == "sgd"
  cfg.data.source = "synthetic"
  config_lib.validate(cfg)


@pytest.mark.slow
def test_digits_learns(tmp_path):
  """configs/simsiam_digits.py beats the random-init backbone on held-out kNN, without collapse."""
  result = learn_on_digits(load_config("simsiam_digits"), tmp_path, margin=0.04)  # gains per seed: configs/simsiam_digits.py
  assert result["knn_top1"] > 0.8
