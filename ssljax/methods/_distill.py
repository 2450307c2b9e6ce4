"""Self-distillation with an EMA teacher, shared by DINO, iBOT and DINOv2.

One class, `SelfDistillation`, does the three methods; each method file picks its config block
and two switches (`masked_patches`: iBOT's masked patch-token loss; `koleo`: DINOv2's KoLeo
regulariser). The pieces, with the papers' reference conventions:

- "Emerging Properties in Self-Supervised Vision Transformers" (DINO, Caron et al., 2021):
  multi-crop (2 global crops seen by teacher and student, L local crops seen by the student
  only), `DINOHead` (weight-normalised last layer), an EMA teacher whose momentum follows a
  cosine from `momentum` to 1 over the run, a centre of the teacher logits (EMA with
  `center_momentum` over the GLOBAL batch, `losses.update_center`), a teacher temperature
  warmed up linearly from `warmup_teacher_temp` to `teacher_temp`, `losses.dino_loss` over all
  (teacher global crop i, student crop j != i) pairs, and the head's `last_layer` frozen for the
  first `freeze_last_layer_steps` steps. The teacher runs without stochastic depth; when the
  backbone has BatchNorm statistics the teacher runs in train mode with its own statistics
  (the reference never calls teacher.eval()).
- "iBOT: Image BERT Pre-Training with Online Tokenizer" (Zhou et al., 2022): the student's
  global crops have block-wise masked patches (replaced by the ViT's learned mask token), the
  teacher sees them unmasked, and `losses.ibot_patch_loss` distils the teacher's patch tokens
  into the student's at the masked positions of the SAME crop, with its own centre and
  temperature. The DINO term uses the student's [CLS] of the masked global crops, as in iBOT.
- "DINOv2: Learning Robust Visual Features without Supervision" (Oquab et al., 2024): DINO +
  iBOT + KoLeo (`losses.koleo` on the student backbone's [CLS] of each global crop separately,
  summed over the crops, as the reference's `koleo_loss` does), registers ("Vision Transformers
  Need Registers": `config.model.num_registers`, discarded at the output), and optionally
  Sinkhorn-Knopp teacher targets (`losses.sinkhorn_knopp` with epsilon = the teacher
  temperature, 3 iterations, over the global batch; for patches over the masked patches only)
  instead of the EMA centre.

Masks. The pipeline makes ONE block mask per record (`batch['mask']` bool [B, P]). Global crop 0
uses it as is; crop 1 uses it rotated by 180 degrees on the patch grid (`second_mask='rot180'`:
same count and block shapes, different places, like the reference's independent mask per crop)
or the same mask (`second_mask='same'`). Then, as DINOv2's collate does, exactly
round(mask_probability * 2B) of the 2B global crops of the batch keep their mask and the rest
are unmasked (iBOT draws per image with the same mean). The mask ratio is the pipeline's fixed
`mask_ratio` (the references draw it per image from a range, e.g. U(0.1, 0.5)).

Heads. `shared_head=True` applies the one DINO head to [CLS] and patch tokens (iBOT's ViT-S/B
recipes, DINOv2's default); `shared_head=False` gives the patches a separate `patch_head`
(DINOv2's `separate_head`; iBOT's in-between option, a shared MLP with its own last layer, is
not offered). `use_bn_in_head=True` (the DINO reference's `--use_bn_in_head`) puts BatchNorm in
the heads' MLPs: student and teacher heads both normalise with the statistics of their batch
(all the crops each one sees; for a shared head, its [CLS] and patch tokens together, as iBOT's
head over the whole token sequence), and each keeps its own running statistics in
`state['head_stats']`, which the EMA does not touch (the reference averages parameters only).
On the digits ViT, whose [CLS] features of different images are nearly parallel at init, this is
what keeps the centred teacher from becoming uniform (configs/dino_digits.py).

Params: {'backbone', 'head'[, 'patch_head']}. State: {'teacher': a params-shaped EMA copy,
'collections': {'student', 'teacher'} backbone BatchNorm statistics (empty for a ViT),
'center': [K][, 'patch_center': [Kp]][, 'head_stats': {'student', 'teacher'} the heads' BatchNorm
statistics, with `use_bn_in_head`]}.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from ssljax import losses
from ssljax import reductions
from ssljax import schedules
from ssljax.data.augment import ViewSpec
from ssljax.methods import base
from ssljax.methods import common
from ssljax.models.heads import DINOHead

CENTERINGS = ("center", "sinkhorn_knopp")
SECOND_MASKS = ("rot180", "same")
EVAL_BACKBONES = ("teacher", "student")


def dino_config() -> dict:
  """DINO's keys with the defaults of the reference ViT-S/16 recipe (main_dino.py)."""
  return dict(
      out_dim=65536,                 # K prototypes of the DINO head
      hidden_dim=2048,
      bottleneck_dim=256,
      head_layers=3,
      norm_last_layer=True,          # weight-norm gain fixed to 1
      use_bn_in_head=False,          # BatchNorm in the head's MLP (the reference's option)
      student_temp=0.1,
      teacher_temp=0.04,             # 0.07 for long ViT runs (with a 30-epoch warm-up)
      warmup_teacher_temp=0.04,
      warmup_teacher_temp_steps=0,
      momentum=0.996,                # EMA teacher momentum, cosine to 1 over total_steps
      center_momentum=0.9,
      freeze_last_layer_steps=0,     # the reference: one epoch
      global_crops_scale=(0.4, 1.0),
      local_crops=8,
      local_size=96,
      local_crops_scale=(0.05, 0.4),
      eval_backbone="teacher",       # DINO evaluates the teacher ('teacher' | 'student')
  )


def ibot_config() -> dict:
  """DINO's keys plus iBOT's, with the defaults of iBOT's ViT-S/16 recipe."""
  c = dino_config()
  c.update(
      out_dim=8192,
      norm_last_layer=False,
      teacher_temp=0.07,
      warmup_teacher_temp_steps=0,
      global_crops_scale=(0.25, 1.0),
      local_crops=10,
      local_crops_scale=(0.05, 0.25),
      shared_head=True,              # one head for [CLS] and patches; False: separate patch_head
      patch_out_dim=8192,            # Kp, used when shared_head is False
      teacher_patch_temp=0.07,
      warmup_teacher_patch_temp=0.04,
      cls_weight=1.0,                # iBOT's lambda1
      patch_weight=1.0,              # iBOT's lambda2
      mask_ratio=0.3,                # fraction of patches masked in a masked crop
      mask_probability=0.5,          # fraction of global crops that are masked
      second_mask="rot180",          # how crop 1's mask derives from the record's mask
  )
  return c


def dinov2_config() -> dict:
  """iBOT's keys plus DINOv2's, with the defaults of DINOv2's ssl_default_config."""
  c = ibot_config()
  c.update(
      out_dim=65536,
      patch_out_dim=65536,
      norm_last_layer=True,
      teacher_temp=0.07,
      teacher_patch_temp=0.07,
      warmup_teacher_temp=0.04,
      warmup_teacher_patch_temp=0.04,
      momentum=0.992,
      global_crops_scale=(0.32, 1.0),
      local_crops=8,
      local_crops_scale=(0.05, 0.32),
      mask_ratio=0.3,                # the reference draws U(0.1, 0.5) per crop
      koleo_weight=0.1,
      centering="center",            # 'center' (EMA) | 'sinkhorn_knopp'
      sinkhorn_iters=3,
  )
  return c


def _probs_as_logits(q: jax.Array) -> jax.Array:
  """Log of target probabilities, so that softmax(log q / 1) == q inside the shared losses."""
  return jnp.log(jnp.maximum(q, jnp.finfo(jnp.float32).tiny))


def _entropy(p: jax.Array) -> jax.Array:
  """Entropy along the last axis, in nats."""
  return -jnp.sum(p * jnp.log(jnp.maximum(p, 1e-12)), axis=-1)


class SelfDistillation(base.Method):
  """DINO-family student/teacher self-distillation (see the module docstring)."""

  masked_patches: bool = False   # iBOT patch loss on block-masked global crops
  koleo: bool = False            # DINOv2 KoLeo regulariser
  patch_center_masked_only: bool = False  # DINOv2 centres patches on masked tokens; iBOT on all

  def __init__(self, config):
    super().__init__(config)
    cfg = self.cfg
    self.backbone = common.backbone_from_config(config)
    self.head_bn = bool(cfg.get("use_bn_in_head", False))
    self.head = DINOHead(out_dim=cfg.out_dim, hidden_dim=cfg.hidden_dim,
                         bottleneck_dim=cfg.bottleneck_dim, n_layers=cfg.head_layers,
                         norm_last_layer=cfg.norm_last_layer, use_bn=self.head_bn)
    self.separate_patch_head = self.masked_patches and not cfg.shared_head
    if self.separate_patch_head:
      self.patch_head = DINOHead(out_dim=cfg.patch_out_dim, hidden_dim=cfg.hidden_dim,
                                 bottleneck_dim=cfg.bottleneck_dim, n_layers=cfg.head_layers,
                                 norm_last_layer=cfg.norm_last_layer, use_bn=self.head_bn)

  @property
  def patch_dim(self) -> int:
    """Kp, the width of the patch-head logits."""
    return self.cfg.patch_out_dim if self.separate_patch_head else self.cfg.out_dim

  @classmethod
  def validate_config(cls, config):
    from ssljax.config import ConfigError  # local: ssljax.config imports the methods package
    cfg = config[cls.name]
    if cfg.eval_backbone not in EVAL_BACKBONES:
      raise ConfigError(f"config.{cls.name}.eval_backbone={cfg.eval_backbone!r}; "
                        f"expected one of {EVAL_BACKBONES}")
    if cfg.local_crops < 0 or (cfg.local_crops > 0 and cfg.local_size < 1):
      raise ConfigError(f"config.{cls.name}.local_crops={cfg.local_crops} with local_size="
                        f"{cfg.local_size}; expected local_crops >= 0 and local_size >= 1")
    if cfg.freeze_last_layer_steps < 0:
      raise ConfigError(f"config.{cls.name}.freeze_last_layer_steps={cfg.freeze_last_layer_steps}; "
                        "expected >= 0")
    if not 0.0 <= cfg.momentum <= 1.0:
      raise ConfigError(f"config.{cls.name}.momentum={cfg.momentum}; expected in [0, 1]")
    if config.model.name == "vit":
      p = config.model.patch_size
      for key, size in (("data.image_size", config.data.image_size),
                        (f"{cls.name}.local_size", cfg.local_size if cfg.local_crops else p)):
        if size % p:
          raise ConfigError(f"config.{key}={size} is not divisible by model.patch_size={p}")
    if not cls.masked_patches:
      return
    if config.model.name != "vit":
      raise ConfigError(f"config.model.name={config.model.name!r}; {cls.name} masks patch "
                        "tokens and needs 'vit'")
    if not 0.0 <= cfg.mask_probability <= 1.0 or not 0.0 < cfg.mask_ratio < 1.0:
      raise ConfigError(f"config.{cls.name}.mask_probability={cfg.mask_probability}, mask_ratio="
                        f"{cfg.mask_ratio}; expected a probability in [0, 1] and a ratio in (0, 1)")
    if cfg.second_mask not in SECOND_MASKS:
      raise ConfigError(f"config.{cls.name}.second_mask={cfg.second_mask!r}; expected one of "
                        f"{SECOND_MASKS}")
    if cfg.get("centering", "center") not in CENTERINGS:
      raise ConfigError(f"config.{cls.name}.centering={cfg.centering!r}; expected one of {CENTERINGS}")

  def view_spec(self) -> ViewSpec:
    cfg = self.cfg
    kwargs = {}
    if self.masked_patches:
      kwargs = dict(mask="block", mask_ratio=cfg.mask_ratio, patch_size=self.config.model.patch_size)
    return ViewSpec(global_crops=2, global_size=self.config.data.image_size,
                    global_scale=tuple(cfg.global_crops_scale), local_crops=cfg.local_crops,
                    local_size=cfg.local_size if cfg.local_crops else 0,
                    local_scale=tuple(cfg.local_crops_scale), **kwargs)

  # -------------------------------------------------------------------------------------------
  # Init, schedules, EMA, gradient masking.
  # -------------------------------------------------------------------------------------------

  def init(self, rng, batch):
    b_rng, h_rng, p_rng = jax.random.split(rng, 3)
    x = batch["global"][:, 0]
    b_params, b_coll = common.init_module(self.backbone, b_rng, x)
    feats = self.backbone.apply({"params": b_params, **b_coll}, x, train=False)
    params, head_stats = {"backbone": b_params}, {}
    params["head"], head_stats["head"] = common.init_module(self.head, h_rng, feats)
    if self.separate_patch_head:
      params["patch_head"], head_stats["patch_head"] = common.init_module(self.patch_head, p_rng,
                                                                          feats)
    # The teacher starts as a copy of the student (an explicit copy: params are donated).
    teacher = jax.tree_util.tree_map(jnp.copy, params)
    state = {"teacher": teacher, "collections": {"student": b_coll, "teacher": b_coll},
             "center": jnp.zeros((self.cfg.out_dim,), jnp.float32)}
    if self.head_bn:
      # The heads' BatchNorm statistics; like the backbone's, the teacher keeps its own
      # (only parameters are averaged into the teacher, as in the reference).
      state["head_stats"] = {"student": head_stats,
                             "teacher": jax.tree_util.tree_map(jnp.copy, head_stats)}
    if self.masked_patches:
      state["patch_center"] = jnp.zeros((self.patch_dim,), jnp.float32)
    return params, state

  def teacher_temps(self, step):
    """(cls, patch) teacher temperatures at `step` (linear warm-up, then constant)."""
    cfg = self.cfg
    t = schedules.linear_warmup(step, cfg.warmup_teacher_temp_steps, cfg.warmup_teacher_temp,
                                cfg.teacher_temp)
    if not self.masked_patches:
      return t, None
    tp = schedules.linear_warmup(step, cfg.warmup_teacher_temp_steps, cfg.warmup_teacher_patch_temp,
                                 cfg.teacher_patch_temp)
    return t, tp

  def teacher_momentum(self, step):
    """EMA momentum at `step`: cosine from cfg.momentum to 1 over config.total_steps."""
    return schedules.cosine_increase(step, self.config.total_steps, self.cfg.momentum, 1.0)

  def after_step(self, params, state, step):
    m = self.teacher_momentum(step)
    return dict(state, teacher=common.ema_update(state["teacher"], params, m))

  def transform_grads(self, grads, state, step):
    """Zeroes the heads' `last_layer` gradients while step < freeze_last_layer_steps."""
    del state
    if self.cfg.freeze_last_layer_steps <= 0:
      return grads
    frozen = jnp.asarray(step) < self.cfg.freeze_last_layer_steps
    grads = dict(grads)
    for head in ("head", "patch_head"):
      if head in grads:
        h = dict(grads[head])
        h["last_layer"] = jax.tree_util.tree_map(
            lambda g: jnp.where(frozen, jnp.zeros_like(g), g), h["last_layer"])
        grads[head] = h
    return grads

  # -------------------------------------------------------------------------------------------
  # Forward passes.
  # -------------------------------------------------------------------------------------------

  def _encode(self, backbone_params, collections, images, *, train, rng=None, token_mask=None,
              tokens=False):
    """Backbone on images [N, H, W, C] -> (pooled [N, D], patches [N, P, D] or None, collections)."""
    kwargs = {}
    if tokens:
      kwargs["return_tokens"] = True
    if token_mask is not None:
      kwargs["token_mask"] = token_mask
    out, collections = common.apply_module(self.backbone, backbone_params, collections, images,
                                           train=train, rng=rng, **kwargs)
    if tokens:
      return out["pooled"], out["patches"], collections
    return out, None, collections

  def _heads(self, params, stats, cls_feats, patch_feats, *, train):
    """Head logits: cls_feats [N, D] -> [N, K]; patch_feats [M, P, D] -> [M, P, Kp] (or None).

    `stats`: the heads' BatchNorm statistics ({'head'[, 'patch_head']}, or None without BN).
    Returns (cls logits, patch logits, updated stats). A shared head runs once on the [CLS] and
    patch tokens together (with BN, one set of batch statistics over all of them, as iBOT's
    head over the whole token sequence).
    """
    stats = stats or {}
    new_stats = dict(stats)

    def run(name, module, x):
      out, new_stats[name] = common.apply_module(module, params[name], stats.get(name, {}), x,
                                                 train=train)
      return out

    if patch_feats is None:
      return run("head", self.head, cls_feats), None, new_stats
    m, p, d = patch_feats.shape
    flat = patch_feats.reshape(m * p, d)
    if self.separate_patch_head:
      cls_logits = run("head", self.head, cls_feats)
      patch_logits = run("patch_head", self.patch_head, flat)
    else:
      both = run("head", self.head, jnp.concatenate([cls_feats, flat], axis=0))
      n = cls_feats.shape[0]
      cls_logits, patch_logits = both[:n], both[n:]
    return cls_logits, patch_logits.reshape(m, p, -1), new_stats

  def view_masks(self, batch, rng) -> jax.Array:
    """Student masks of the merged global crops: bool [B * 2, P], in `merge_views` order.

    Crop 0 takes the record's mask, crop 1 its 180-degree rotation (or the same mask); then
    exactly round(mask_probability * 2B) crops, drawn with `rng`, keep their mask.
    """
    mask = batch["mask"].astype(bool)                           # [B, P]
    b, p = mask.shape
    if self.cfg.second_mask == "rot180":
      second = mask[:, ::-1]       # reversing row-major order = flipping rows and columns
    else:
      second = mask
    masks = jnp.stack([mask, second], axis=1).reshape(2 * b, p)
    n_masked = int(round(self.cfg.mask_probability * 2 * b))
    chosen = jnp.zeros((2 * b,), bool).at[jax.random.permutation(rng, 2 * b)[:n_masked]].set(True)
    return masks & chosen[:, None]

  def num_masked_patches(self, batch_size: int, num_patches: int) -> int:
    """Static count of masked patches in a batch of `batch_size` records (pipeline contract:
    every block mask has exactly round(mask_ratio * P) patches)."""
    n_crops = int(round(self.cfg.mask_probability * 2 * batch_size))
    return n_crops * int(round(self.cfg.mask_ratio * num_patches))

  def forward(self, params, state, batch, rng):
    """Student and teacher outputs of one batch (no loss).

    Returns a dict: 'student_cls' [2 + L, B, K] (global crops first), 'teacher_cls' [2, B, K],
    'student_feats' [2, B, D] (backbone [CLS] / pooled of the global crops), and when
    masked_patches: 'mask' [2B, P], 'student_patches', 'teacher_patches' [2B, P, Kp];
    plus 'collections', the updated backbone statistics (and 'head_stats', the heads', with
    use_bn_in_head).
    """
    g = batch["global"]                                        # [B, 2, S, S, C]
    b, n_global = g.shape[:2]
    mask_rng, g_rng, l_rng = jax.random.split(rng, 3)
    colls = state["collections"]
    mask = self.view_masks(batch, mask_rng) if self.masked_patches else None
    globals_ = common.merge_views(g)                           # [B * 2, S, S, C]

    s_pooled, s_patches, s_coll = self._encode(
        params["backbone"], colls["student"], globals_, train=True, rng=g_rng, token_mask=mask,
        tokens=self.masked_patches)
    cls_in = [s_pooled]
    n_local = 0
    if "local" in batch and batch["local"].shape[1] > 0:
      n_local = batch["local"].shape[1]
      l_pooled, _, s_coll = self._encode(params["backbone"], s_coll,
                                         common.merge_views(batch["local"]), train=True, rng=l_rng)
      cls_in.append(l_pooled)
    head_stats = state.get("head_stats", {"student": None, "teacher": None})
    s_cls, s_patch_logits, s_hstats = self._heads(
        params, head_stats["student"], jnp.concatenate(cls_in, axis=0), s_patches, train=True)
    s_cls_views = [common.split_views(s_cls[:b * n_global], n_global)]
    if n_local:
      s_cls_views.append(common.split_views(s_cls[b * n_global:], n_local))

    teacher = jax.lax.stop_gradient(state["teacher"])
    t_train = bool(jax.tree_util.tree_leaves(colls["teacher"]))  # BatchNorm: batch statistics
    t_pooled, t_patches, t_coll = self._encode(
        teacher["backbone"], colls["teacher"], globals_, train=t_train, tokens=self.masked_patches)
    # With BN in the head the teacher head uses batch statistics too (the reference never calls
    # teacher.eval()).
    t_cls, t_patch_logits, t_hstats = self._heads(teacher, head_stats["teacher"], t_pooled,
                                                  t_patches, train=True)

    out = {"student_cls": jnp.concatenate(s_cls_views, axis=0),
           "teacher_cls": jax.lax.stop_gradient(common.split_views(t_cls, n_global)),
           "student_feats": common.split_views(s_pooled, n_global),
           "collections": {"student": s_coll, "teacher": jax.lax.stop_gradient(t_coll)}}
    if self.head_bn:
      out["head_stats"] = {"student": s_hstats, "teacher": jax.lax.stop_gradient(t_hstats)}
    if self.masked_patches:
      out.update(mask=mask, student_patches=s_patch_logits,
                 teacher_patches=jax.lax.stop_gradient(t_patch_logits))
    return out

  # -------------------------------------------------------------------------------------------
  # The loss.
  # -------------------------------------------------------------------------------------------

  def _sinkhorn(self) -> bool:
    return self.cfg.get("centering", "center") == "sinkhorn_knopp"

  def loss(self, params, state, batch, rng, step):
    cfg = self.cfg
    out = self.forward(params, state, batch, rng)
    temp, patch_temp = self.teacher_temps(step)
    t_cls = out["teacher_cls"]                                 # [2, B, K]
    vt, b, k = t_cls.shape
    new_state = dict(state, collections=out["collections"])
    if self.head_bn:
      new_state["head_stats"] = out["head_stats"]

    if self._sinkhorn():
      q = losses.sinkhorn_knopp(t_cls.reshape(vt * b, k), epsilon=temp, n_iters=cfg.sinkhorn_iters)
      t_probs = q.reshape(vt, b, k)
      dino = losses.dino_loss(out["student_cls"], _probs_as_logits(t_probs),
                              jnp.zeros((k,), jnp.float32), cfg.student_temp, 1.0)
    else:
      t_probs = jax.nn.softmax((t_cls - state["center"]) / temp, axis=-1)
      dino = losses.dino_loss(out["student_cls"], t_cls, state["center"], cfg.student_temp, temp)
      new_state["center"] = losses.update_center(state["center"], t_cls, cfg.center_momentum)

    metrics = {"dino_loss": dino, "teacher_temp": temp,
               "teacher_momentum": self.teacher_momentum(step),
               "teacher_entropy": jnp.mean(_entropy(t_probs)),
               "teacher_marginal_entropy": _entropy(reductions.leading_mean(t_probs, 2))}
    total = dino
    if self.masked_patches:
      patch, new_state = self._patch_loss(out, state, new_state, patch_temp)
      total = cfg.cls_weight * dino + cfg.patch_weight * patch
      metrics.update(patch_loss=patch, teacher_patch_temp=patch_temp,
                     mask_fraction=jnp.mean(out["mask"].astype(jnp.float32)))
    if self.koleo:
      feats = out["student_feats"]                             # [2, B, D]
      kl = sum(losses.koleo(feats[v]) for v in range(feats.shape[0]))
      total = total + cfg.koleo_weight * kl
      metrics["koleo_loss"] = kl
    return total, (metrics, new_state)

  def _patch_loss(self, out, state, new_state, patch_temp):
    """iBOT's masked patch loss and the patch-centre update; returns (loss, new_state)."""
    cfg = self.cfg
    mask, s_p, t_p = out["mask"], out["student_patches"], out["teacher_patches"]
    n, p, kp = t_p.shape
    masked_rows = None
    if self._sinkhorn() or self.patch_center_masked_only:
      # The masked teacher tokens as a static-shape [M, Kp] array (M fixed by the pipeline).
      masked_rows = jnp.nonzero(mask.reshape(n * p), size=self.num_masked_patches(n // 2, p))[0]
      t_masked = t_p.reshape(n * p, kp)[masked_rows]
    if self._sinkhorn():
      q = losses.sinkhorn_knopp(t_masked, epsilon=patch_temp, n_iters=cfg.sinkhorn_iters)
      t_logq = jnp.zeros((n * p, kp), jnp.float32).at[masked_rows].set(_probs_as_logits(q))
      patch = losses.ibot_patch_loss(s_p, t_logq.reshape(n, p, kp), mask,
                                     jnp.zeros((kp,), jnp.float32), cfg.student_temp, 1.0)
      return patch, new_state
    patch = losses.ibot_patch_loss(s_p, t_p, mask, state["patch_center"], cfg.student_temp,
                                   patch_temp)
    centre_input = t_masked[None] if self.patch_center_masked_only else t_p.reshape(1, n * p, kp)
    new_state["patch_center"] = losses.update_center(state["patch_center"], centre_input,
                                                     cfg.center_momentum)
    return patch, new_state

  # -------------------------------------------------------------------------------------------
  # Evaluation.
  # -------------------------------------------------------------------------------------------

  def _eval_params(self, params, state):
    if self.cfg.eval_backbone == "teacher":
      return state["teacher"], state["collections"]["teacher"]
    return params, state["collections"]["student"]

  def features(self, params, state, images):
    """Backbone features [N, D] (the teacher's by default, as DINO/iBOT/DINOv2 evaluate)."""
    p, colls = self._eval_params(params, state)
    feats, _, _ = self._encode(p["backbone"], colls, images, train=False)
    return feats.astype(jnp.float32)

  def embeddings(self, params, state, images):
    """The DINO head's bottleneck [N, bottleneck_dim] (before its L2 normalisation) of the
    evaluated network: the last layer before the K prototypes, for collapse diagnostics
    (the K logits themselves can be 65536 wide)."""
    p, _ = self._eval_params(params, state)
    stats = {}
    if self.head_bn:
      who = "teacher" if self.cfg.eval_backbone == "teacher" else "student"
      stats = state["head_stats"][who]["head"]
    feats = self.features(params, state, images)
    last = f"mlp{self.cfg.head_layers - 1}"
    _, inter = self.head.apply({"params": p["head"], **stats}, feats, mutable=["intermediates"],
                               capture_intermediates=lambda mdl, _: mdl.name == last)
    return inter["intermediates"][last]["__call__"][0].astype(jnp.float32)
