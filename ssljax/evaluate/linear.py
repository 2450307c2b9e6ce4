"""Linear probe: a softmax classifier trained on frozen features.

The standard linear evaluation of self-supervised representations ("A Simple Framework for
Contrastive Learning of Visual Representations"; "Masked Autoencoders Are Scalable Vision
Learners" normalises the frozen features with a parameter-free BatchNorm first, which is what
the train-statistics standardisation here does). The whole optimisation, all epochs and
mini-batches, is one jitted `lax.scan`, so a probe on a few thousand features takes seconds
on CPU.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ssljax.evaluate.knn import _positive_int, validate_split


def _loss(params, x, y):
  """Mean softmax cross entropy of the linear classifier.

  Args:
    params: {'w': [D, C], 'b': [C]}.
    x: [B, D] standardised features.
    y: [B] int32 labels.

  Returns:
    Scalar loss.
  """
  logits = x @ params["w"] + params["b"]
  return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))


@functools.partial(jax.jit, static_argnames=("epochs", "steps_per_epoch", "batch_size", "num_classes"))
def _train(x, y, key, lr, weight_decay, *, epochs, steps_per_epoch, batch_size, num_classes):
  """Trains the probe with SGD + momentum 0.9 and a cosine schedule.

  Args:
    x: [N, D] standardised training features.
    y: [N] int32 labels.
    key: PRNG key for the per-epoch shuffles.
    lr: peak learning rate (cosine-decayed to 0 over all steps).
    weight_decay: decoupled L2 on the weights (not the bias).
    epochs, steps_per_epoch, batch_size, num_classes: static sizes.

  Returns:
    (params {'w': [D, C], 'b': [C]}, per-epoch mean training loss [epochs]).
  """
  dim = x.shape[1]
  params = {"w": jnp.zeros((dim, num_classes), jnp.float32), "b": jnp.zeros((num_classes,), jnp.float32)}
  schedule = optax.cosine_decay_schedule(lr, decay_steps=epochs * steps_per_epoch)
  tx = optax.chain(
      optax.add_decayed_weights(weight_decay, mask={"w": True, "b": False}),
      optax.sgd(schedule, momentum=0.9),
  )
  opt_state = tx.init(params)

  def step(carry, idx):
    params, opt_state = carry
    loss, grads = jax.value_and_grad(_loss)(params, x[idx], y[idx])
    updates, opt_state = tx.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), loss

  def epoch(carry, epoch_key):
    perm = jax.random.permutation(epoch_key, x.shape[0])[: steps_per_epoch * batch_size]
    carry, losses = jax.lax.scan(step, carry, perm.reshape(steps_per_epoch, batch_size))
    return carry, jnp.mean(losses)

  (params, _), epoch_losses = jax.lax.scan(epoch, (params, opt_state), jax.random.split(key, epochs))
  return params, epoch_losses


@jax.jit
def _accuracy_and_loss(params, x, y):
  """(top-1 accuracy, mean cross entropy) of the probe on x [N, D], y [N]."""
  logits = x @ params["w"] + params["b"]
  acc = jnp.mean(jnp.argmax(logits, axis=-1) == y)
  return acc, jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))


def linear_probe(train_feats, train_labels, test_feats, test_labels, num_classes: int,
                 epochs: int = 100, lr: float = 0.1, weight_decay: float = 0.0,
                 batch_size: int = 256, seed: int = 0) -> dict:
  """Trains a linear softmax classifier on frozen features and reports its accuracy.

  Features are standardised per dimension with the TRAIN mean and std (the test set is
  transformed with the same statistics). The classifier starts at zero and is trained with
  mini-batch SGD (momentum 0.9, cosine decay from `lr` to 0, decoupled weight decay on the
  weights only); each epoch is a fresh shuffle of the training set, and the remainder that
  does not fill a batch is dropped for that epoch. Zero weight decay is the default, as in
  the MAE and DINO linear probes; raise it for small training sets with many dims.

  Args:
    train_feats: [N, D] frozen training features.
    train_labels: [N] integer labels in [0, num_classes).
    test_feats: [M, D] frozen test features.
    test_labels: [M] integer labels in [0, num_classes).
    num_classes: number of classes C.
    epochs: passes over the training set.
    lr: peak learning rate.
    weight_decay: decoupled L2 coefficient on the weights.
    batch_size: examples per step; capped at N.
    seed: seed of the shuffles (the initialisation is deterministic).

  Returns:
    {'top1': test accuracy, 'train_top1': training accuracy, 'test_loss': test cross
    entropy, 'train_loss': mean training loss of the last epoch}, all Python floats.

  Raises:
    ValueError: on mismatched shapes, labels outside [0, num_classes), non-positive
      epochs / batch_size / lr, negative weight decay or non-finite features.
  """
  xtr, ytr, xte, yte = validate_split(train_feats, train_labels, test_feats, test_labels, num_classes)
  epochs = _positive_int(epochs, "epochs")
  batch_size = min(_positive_int(batch_size, "batch_size"), xtr.shape[0])
  if not np.isfinite(lr) or lr <= 0:
    raise ValueError(f"lr must be a finite float > 0, got {lr!r}.")
  if not np.isfinite(weight_decay) or weight_decay < 0:
    raise ValueError(f"weight_decay must be a finite float >= 0, got {weight_decay!r}.")

  mean = xtr.mean(axis=0, keepdims=True)
  std = xtr.std(axis=0, keepdims=True)
  std = np.where(std > 1e-6, std, 1.0)  # constant dims become 0, not inf
  x_train = jnp.asarray((xtr - mean) / std)
  x_test = jnp.asarray((xte - mean) / std)
  y_train, y_test = jnp.asarray(ytr), jnp.asarray(yte)

  params, epoch_losses = _train(
      x_train, y_train, jax.random.key(seed), jnp.float32(lr), jnp.float32(weight_decay),
      epochs=epochs, steps_per_epoch=xtr.shape[0] // batch_size, batch_size=batch_size,
      num_classes=int(num_classes))
  train_top1, _ = _accuracy_and_loss(params, x_train, y_train)
  top1, test_loss = _accuracy_and_loss(params, x_test, y_test)
  return {
      "top1": float(top1),
      "train_top1": float(train_top1),
      "test_loss": float(test_loss),
      "train_loss": float(epoch_losses[-1]),
  }
