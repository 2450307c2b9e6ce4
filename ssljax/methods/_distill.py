"""Self-distillation with an EMA teacher, shared by DINO, iBOT and DINOv2.

One class, `SelfDistillation`, does the three methods; each method file picks its config block
and composes its loss from terms: `DinoTerm` ([CLS] distillation), `PatchTerm` (iBOT's masked
patch-token distillation) and `KoLeoTerm` (DINOv2's regulariser); the forward pass computes the
patch tokens and masks only when a term needs them. The pieces, with the papers' reference
conventions:

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

from ssljax import cpu
from ssljax.data.views import ViewSpec
from ssljax.errors import ConfigError
from ssljax.methods import base
from ssljax.methods import common
from ssljax.methods._distill_terms import DinoTerm, KoLeoTerm, PatchTerm  # noqa: F401
from ssljax.models.heads import DINOHead

EVAL_BACKBONES = ("teacher", "student")


# ---------------------------------------------------------------------------------------------
# The method.
# ---------------------------------------------------------------------------------------------


class SelfDistillation(base.Method):
  """DINO-family student/teacher self-distillation (see the module docstring).

  `terms`: the loss terms, summed (DINO: (DinoTerm(),)).
  """

  terms: tuple = (DinoTerm(),)

  def __init__(self, config):
    super().__init__(config)
    cfg = self.cfg
    self.masked_patches = any(t.needs_patches for t in self.terms)
    self.backbone = common.backbone_from_config(config)
    self.head_bn = bool(cfg.get("use_bn_in_head", False))
    # The head's and the centre's batch reductions in their XLA:CPU form when on CPU (ssljax/cpu).
    self.cpu_tuning = cpu.enabled(config.model.cpu_tuning)
    self.head = DINOHead(out_dim=cfg.out_dim, hidden_dim=cfg.hidden_dim,
                         bottleneck_dim=cfg.bottleneck_dim, n_layers=cfg.head_layers,
                         norm_last_layer=cfg.norm_last_layer, use_bn=self.head_bn,
                         cpu_tuning=self.cpu_tuning)
    self.separate_patch_head = self.masked_patches and not cfg.shared_head
    if self.separate_patch_head:
      self.patch_head = self.head.clone(out_dim=cfg.patch_out_dim)
    # The teacher: an EMA of all student params, momentum cosine from cfg.momentum to 1.
    self.ema = common.EMATarget(common.cosine_momentum(cfg.momentum, config.total_steps),
                                path=("teacher",))
    self.teacher_momentum = self.ema.momentum

  @property
  def patch_dim(self) -> int:
    """Kp, the width of the patch-head logits."""
    return self.cfg.patch_out_dim if self.separate_patch_head else self.cfg.out_dim

  @classmethod
  def validate_config(cls, config):
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
    for term in cls.terms:
      term.validate(cls.name, config)

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
  # Init, EMA, gradient masking.
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
    state = {"teacher": self.ema.init(params),
             "collections": {"student": b_coll, "teacher": b_coll}}
    if self.head_bn:
      # The heads' BatchNorm statistics; like the backbone's, the teacher keeps its own
      # (only parameters are averaged into the teacher, as in the reference).
      state["head_stats"] = {"student": head_stats,
                             "teacher": jax.tree_util.tree_map(jnp.copy, head_stats)}
    for term in self.terms:
      state.update(term.init_state(self))
    return params, state

  def after_step(self, params, state, step):
    return self.ema.after_step(params, state, step)

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

  def _heads(self, params, stats, cls_feats, patch_feats, *, train, batch):
    """Head logits: cls_feats [N, D] -> [N, K]; patch_feats [M, P, D] -> [M, P, Kp] (or None).

    Rows are image-major (`merge_views` order) over `batch` images: N and M are multiples of it.

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
      # One head call over every image's [CLS] and patch tokens, kept image-major: each image's
      # rows stay on the device that holds the image (a row concatenation would reshard the batch).
      n = cls_feats.shape[0]
      c = n // batch
      tokens = jnp.concatenate([cls_feats.reshape(batch, c, d),
                                patch_feats.reshape(batch, (m // batch) * p, d)], axis=1)
      both = run("head", self.head, tokens.reshape(-1, d)).reshape(batch, tokens.shape[1], -1)
      return both[:, :c].reshape(n, -1), both[:, c:].reshape(m, p, -1), new_stats
    return cls_logits, patch_logits.reshape(m, p, -1), new_stats

  def view_masks(self, batch, rng) -> jax.Array:
    """Student masks of the merged global crops: bool [B * 2, P], in `merge_views` order.

    Crop 0 takes the record's mask, crop 1 its 180-degree rotation (or the same mask); then
    exactly round(mask_probability * 2B) crops, drawn with `rng`, keep their mask.
    """
    mask = batch["mask"].astype(bool)                           # [B, P]
    b, p = mask.shape
    # Reversing the row-major order flips rows and columns: a 180-degree rotation.
    second = mask[:, ::-1] if self.cfg.second_mask == "rot180" else mask
    masks = jnp.stack([mask, second], axis=1).reshape(2 * b, p)
    n_masked = int(round(self.cfg.mask_probability * 2 * b))
    chosen = jnp.zeros((2 * b,), bool).at[jax.random.permutation(rng, 2 * b)[:n_masked]].set(True)
    return masks & chosen[:, None]

  def forward(self, params, state, batch, rng):
    """Student and teacher outputs of one batch (no loss).

    Returns a dict: 'student_cls' [2 + L, B, K] (global crops first), 'teacher_cls' [2, B, K],
    'student_feats' [2, B, D] (backbone [CLS] / pooled of the global crops), and with a patch
    term: 'mask' [2B, P], 'student_patches', 'teacher_patches' [2B, P, Kp]; plus
    'collections', the updated backbone statistics (and 'head_stats', the heads', with
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
    # Global and local crops through the head together, image-major ([B, V] merged): each image's
    # crops stay on its device; a concatenation along rows would reshard the batch.
    n_views = n_global + n_local
    cls_all = jnp.concatenate([x.reshape((b, -1) + x.shape[1:]) for x in cls_in], axis=1)
    s_cls, s_patch_logits, s_hstats = self._heads(
        params, head_stats["student"], common.merge_views(cls_all), s_patches, train=True,
        batch=b)
    s_cls = common.split_views(s_cls, n_views)                  # [V, B, K]
    s_cls_views = [s_cls[:n_global]] + ([s_cls[n_global:]] if n_local else [])

    teacher = jax.lax.stop_gradient(state["teacher"])
    t_train = bool(jax.tree_util.tree_leaves(colls["teacher"]))  # BatchNorm: batch statistics
    t_pooled, t_patches, t_coll = self._encode(
        teacher["backbone"], colls["teacher"], globals_, train=t_train, tokens=self.masked_patches)
    # With BN in the head the teacher head uses batch statistics too (the reference never calls
    # teacher.eval()).
    t_cls, t_patch_logits, t_hstats = self._heads(teacher, head_stats["teacher"], t_pooled,
                                                  t_patches, train=True, batch=b)

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

  def loss(self, params, state, batch, rng, step):
    """The sum of the terms on one `forward`; the state gets the new statistics and centres."""
    out = self.forward(params, state, batch, rng)
    new_state = dict(state, collections=out["collections"])
    if self.head_bn:
      new_state["head_stats"] = out["head_stats"]
    total, metrics = 0.0, {}
    for term in self.terms:
      value, term_metrics, updates = term(self, out, state, step)
      total = total + value
      metrics.update(term_metrics)
      new_state.update(updates)
    return total, (metrics, new_state)

  # -------------------------------------------------------------------------------------------
  # Evaluation.
  # -------------------------------------------------------------------------------------------

  def _evaluated(self, params, state):
    """(params, 'teacher' | 'student') of the network that `eval_backbone` evaluates."""
    who = self.cfg.eval_backbone
    return (state["teacher"] if who == "teacher" else params), who

  def pretrained_backbone(self, params, state):
    """The EMA teacher's backbone by default (DINO, iBOT, DINOv2 evaluate it), with its
    BatchNorm statistics; the student's with eval_backbone='student'."""
    p, who = self._evaluated(params, state)
    return base.Backbone(self.backbone, {"params": p["backbone"], **state["collections"][who]})

  def embeddings(self, params, state, images):
    """The DINO head's bottleneck [N, bottleneck_dim] (before its L2 normalisation) of the
    evaluated network: the last layer before the K prototypes, for collapse diagnostics
    (the K logits themselves can be 65536 wide)."""
    p, who = self._evaluated(params, state)
    stats = state["head_stats"][who]["head"] if self.head_bn else {}
    feats = self.features(params, state, images)
    last = f"mlp{self.cfg.head_layers - 1}"
    _, inter = self.head.apply({"params": p["head"], **stats}, feats, mutable=["intermediates"],
                               capture_intermediates=lambda mdl, _: mdl.name == last)
    return inter["intermediates"][last]["__call__"][0].astype(jnp.float32)
