"""End-to-end fine-tuning with layer-wise learning-rate decay: the MAE / BEiT evaluation protocol.

"Masked Autoencoders Are Scalable Vision Learners" evaluates by fine-tuning the whole pretrained
encoder with a linear head, AdamW and layer-wise lr decay (BEiT's rule, `ssljax.optim`: block i of
a depth-L ViT gets lr * decay^(L - i), the embeddings decay^(L + 1), the head the full lr), on
augmented labelled images, and reports top-1 on the held-out split. The recipe of the paper
(ViT-B, ImageNet): 100 epochs, base lr 5e-4 x batch/256, layer decay 0.65-0.75, weight decay 0.05,
label smoothing 0.1, drop path 0.1 (+ RandAugment, mixup, cutmix, which are not implemented here).

    config = load_workdir_config(workdir)
    backbone, params, collections = load_pretrained_backbone(config, workdir)
    result = finetune(config, backbone, params, collections, steps=1000, layer_decay=0.75)

The pretrained backbone is `params['backbone']` of the latest checkpoint (every method in ssljax
keeps its encoder there) with its BatchNorm statistics in `method_state['backbone']` if any.
"""
from __future__ import annotations

import copy
import json
import os
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from ssljax import optim
from ssljax.data import pipeline
from ssljax.data import sources
from ssljax.data.augment import ViewSpec
from ssljax.methods import common


def load_workdir_config(workdir: str) -> ml_collections.ConfigDict:
  """The run config saved in workdir/config.json, over the current schema's defaults.

  Keys the schema gained since the run take their defaults; JSON lists become tuples.
  """
  from ssljax.config import base_config
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} does not exist; expected a workdir written by ssljax.main")
  with open(path) as f:
    saved = json.load(f)
  config = base_config(saved["method"], saved["model"]["name"])

  def merge(node, values, prefix):
    for key, value in values.items():
      if key not in node:
        raise ValueError(f"{path}: key {prefix}{key!r} is not in the current config schema")
      if isinstance(value, dict):
        merge(node[key], value, f"{prefix}{key}.")
      else:
        node[key] = tuple(value) if isinstance(value, list) else value

  merge(config, saved, "")
  return config


def load_pretrained_backbone(config: ml_collections.ConfigDict, workdir: str):
  """(backbone module, backbone params, backbone collections) of the latest checkpoint of workdir.

  Raises:
    FileNotFoundError: when workdir has no checkpoint.
    KeyError: when the method keeps no 'backbone' in its params.
  """
  from ssljax import train
  config = copy.deepcopy(config)
  config.eval.random_init = False
  trainer = train.Trainer(config, workdir)
  if trainer.checkpointer.latest_step() is None:
    raise FileNotFoundError(f"no checkpoint under {workdir}/checkpoints; pretrain first")
  state, _ = trainer.initial_state()
  trainer.checkpointer.close()
  if "backbone" not in state.params:
    raise KeyError(f"method {config.method!r} has no params['backbone'] (has {list(state.params)})")
  collections = {}
  if isinstance(state.method_state, dict) and isinstance(state.method_state.get("backbone"), dict):
    collections = state.method_state["backbone"]
  params = jax.device_get(state.params["backbone"])
  return trainer.method.backbone, params, jax.device_get(collections)


class _Classifier(nn.Module):
  """backbone features -> Dense(num_classes); params {'backbone', 'head'}."""
  backbone: nn.Module
  num_classes: int

  @nn.compact
  def __call__(self, x, train: bool = False):
    feats = self.backbone(x, train=train)
    return nn.Dense(self.num_classes, kernel_init=nn.initializers.normal(2e-5),
                    name="head")(feats.astype(jnp.float32))


def finetune(config: ml_collections.ConfigDict, backbone: nn.Module, backbone_params: Any,
             backbone_collections: Any, *, steps: int = 1000, layer_decay: float = 0.75,
             base_lr: float = 5e-4, weight_decay: float = 0.05, batch_size: int = 128,
             warmup_steps: int = 50, label_smoothing: float = 0.1, seed: int = 0) -> dict:
  """Fine-tunes backbone + a linear head end-to-end; returns {'finetune_top1', ...} floats.

  Training views: one random resized crop per image (config.data.augment) of the labelled train
  split, batches of `batch_size`. Optimizer: AdamW (b1, b2 of config.optimizer), lr base_lr x
  batch/256 with linear warm-up and cosine decay, weight decay on kernels only, layer-wise decay
  `layer_decay` (ViT only; 1.0 = off). Loss: cross entropy with label smoothing. Evaluation:
  top-1 of the deterministic centre views of config.data.eval_split.
  """
  ft = copy.deepcopy(config)
  ft.batch_size = batch_size
  ft.total_steps = steps
  opt = ft.optimizer
  opt.name, opt.base_lr, opt.weight_decay = "adamw", base_lr, weight_decay
  opt.layer_decay, opt.warmup_steps, opt.scale_lr_by_batch, opt.grad_clip = layer_decay, warmup_steps, True, 0.0
  if layer_decay != 1.0 and config.model.name != "vit":
    raise ValueError(f"layer_decay={layer_decay} needs a ViT backbone (model.name="
                     f"{config.model.name!r}); pass layer_decay=1.0")
  tx, _ = optim.build(ft)

  data = config.data
  train_src = sources.build_source(data, data.train_split)
  eval_src = sources.build_source(data, data.eval_split)
  num_classes = train_src.num_classes
  model = _Classifier(backbone, num_classes)
  x0 = jnp.zeros((1, data.image_size, data.image_size, _channels(train_src)), jnp.float32)
  head = model.init(jax.random.key(seed), x0)["params"]["head"]
  params = {"backbone": backbone_params, "head": head}
  collections = {k: {"backbone": v} for k, v in (backbone_collections or {}).items()}
  opt_state = tx.init(params)

  def loss_fn(params, collections, images, labels, rng):
    logits, collections = common.apply_module(model, params, collections, images, train=True,
                                              rng=rng)
    onehot = optax.smooth_labels(jax.nn.one_hot(labels, num_classes), label_smoothing)
    loss = jnp.mean(optax.softmax_cross_entropy(logits.astype(jnp.float32), onehot))
    return loss, collections

  @jax.jit
  def step(params, opt_state, collections, images, labels, rng):
    (loss, collections), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        params, collections, images, labels, rng)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, collections, loss

  spec = ViewSpec(global_crops=1, global_size=data.image_size,
                  global_scale=tuple(data.augment.crop_scale))
  it = iter(pipeline.train_dataset(train_src, spec, data.augment, seed=seed,
                                   local_batch_size=batch_size))
  key = jax.random.key(seed + 1)
  losses = []
  for i in range(steps):
    batch = next(it)
    params, opt_state, collections, loss = step(params, opt_state, collections,
                                                batch["global"][:, 0], batch["label"],
                                                jax.random.fold_in(key, i))
    if i >= steps - 10:
      losses.append(float(loss))

  eval_x, eval_y = pipeline.eval_arrays(eval_src, data.image_size, data.augment,
                                        config.eval.max_examples)
  predict = jax.jit(lambda p, c, x: jnp.argmax(
      common.apply_module(model, p, c, x, train=False)[0], -1))
  preds = np.concatenate([np.asarray(predict(params, collections, eval_x[i:i + 256]))
                          for i in range(0, len(eval_x), 256)])
  return {"finetune_top1": float(np.mean(preds == eval_y)),
          "finetune_train_loss": float(np.mean(losses)), "finetune_steps": int(steps),
          "finetune_layer_decay": float(layer_decay),
          "finetune_peak_lr": float(optim.peak_learning_rate(ft))}


def _channels(source) -> int:
  image = np.asarray(source[0]["image"])
  return 1 if image.ndim == 2 else image.shape[-1]


def write_result(workdir: str, result: dict) -> dict:
  """Merges `result` into workdir/eval.json (other keys kept); returns the merged dict."""
  path = os.path.join(workdir, "eval.json")
  merged = {}
  if os.path.exists(path):
    with open(path) as f:
      merged = json.load(f)
  merged.update(result)
  with open(path + ".tmp", "w") as f:
    json.dump(merged, f, indent=2)
  os.replace(path + ".tmp", path)
  return merged


def run_protocol(run, **options) -> dict:
  """Entry point of `python -m ssljax.evaluate --protocol finetune`: fine-tunes the backbone of an
  opened `ssljax.evaluate.cli.PretrainedRun` (its restored step) with `finetune`'s defaults."""
  params = run.params
  if "backbone" not in params:
    raise KeyError(f"method {run.config.method!r} has no params['backbone'] (has {list(params)})")
  collections = {}
  if isinstance(run.method_state, dict) and isinstance(run.method_state.get("backbone"), dict):
    collections = run.method_state["backbone"]
  return finetune(run.config, run.method.backbone, jax.device_get(params["backbone"]),
                  jax.device_get(collections), **options)
