"""SwAV: predict the Sinkhorn cluster code of one view from the other views (swapped prediction).

"Unsupervised Learning of Visual Features by Contrasting Cluster Assignments" (Caron et al., 2020).

Multi-crop: G global crops and L low-resolution local crops per image, each through the backbone
(one pass per resolution, like the reference's grouping of equal-size crops), then one projection
head over all crops (its BatchNorm over all of them), L2 normalisation, and the prototype scores
(cosine similarities). Codes come from Sinkhorn-Knopp over the GLOBAL batch for the views in
`assign_views` (the reference's `crops_for_assign`, the global crops), without gradient; every
other view predicts them through softmax(scores / temperature): `ssljax.losses.swav_loss`.

Prototypes are L2-normalised in the forward pass (the params stay optimizer-owned), not rewritten
after each step as in the reference. The reference renormalises W after the step, W <- (W - lr g)
/ ||W - lr g|| with ||W|| = 1; differentiating through W / ||W|| instead gives the tangential
gradient (I - w w^T) g / ||W||, the same update to first order in lr. They are frozen (zero
gradient) for the first `freeze_prototypes_steps` steps (the reference's first epoch).

Optional queue (`queue_length > 0`, for batches too small for Sinkhorn's equipartition): the
normalised embeddings of the assignment views of the last `queue_length` images. From
`queue_start_step` on it fills, newest first; once full, the codes of the batch are computed by
Sinkhorn over [queue; batch] scores with the current prototypes and only the batch rows are kept.
State: 'queue' [queue_length, len(assign_views), proj_dim] (batch-like leading dim) and
'queue_count' (valid rows).

Reference hyper-parameters (ImageNet ResNet-50, 800 epochs, batch 4096; the defaults of
`default_config` and configs/swav_resnet50_imagenet.py): 2x224 (scale 0.14-1) + 6x96 crops
(scale 0.05-0.14), head 2048-2048-128, 3000 prototypes, temperature 0.1, epsilon 0.05, 3 Sinkhorn
iterations, LARS base lr 0.3 x batch/256 (4.8 at 4096), weight decay 1e-6, prototypes frozen for
the first epoch; with batch 256 a queue of 3840 from epoch 15.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from ssljax import losses
from ssljax.data.views import ViewSpec
from ssljax.errors import ConfigError
from ssljax.methods import base
from ssljax.methods import common
from ssljax.models.heads import MLPHead
from ssljax.models.heads import Prototypes


def normalize_prototypes(kernel: jax.Array) -> jax.Array:
  """[D, K] prototype kernel -> the same with unit-norm columns (one prototype per column)."""
  return kernel / jnp.maximum(jnp.linalg.norm(kernel, axis=0, keepdims=True), 1e-12)


def swapped_prediction(scores: jax.Array, codes: dict[int, jax.Array], temperature: float):
  """SwAV's cross entropy for given codes (the queue path; swav_loss computes its own codes).

  Args:
    scores: [V, N, K] prototype scores of all views.
    codes: {view a: [N, K] Sinkhorn codes of view a} for the assignment views.
    temperature: softmax temperature.

  Returns:
    Scalar: mean over a of the mean over views v != a of mean_n sum_k -codes[a] log_softmax(
    scores[v] / T), the formula of `ssljax.losses.swav_loss`.
  """
  v, n, _ = scores.shape
  log_p = jax.nn.log_softmax(scores.astype(jnp.float32) / temperature, axis=-1)
  total = 0.0
  for a, q in codes.items():
    ce = -jnp.einsum("nk,vnk->v", q, log_p) / n
    total = total + (jnp.sum(ce) - ce[a]) / (v - 1)
  return total / len(codes)


class SwAV(base.Method):
  """SwAV. Params: {'backbone', 'head', 'prototypes'}; state: BatchNorm statistics and the queue."""

  name = "swav"

  @staticmethod
  def default_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(
        proj_hidden_dims=(2048,),
        proj_dim=128,
        proj_last_bn=False,             # BatchNorm (scale only) on the head's output; not in the paper
        num_prototypes=3000,
        temperature=0.1,
        epsilon=0.05,                   # Sinkhorn entropic regularisation
        sinkhorn_iters=3,
        assign_views=(0, 1),            # crops_for_assign: indices of global crops
        local_crops=6,
        local_size=96,
        local_scale=(0.05, 0.14),
        freeze_prototypes_steps=5005,   # the first epoch at batch 256 (313 at batch 4096)
        queue_length=0,                 # 0 = no queue; 3840 in the paper's batch-256 recipe
        queue_start_step=75_075,        # epoch 15 at batch 256
    ))

  @classmethod
  def validate_config(cls, config) -> None:
    c = config[cls.name]
    assign = tuple(c.assign_views)
    num_global = 2
    if not assign or any(not 0 <= int(a) < num_global for a in assign):
      raise ConfigError(f"config.swav.assign_views={assign}; expected indices of the "
                        f"{num_global} global crops")
    if c.local_crops < 0 or (c.local_crops > 0 and c.local_size < 1):
      raise ConfigError(f"config.swav.local_crops={c.local_crops}, local_size={c.local_size}; "
                        f"expected local_crops >= 0 and local_size >= 1 when local crops are used")
    if c.queue_length < 0 or (c.queue_length and c.queue_length % config.batch_size):
      raise ConfigError(f"config.swav.queue_length={c.queue_length} is not a multiple of "
                        f"config.batch_size={config.batch_size}; expected 0 or a multiple")

  def __init__(self, config):
    super().__init__(config)
    self.backbone = common.backbone_from_config(config)
    self.head = MLPHead(hidden_dims=tuple(self.cfg.proj_hidden_dims), out_dim=self.cfg.proj_dim,
                        use_bn=True, last_bn=self.cfg.proj_last_bn)
    self.prototypes = Prototypes(self.cfg.num_prototypes)
    self.assign_views = tuple(int(a) for a in self.cfg.assign_views)

  def view_spec(self) -> ViewSpec:
    c = self.cfg
    return ViewSpec(global_crops=2, global_size=self.config.data.image_size,
                    global_scale=tuple(self.config.data.augment.crop_scale),
                    local_crops=c.local_crops, local_size=c.local_size if c.local_crops else 0,
                    local_scale=tuple(c.local_scale))

  def init(self, rng, batch):
    params, state = common.init_chain(rng, batch["global"][:, 0], {
        "backbone": self.backbone, "head": self.head, "prototypes": self.prototypes})
    del state["prototypes"]
    if self.cfg.queue_length:
      state["queue"] = jnp.zeros((self.cfg.queue_length, len(self.assign_views), self.cfg.proj_dim),
                                 jnp.float32)
      state["queue_count"] = jnp.zeros((), jnp.int32)
    return params, state

  def _scores(self, params, z):
    """Normalised embeddings [N, E] -> cosine scores [N, K] against the normalised prototypes."""
    kernel = normalize_prototypes(params["prototypes"]["kernel"])
    return self.prototypes.apply({"params": {"kernel": kernel}}, z)

  def _diagnostics(self, scores):
    """Collapse diagnostics of view 0 (no gradient): entropies in nats, log K when uniform.

    code_entropy: mean per-sample entropy of its Sinkhorn codes; pred_entropy: mean per-sample
    entropy of softmax(scores / T); mean_pred_entropy: entropy of the batch-mean prediction
    (log K when every prototype is used equally, 0 when all samples pick one prototype);
    score_spread: mean over samples of max_k - min_k of the cosine scores.
    """
    c = self.cfg
    s = jax.lax.stop_gradient(scores[0])
    ent = lambda p: -jnp.sum(p * jnp.log(jnp.maximum(p, 1e-12)), axis=-1)
    codes = losses.sinkhorn_knopp(s, c.epsilon, c.sinkhorn_iters)
    pred = jax.nn.softmax(s / c.temperature, axis=-1)
    return {"code_entropy": jnp.mean(ent(codes)), "pred_entropy": jnp.mean(ent(pred)),
            "mean_pred_entropy": ent(jnp.mean(pred, axis=0)),
            "score_spread": jnp.mean(jnp.max(s, axis=-1) - jnp.min(s, axis=-1))}

  def embed(self, params, state, batch, rng, train=True):
    """All crops -> (normalised embeddings [V, B, E], updated BatchNorm state); V = G + L.

    Globals first, then locals, as the loss's view indices expect.
    """
    g_rng, l_rng, h_rng = jax.random.split(rng, 3)
    groups = [batch["global"]] + ([batch["local"]] if "local" in batch else [])
    feats, b_state = [], state["backbone"]
    for views, r in zip(groups, (g_rng, l_rng)):
      f, b_state = common.apply_module(self.backbone, params["backbone"], b_state,
                                       common.merge_views(views), train=train, rng=r)
      feats.append(common.split_views(f, views.shape[1]))                # [V_group, B, F]
    feats = jnp.concatenate(feats, axis=0)                                 # [V, B, F]
    v, b = feats.shape[:2]
    # Sample-major rows ([B * V]) keep the batch sharding through the head; a view-major merge
    # would make every device gather the whole batch's features first.
    rows = jnp.swapaxes(feats, 0, 1).reshape((b * v,) + feats.shape[2:])
    z, h_state = common.apply_module(self.head, params["head"], state["head"], rows, train=train,
                                     rng=h_rng)
    z = losses.l2_normalize(z.astype(jnp.float32))
    return common.split_views(z, v), dict(state, backbone=b_state, head=h_state)

  def loss(self, params, state, batch, rng, step):
    """batch['global'] [B, 2, S, S, C], batch['local'] [B, L, s, s, C] -> swapped-prediction loss."""
    c = self.cfg
    z, state = self.embed(params, state, batch, rng)                       # [V, B, E]
    v, b, e = z.shape
    rows = common.merge_views(jnp.swapaxes(z, 0, 1))                       # [B * V, E]
    scores = common.split_views(self._scores(params, rows), v)             # [V, B, K]
    metrics = {"embedding_std": jnp.mean(jnp.std(z[0], axis=0)), **self._diagnostics(scores)}
    if not c.queue_length:
      loss = losses.swav_loss(scores, self.assign_views, c.temperature, c.epsilon, c.sinkhorn_iters)
      return loss, (metrics, state)

    queue, count = state["queue"], state["queue_count"]
    use_queue = count >= c.queue_length
    kernel = jax.lax.stop_gradient(normalize_prototypes(params["prototypes"]["kernel"]))
    codes = {}
    for i, a in enumerate(self.assign_views):
      batch_scores = scores[a]
      with_queue = jnp.concatenate([queue[:, i] @ kernel, batch_scores], axis=0)   # [Q + B, K]
      codes[a] = jnp.where(
          use_queue,
          losses.sinkhorn_knopp(with_queue, c.epsilon, c.sinkhorn_iters)[-b:],
          losses.sinkhorn_knopp(batch_scores, c.epsilon, c.sinkhorn_iters))
    loss = swapped_prediction(scores, codes, c.temperature)
    # Newest first; the queue starts filling at queue_start_step (the reference creates it then).
    fill = step >= c.queue_start_step
    newest = jax.lax.stop_gradient(jnp.stack([z[a] for a in self.assign_views], axis=1))  # [B, A, E]
    pushed = jnp.concatenate([newest, queue[:c.queue_length - b]], axis=0)
    state = dict(state, queue=jnp.where(fill, pushed, queue),
                 queue_count=jnp.where(fill, jnp.minimum(count + b, c.queue_length), count))
    metrics["queue_in_use"] = use_queue.astype(jnp.float32)
    return loss, (metrics, state)

  def transform_grads(self, grads, state, step):
    """Zero the prototypes' gradient during the first `freeze_prototypes_steps` steps."""
    del state
    frozen = step < self.cfg.freeze_prototypes_steps
    protos = jax.tree_util.tree_map(lambda g: jnp.where(frozen, jnp.zeros_like(g), g),
                                    grads["prototypes"])
    return dict(grads, prototypes=protos)

  def embedding_head(self, params, state):
    return base.Backbone(self.head, {"params": params["head"], **state["head"]})

  def embeddings(self, params, state, images):
    """The L2-normalised head output [N, E] the prototypes score."""
    return losses.l2_normalize(super().embeddings(params, state, images))


METHOD = SwAV
