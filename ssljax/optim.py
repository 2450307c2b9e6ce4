"""Optimizers and learning-rate schedules from `config.optimizer`.

The peak learning rate is `base_lr * batch_size / 256` (the linear scaling rule used by SimCLR,
BYOL, DINO and MAE), reached by linear warm-up and followed by a cosine decay. Weight decay and
the LARS trust ratio skip biases, normalisation parameters and the ViT's tokens (see `decay_mask`).
`layer_decay` < 1 gives ViT blocks layer-wise learning rates (BEiT, MAE fine-tuning, DINOv2);
`lr_scales` ('predictor:10') multiplies the learning rate of whole top-level modules.
"""
from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import optax

from ssljax.errors import ConfigError


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


def weight_decay_schedule(config):
  """The weight decay: a constant, or (optimizer.weight_decay_end >= 0) half a cosine from
  weight_decay to weight_decay_end over total_steps, as DINO / iBOT / DINOv2 schedule it (0.04 -> 0.4)."""
  opt = config.optimizer
  if opt.weight_decay_end < 0:
    return opt.weight_decay
  return _cosine_between(opt.weight_decay, opt.weight_decay_end, max(config.total_steps, 1))


def _cosine_between(start: float, end: float, steps: int) -> optax.Schedule:
  """start -> end along half a cosine over `steps` (either direction), then end."""
  def fn(step):
    t = jnp.minimum(step, steps) / steps
    return end + (start - end) * 0.5 * (1.0 + jnp.cos(jnp.pi * t))
  return fn


# Leaf names that never get weight decay (nor LARS's trust ratio), whatever their rank: the ViT's
# attention biases are [H, Dh] and its tokens [1, n, D], but they are biases and embeddings (MAE, BEiT
# and DINO exclude them). Every other parameter with ndim <= 1 (biases, norm scales) is excluded too.
_NO_DECAY = ("bias", "scale", "cls", "registers", "mask_token", "pos_embedding")


def decay_mask(params):
  """True for the parameters that get weight decay (kernels); False for biases, norm scales, tokens."""
  def one(path, p):
    leaf = str(getattr(path[-1], "key", getattr(path[-1], "name", path[-1]))) if path else ""
    return p.ndim > 1 and leaf not in _NO_DECAY
  return jax.tree_util.tree_map_with_path(one, params)


def layer_id(path: str, num_layers: int) -> int:
  """Depth of a parameter for layer-wise lr decay: embeddings 0, `block{i}` i+1, the rest num_layers+1.

  Paths are '/'-joined param-tree keys (e.g. 'backbone/block3/attn/query/kernel').
  """
  m = re.search(r"(?:^|/)block(\d+)(?:/|$)", path)
  if m:
    return int(m.group(1)) + 1
  if re.search(r"(?:^|/)(patch_embed|cls|registers|pos_embedding|mask_token)(?:/|$)", path):
    return 0
  return num_layers + 1


def _path_name(path) -> str:
  return "/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path)


def _layer_decay_factor(decay: float, num_layers: int):
  return lambda path: decay ** (num_layers + 1 - layer_id(_path_name(path), num_layers))


def layer_decay_scales(params, decay: float, num_layers: int):
  """Per-leaf lr multipliers decay ** (num_layers + 1 - layer_id): the BEiT / MAE fine-tuning rule."""
  factor = _layer_decay_factor(decay, num_layers)
  return jax.tree_util.tree_map_with_path(lambda path, _: factor(path), params)


def _scale_leaves(factor, check=None) -> optax.GradientTransformation:
  """Multiplies each update leaf by `factor(path)` (None: the leaf as it is), after the optimizer;
  `check(params)` runs once at init."""
  def init(params):
    if check is not None:
      check(params)
    return optax.EmptyState()

  def update(updates, state, params=None):
    del params
    def one(path, u):
      f = factor(path)
      return u if f is None else u * f
    return jax.tree_util.tree_map_with_path(one, updates), state

  return optax.GradientTransformation(init, update)


def scale_by_layer_decay(decay: float, num_layers: int) -> optax.GradientTransformation:
  """Multiplies each update by its layer's lr multiplier (applied after the optimizer)."""
  return _scale_leaves(_layer_decay_factor(decay, num_layers))


def parse_lr_scales(spec: str) -> dict[str, float]:
  """'predictor:10,projector:2' -> {'predictor': 10.0, 'projector': 2.0}; '' -> {}."""
  scales = {}
  for part in str(spec or "").replace(" ", "").split(","):
    if not part:
      continue
    name, sep, factor = part.partition(":")
    try:
      value = float(factor) if sep and name else -1.0
    except ValueError:
      value = -1.0
    if value <= 0 or name in scales:
      raise ConfigError(f"config.optimizer.lr_scales={spec!r}; expected 'module:factor,...' with "
                        f"distinct top-level param modules and factors > 0, e.g. 'predictor:10'")
    scales[name] = value
  return scales


def scale_by_module(scales: dict[str, float]) -> optax.GradientTransformation:
  """Multiplies the updates of each named top-level param module by its factor (after the
  optimizer, weight decay included: the module's learning rate times the factor, as a torch param
  group with its own lr)."""
  def check(params):
    missing = sorted(set(scales) - set(params))
    if missing:
      raise ConfigError(f"config.optimizer.lr_scales names {missing}; this method's param modules "
                        f"are {sorted(params)}")

  return _scale_leaves(lambda path: scales.get(getattr(path[0], "key", None)), check)


def build(config) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """The optimizer named by `config.optimizer.name` ('lars' | 'adamw' | 'sgd') and its schedule."""
  opt = config.optimizer
  lr = schedule(config)
  wd = weight_decay_schedule(config)
  if opt.name == "lars":
    tx = optax.lars(lr, weight_decay=wd, weight_decay_mask=decay_mask,
                    trust_coefficient=opt.trust_coefficient, trust_ratio_mask=decay_mask,
                    momentum=opt.momentum)
  elif opt.name == "adamw":
    tx = optax.adamw(lr, b1=opt.b1, b2=opt.b2, weight_decay=wd, mask=decay_mask)
  elif opt.name == "sgd":
    tx = optax.chain(optax.add_decayed_weights(wd, mask=decay_mask),
                     optax.sgd(lr, momentum=opt.momentum))
  else:
    raise ValueError(f"optimizer.name={opt.name!r}; expected 'lars', 'adamw' or 'sgd'")
  if opt.layer_decay != 1.0:
    if config.model.name != "vit":
      raise ValueError(f"optimizer.layer_decay={opt.layer_decay} needs a ViT backbone "
                       f"(model.name={config.model.name!r})")
    from ssljax.models import vit
    depth = vit.resolve_variant(config.model.variant, config.model.width, config.model.depth,
                                config.model.num_heads)[1]
    tx = optax.chain(tx, scale_by_layer_decay(opt.layer_decay, depth))
  scales = parse_lr_scales(opt.get("lr_scales", ""))
  if scales:
    tx = optax.chain(tx, scale_by_module(scales))
  if opt.grad_clip > 0:
    tx = optax.chain(optax.clip_by_global_norm(opt.grad_clip), tx)
  return tx, lr
