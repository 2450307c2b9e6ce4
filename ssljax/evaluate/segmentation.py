"""Dense evaluation: a linear segmentation probe on frozen patch tokens, scored by mIoU.

As DINOv2's linear segmentation evaluation ("DINOv2: Learning Robust Visual Features without
Supervision", Oquab et al., 2024, section 7.4 'linear'): the backbone is frozen, its final patch
tokens [N, h, w, D] are computed once, a linear layer (a 1x1 convolution) maps each token to class
logits, the logits are bilinearly upsampled to the mask resolution and trained with per-pixel
cross-entropy (pixels marked IGNORE are not scored). Tokens are standardised with the train
split's per-dimension mean and std (the role of DINOv2's BatchNorm before the linear layer).
Scores: mean intersection-over-union over the classes that occur (in the labels or the
predictions) of the held-out split, and pixel accuracy.

Backbones: ViTs (their patch tokens). A ResNet's pooled output has no spatial map here, so the
protocol refuses it in one line.
"""
from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ssljax.data import segmentation as seg_data


class SegmentationError(ValueError):
  """A bad input to the segmentation protocol (backbone, data folder); `ssljax.evaluate` prints
  its message as one line."""


def check_backbone(module) -> None:
  """SegmentationError unless `module` is a ViT (whose patch tokens the probe reads)."""
  from ssljax import models  # pylint: disable=g-import-not-at-top
  if not isinstance(module, models.ViT):
    raise SegmentationError(
        f"the segmentation protocol needs a ViT backbone (a linear probe on its patch tokens); "
        f"this run's backbone is a {type(module).__name__}")


def patch_tokens(module, variables: dict, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
  """Final patch tokens of a ViT, float32 [N, h, w, D], of model inputs `images` [N, H, W, C].

  Raises:
    SegmentationError: when `module` is not a ViT or the images do not tile into patches.
  """
  check_backbone(module)
  p = module.patch_size
  n, h, w, _ = images.shape
  if h % p or w % p:
    raise SegmentationError(f"segmentation images {h}x{w} are not a multiple of the patch size {p}")
  fn = jax.jit(lambda v, x: module.apply(v, x, train=False, return_tokens=True)["patches"])
  out = []
  for start in range(0, n, batch_size):
    chunk = images[start:start + batch_size]
    pad = batch_size - len(chunk) if n > batch_size else 0
    if pad:
      chunk = np.concatenate([chunk, np.zeros((pad,) + chunk.shape[1:], chunk.dtype)])
    y = np.asarray(fn(variables, jnp.asarray(chunk)), np.float32)
    out.append(y[:len(y) - pad])
  return np.concatenate(out).reshape(n, h // p, w // p, -1)


def _logits(params, feats, size):
  """feats [B, h, w, D] -> logits [B, size, size, K], bilinearly upsampled."""
  z = feats @ params["w"] + params["b"]
  return jax.image.resize(z, (z.shape[0], size, size, z.shape[-1]), method="bilinear")


def confusion(pred: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
  """int64 [K, K] counts (row: label, column: prediction) over pixels whose label is not IGNORE."""
  keep = labels != seg_data.IGNORE
  idx = labels[keep].astype(np.int64) * num_classes + pred[keep].astype(np.int64)
  return np.bincount(idx, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def miou(conf: np.ndarray) -> tuple[float, np.ndarray]:
  """(mean IoU over the classes present in labels or predictions, IoU per class [K] (nan: absent))."""
  tp = np.diag(conf).astype(np.float64)
  union = conf.sum(0) + conf.sum(1) - tp
  iou = np.where(union > 0, tp / np.maximum(union, 1), np.nan)
  return float(np.nanmean(iou)), iou


def linear_probe(train_f: np.ndarray, train_m: np.ndarray, eval_f: np.ndarray, eval_m: np.ndarray,
                 num_classes: int, epochs: int = 30, lr: float = 1e-2, batch_size: int = 64,
                 weight_decay: float = 1e-4, seed: int = 0) -> dict[str, Any]:
  """Trains the linear segmentation head on frozen tokens; scores the held-out split.

  Args:
    train_f, eval_f: float32 [N, h, w, D] / [M, h, w, D] patch tokens.
    train_m, eval_m: uint8 [N, S, S] / [M, S, S] class ids (seg_data.IGNORE: not scored).
    num_classes: K.
    epochs, lr, batch_size, weight_decay: AdamW with a cosine schedule over all steps.
    seed: initialisation and shuffling.

  Returns:
    {'miou', 'pixel_acc', 'train_miou', 'iou_per_class' (list, None for absent classes)}.
  """
  mean = train_f.reshape(-1, train_f.shape[-1]).mean(0)
  std = train_f.reshape(-1, train_f.shape[-1]).std(0) + 1e-6
  train_f, eval_f = (train_f - mean) / std, (eval_f - mean) / std
  size, d = train_m.shape[1], train_f.shape[-1]
  n = len(train_f)
  batch_size = min(batch_size, n)
  steps_per_epoch = max(n // batch_size, 1)
  sched = optax.cosine_decay_schedule(lr, epochs * steps_per_epoch)
  tx = optax.adamw(sched, weight_decay=weight_decay)
  params = {"w": jnp.zeros((d, num_classes), jnp.float32), "b": jnp.zeros((num_classes,), jnp.float32)}
  opt_state = tx.init(params)

  def loss_fn(params, f, m):
    logits = _logits(params, f, size)
    valid = m != seg_data.IGNORE
    labels = jnp.where(valid, m, 0).astype(jnp.int32)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    return jnp.sum(ce * valid) / jnp.maximum(jnp.sum(valid), 1)

  @jax.jit
  def step(params, opt_state, f, m):
    grads = jax.grad(loss_fn)(params, f, m)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  predict = jax.jit(lambda params, f: jnp.argmax(_logits(params, f, size), -1).astype(jnp.uint8))
  rng = np.random.default_rng(seed)
  train_fj, train_mj = jnp.asarray(train_f), jnp.asarray(train_m)
  for _ in range(epochs):
    order = rng.permutation(n)
    for i in range(steps_per_epoch):
      idx = jnp.asarray(order[i * batch_size:(i + 1) * batch_size])
      params, opt_state = step(params, opt_state, train_fj[idx], train_mj[idx])

  def score(f, m):
    pred = np.concatenate([np.asarray(predict(params, jnp.asarray(f[i:i + 256])))
                           for i in range(0, len(f), 256)])
    conf = confusion(pred, m, num_classes)
    return conf, miou(conf)

  conf, (eval_miou, iou) = score(eval_f, eval_m)
  _, (train_miou, _) = score(train_f, train_m)
  return {"miou": eval_miou, "pixel_acc": float(np.trace(conf) / max(conf.sum(), 1)),
          "train_miou": train_miou,
          "iou_per_class": [None if np.isnan(v) else float(v) for v in iou]}


def load_task(config, data: str, size: int | None = None, num_train: int = 1000,
              num_eval: int = 300, seed: int = 0):
  """(train, held-out) `SegmentationSplit`s and the task's name.

  data: 'digits' (the embedded canvases, `digits_canvases`: digits at data.image_size, the scale
  the digits configs train at, on canvases of side `size`, default data.image_size, i.e. one digit
  per canvas; a larger multiple gives a grid of slots with several digits) or the path of an
  image+mask folder (`ssljax.data.segmentation.folder_split`, resized to `size`, default
  data.image_size).
  """
  image_size = int(config.data.image_size)
  if data != "digits" and not os.path.isdir(data):
    raise SegmentationError(f"--seg-data={data!r}; expected 'digits' (the embedded digit canvases) "
                            f"or a folder with train/ and val/, each holding images/ and masks/")
  if data == "digits":
    kw = dict(canvas=int(size or image_size), digit_size=image_size, seed=seed)
    try:
      return (seg_data.digits_canvases("train", num_train, **kw),
              seg_data.digits_canvases("val", num_eval, **kw), f"digits_canvases{kw['canvas']}")
    except ValueError as e:
      raise SegmentationError(f"--seg-size={size}: {e}") from e
  size = int(size or image_size)
  try:
    train = seg_data.folder_split(data, "train", size, max_examples=num_train)
    held = seg_data.folder_split(data, "val", size, max_examples=num_eval)
  except (OSError, ValueError) as e:
    raise SegmentationError(str(e)) from e
  names = max(train.class_names, held.class_names, key=len)   # ids 0..K-1 over both splits
  train.class_names = held.class_names = names
  return train, held, data
