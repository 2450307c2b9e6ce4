"""benchmarks/small_images.py: the recipe the lightly side gets, and its torch small CNN."""
import json
import os

import jax
import numpy as np
import pytest

from ssljax import models


def _folder(root):
  from PIL import Image
  for split in ("train", "val"):
    os.makedirs(os.path.join(root, split, "a"), exist_ok=True)
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(os.path.join(root, split, "a", "x.png"))
  return str(root)


@pytest.mark.parametrize("method", ["simclr", "byol", "dino"])
def test_peer_recipe_carries_the_small_config(method, tmp_path):
  from benchmarks import small_images
  config = small_images.load_config(method, _folder(tmp_path), steps=40, batch=16)
  recipe = json.loads(json.dumps(small_images.peer_recipe(config)))
  assert (recipe["method"], recipe["total_steps"], recipe["batch_size"]) == (method, 40, 16)
  assert recipe["widths"] == [32, 64, 128, 256] and recipe["image_size"] == 32
  assert recipe["augment"]["brightness"] == config.data.augment.brightness
  keys = {"simclr": "temperature", "byol": "pred_hidden_dim", "dino": "teacher_temp"}
  assert keys[method] in recipe


def test_torch_small_cnn_matches_ssljax_parameter_count():
  torch = pytest.importorskip("torch")
  from benchmarks._lightly_small_worker import small_cnn
  net = small_cnn([32, 64, 128, 256])
  ours = models.build_backbone(models.default_model_config("small_cnn"))
  variables = ours.init(jax.random.PRNGKey(0), np.zeros((1, 32, 32, 3), np.float32))
  n_ours = sum(int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(variables["params"]))
  assert sum(p.numel() for p in net.parameters()) == n_ours
  assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 256)
