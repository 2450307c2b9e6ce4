"""Exact gradient accumulation over micro-batches (`config.grad_accum_steps`).

With k = grad_accum_steps > 1 the train step splits the global batch [B, ...] into k micro-batches
of B / k (row r goes to micro-batch r % k, so that each micro-batch stays spread over the same
devices as the batch), runs the loss and its gradient on each in turn under `lax.scan` (only one
micro-batch's activations are alive at a time) and averages losses, gradients and metrics. The
optimizer then takes one step, as with the whole batch.

That equals the whole-batch gradient only when the loss is a mean of per-example terms over
equal-sized micro-batches: no statistic across examples (negatives, cross-correlations,
covariances, centers, Sinkhorn, BatchNorm in a head or backbone). Methods declare it with a class
attribute `per_example_loss = True`; the shipped ones that qualify are listed in PER_EXAMPLE,
BYOL qualifies with `byol.use_bn=False` (a per-example cosine loss); every other shipped one has
its reason in REFUSALS, and the config is refused in one line.
Each micro-batch gets its own key (`fold_in(rng, i)`): in-graph randomness (stochastic depth,
I-JEPA / data2vec extra mask copies) is drawn per micro-batch, so runs that use it match the
whole batch in distribution, not bit for bit. Metrics are the mean over micro-batches (for a
metric that is itself a batch statistic, e.g. a std over the batch, an average of per-micro-batch
values).
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from ssljax.errors import ConfigError

# Shipped methods whose loss is a mean of per-example terms (masks come from the pipeline).
PER_EXAMPLE = ("mae", "ijepa", "data2vec")
_NEGATIVES = "its contrastive loss scores every example against the whole batch's negatives"
_BATCH_STATS = "its loss uses statistics across the batch"
REFUSALS = {
    "simclr": _NEGATIVES, "mocov3": _NEGATIVES, "nnclr": _NEGATIVES, "supcon": _NEGATIVES,
    "clip": _NEGATIVES, "siglip": _NEGATIVES, "lit": _NEGATIVES,
    "barlow_twins": f"{_BATCH_STATS} (the cross-correlation of the two views' embeddings)",
    "vicreg": f"{_BATCH_STATS} (variance and covariance of the embeddings)",
    "wmse": f"{_BATCH_STATS} (whitening of the embeddings)",
    "dino": f"{_BATCH_STATS} (the teacher center, updated from the batch mean)",
    "ibot": f"{_BATCH_STATS} (the teacher centers, updated from the batch mean)",
    "dinov2": f"{_BATCH_STATS} (Sinkhorn-Knopp centering and the KoLeo term)",
    "swav": f"{_BATCH_STATS} (Sinkhorn-Knopp codes over the batch)",
    "msn": f"{_BATCH_STATS} (the mean-entropy regulariser over the batch)",
    "lejepa": f"{_BATCH_STATS} (SIGReg's test of the embedding distribution)",
    "byol": "its projector and predictor use BatchNorm over the batch (byol.use_bn=False lifts it)",
    "simsiam": "its projector and predictor use BatchNorm over the batch",
}


def refusal(config) -> str | None:
  """Why `config` cannot accumulate gradients exactly (one clause), or None when it can."""
  from ssljax import methods as methods_lib  # pylint: disable=g-import-not-at-top
  name = config.method
  if config.model.name == "resnet" and config.model.get("norm", "batch") == "batch":
    return "the ResNet's BatchNorm normalises over the batch (use model.norm='group')"
  cls = methods_lib.get(name)
  if getattr(cls, "per_example_loss", name in PER_EXAMPLE):
    return None
  if name == "byol" and not config.byol.get("use_bn", True):
    return None   # per-example cosine loss once the heads have no BatchNorm
  return REFUSALS.get(name, f"{cls.__name__} does not declare per_example_loss = True")


def check(config, data_parallel: int = 1) -> None:
  """ConfigError (one line) when config.grad_accum_steps is invalid or refused for the method."""
  k = config.get("grad_accum_steps", 1)
  if k < 1:
    raise ConfigError(f"config.grad_accum_steps={k}; expected a positive integer (1 = off)")
  if k == 1:
    return
  why = refusal(config)
  if why is not None:
    raise ConfigError(f"config.grad_accum_steps={k} with method {config.method!r}: not exact "
                      f"because {why}; expected grad_accum_steps=1 for this method")
  if config.batch_size % (k * data_parallel):
    raise ConfigError(f"config.batch_size={config.batch_size} is not divisible by "
                      f"grad_accum_steps={k} x data-parallel size {data_parallel}; expected a "
                      f"multiple of {k * data_parallel}")


def split(batch: dict[str, jax.Array], k: int) -> dict[str, jax.Array]:
  """[B, ...] fields -> [k, B / k, ...]: micro-batch i holds rows i, i + k, i + 2k, ..."""
  def one(x):
    x = x.reshape((x.shape[0] // k, k) + x.shape[1:])
    return jnp.swapaxes(x, 0, 1)
  return jax.tree_util.tree_map(one, batch)


def value_and_grad(loss_fn: Callable, params: Any, method_state: Any, batch: dict[str, jax.Array],
                   rng: jax.Array, k: int):
  """((loss, (metrics, method_state)), grads) of `loss_fn(params, method_state, batch, rng)`,
  averaged over k micro-batches (k == 1: the plain `jax.value_and_grad`).

  `loss_fn` returns (scalar loss, (metrics, new method_state)); the method state is threaded
  through the micro-batches in order.
  """
  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
  if k == 1:
    return grad_fn(params, method_state, batch, rng)

  def body(carry, inputs):
    grads, loss, state = carry
    i, micro = inputs
    (l, (metrics, state)), g = grad_fn(params, state, micro, jax.random.fold_in(rng, i))
    grads = jax.tree_util.tree_map(jnp.add, grads, g)
    return (grads, loss + l.astype(jnp.float32), state), metrics

  zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
  (grads, loss, state), metrics = jax.lax.scan(
      body, (zeros, jnp.zeros((), jnp.float32), method_state), (jnp.arange(k), split(batch, k)))
  grads = jax.tree_util.tree_map(lambda g: g / k, grads)
  metrics = jax.tree_util.tree_map(lambda m: jnp.mean(m, axis=0), metrics)
  return (loss / k, (metrics, state)), grads
