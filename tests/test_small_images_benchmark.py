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
  config.optimizer.lr_scales = "predictor:10" if method == "byol" else "backbone:0.5"
  want = {"predictor": 10.0} if method == "byol" else {"backbone": 0.5}
  assert small_images.peer_recipe(config)["lr_scales"] == want


def test_benchmark_runs_the_recipe_at_the_tasks_image_size(tmp_path):
  """A 64 px task gets the recipe's 64 px settings on both sides, not 32 px views of 64 px files."""
  from benchmarks import small_images
  config = small_images.load_config("dino", _folder(tmp_path), steps=40, batch=16, image_size=64)
  assert config.data.image_size == 64
  assert small_images.peer_recipe(config)["image_size"] == 64


def test_peer_learning_rates_are_ssljaxs_times_the_scale(tmp_path):
  """--peer-lr-scale reaches the lightly worker's per-step learning rates, and only them."""
  from benchmarks import small_images
  from benchmarks.time_to_accuracy import learning_rates
  config = small_images.load_config("simclr", _folder(tmp_path), steps=40, batch=16)
  data = {k: np.zeros(1) for k in ("train_images", "eval_train_x", "eval_eval_x")}
  ours = learning_rates(config)
  assert ours.shape == (40,) and ours.max() > 0
  same = small_images.peer_inputs(config, data)
  scaled = small_images.peer_inputs(config, data, peer_lr_scale=0.5)
  np.testing.assert_allclose(same["lrs"], ours)
  np.testing.assert_allclose(scaled["lrs"], 0.5 * ours)
  assert scaled["recipe"] == same["recipe"]
  with pytest.raises(SystemExit):
    small_images.main(["--peer-lr-scale", "0", "--no-write"])


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


def test_torch_per_image_input_norm_matches_ssljax():
  """The torch side's input_norm='per_image' standardises each image as ssljax's small CNN does."""
  torch = pytest.importorskip("torch")
  from benchmarks._lightly_small_worker import small_cnn
  from ssljax.models.small_cnn import per_image_standardize
  x = np.random.default_rng(0).normal(0.3, 2.0, (3, 8, 8, 3)).astype(np.float32)
  net = small_cnn([4], input_norm="per_image")
  assert len(net) == len(small_cnn([4])) + 1
  theirs = net[0](torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
  ref = (x - x.mean((1, 2, 3), keepdims=True)) / x.std((1, 2, 3), keepdims=True)
  np.testing.assert_allclose(np.asarray(per_image_standardize(x)), ref, atol=1e-5)
  np.testing.assert_allclose(theirs, ref, atol=1e-5)


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
  # lightly learned (0.338 -> 0.400) but not past ssljax's kNN at init: nothing to time either
  early = small_images.parse_curve_line(line.replace("0.327", "0.395").replace("0.476", "0.400"))[2]
  row = dict(zip(small_images.HEADER, small_images.summary_row(task, method, early, 0.267)))
  assert row["ssljax >= target sooner"].startswith("- (ssljax's kNN at step 0 is already")


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
  [(text, result)] = kept[("photo_patches32", "byol")]
  assert result["seed"] == 0                                 # a line from before --seeds
  assert text.endswith("(earlier run: 2026-12-04 22:23, `python -m benchmarks.small_images --steps 40`)")
  assert [p["knn"] for p in result["curves"]["lightly"]] == [0.338, 0.311]
  md.write_text(md.read_text().replace(line, text).replace("date: 2026-12-04 22:23", "date: 2026-12-05 01:00"))
  [(again, _)] = small_images.earlier_curves(str(md))[("photo_patches32", "byol")]
  assert again.count("earlier run") == 1 and "22:23" in again and "01:00" not in again   # kept again


def test_earlier_table_rows_are_copied_as_written(tmp_path):
  """Kept rows are not recomputed from their curve lines (whose seconds are rounded)."""
  from benchmarks import small_images
  cells = ["photo_patches32", "simclr", "0, 1", "0.267", "0.339 / 0.331", "0.467", "0.474", "0.464",
           "45 (step 120)", "57 (step 160)", "70", "72", "yes (no, yes)"]
  md = tmp_path / "B.md"
  md.write_text(f"## {small_images.SECTION}\n\n| " + " | ".join(small_images.HEADER) + " |\n|"
                + "---|" * len(cells) + "\n| " + " | ".join(cells) + " |\n\n## Other\n\n| "
                + " | ".join(["x"] * len(cells)) + " |\n")
  rows = small_images.earlier_rows(str(md))
  assert list(rows) == [("photo_patches32", "simclr")]
  assert rows[("photo_patches32", "simclr")] == cells[:1] + ["simclr (earlier run)"] + cells[2:]


def test_several_seeds_average_into_one_row_with_each_seeds_verdict():
  from benchmarks import small_images
  lines = [("- photo_patches32 dino seed 0: ssljax 0: 0.327 @ 7 s, 300: 0.380 @ 110 s, 600: 0.399 @ 220 s; "
            "lightly 0: 0.338 @ 0 s, 300: 0.390 @ 120 s, 600: 0.419 @ 237 s"),
           ("- photo_patches32 dino seed 1: ssljax 0: 0.325 @ 7 s, 300: 0.352 @ 116 s, 600: 0.370 @ 224 s; "
            "lightly 0: 0.325 @ 0 s, 300: 0.338 @ 111 s, 600: 0.358 @ 225 s")]
  parsed = [small_images.parse_curve_line(line) for line in lines]
  assert [p[2]["seed"] for p in parsed] == [0, 1] and {p[:2] for p in parsed} == {("photo_patches32", "dino")}
  row = dict(zip(small_images.HEADER, small_images.summary_row(
      "photo_patches32", "dino", [p[2] for p in parsed], 0.267)))
  assert row["seeds"] == "0, 1"
  assert row["ssljax kNN"] == "0.385 (0.399, 0.370)"        # (0.399 + 0.370) / 2 = 0.3845
  assert row["lightly kNN"] == "0.388 (0.419, 0.358)"      # 0.3885 in binary floats
  assert row["target (lightly - 0.01)"] == "0.378"
  # mean curves: ssljax 0.366 @ 113 s, 0.3845 @ 222 s; lightly 0.364 @ 115.5 s, 0.3885 @ 231 s
  assert row["ssljax s to target (step)"] == "222 (step 600)"
  assert row["lightly s to target (step)"] == "231 (step 600)"
  assert row["ssljax >= target sooner"] == "yes (no, yes)"  # seed 0 alone misses lightly's 0.409
  legacy = small_images.parse_curve_line(lines[1].replace(" seed 1", "") + " (earlier run: 2026-12-05 "
                                         "07:41, `python -m benchmarks.small_images --seed 3`)")
  assert legacy[2]["seed"] == 3
  bad = dict(parsed[1][2], curves=dict(parsed[1][2]["curves"], ssljax=parsed[1][2]["curves"]["ssljax"][:2]))
  with pytest.raises(ValueError, match="different steps"):
    small_images.summary_row("photo_patches32", "dino", [parsed[0][2], bad], 0.267)


@pytest.mark.parametrize("key, value", [("global_view_blur_prob", (1.0, 0.1)),
                                        ("global_view_solarize_prob", (0.0, 0.2))])
def test_per_view_augmentation_reaches_ssljaxs_views_and_is_refused_for_lightly(key, value,
                                                                               tmp_path):
  """A recipe's per-view overrides shape the benchmark's ssljax views (as the Trainer's, through
  build.view_spec); the lightly worker has one transform for all views, so it refuses them."""
  import jax

  from benchmarks import small_images
  from ssljax import build
  from ssljax import methods as methods_lib
  config = small_images.load_config("byol", _folder(tmp_path), steps=40, batch=16)
  config.data[key] = value
  spec = build.view_spec(methods_lib.get("byol")(config), config, jax.devices())
  name = key.replace("global_view_", "")
  assert spec.view_overrides[0] == ((name, value[0]),)
  assert spec.view_overrides[1] == ((name, value[1]),)
  with pytest.raises(ValueError, match=key):
    small_images.peer_recipe(config)
  config.data[key] = ()
  small_images.peer_recipe(config)                             # unset again: accepted
  config.data.local_view_blur_prob = 0.5
  with pytest.raises(ValueError, match="local_view_blur_prob"):
    small_images.peer_recipe(config)


@pytest.mark.parametrize("method", ["byol", "dino"])
def test_recipe_arg_reaches_both_sides(method, tmp_path):
  """--recipe-arg glyphs: the ssljax config is the recipe's ':glyphs' variant and the lightly
  worker's transform gets the same flips and crops."""
  from benchmarks import small_images
  config = small_images.load_config(method, _folder(tmp_path), steps=40, batch=16,
                                    recipe_arg="glyphs")
  recipe = small_images.peer_recipe(config)
  assert recipe["augment"]["hflip_prob"] == 0.0
  assert recipe["augment"]["crop_scale"] == [0.4, 1.0]
