"""Export: backbone weights (msgpack, safetensors), the model card, load_backbone round trip."""
import json
import os

import jax
import numpy as np
import pytest
import safetensors.numpy

import ssljax
from conftest import make_tiny_config
from ssljax import export, methods, train
from ssljax.data import pipeline
from ssljax.evaluate.backbone import backbone_of, feature_module


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  wd = str(tmp_path_factory.mktemp("run"))
  c = make_tiny_config()
  c.eval.max_examples = 32
  trainer = train.Trainer(c, wd)
  trainer.run()
  out = str(tmp_path_factory.mktemp("export"))
  card = export.main(["--workdir", wd, "--out", out])
  images = trainer.evaluator.eval_x[:16]
  feats = np.asarray(trainer.method.features(trainer.state.params, trainer.state.method_state, images))
  return wd, out, card, images, feats


def test_load_backbone_gives_identical_features(exported):
  _, out, _, images, feats = exported
  for weights in ("msgpack", "safetensors"):
    module, variables = ssljax.load_backbone(out, weights=weights)
    got = np.asarray(module.apply(variables, images))
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, feats)
  # The model_card.json path works too.
  module, variables = ssljax.load_backbone(os.path.join(out, "model_card.json"))
  np.testing.assert_array_equal(np.asarray(module.apply(variables, images)), feats)


def test_model_card(exported):
  wd, out, card, _, feats = exported
  with open(os.path.join(out, "model_card.json")) as f:
    on_disk = json.load(f)
  assert on_disk == card
  with open(os.path.join(wd, "eval.json")) as f:
    evals = json.load(f)
  assert card["method"] == "simclr" and card["step"] == 6 and card["total_steps"] == 6
  assert card["backbone"]["class"] == "ViT" and card["backbone"]["fields"]["width"] == 32
  assert card["feature_pool"] == "backbone"
  assert card["eval"]["knn_top1"] == evals["knn_top1"]
  assert card["config"]["model"]["depth"] == 1
  assert card["input"]["shape"] == [8, 8, 1]
  n_params = sum(x.size for x in jax.tree_util.tree_leaves(ssljax.load_backbone(out)[1]["params"]))
  assert card["num_parameters"] == n_params > 1000
  assert sorted(os.listdir(out)) == ["README.md", "backbone.msgpack", "backbone.safetensors",
                                     "model_card.json"]
  readme = open(os.path.join(out, "README.md")).read()
  assert readme.startswith("---\nlibrary_name: ssljax\n") and "ssljax.load_backbone" in readme
  assert f"{n_params:,} parameters" in readme and "knn_top1" in readme


def test_safetensors_format(tmp_path):
  import ml_dtypes
  tensors = {"a.w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array([1, -2], np.int64),
             "c": np.array([True, False]), "d": np.zeros((0, 3), np.float16),
             "e": np.array(3.5, np.float32), "f": np.array(7, np.int64),     # 0-d stay 0-d
             "g": np.ones((2, 2), ml_dtypes.bfloat16), "h": np.arange(6.0).reshape(2, 3)[:, ::2]}
  path = str(tmp_path / "x.safetensors")
  export.save_safetensors(path, tensors, metadata={"k": "v"})
  blob = open(path, "rb").read()
  size = int.from_bytes(blob[:8], "little")
  assert (8 + size) % 8 == 0
  header = json.loads(blob[8:8 + size])
  assert header["a.w"] == {"dtype": "F32", "shape": [2, 3], "data_offsets": header["a.w"]["data_offsets"]}
  assert header["__metadata__"] == {"k": "v"}
  back, meta = export.load_safetensors(path)
  assert meta == {"k": "v"} and set(back) == set(tensors)
  assert header["e"]["shape"] == [] and back["e"].shape == () and back["f"].shape == ()
  for k in tensors:
    assert back[k].dtype == tensors[k].dtype and back[k].shape == tensors[k].shape
    np.testing.assert_array_equal(back[k], tensors[k])
  ref = safetensors.numpy.load_file(path)
  assert all(ref[k].shape == tensors[k].shape and np.array_equal(ref[k], tensors[k]) for k in tensors)
  (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
  with pytest.raises(ValueError, match="bad.safetensors is not a safetensors file"):
    export.load_safetensors(str(tmp_path / "bad.safetensors"))


def test_safetensors_readable_by_the_reference_library(exported):
  _, out, _, _, _ = exported
  ref = safetensors.numpy.load_file(os.path.join(out, "backbone.safetensors"))
  mine, _ = export.load_safetensors(os.path.join(out, "backbone.safetensors"))
  assert set(ref) == set(mine) and all(np.array_equal(ref[k], mine[k]) for k in ref)


@pytest.mark.parametrize("method_name", ["mae", "dino"])
def test_backbone_of_follows_the_method_features(method_name):
  """MAE pools the mean of the patch tokens; DINO evaluates its EMA teacher, not the student."""
  c = make_tiny_config(method_name)
  method = methods.get(method_name)(c)
  record = pipeline.MakeViews(method.view_spec(), c.data.augment)(
      {"image": np.random.default_rng(0).integers(0, 255, (8, 8, 1), np.uint8), "label": 0},
      np.random.default_rng(0))
  batch = {k: np.stack([np.asarray(v)] * 4) for k, v in record.items()}
  params, state = method.init(jax.random.key(0), batch)
  if method_name == "dino":  # make the teacher differ from the student
    state = dict(state, teacher=jax.tree_util.tree_map(lambda x: x * 1.5, state["teacher"]))
  images = np.random.default_rng(1).normal(size=(3, 8, 8, 1)).astype(np.float32)
  cap = backbone_of(method, params, state)
  assert cap.pool == ("patch_mean" if method_name == "mae" else "backbone")
  module, variables = feature_module(cap.module, cap.variables, cap.pool)
  np.testing.assert_allclose(module.apply(variables, images),
                             method.features(params, state, images), rtol=1e-5, atol=1e-6)
  if method_name == "dino":
    student = np.asarray(cap.module.apply({"params": params["backbone"]}, images))
    assert not np.allclose(student, method.features(params, state, images))


def test_export_errors(tmp_path):
  with pytest.raises(SystemExit, match="config.json does not exist"):
    export.main(["--workdir", str(tmp_path), "--out", str(tmp_path / "o")])
  with pytest.raises(SystemExit, match="--workdir and --out are required"):
    export.main(["--workdir", str(tmp_path)])
  with pytest.raises(SystemExit, match=r"format 'onnx'; expected one of \('ssljax', 'timm', "):
    export.main(["--workdir", str(tmp_path), "--out", str(tmp_path / "o"), "--format", "onnx"])
  with pytest.raises(SystemExit, match="flag --step=x: invalid literal"):
    export.main(["--workdir", str(tmp_path), "--out", str(tmp_path / "o"), "--step", "x"])
  assert not os.path.exists(tmp_path / "o")
  with pytest.raises(FileNotFoundError, match="model_card.json"):
    ssljax.load_backbone(str(tmp_path))
