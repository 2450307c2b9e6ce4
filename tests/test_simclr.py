"""SimCLR: the method's contract with the trainer, and that it learns on digits."""
import jax
import numpy as np
import pytest

from conftest import learn_on_digits
from conftest import load_config
from ssljax import losses
from ssljax import methods


def test_registered_and_one_line_switch(tiny_config):
  assert "simclr" in methods.available()
  cfg = tiny_config()
  method = methods.get("simclr")(cfg)
  spec = method.view_spec()
  assert spec.global_crops == 2 and spec.local_crops == 0


def test_loss_is_nt_xent_of_projections(tiny_config):
  cfg = tiny_config()
  method = methods.get("simclr")(cfg)
  rng = np.random.default_rng(0)
  batch = {"global": rng.normal(size=(8, 2, 8, 8, 1)).astype(np.float32),
           "label": np.zeros(8, np.int32)}
  params, state = method.init(jax.random.key(0), batch)
  loss, (metrics, _) = method.loss(params, state, batch, jax.random.key(1), 0)
  # Recompute from the two views projected together in train mode (shared BatchNorm statistics).
  z, _ = method._project(params, state, batch["global"].reshape(16, 8, 8, 1), jax.random.key(1), True)
  z = np.asarray(z).reshape(8, 2, -1)
  np.testing.assert_allclose(loss, losses.nt_xent(z[:, 0], z[:, 1], cfg.simclr.temperature), rtol=1e-5)
  assert set(metrics) >= {"embedding_std", "positive_cosine"}
  feats = method.features(params, state, batch["global"][:, 0])
  assert feats.shape == (8, method.backbone.num_features)


def test_proj_last_bn_standardises_the_projection(tiny_config):
  """proj_last_bn=True: SimCLR v2's (and lightly's) BatchNorm on the output layer, scale only; the
  default head has none."""
  rng = np.random.default_rng(0)
  batch = {"global": rng.normal(size=(16, 2, 8, 8, 1)).astype(np.float32),
           "label": np.zeros(16, np.int32)}
  heads = {}
  for last_bn in (False, True):
    cfg = tiny_config()
    cfg.simclr.proj_last_bn = last_bn
    method = methods.get("simclr")(cfg)
    params, state = method.init(jax.random.key(0), batch)
    z, _ = method._project(params, state, batch["global"].reshape(32, 8, 8, 1), jax.random.key(1), True)
    heads[last_bn] = (params["head"], np.asarray(z))
  n = len(tiny_config().simclr.proj_hidden_dims)
  assert f"bn{n}" not in heads[False][0]
  assert set(heads[True][0][f"bn{n}"]) == {"scale"}           # no shift, as MLPHead's last_bn
  z = heads[True][1]
  np.testing.assert_allclose(z.mean(0), 0.0, atol=1e-4)       # batch statistics in train mode
  np.testing.assert_allclose(z.std(0), 1.0, atol=1e-2)
  assert np.abs(heads[False][1].std(0) - 1.0).max() > 0.05


@pytest.mark.slow
def test_quickstart_learns(tmp_path):
  """The README quickstart config itself: beats the random-init backbone on held-out kNN."""
  result = learn_on_digits(load_config("simclr_digits"), tmp_path, margin=0.05)
  assert result["linear_top1"] > 0.85
