"""End-to-end fine-tuning with layer-wise learning-rate decay: the MAE / BEiT evaluation protocol.

"Masked Autoencoders Are Scalable Vision Learners" evaluates by fine-tuning the whole pretrained
encoder with a linear head, AdamW and layer-wise lr decay (BEiT's rule, `ssljax.optim`: block i of
a depth-L ViT gets lr * decay^(L - i), the embeddings decay^(L + 1), the head the full lr), on
augmented labelled images, and reports top-1 on the held-out split. The recipe of the paper
(ViT-B, ImageNet): 100 epochs at batch 1024 with 5 warm-up epochs, AdamW betas (0.9, 0.999), base
lr 5e-4 x batch/256, layer decay 0.65 (ViT-B) / 0.75 (ViT-L), weight decay 0.05, label smoothing
0.1, drop path 0.1; crop + flip augmentation (+ RandAugment, mixup, cutmix, which are not
implemented here). The defaults of `finetune` (DEFAULT_*) are instead measured on the embedded
digits data with the quickstart's tiny ViT: 500 steps of 64 (22 epochs), peak lr 4e-3, layer
decay 0.75, the MAE weight decay and label smoothing.

    run = ssljax.workdir.open_run(workdir)      # config.json + the latest checkpoint
    module, variables = pretrained_backbone(run.method, run.params, run.method_state)
    result = finetune(run.config, module, variables, steps=500, layer_decay=0.75)

The pretrained backbone is the method's `pretrained_backbone(params, state)` at the latest
checkpoint: the one kNN, probes and export use (DINO's EMA teacher, MoCo v3's query encoder
with its frozen patch projection, BatchNorm statistics of a ResNet, MAE's patch-token mean).
"""
from __future__ import annotations

import copy
from typing import Any, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from ssljax import optim
from ssljax.data import pipeline
from ssljax.data import sources
from ssljax.data.views import ViewSpec
from ssljax.methods import common


def pretrained_backbone(method, params, method_state):
  """(module, host variables) where fine-tuning starts: `method.pretrained_backbone`."""
  module, variables = method.pretrained_backbone(params, method_state)
  return module, jax.device_get(dict(variables))


class _Classifier(nn.Module):
  """backbone features [N, D] -> Dense(num_classes) logits [N, classes]; params {'backbone',
  'head'}."""
  backbone: nn.Module
  num_classes: int

  @nn.compact
  def __call__(self, x, train: bool = False):
    feats = self.backbone(x, train=train)
    return nn.Dense(self.num_classes, kernel_init=nn.initializers.normal(2e-5),
                    name="head")(feats.astype(jnp.float32))


# Defaults chosen on the embedded digits data (the quickstart's 3-block width-64 ViT after
# configs/simclr_digits.py, 1,437 train / 360 held-out images; the measurements are in
# BENCHMARKS.md). The MAE paper's ImageNet recipe (ViT-B, 100 epochs, batch 1024, base lr 5e-4)
# is spelled out in the module docstring; pass it explicitly for large runs.
DEFAULT_STEPS = 500          # x 64 = 22 epochs of digits
DEFAULT_BATCH_SIZE = 64
DEFAULT_BASE_LR = 1.6e-2     # x 64 / 256 = peak 4e-3
DEFAULT_WARMUP_STEPS = 50    # 10% of the steps (MAE: 5 of 100 epochs)
DEFAULT_LAYER_DECAY = 0.75   # MAE / BEiT (0.65 for ViT-B, 0.75 for ViT-L)
DEFAULT_WEIGHT_DECAY = 0.05  # MAE fine-tuning
DEFAULT_LABEL_SMOOTHING = 0.1  # MAE fine-tuning (Inception-v3's label smoothing)
# A mild crop: the pretraining crops (SimCLR digits: 0.3-1) cut digits apart (BENCHMARKS.md);
# MAE's ImageNet (0.08, 1) is for 100 epochs of 224 px images.
DEFAULT_CROP_SCALE = (0.7, 1.0)


def finetune_augment_config(augment: ml_collections.ConfigDict,
                            crop_scale: Optional[Sequence[float]] = None
                            ) -> ml_collections.ConfigDict:
  """The fine-tuning view: random resized crop + the pretraining's flip probability, nothing else.

  Fine-tuning wants label-preserving augmentation (MAE fine-tunes with crop + flip, + RandAugment,
  mixup and cutmix, which are not implemented here), not the pretraining's photometric
  invariances: colour jitter, grayscale, blur and solarisation are switched off. The crop scale,
  aspect ratios, flip probability and normalisation come from the pretraining config unless
  `crop_scale` is given ((1.0, 1.0) = the whole image, no crop).
  """
  aug = copy.deepcopy(augment)
  aug.color_jitter_prob = 0.0
  aug.grayscale_prob = 0.0
  aug.blur_prob = 0.0
  aug.solarize_prob = 0.0
  if crop_scale is not None:
    lo, hi = (float(v) for v in crop_scale)
    if not 0.0 < lo <= hi <= 1.0:
      raise ValueError(f"crop_scale={tuple(crop_scale)}; expected 0 < lo <= hi <= 1")
    aug.crop_scale = (lo, hi)
  return aug


def classifier_start(backbone: nn.Module, variables: Any, num_classes: int,
                     image_shape: Sequence[int], seed: int = 0):
  """(model, params, collections) where fine-tuning starts: the pretrained backbone
  (`variables`, its BatchNorm statistics included) under a fresh Dense(num_classes) head.

  `model.apply({'params': params, **collections}, images)` -> logits [N, num_classes] for
  images [N, *image_shape].
  """
  model = _Classifier(backbone, num_classes)
  x0 = jnp.zeros((1,) + tuple(image_shape), jnp.float32)
  head = model.init(jax.random.key(seed), x0)["params"]["head"]
  params = {"backbone": variables["params"], "head": head}
  collections = {k: {"backbone": v} for k, v in variables.items() if k != "params"}
  return model, params, collections


def finetune(config: ml_collections.ConfigDict, backbone: nn.Module, variables: Any, *,
             steps: int = DEFAULT_STEPS,
             layer_decay: float = DEFAULT_LAYER_DECAY, base_lr: float = DEFAULT_BASE_LR,
             weight_decay: float = DEFAULT_WEIGHT_DECAY, batch_size: int = DEFAULT_BATCH_SIZE,
             warmup_steps: int = DEFAULT_WARMUP_STEPS,
             label_smoothing: float = DEFAULT_LABEL_SMOOTHING,
             crop_scale: Sequence[float] = DEFAULT_CROP_SCALE, seed: int = 0) -> dict:
  """Fine-tunes backbone + a linear head end-to-end; returns {'finetune_top1', ...} floats.

  `backbone`, `variables`: the pretrained backbone (`pretrained_backbone`, i.e.
  `Method.pretrained_backbone`): `backbone.apply(variables, images)` -> features [N, D]; its
  other collections (BatchNorm statistics) start from the pretrained ones and keep updating.

  Training views: one random resized crop per image of the labelled train split (area
  fraction in `crop_scale`, (1, 1) = the whole image; aspect ratios and flip as in
  config.data.augment; no colour augmentation, see `finetune_augment_config`), batches of
  `batch_size`, backbone in train mode (stochastic depth as configured). Head: Dense(num_classes)
  on the backbone features, kernel ~ N(0, 2e-5) as in MAE, zero bias. Optimizer: AdamW (betas
  0.9, 0.999) on every parameter, lr base_lr x batch/256 with `warmup_steps` of linear warm-up
  then cosine decay to 0, weight decay on kernels only, layer-wise decay `layer_decay` (ViT only;
  1.0 = off). Loss: cross entropy with label smoothing. Evaluation: top-1 of the deterministic
  centre views (no augmentation) of config.data.eval_split (at most config.eval.max_examples),
  eval mode.

  Returns:
    {'finetune_top1', 'finetune_eval_examples', 'finetune_train_loss' and 'finetune_train_top1'
    (means over the last 10 training batches), 'finetune_steps', 'finetune_epochs',
    'finetune_layer_decay', 'finetune_peak_lr'}.
  """
  if steps < 1 or batch_size < 1:
    raise ValueError(f"steps={steps} and batch_size={batch_size} must be >= 1")
  ft = copy.deepcopy(config)
  ft.batch_size = batch_size
  ft.total_steps = steps
  opt = ft.optimizer
  opt.name, opt.base_lr, opt.weight_decay = "adamw", base_lr, weight_decay
  opt.layer_decay, opt.warmup_steps, opt.scale_lr_by_batch, opt.grad_clip = layer_decay, warmup_steps, True, 0.0
  opt.end_lr_frac = 0.0
  opt.b1, opt.b2 = 0.9, 0.999  # MAE fine-tuning: AdamW's defaults (not the pretraining's betas)
  if layer_decay != 1.0 and config.model.name != "vit":
    raise ValueError(f"layer_decay={layer_decay} needs a ViT backbone (model.name="
                     f"{config.model.name!r}); pass layer_decay=1.0")
  tx, _ = optim.build(ft)

  data = config.data
  aug = finetune_augment_config(data.augment, crop_scale)
  train_src = sources.build_source(data, data.train_split)
  eval_src = sources.build_source(data, data.eval_split)
  num_classes = train_src.num_classes
  model, params, collections = classifier_start(
      backbone, variables, num_classes, (data.image_size, data.image_size, _channels(train_src)),
      seed)
  opt_state = tx.init(params)

  def loss_fn(params, collections, images, labels, rng):
    logits, collections = common.apply_module(model, params, collections, images, train=True,
                                              rng=rng)
    onehot = optax.smooth_labels(jax.nn.one_hot(labels, num_classes), label_smoothing)
    loss = jnp.mean(optax.softmax_cross_entropy(logits.astype(jnp.float32), onehot))
    acc = jnp.mean(jnp.argmax(logits, -1) == labels)
    return loss, (collections, acc)

  @jax.jit
  def step(params, opt_state, collections, images, labels, rng):
    (loss, (collections, acc)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        params, collections, images, labels, rng)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, collections, loss, acc

  spec = ViewSpec(global_crops=1, global_size=data.image_size,
                  global_scale=tuple(aug.crop_scale))
  it = iter(pipeline.train_dataset(train_src, spec, aug, seed=seed,
                                   local_batch_size=batch_size))
  key = jax.random.key(seed + 1)
  tail = []
  for i in range(steps):
    batch = next(it)
    params, opt_state, collections, loss, acc = step(params, opt_state, collections,
                                                     batch["global"][:, 0], batch["label"],
                                                     jax.random.fold_in(key, i))
    if i >= steps - 10:
      tail.append((float(loss), float(acc)))

  eval_x, eval_y = pipeline.eval_arrays(eval_src, data.image_size, data.augment,
                                        config.eval.max_examples)
  predict = jax.jit(lambda p, c, x: jnp.argmax(
      common.apply_module(model, p, c, x, train=False)[0], -1))
  preds = np.concatenate([np.asarray(predict(params, collections, eval_x[i:i + 256]))
                          for i in range(0, len(eval_x), 256)])
  return {"finetune_top1": float(np.mean(preds == eval_y)),
          "finetune_eval_examples": int(len(eval_y)),
          "finetune_train_loss": float(np.mean([t[0] for t in tail])),
          "finetune_train_top1": float(np.mean([t[1] for t in tail])),
          "finetune_steps": int(steps),
          "finetune_epochs": float(steps * batch_size / len(train_src)),
          "finetune_layer_decay": float(layer_decay),
          "finetune_peak_lr": float(optim.peak_learning_rate(ft))}


def _channels(source) -> int:
  image = np.asarray(source[0]["image"])
  return 1 if image.ndim == 2 else image.shape[-1]


def run_protocol(run, **options) -> dict:
  """Entry point of `python -m ssljax.evaluate --protocol finetune`: fine-tunes the backbone of an
  opened `ssljax.evaluate.pretrained.PretrainedRun` (its restored step) with `finetune`'s defaults."""
  module, variables = pretrained_backbone(run.method, run.params, run.method_state)
  return finetune(run.config, module, variables, **options)
