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
  # The crops the ssljax side's views are cut with (DINO's global crops have their own scale).
  scale = config.dino.global_crops_scale if method == "dino" else config.data.augment.crop_scale
  assert recipe["augment"]["crop_scale"] == [float(x) for x in scale]
  if method == "byol":
    assert recipe["joint_view_bn"] is config.byol.joint_view_bn


def test_benchmark_runs_the_recipe_at_the_tasks_image_size(tmp_path):
  """A 64 px task gets the recipe's 64 px settings on both sides, not 32 px views of 64 px files."""
  from benchmarks import small_images
  config = small_images.load_config("dino", _folder(tmp_path), steps=40, batch=16, image_size=64)
  assert config.data.image_size == 64
  assert small_images.peer_recipe(config)["image_size"] == 64


@pytest.mark.parametrize("method, key, value", [
    ("simclr", "proj_last_bn", False), ("byol", "proj_last_bn", True),
    ("dino", "local_crops", 2)])
def test_peer_recipe_refuses_a_network_lightly_does_not_build(method, key, value, tmp_path):
  from benchmarks import small_images
  config = small_images.load_config(method, _folder(tmp_path), steps=40, batch=16)
  config[method][key] = value
  with pytest.raises(ValueError, match=key):
    small_images.peer_recipe(config)


def test_torch_small_cnn_matches_ssljax_parameter_count():
  torch = pytest.importorskip("torch")
  from benchmarks._lightly_small_worker import small_cnn
  net = small_cnn([32, 64, 128, 256])
  ours = models.build_backbone(models.default_model_config("small_cnn"))
  variables = ours.init(jax.random.PRNGKey(0), np.zeros((1, 32, 32, 3), np.float32))
  n_ours = sum(int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(variables["params"]))
  assert sum(p.numel() for p in net.parameters()) == n_ours
  assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 256)


def test_summary_times_only_trained_points_and_flags_no_learning():
  from benchmarks import small_images
  line = ("- photo_patches32 simclr: ssljax 0: 0.327 @ 16 s, 40: 0.351 @ 47 s, 200: 0.470 @ 189 s; "
          "lightly 0: 0.338 @ 0 s, 40: 0.431 @ 52 s, 200: 0.476 @ 312 s")
  task, method, result = small_images.parse_curve_line(line)
  row = dict(zip(small_images.HEADER, small_images.summary_row(task, method, result, 0.267)))
  assert (task, method, row["target (lightly - 0.01)"]) == ("photo_patches32", "simclr", "0.466")
  assert row["ssljax s to target (step)"] == "189 (step 200)"
  assert row["lightly s to target (step)"] == "312 (step 200)"
  assert row["ssljax >= target sooner"] == "yes"
  flat = small_images.parse_curve_line(line.replace("0.431", "0.300").replace("0.476", "0.310"))[2]
  row = dict(zip(small_images.HEADER, small_images.summary_row(task, method, flat, 0.267)))
  assert row["ssljax >= target sooner"].startswith("- (lightly did not learn")
  assert small_images.parse_curve_line("photo_patches32 simclr") is None


def test_earlier_rows_keep_the_run_that_measured_them(tmp_path):
  """A run of some methods keeps the section's other rows, each curve line naming its own run."""
  from benchmarks import small_images
  line = ("- photo_patches32 byol: ssljax 0: 0.327 @ 13 s, 40: 0.286 @ 47 s; "
          "lightly 0: 0.338 @ 0 s, 40: 0.311 @ 82 s")
  md = tmp_path / "B.md"
  md.write_text(f"# B\n\n## {small_images.SECTION}\n\n- date: 2026-12-04 22:23\n- command: python -m "
                f"benchmarks.small_images --steps 40\n\n| t |\n|---|\n\n{line}\n\n## Other\n\n"
                "- photo_patches32 dino: ssljax 0: 0.1 @ 1 s; lightly 0: 0.2 @ 1 s\n")
  kept = small_images.earlier_curves(str(md))
  assert list(kept) == [("photo_patches32", "byol")]          # not the other section's line
  text, result = kept[("photo_patches32", "byol")]
  assert text.endswith("(earlier run: 2026-12-04 22:23, `python -m benchmarks.small_images --steps 40`)")
  assert [p["knn"] for p in result["curves"]["lightly"]] == [0.338, 0.311]
  md.write_text(md.read_text().replace(line, text).replace("date: 2026-12-04 22:23", "date: 2026-12-05 01:00"))
  again, _ = small_images.earlier_curves(str(md))[("photo_patches32", "byol")]
  assert again.count("earlier run") == 1 and "22:23" in again and "01:00" not in again   # kept again
