"""The loss terms that `ssljax.methods._distill.SelfDistillation` composes.

`DinoTerm` (DINO's [CLS] distillation), `PatchTerm` (iBOT's masked patch-token distillation) and
`KoLeoTerm` (DINOv2's regulariser). Each has `validate(name, config)`, `init_state(method)` (its
entries of the method state) and `__call__(method, out, state, step) -> (weighted loss, metrics,
state updates)` on the outputs of `SelfDistillation.forward`; the method sums them. Conventions
are the papers' reference code's: see the `_distill` module docstring and docs/losses.md.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from ssljax import losses
from ssljax import reductions
from ssljax import schedules
from ssljax.errors import ConfigError

CENTERINGS = ("center", "sinkhorn_knopp")
SECOND_MASKS = ("rot180", "same")


def _probs_as_logits(q: jax.Array) -> jax.Array:
  """Log of target probabilities, so that softmax(log q / 1) == q inside the shared losses."""
  return jnp.log(jnp.maximum(q, jnp.finfo(jnp.float32).tiny))


def _entropy(p: jax.Array) -> jax.Array:
  """Entropy along the last axis, in nats."""
  return -jnp.sum(p * jnp.log(jnp.maximum(p, 1e-12)), axis=-1)


def _sinkhorn(cfg) -> bool:
  return cfg.get("centering", "center") == "sinkhorn_knopp"


@dataclasses.dataclass(frozen=True)
class DinoTerm:
  """DINO's [CLS] distillation, `losses.dino_loss` x cls_weight (1 when the block has none): the
  student's [CLS] logits of every crop against the teacher's of the global crops, with an EMA
  centre (`losses.update_center`) or Sinkhorn-Knopp targets; teacher temperature warmed up."""
  needs_patches = False

  def validate(self, name, config) -> None:
    del name, config

  def init_state(self, method) -> dict:
    return {"center": jnp.zeros((method.cfg.out_dim,), jnp.float32)}

  def __call__(self, method, out, state, step):
    cfg = method.cfg
    temp = schedules.linear_warmup(step, cfg.warmup_teacher_temp_steps, cfg.warmup_teacher_temp,
                                   cfg.teacher_temp)
    t_cls = out["teacher_cls"]                                 # [2, B, K]
    vt, b, k = t_cls.shape
    updates = {}
    if _sinkhorn(cfg):
      q = losses.sinkhorn_knopp(t_cls.reshape(vt * b, k), epsilon=temp, n_iters=cfg.sinkhorn_iters)
      t_probs = q.reshape(vt, b, k)
      dino = losses.dino_loss(out["student_cls"], _probs_as_logits(t_probs),
                              jnp.zeros((k,), jnp.float32), cfg.student_temp, 1.0)
    else:
      t_probs = jax.nn.softmax((t_cls - state["center"]) / temp, axis=-1)
      dino = losses.dino_loss(out["student_cls"], t_cls, state["center"], cfg.student_temp, temp)
      updates["center"] = losses.update_center(state["center"], t_cls, cfg.center_momentum,
                                               method.cpu_tuning)
    metrics = {"dino_loss": dino, "teacher_temp": temp,
               "teacher_momentum": method.teacher_momentum(step),
               "teacher_entropy": jnp.mean(_entropy(t_probs)),
               "teacher_marginal_entropy": _entropy(reductions.leading_mean(t_probs, 2,
                                                                    method.cpu_tuning))}
    return cfg.get("cls_weight", 1.0) * dino, metrics, updates


@dataclasses.dataclass(frozen=True)
class PatchTerm:
  """iBOT's masked patch-token distillation, `losses.ibot_patch_loss` x patch_weight, with its own
  centre (over all teacher patch tokens, or only the masked ones: `center_masked_only`, DINOv2)
  or Sinkhorn-Knopp targets over the masked tokens, and its own temperature warm-up."""
  center_masked_only: bool = False
  needs_patches = True

  def validate(self, name, config) -> None:
    cfg = config[name]
    if config.model.name != "vit":
      raise ConfigError(f"config.model.name={config.model.name!r}; {name} masks patch "
                        "tokens and needs 'vit'")
    if not 0.0 <= cfg.mask_probability <= 1.0 or not 0.0 < cfg.mask_ratio < 1.0:
      raise ConfigError(f"config.{name}.mask_probability={cfg.mask_probability}, mask_ratio="
                        f"{cfg.mask_ratio}; expected a probability in [0, 1] and a ratio in (0, 1)")
    if cfg.second_mask not in SECOND_MASKS:
      raise ConfigError(f"config.{name}.second_mask={cfg.second_mask!r}; expected one of "
                        f"{SECOND_MASKS}")
    if cfg.get("centering", "center") not in CENTERINGS:
      raise ConfigError(f"config.{name}.centering={cfg.centering!r}; expected one of {CENTERINGS}")

  def init_state(self, method) -> dict:
    return {"patch_center": jnp.zeros((method.patch_dim,), jnp.float32)}

  @staticmethod
  def num_masked_patches(cfg, batch_size: int, num_patches: int) -> int:
    """Static count of masked patches in a batch of `batch_size` records (pipeline contract:
    every block mask has exactly round(mask_ratio * P) patches)."""
    n_crops = int(round(cfg.mask_probability * 2 * batch_size))
    return n_crops * int(round(cfg.mask_ratio * num_patches))

  def __call__(self, method, out, state, step):
    cfg = method.cfg
    temp = schedules.linear_warmup(step, cfg.warmup_teacher_temp_steps,
                                   cfg.warmup_teacher_patch_temp, cfg.teacher_patch_temp)
    mask, s_p, t_p = out["mask"], out["student_patches"], out["teacher_patches"]
    n, p, kp = t_p.shape
    metrics = {"teacher_patch_temp": temp, "mask_fraction": jnp.mean(mask.astype(jnp.float32))}
    updates = {}
    if _sinkhorn(cfg):
      # The masked teacher tokens as a static-shape [M, Kp] array (M fixed by the pipeline).
      masked_rows = jnp.nonzero(mask.reshape(n * p),
                                size=self.num_masked_patches(cfg, n // 2, p))[0]
      t_masked = t_p.reshape(n * p, kp)[masked_rows]
      q = losses.sinkhorn_knopp(t_masked, epsilon=temp, n_iters=cfg.sinkhorn_iters)
      t_logq = jnp.zeros((n * p, kp), jnp.float32).at[masked_rows].set(_probs_as_logits(q))
      patch = losses.ibot_patch_loss(s_p, t_logq.reshape(n, p, kp), mask,
                                     jnp.zeros((kp,), jnp.float32), cfg.student_temp, 1.0)
    else:
      patch = losses.ibot_patch_loss(s_p, t_p, mask, state["patch_center"], cfg.student_temp, temp)
      if self.center_masked_only:
        # The masked tokens' mean as a masked sum: selecting the tokens (a nonzero over the
        # global batch) made every device gather the [M, Kp] teacher logits.
        w = mask.reshape(n, p).astype(jnp.float32)
        total = jnp.einsum("np,npk->k", w, jax.lax.stop_gradient(t_p).astype(jnp.float32),
                           precision=jax.lax.Precision.HIGHEST)
        centre_input = (total / jnp.maximum(jnp.sum(w), 1.0))[None, None]
      else:
        centre_input = t_p.reshape(1, n * p, kp)
      updates["patch_center"] = losses.update_center(state["patch_center"], centre_input,
                                                     cfg.center_momentum, method.cpu_tuning)
    return cfg.patch_weight * patch, dict(metrics, patch_loss=patch), updates


@dataclasses.dataclass(frozen=True)
class KoLeoTerm:
  """DINOv2's KoLeo regulariser x koleo_weight: `losses.koleo` of the student backbone's [CLS]
  of each global crop separately, summed over the crops (the reference's `koleo_loss`)."""
  needs_patches = False

  def validate(self, name, config) -> None:
    del name, config

  def init_state(self, method) -> dict:
    del method
    return {}

  def __call__(self, method, out, state, step):
    del state, step
    feats = out["student_feats"]                               # [2, B, D]
    kl = sum(losses.koleo(feats[v]) for v in range(feats.shape[0]))
    return method.cfg.koleo_weight * kl, {"koleo_loss": kl}, {}
