"""SupCon: the method reads labels, its loss is ssljax.losses.supcon of its projections, it learns."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import learn_on_digits
from conftest import load_config
from ssljax import losses
from ssljax import methods


def _setup(tiny_config):
  cfg = tiny_config("supcon")
  cfg.supcon.update(dict(proj_hidden_dims=(32,), proj_dim=16))
  method = methods.get("supcon")(cfg)
  rng = np.random.default_rng(0)
  batch = {"global": rng.normal(size=(8, 2, 8, 8, 1)).astype(np.float32),
           "label": np.asarray([0, 1, 2, 0, 1, 2, 3, 3], np.int32)}
  params, state = method.init(jax.random.key(0), batch)
  return cfg, method, batch, params, state


def test_registered_two_views(tiny_config):
  assert "supcon" in methods.available()
  _, method, _, _, _ = _setup(tiny_config)
  spec = method.view_spec()
  assert spec.global_crops == 2 and spec.local_crops == 0


def test_loss_is_supcon_of_projections_with_labels(tiny_config):
  cfg, method, batch, params, state = _setup(tiny_config)
  loss, (metrics, _) = method.loss(params, state, batch, jax.random.key(1), 0)
  z, _ = method._project(params, state, batch["global"].reshape(16, 8, 8, 1), jax.random.key(1), True)
  z = np.asarray(z).reshape(8, 2, -1).transpose(1, 0, 2)      # [V, B, E]
  np.testing.assert_allclose(loss, losses.supcon(z, batch["label"], cfg.supcon.temperature),
                             rtol=1e-5)
  assert set(metrics) >= {"embedding_std", "positive_cosine"}
  assert method.features(params, state, batch["global"][:, 0]).shape == (8, method.backbone.num_features)


def test_labels_change_the_loss_and_are_required(tiny_config):
  _, method, batch, params, state = _setup(tiny_config)
  a = method.loss(params, state, batch, jax.random.key(1), 0)[0]
  distinct = {**batch, "label": np.arange(8, dtype=np.int32)}      # SimCLR-like: only the other view
  b = method.loss(params, state, distinct, jax.random.key(1), 0)[0]
  assert abs(float(a) - float(b)) > 1e-3
  with pytest.raises(ValueError, match="label"):
    method.loss(params, state, {"global": batch["global"]}, jax.random.key(1), 0)


def test_gradient_pulls_same_label_together(tiny_config):
  """One step of gradient descent on the projections raises same-label cosine similarity."""
  cfg, method, batch, params, state = _setup(tiny_config)
  z, _ = method._project(params, state, batch["global"].reshape(16, 8, 8, 1), jax.random.key(1), True)
  z = jnp.asarray(z).reshape(8, 2, -1).transpose(1, 0, 2)
  lab = batch["label"]

  def same_label_cos(z):
    f = losses.l2_normalize(z.reshape(16, -1))
    l2 = np.tile(lab, 2)
    mask = (l2[:, None] == l2[None, :]) & ~np.eye(16, dtype=bool)
    return jnp.sum(jnp.where(mask, f @ f.T, 0.0)) / mask.sum()

  g = jax.grad(lambda z: losses.supcon(z, lab, cfg.supcon.temperature))(z)
  assert float(same_label_cos(z - 0.5 * g)) > float(same_label_cos(z))


def test_real_run_config_is_valid():
  """configs/supcon_resnet18_cifar10.py passes validation (data swapped for synthetic: no dataset here)."""
  from ssljax import config as config_lib
  cfg = load_config("supcon_resnet18_cifar10")
  assert cfg.method == "supcon" and cfg.supcon.temperature == 0.1
  cfg.data.source = "synthetic"
  config_lib.validate(cfg)


@pytest.mark.slow
def test_digits_learns(tmp_path):
  """configs/supcon_digits.py (supervised) beats the random-init backbone on held-out kNN by far."""
  result = learn_on_digits(load_config("supcon_digits"), tmp_path, margin=0.1)   # measured 0.919
  assert result["knn_top1"] > 0.88


@pytest.mark.parametrize("impl", ["xla", "pallas"])
def test_tiled_supcon_matches_reference_value_and_grad(impl):
  """The O(N)-memory supcon (tiled row logsumexp + per-label sums) equals the full-matrix one, with
  arbitrary label values, a label seen once (an anchor with no positives) and N off the tiles."""
  rng = np.random.default_rng(1)
  z = jnp.asarray(rng.normal(size=(2, 37, 24)), jnp.float32)
  labels = jnp.asarray(np.concatenate([rng.choice([-3, 7, 100, 2], size=36), [55]]), jnp.int32)

  def f(impl_):
    return jax.value_and_grad(lambda x: losses.supcon(x, labels, 0.2, impl=impl_))(z)

  (v_ref, g_ref), (v, g) = f("reference"), f(impl)
  np.testing.assert_allclose(float(v), float(v_ref), rtol=1e-5)
  np.testing.assert_allclose(np.asarray(g), np.asarray(g_ref), rtol=1e-4, atol=1e-6)


def test_loss_impl_is_validated(tiny_config):
  from ssljax import config as config_lib
  cfg = tiny_config("supcon")
  cfg.supcon.loss_impl = "cuda"
  with pytest.raises(config_lib.ConfigError, match=r"config.supcon.loss_impl='cuda'; expected one of"):
    config_lib.validate(cfg)
