"""One declared backbone per method: kNN, fine-tuning, export and load_backbone use the same one.

`Method.pretrained_backbone(params, state)` is the definition; these tests check, for every
registered method, that the features of the online kNN (jitted `Method.features`), of the
fine-tuning start (`ssljax.evaluate.finetune.classifier_start`), of the export files and of
`ssljax.load_backbone` are the same array, on a state whose student has moved away from its EMA
teacher (as after training).
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ssljax
from conftest import make_tiny_config
from ssljax import export, methods
from ssljax.data import pipeline
from ssljax.evaluate import finetune as ft
from ssljax.evaluate import online
from ssljax.evaluate.backbone import backbone_of

# Small heads, no local crops: a few seconds per method.
_SMALL = dict(proj_hidden_dims=(32,), proj_dim=16, pred_hidden_dims=(32,),
              expander_hidden_dims=(32,), expander_dim=16, out_dim=64, patch_out_dim=64,
              hidden_dim=32, bottleneck_dim=16, num_prototypes=32, local_crops=0, queue_size=32, w_size=16, decoder_width=16,
              decoder_depth=1, decoder_heads=2, decoder_layers=1, decoder_groups=4, num_masks=2,
              predictor_width=16, predictor_depth=1, predictor_heads=2, mask="random",
              mask_ratio=0.5)


IMAGE_TEXT = ("clip", "siglip", "lit")


def _config(name, model="vit"):
  c = make_tiny_config(name, model)
  if name in IMAGE_TEXT:   # the synthetic records carry a caption (the tokenizer trains on them)
    c.data.source = "synthetic"
  block = c[name]
  for key, value in _SMALL.items():
    if key in block and not (name == "wmse" and key == "proj_dim"):
      block[key] = value
  if name == "wmse":
    block.proj_dim = 8
  return c


def _batch(method, config, n=16):
  spec = method.view_spec()
  make = pipeline.MakeViews(spec, config.data.augment)
  rng = np.random.default_rng(0)
  records = [make({"image": rng.integers(0, 255, (8, 8, 1), np.uint8), "label": i % 10,
                   "texts": (f"a synthetic image of class {i % 10}",)},
                  np.random.default_rng(i)) for i in range(n)]
  return {k: jnp.asarray(np.stack([np.asarray(r[k]) for r in records])) for k in records[0]}


def _trained_like(method, config):
  """(params, state) after init, with the student moved off its init and one `after_step`, so that
  an EMA teacher differs from the student as it does after training."""
  batch = _batch(method, config)
  params, state = method.init(jax.random.key(0), batch)
  leaves, tree = jax.tree_util.tree_flatten(params)
  keys = jax.random.split(jax.random.key(1), len(leaves))
  params = jax.tree_util.tree_unflatten(tree, [
      x + 0.05 * jax.random.normal(k, x.shape, x.dtype) if jnp.issubdtype(x.dtype, jnp.floating)
      else x for x, k in zip(leaves, keys)])
  return params, method.after_step(params, state, jnp.int32(1)), batch


def _finetune_start_features(method, params, state, images):
  module, variables = ft.pretrained_backbone(method, params, state)
  model, p, colls = ft.classifier_start(module, variables, 10, images.shape[1:])
  return np.asarray(model.apply({"params": p, **colls}, images,
                                method=lambda mdl, x: mdl.backbone(x, train=False)))


@pytest.mark.parametrize("name", [m for m in methods.available() if m != "lit"])
def test_knn_finetune_export_and_load_backbone_use_one_backbone(name, tmp_path):
  """(LiT is left out: its locked image tower comes from a pretrained run, test_image_text.py.)"""
  c = _config(name)
  method = methods.get(name)(c)
  params, state, _ = _trained_like(method, c)
  images = np.random.default_rng(2).normal(size=(6, 8, 8, 1)).astype(np.float32)

  knn = online.extract(jax.jit(method.features), params, state, images, batch_size=4)
  start = _finetune_start_features(method, params, state, images)
  export.save_backbone(str(tmp_path), backbone_of(method, params, state), c, 1, images.shape[1:])
  loaded = {}
  for weights in ("msgpack", "safetensors"):
    module, variables = ssljax.load_backbone(str(tmp_path), weights)
    loaded[weights] = np.asarray(jax.jit(module.apply)(variables, images))
  assert knn.shape == (6, method.backbone.num_features)
  for other in (start, loaded["msgpack"], loaded["safetensors"]):
    np.testing.assert_allclose(other, knn, rtol=1e-5, atol=1e-5)


def test_dino_finetuning_starts_from_the_teacher():
  c = _config("dino")
  method = methods.get("dino")(c)
  params, state, _ = _trained_like(method, c)
  module, variables = ft.pretrained_backbone(method, params, state)
  _, p, _ = ft.classifier_start(module, variables, 10, (8, 8, 1))
  same = jax.tree_util.tree_map(np.array_equal, p["backbone"], state["teacher"]["backbone"])
  assert all(jax.tree_util.tree_leaves(same))
  images = np.random.default_rng(2).normal(size=(4, 8, 8, 1)).astype(np.float32)
  student = method.backbone.apply({"params": params["backbone"]}, images)
  assert not np.allclose(_finetune_start_features(method, params, state, images), student,
                         atol=1e-3)


def test_mocov3_with_frozen_patch_embedding_fine_tunes():
  c = _config("mocov3")
  c.mocov3.freeze_patch_embed = True
  method = methods.get("mocov3")(c)
  params, state, _ = _trained_like(method, c)
  assert "patch_embed" not in params["backbone"]
  module, variables = ft.pretrained_backbone(method, params, state)
  assert "patch_embed" in variables["params"]
  result = ft.finetune(c, module, variables, steps=2, batch_size=16, warmup_steps=1)
  assert 0.0 <= result["finetune_top1"] <= 1.0 and np.isfinite(result["finetune_train_loss"])


def test_resnet_byol_fine_tune_keeps_batch_stats():
  c = _config("byol", "resnet")
  method = methods.get("byol")(c)
  batch = _batch(method, c)
  params, state = method.init(jax.random.key(0), batch)
  _, (_, state) = jax.jit(method.loss)(params, state, batch, jax.random.key(1), jnp.int32(0))
  stats = state["online"]["backbone"]["batch_stats"]
  module, variables = ft.pretrained_backbone(method, params, state)
  _, _, colls = ft.classifier_start(module, variables, 10, (8, 8, 1))
  same = jax.tree_util.tree_map(np.array_equal, colls["batch_stats"]["backbone"], stats)
  assert all(jax.tree_util.tree_leaves(same))
  moved = jax.tree_util.tree_map(lambda s, s0: not np.allclose(s, s0), stats,
                                 method.init(jax.random.key(0), batch)[1]["online"]["backbone"][
                                     "batch_stats"])
  assert any(jax.tree_util.tree_leaves(moved))   # the pretrained statistics, not the init's
  result = ft.finetune(c, module, variables, steps=1, batch_size=16, warmup_steps=1,
                       layer_decay=1.0)
  assert np.isfinite(result["finetune_train_loss"])
