"""Optimizers and learning-rate schedules from `config.optimizer`.

The peak learning rate is `base_lr * batch_size / 256` (the linear scaling rule used by SimCLR,
BYOL, DINO and MAE), reached by linear warm-up and followed by a cosine decay. Weight decay and
the LARS trust ratio skip biases and normalisation parameters (every parameter with ndim <= 1).
"""
from __future__ import annotations

import jax
import optax


def peak_learning_rate(config) -> float:
  opt = config.optimizer
  return opt.base_lr * (config.batch_size / 256.0 if opt.scale_lr_by_batch else 1.0)


def schedule(config) -> optax.Schedule:
  """Linear warm-up from 0 to the peak over `warmup_steps`, cosine to `end_lr_frac * peak`."""
  peak = peak_learning_rate(config)
  warmup = min(config.optimizer.warmup_steps, max(config.total_steps - 1, 0))
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=peak, warmup_steps=warmup,
      decay_steps=max(config.total_steps, warmup + 1), end_value=peak * config.optimizer.end_lr_frac)


def decay_mask(params):
  """True for the parameters that get weight decay (kernels), False for biases and norm scales."""
  return jax.tree_util.tree_map(lambda p: p.ndim > 1, params)


def build(config) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """The optimizer named by `config.optimizer.name` ('lars' | 'adamw' | 'sgd') and its schedule."""
  opt = config.optimizer
  lr = schedule(config)
  if opt.name == "lars":
    tx = optax.lars(lr, weight_decay=opt.weight_decay, weight_decay_mask=decay_mask,
                    trust_coefficient=opt.trust_coefficient, trust_ratio_mask=decay_mask,
                    momentum=opt.momentum)
  elif opt.name == "adamw":
    tx = optax.adamw(lr, b1=opt.b1, b2=opt.b2, weight_decay=opt.weight_decay, mask=decay_mask)
  elif opt.name == "sgd":
    tx = optax.chain(optax.add_decayed_weights(opt.weight_decay, mask=decay_mask),
                     optax.sgd(lr, momentum=opt.momentum))
  else:
    raise ValueError(f"optimizer.name={opt.name!r}; expected 'lars', 'adamw' or 'sgd'")
  if opt.grad_clip > 0:
    tx = optax.chain(optax.clip_by_global_norm(opt.grad_clip), tx)
  return tx, lr
