"""PyTorch interchange: ssljax backbones into timm / torchvision and back (`ssljax.interop`).

Every torch model here is created (and saved) inside the test, on the CPU: nothing is downloaded.
Features must agree within 1e-4 both ways (relative to the feature scale for the deep ResNet-50).
"""
import json
import math
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
import safetensors.numpy
import timm
import torch          # the test extra installs torch, torchvision and timm: never skipped
import torchvision

import ssljax
from conftest import make_tiny_config
from ssljax import build, export, interop, methods, models, train
from ssljax.evaluate.backbone import CapturedBackbone

ATOL = 1e-4


def _nchw(x):
  return torch.from_numpy(np.ascontiguousarray(np.asarray(x).transpose(0, 3, 1, 2)))


def _torch_features(model, x):
  with torch.no_grad():
    return model.eval()(_nchw(x)).numpy()


def _load(model, path):
  import safetensors.torch
  model.load_state_dict(safetensors.torch.load_file(path), strict=True)
  return model


def _perturbed(tree, seed=0):
  """Every leaf moved off its init (LayerNorm scales, BatchNorm statistics, zero biases), so that
  a mapping that drops or swaps one shows up in the features."""
  rng = np.random.default_rng(seed)

  def move(path, a):
    a, name = np.asarray(a), jax.tree_util.keystr(path)
    if "var" in name or "scale" in name:
      return rng.uniform(0.5, 1.5, a.shape).astype(a.dtype)
    return (a + 0.05 * rng.normal(size=a.shape)).astype(a.dtype)

  return jax.tree_util.tree_map_with_path(move, tree)


def _perturb_torch(model, seed=0):
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
      if t.dtype != torch.float32:
        continue
      if "running_var" in name or name.endswith("norm1.weight") or name.endswith("norm2.weight"):
        t.copy_(0.5 + torch.rand(t.shape, generator=g))
      else:
        t.add_(0.05 * torch.randn(t.shape, generator=g))
  return model.eval()


def test_importing_ssljax_imports_no_torch():
  code = ("import sys, ssljax, ssljax.export, ssljax.interop; ssljax.import_weights; "
          "print(sorted(m for m in ('torch', 'timm', 'torchvision') if m in sys.modules))")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.strip().splitlines()[-1] == "[]"


# --- a trained digits ViT: export --format timm, load into timm, and back -----------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  wd = str(tmp_path_factory.mktemp("run"))
  c = make_tiny_config()
  c.eval.max_examples = 32
  trainer = train.Trainer(c, wd)
  trainer.run()
  out_timm = str(tmp_path_factory.mktemp("timm"))
  out_ssljax = str(tmp_path_factory.mktemp("ssljax"))
  card = export.main(["--workdir", wd, "--out", out_timm, "--format", "timm"])
  export.main(["--workdir", wd, "--out", out_ssljax])
  images = np.asarray(trainer.evaluator.eval_x[:16])
  return c, card, out_timm, out_ssljax, images


def test_trained_vit_loads_into_timm_with_the_same_features(trained):
  c, card, out, out_ssljax, images = trained
  assert sorted(os.listdir(out)) == ["README.md", "config.json", "model.safetensors",
                                     "model_card.json"]
  assert card["layout"] == "timm" and card["step"] == 6
  module, variables = ssljax.load_backbone(out_ssljax)
  want = np.asarray(module.apply(variables, images))   # ssljax's features (final cls after norm)
  assert want.shape == (16, 32) and np.abs(want).max() > 0.1

  tensors = safetensors.numpy.load_file(os.path.join(out, "model.safetensors"))
  assert tensors["cls_token"].shape == (1, 1, 32) and tensors["pos_embed"].shape == (1, 5, 32)
  config = json.load(open(os.path.join(out, "config.json")))
  args = config["model_args"]
  assert args["img_size"] == 8 and args["in_chans"] == 1 and args["global_pool"] == "token"

  # 1. timm's VisionTransformer of the same shape, strict load_state_dict.
  vit = _load(timm.models.VisionTransformer(**args), os.path.join(out, "model.safetensors"))
  np.testing.assert_allclose(_torch_features(vit, images), want, atol=ATOL, rtol=0)
  # 2. timm's own Hugging Face-layout loader on the export folder.
  vit2 = timm.create_model("local-dir:" + out, pretrained=True)
  data_config = timm.data.resolve_data_config({}, model=vit2)
  assert data_config["input_size"] == (1, 8, 8)
  np.testing.assert_allclose(data_config["mean"], c.data.augment.mean)
  np.testing.assert_allclose(data_config["std"], c.data.augment.std)
  np.testing.assert_allclose(_torch_features(vit2, images), want, atol=ATOL, rtol=0)
  # 3. every token, not only the pooled one: timm's forward_features = ssljax's final tokens.
  with torch.no_grad():
    tokens = vit.forward_features(_nchw(images)).numpy()
  ours = module.apply(variables, images, return_tokens=True)
  np.testing.assert_allclose(tokens[:, 0], ours["cls"], atol=ATOL, rtol=0)
  np.testing.assert_allclose(tokens[:, 1:], ours["patches"], atol=ATOL, rtol=0)

  # And back: the timm-layout folder read by ssljax gives the same features.
  module2, variables2 = ssljax.import_weights(out)
  np.testing.assert_allclose(module2.apply(variables2, images), want, atol=ATOL, rtol=0)
  module3, variables3 = ssljax.import_weights(out, model=c.model)
  np.testing.assert_allclose(module3.apply(variables3, images), want, atol=ATOL, rtol=0)
  m4, v4 = ssljax.load_backbone(out)            # the timm export's own model card
  np.testing.assert_allclose(m4.apply(v4, images), want, atol=ATOL, rtol=0)
  for model in (None, c.model):                  # an ssljax-format export imports too
    m5, v5 = ssljax.import_weights(out_ssljax, model=model)
    np.testing.assert_array_equal(m5.apply(v5, images), want)
  readme = open(os.path.join(out, "README.md")).read()
  assert "library_name: timm" in readme and "local-dir:THIS_FOLDER" in readme


def test_init_from_starts_every_backbone_copy_from_the_file(trained):
  """model.init_from: a DINO run (student + EMA teacher) starts from the exported backbone; its
  heads keep their init; its features are the timm model's."""
  c, _, out, out_ssljax, images = trained
  cd = make_tiny_config("dino")
  method = methods.get("dino")(cd)
  model_cfg = dict(cd.model.to_dict(), init_from=out)
  module, variables = ssljax.load_backbone(out_ssljax)
  rng = np.random.default_rng(0)
  batch = {k: np.zeros((4,) + v.shape, v.dtype) for k, v in
           _views(method, cd, rng).items()}
  params, mstate = method.init(jax.random.key(0), batch)
  state = build.TrainState(step=np.zeros((), np.int32), params=params, opt_state=(),
                           method_state=mstate, rng=np.zeros(2, np.uint32),
                           skipped=np.zeros((), np.int32))
  new = interop.init_from(model_cfg, state)
  np.testing.assert_array_equal(new.params["backbone"]["block0"]["mlp"]["fc1"]["kernel"],
                                variables["params"]["block0"]["mlp"]["fc1"]["kernel"])
  np.testing.assert_array_equal(new.method_state["teacher"]["backbone"]["norm"]["scale"],
                                variables["params"]["norm"]["scale"])
  for a, b in zip(jax.tree_util.tree_leaves(new.params["head"]),
                  jax.tree_util.tree_leaves(params["head"])):
    np.testing.assert_array_equal(a, b)
  feats = method.features(new.params, new.method_state, images)
  np.testing.assert_allclose(feats, module.apply(variables, images), atol=ATOL, rtol=0)
  # On device (as the trainer holds it): jax.Arrays come back with their shardings.
  on_device = jax.device_put(state)
  moved = interop.init_from(model_cfg, on_device)
  leaf = moved.method_state["teacher"]["backbone"]["block0"]["attn"]["query"]["kernel"]
  assert isinstance(leaf, jax.Array)
  assert leaf.sharding == on_device.method_state["teacher"]["backbone"]["block0"]["attn"][
      "query"]["kernel"].sharding
  np.testing.assert_array_equal(leaf, variables["params"]["block0"]["attn"]["query"]["kernel"])
  assert interop.init_from(cd.model, state) is state   # no init_from: unchanged
  for path in (out, out_ssljax, os.path.join(out, "model.safetensors")):   # the cheap check
    interop.check_init_from({"init_from": path})
  interop.check_init_from(cd.model)
  with pytest.raises(FileNotFoundError, match=r"model.init_from='/nonexistent.safetensors' does "
                                              r"not exist"):
    interop.check_init_from({"init_from": "/nonexistent.safetensors"})
  with pytest.raises(ValueError, match="model_card.json': expected a .safetensors file"):
    interop.check_init_from({"init_from": os.path.join(out, "model_card.json")})
  with pytest.raises(ValueError, match=r"model.width=48 but .* holds a backbone with width=32"):
    interop.init_from(dict(model_cfg, width=48), state)


def _views(method, config, rng):
  from ssljax.data import pipeline
  record = {"image": rng.integers(0, 255, (8, 8, 1), np.uint8), "label": 0}
  return {k: np.asarray(v) for k, v in
          pipeline.MakeViews(method.view_spec(), config.data.augment)(record, rng).items()}


def test_mae_patch_mean_features_are_timm_avg_pool(tmp_path):
  """MAE's features (mean of the final patch tokens, cls token present) export as timm's
  global_pool='avg' with fc_norm=False."""
  module = models.ViT(patch_size=4, width=32, depth=2, num_heads=2, image_size=16)
  x = np.random.default_rng(0).normal(size=(3, 16, 16, 3)).astype(np.float32)
  variables = _perturbed(jax.tree_util.tree_map(np.asarray, module.init(jax.random.key(0), x)))
  want = np.asarray(module.apply(variables, x, return_tokens=True)["patches"].mean(1))
  out = str(tmp_path / "mae")
  export.save_backbone(out, CapturedBackbone(module, variables, "patch_mean"),
                       make_tiny_config("mae"), 0, [16, 16, 3], fmt="timm")
  model = timm.create_model("local-dir:" + out, pretrained=True)
  assert model.global_pool == "avg" and model.has_class_token
  np.testing.assert_allclose(_torch_features(model, x), want, atol=ATOL, rtol=0)
  with pytest.raises(ValueError, match="format 'torchvision' has no ViT layout"):
    export.save_backbone(str(tmp_path / "tv"), CapturedBackbone(module, variables, "backbone"),
                         make_tiny_config(), 0, [16, 16, 3], fmt="torchvision")
  assert not os.path.exists(tmp_path / "tv")   # refused before anything was written


# --- timm ViTs created here, imported into ssljax ---------------------------------------------


@pytest.mark.parametrize("kind", ["standard", "registers_layerscale", "gap"])
def test_timm_vit_imports_with_the_same_features(tmp_path, kind):
  kwargs = {"standard": {},
            # DINOv2-style: registers, no positional embedding on the prefix, LayerScale.
            "registers_layerscale": {"reg_tokens": 2, "no_embed_class": True, "init_values": 0.5},
            "gap": {"class_token": False, "global_pool": "avg", "fc_norm": False}}[kind]
  torch.manual_seed(0)
  model = timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=0, img_size=32,
                            patch_size=8, embed_dim=64, depth=2, num_heads=4, **kwargs)
  _perturb_torch(model)
  from timm.models._hub import save_for_hf
  save_for_hf(model, str(tmp_path / "hf"), safe_serialization=True)   # model.safetensors + config
  x = np.random.default_rng(1).normal(size=(4, 32, 32, 3)).astype(np.float32)
  want = _torch_features(model, x)
  module, variables = ssljax.import_weights(str(tmp_path / "hf"))
  assert module.num_heads == 4 and module.num_registers == kwargs.get("reg_tokens", 0)
  assert module.pool == ("gap" if kind == "gap" else "cls")
  np.testing.assert_allclose(module.apply(variables, x), want, atol=ATOL, rtol=0)
  with torch.no_grad():
    tokens = model.forward_features(_nchw(x)).numpy()
  ours = module.apply(variables, x, return_tokens=True)
  np.testing.assert_allclose(tokens[:, model.num_prefix_tokens:], ours["patches"], atol=ATOL,
                             rtol=0)

  # A bare .safetensors file holds no head count: it comes from the model config instead.
  import safetensors.torch
  safetensors.torch.save_file(model.state_dict(), str(tmp_path / "vit.safetensors"))
  with pytest.raises(ValueError, match="number of attention heads is not in the file"):
    ssljax.import_weights(str(tmp_path / "vit.safetensors"))
  cfg = models.default_model_config("vit")
  cfg.update(patch_size=8, width=64, depth=2, num_heads=4, image_size=32, posemb="learned",
             pool="gap" if kind == "gap" else "cls", num_registers=kwargs.get("reg_tokens", 0))
  module2, variables2 = ssljax.import_weights(str(tmp_path / "vit.safetensors"), model=cfg)
  np.testing.assert_allclose(module2.apply(variables2, x), want, atol=ATOL, rtol=0)


@pytest.mark.parametrize("kind", ["dinov2", "dinov2_with_registers", "vit"])
def test_transformers_folder_imports_with_the_same_features(tmp_path, kind):
  """A Hugging Face transformers folder (save_pretrained: model.safetensors + config.json), the
  layout of the released DINOv2 weights: ssljax's features are the model's final cls token."""
  import transformers
  common = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256,
                image_size=32, patch_size=8)
  if kind == "dinov2":
    model = transformers.Dinov2Model(transformers.Dinov2Config(**common, layerscale_value=0.5))
  elif kind == "dinov2_with_registers":
    model = transformers.Dinov2WithRegistersModel(transformers.Dinov2WithRegistersConfig(
        **common, layerscale_value=0.5, num_register_tokens=2))
  else:
    # transformers' ViT default LayerNorm eps is 1e-12; ssljax's is 1e-6 (DINOv2's, timm's): a
    # 1e-12 checkpoint imports with features off by ~eps / token variance (1e-4 here).
    model = transformers.ViTModel(transformers.ViTConfig(**common, layer_norm_eps=1e-6),
                                  add_pooling_layer=False)
  _perturb_torch(model)
  model.save_pretrained(str(tmp_path / "hf"))
  x = np.random.default_rng(1).normal(size=(4, 32, 32, 3)).astype(np.float32)
  with torch.no_grad():
    hidden = model(pixel_values=_nchw(x)).last_hidden_state.numpy()   # after the final norm
  module, variables = ssljax.import_weights(str(tmp_path / "hf"))
  assert module.num_registers == (2 if kind == "dinov2_with_registers" else 0)
  ours = module.apply(variables, x, return_tokens=True)
  np.testing.assert_allclose(ours["pooled"], hidden[:, 0], atol=ATOL, rtol=0)
  np.testing.assert_allclose(ours["patches"], hidden[:, 1 + module.num_registers:], atol=ATOL,
                             rtol=0)


def test_import_errors_are_one_line(tmp_path):
  import safetensors.torch
  torch.manual_seed(0)
  model = timm.models.VisionTransformer(img_size=32, patch_size=8, embed_dim=64, depth=1,
                                        num_heads=4, num_classes=0)
  safetensors.torch.save_file(model.state_dict(), str(tmp_path / "vit.safetensors"))
  cfg = models.default_model_config("vit")
  cfg.update(patch_size=8, width=64, depth=1, num_heads=4, image_size=32)
  with pytest.raises(ValueError, match="holds learned positional embeddings .*set "
                                       "model.posemb='learned' and model.image_size=32"):
    ssljax.import_weights(str(tmp_path / "vit.safetensors"), model=cfg)
  cfg.update(posemb="learned", image_size=64)
  with pytest.raises(ValueError, match=r"params/pos_embedding: .* holds shape \[16, 64\], the "
                                       r"model expects \[64, 64\]"):
    ssljax.import_weights(str(tmp_path / "vit.safetensors"), model=cfg)
  cfg.update(image_size=32, depth=2)
  with pytest.raises(ValueError, match="model.depth=2 but .* holds a backbone with depth=1"):
    ssljax.import_weights(str(tmp_path / "vit.safetensors"), model=cfg)
  qk = timm.models.VisionTransformer(img_size=32, patch_size=8, embed_dim=64, depth=1,
                                     num_heads=4, num_classes=0, qk_norm=True)
  safetensors.torch.save_file(qk.state_dict(), str(tmp_path / "qk.safetensors"))
  with pytest.raises(ValueError, match=r"^blocks.0.attn.k_norm.bias: q/k normalisation "
                                       r"\(timm qk_norm\) has no ssljax"):
    ssljax.import_weights(str(tmp_path / "qk.safetensors"), model=cfg)
  safetensors.torch.save_file({"w": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
  with pytest.raises(ValueError, match=r"neither a timm ViT .* its keys begin \['w'\]"):
    ssljax.import_weights(str(tmp_path / "other.safetensors"))
  torch.save(model.state_dict(), str(tmp_path / "vit.pth"))
  with pytest.raises(ValueError, match="expected a .safetensors file"):
    ssljax.import_weights(str(tmp_path / "vit.pth"))
  with pytest.raises(FileNotFoundError, match="model.safetensors does not exist"):
    ssljax.import_weights(str(tmp_path))
  resnet = models.ResNet(depth=18)
  with pytest.raises(ValueError, match="format 'torchvision' has no ViT layout"):
    interop.torch_layout(models.ViT(patch_size=8, width=64, depth=1, num_heads=4), {}, (32, 32, 3),
                         "backbone", "torchvision")
  with pytest.raises(ValueError, match="width_multiplier=0.5 has no torchvision equivalent"):
    interop.torch_layout(models.ResNet(depth=18, width_multiplier=0.5), {}, (32, 32, 3),
                         "backbone", "timm")
  del resnet


# --- ResNets: torchvision both ways -------------------------------------------------------------


def _resnet_card_export(tmp_path, module, variables, image_shape, fmt="torchvision"):
  c = make_tiny_config("simclr", "resnet")
  out = str(tmp_path / fmt)
  export.save_backbone(out, CapturedBackbone(module, variables, "backbone"), c, 0,
                       list(image_shape), fmt=fmt)
  return out


@pytest.mark.parametrize("depth,cifar_stem", [(18, True), (50, False)])
def test_resnet_exports_into_torchvision(tmp_path, depth, cifar_stem):
  shape = (8, 8, 1) if cifar_stem else (32, 32, 3)
  module = models.ResNet(depth=depth, cifar_stem=cifar_stem)
  x = np.random.default_rng(0).normal(size=(2,) + shape).astype(np.float32)
  variables = _perturbed(jax.tree_util.tree_map(np.asarray, module.init(jax.random.key(0), x)))
  want = np.asarray(module.apply(variables, x))
  out = _resnet_card_export(tmp_path, module, variables, shape)
  tensors = safetensors.numpy.load_file(os.path.join(out, "model.safetensors"))
  assert tensors["bn1.num_batches_tracked"].shape == ()   # torch's 0-d buffer, kept 0-d
  tv = getattr(torchvision.models, f"resnet{depth}")()
  tv.fc = torch.nn.Identity()
  if cifar_stem:   # README.md says the same
    tv.conv1 = torch.nn.Conv2d(shape[-1], 64, 3, 1, 1, bias=False)
    tv.maxpool = torch.nn.Identity()
  got = _torch_features(_load(tv, os.path.join(out, "model.safetensors")), x)
  scale = np.abs(want).max()
  np.testing.assert_allclose(got / scale, want / scale, atol=ATOL, rtol=0)
  if not cifar_stem:   # timm's resnet has the same keys; its loader reads the folder
    tm = timm.create_model("local-dir:" + out, pretrained=True)
    np.testing.assert_allclose(_torch_features(tm, x) / scale, want / scale, atol=ATOL, rtol=0)
  readme = open(os.path.join(out, "README.md")).read()
  assert ("model.maxpool = torch.nn.Identity()" in readme) == cifar_stem


@pytest.mark.parametrize("norm", ["batch", "group"])
def test_torchvision_resnet_imports_with_the_same_features(tmp_path, norm):
  import safetensors.torch
  torch.manual_seed(0)
  kw = {} if norm == "batch" else {"norm_layer": lambda c: torch.nn.GroupNorm(math.gcd(32, c), c)}
  tv = _perturb_torch(torchvision.models.resnet50(**kw))
  safetensors.torch.save_file(tv.state_dict(), str(tmp_path / "r50.safetensors"))
  tv.fc = torch.nn.Identity()
  x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype(np.float32)
  want = _torch_features(tv, x)
  cfg = models.default_model_config("resnet")
  cfg.update(depth=50, norm=norm)
  module, variables = ssljax.import_weights(str(tmp_path / "r50.safetensors"), model=cfg)
  got = np.asarray(module.apply(variables, x))
  scale = np.abs(want).max()
  np.testing.assert_allclose(got / scale, want / scale, atol=ATOL, rtol=0)
  cfg.depth = 18
  with pytest.raises(ValueError, match="model.depth=18 but .* holds a backbone with depth=50"):
    ssljax.import_weights(str(tmp_path / "r50.safetensors"), model=cfg)


def test_standard_vit_loads_into_the_named_timm_model(tmp_path):
  """A ViT-Ti/16 at 224 px (sincos positional embeddings) loads into timm's own
  'vit_tiny_patch16_224' through pretrained_cfg_overlay=dict(file=...)."""
  module = models.build_backbone({"name": "vit", "variant": "ti", "patch_size": 16,
                                  "image_size": 224})
  x = np.random.default_rng(0).normal(size=(2, 224, 224, 3)).astype(np.float32)
  variables = _perturbed(jax.tree_util.tree_map(np.asarray, module.init(jax.random.key(0), x)))
  want = np.asarray(module.apply(variables, x))
  state_dict, config = interop.torch_layout(module, variables, (224, 224, 3), "backbone", "timm")
  assert config["architecture"] == "vit_tiny_patch16_224"
  export.save_safetensors(str(tmp_path / "vit.safetensors"), state_dict)
  model = timm.create_model("vit_tiny_patch16_224", pretrained=True, num_classes=0,
                            pretrained_cfg_overlay={"file": str(tmp_path / "vit.safetensors")})
  np.testing.assert_allclose(_torch_features(model, x), want, atol=ATOL, rtol=0)


def test_trainer_starts_from_init_from(tmp_path):
  """model.init_from: a DINO run starts (student and EMA teacher) from a timm export of another
  run and trains; a missing file fails validation in one line."""
  import ssljax
  from conftest import make_tiny_config
  from ssljax import config as config_lib, export, train
  c = make_tiny_config()
  wd = str(tmp_path / "a"); train.Trainer(c, wd).run()
  out = str(tmp_path / "timm")
  export.main(["--workdir", wd, "--out", out, "--format", "timm"])
  _, variables = ssljax.import_weights(out)
  d = make_tiny_config("dino")
  d.model.init_from = out
  d.total_steps = 1
  config_lib.validate(d)
  t = train.Trainer(d, str(tmp_path / "b"))
  state, restored = t.initial_state()
  assert restored is None
  np.testing.assert_array_equal(np.asarray(state.params["backbone"]["block0"]["mlp"]["fc1"]["kernel"]),
                                variables["params"]["block0"]["mlp"]["fc1"]["kernel"])
  np.testing.assert_array_equal(np.asarray(state.method_state["teacher"]["backbone"]["norm"]["scale"]),
                                variables["params"]["norm"]["scale"])
  t.run()   # trains from there
  d.model.init_from = "/nonexistent.safetensors"
  with pytest.raises(config_lib.ConfigError, match="does not exist"):
    config_lib.validate(d)
