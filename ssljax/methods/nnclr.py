"""NNCLR: contrastive learning whose positive is the nearest neighbour of a view in a support queue.

"With a Little Help from My Friends: Nearest-Neighbor Contrastive Learning of Visual
Representations" (Dwibedi et al., 2021).

Encoder: backbone -> projector (z); predictor (p). The support set Q is a FIFO queue of past
L2-normalised projections z1 of the first view. NN(z, Q) is the queue entry with the highest
cosine similarity to z (no gradient). The loss, symmetrised as in the paper's pseudo-code:

    L = info_nce(NN(z1, Q), p2, T) / 2 + info_nce(NN(z2, Q), p1, T) / 2

(row i: the neighbour of view-1 image i against the predictions of all view-2 images of the GLOBAL
batch, positive on the diagonal). After the lookup, the GLOBAL batch's normalised z1 replaces the
oldest B queue rows, so the queue is updated in the forward (`loss`) and returned as method state:
it is checkpointed with the train state and sharded by the same path rules as the params.

Reference hyper-parameters (ImageNet, ResNet-50): projector 3 layers 2048 -> 256 with BN
(`MLPHead([2048, 2048], 256, last_bn=True)`), predictor `MLPHead([4096], 256)`, T = 0.1, queue
98,304, LARS base lr 0.3 x batch/256 (batch 4096), weight decay 1e-6, 1000 epochs. The queue starts
as random unit vectors (as in common re-implementations; the paper does not say), so the first
Q / B steps use random neighbours while it fills.
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


def nearest_neighbour(z: jax.Array, queue: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Nearest support-set entry by cosine similarity.

  Args:
    z: [N, E] projections (normalised here).
    queue: [Q, E] L2-normalised support set.

  Returns:
    (queue[argmax_j cos(z_i, queue_j)] [N, E] without gradient, the indices [N] int32).
  """
  sim = losses.l2_normalize(z.astype(jnp.float32)) @ queue.T          # [N, Q]
  idx = jnp.argmax(sim, axis=-1).astype(jnp.int32)
  return jax.lax.stop_gradient(jnp.take(queue, idx, axis=0)), idx


def enqueue(queue: jax.Array, ptr: jax.Array, z: jax.Array) -> tuple[jax.Array, jax.Array]:
  """FIFO update: rows [ptr, ptr + N) of queue [Q, E] become the normalised z [N, E].

  Q must be a multiple of N (so a batch never wraps around). Returns (new queue, (ptr + N) mod Q).
  """
  q, n = queue.shape[0], z.shape[0]
  zn = jax.lax.stop_gradient(losses.l2_normalize(z.astype(jnp.float32))).astype(queue.dtype)
  queue = jax.lax.dynamic_update_slice_in_dim(queue, zn, ptr, axis=0)
  return queue, ((ptr + n) % q).astype(jnp.int32)


class NNCLR(base.Method):
  """NNCLR.

  Params: {'backbone', 'projector', 'predictor'}.
  State: {'stats': their BatchNorm statistics, 'queue': [Q, E] float32 support set (unit rows),
          'queue_ptr': int32 scalar, the next row to overwrite}.
  """

  name = "nnclr"

  @staticmethod
  def default_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(
        temperature=0.1,
        queue_size=98_304,          # support-set size Q; a multiple of the global batch size
        proj_hidden_dims=(2048, 2048),
        proj_dim=256,
        pred_hidden_dims=(4096,),
        loss_impl="auto",      # auto | reference | xla | pallas (losses.contrastive)
    ))

  @classmethod
  def validate_config(cls, config):
    c = config.nnclr
    if c.queue_size <= 0 or c.queue_size % config.batch_size:
      raise ConfigError(f"config.nnclr.queue_size={c.queue_size!r}; expected a positive multiple of "
                        f"config.batch_size={config.batch_size}")
    if c.temperature <= 0:
      raise ConfigError(f"config.nnclr.temperature={c.temperature!r}; expected > 0")

  def __init__(self, config):
    super().__init__(config)
    self.backbone = common.backbone_from_config(config)
    self.projector = MLPHead(hidden_dims=tuple(self.cfg.proj_hidden_dims), out_dim=self.cfg.proj_dim,
                             last_bn=True)
    self.predictor = MLPHead(hidden_dims=tuple(self.cfg.pred_hidden_dims), out_dim=self.cfg.proj_dim)
    self.encoder = {"backbone": self.backbone, "projector": self.projector}

  def view_spec(self) -> ViewSpec:
    return common.two_views(self.config)

  def init(self, rng, batch):
    net_rng, queue_rng = jax.random.split(rng)
    params, stats = common.init_chain(net_rng, batch["global"][:, 0],
                                      {**self.encoder, "predictor": self.predictor})
    queue = losses.l2_normalize(jax.random.normal(queue_rng, (self.cfg.queue_size, self.cfg.proj_dim),
                                                  jnp.float32))
    return params, {"stats": stats, "queue": queue, "queue_ptr": jnp.zeros((), jnp.int32)}

  def _encode(self, params, stats, images, rng, train):
    """backbone -> projector: images [N, H, W, C] -> (z [N, E] float32, updated stats)."""
    return common.apply_chain(self.encoder, params, stats, images, train=train, rng=rng)

  def forward(self, params, stats, batch, rng):
    """Both views, train mode (each view forwarded separately, as the reference does).

    Returns ((z [2, B, E], p [2, B, E]), updated BatchNorm stats).
    """
    views = batch["global"]                                   # [B, 2, H, W, C]
    zs, ps = [], []
    for v in range(2):
      e_rng, q_rng = jax.random.split(jax.random.fold_in(rng, v))
      z, stats = self._encode(params, stats, views[:, v], e_rng, train=True)
      p, q_state = common.apply_module(self.predictor, params["predictor"], stats["predictor"], z,
                                       train=True, rng=q_rng)
      stats = {**stats, "predictor": q_state}
      zs.append(z)
      ps.append(p)
    return (jnp.stack(zs), jnp.stack(ps)), stats

  def _impl_kwargs(self):
    return {"impl": self.cfg.loss_impl}

  def loss(self, params, state, batch, rng, step):
    del step
    (z, p), stats = self.forward(params, state["stats"], batch, rng)
    nn1, idx1 = nearest_neighbour(z[0], state["queue"])
    nn2, idx2 = nearest_neighbour(z[1], state["queue"])
    t, kw = self.cfg.temperature, self._impl_kwargs()
    loss = 0.5 * (losses.info_nce(nn1, p[1], t, **kw) + losses.info_nce(nn2, p[0], t, **kw))
    queue, ptr = enqueue(state["queue"], state["queue_ptr"], z[0])
    zn = losses.l2_normalize(z[0])
    metrics = {"embedding_std": jnp.mean(jnp.std(zn, axis=0)),
               # the two views of an image find the same neighbour
               "nn_agreement": jnp.mean((idx1 == idx2).astype(jnp.float32)),
               "nn_cosine": jnp.mean(jnp.sum(zn * nn1, -1))}
    return loss, (metrics, {"stats": stats, "queue": queue, "queue_ptr": ptr})

  def pretrained_backbone(self, params, state):
    return base.Backbone(self.backbone, {"params": params["backbone"],
                                         **state["stats"]["backbone"]})

  def embedding_head(self, params, state):
    return base.Backbone(self.projector, {"params": params["projector"],
                                          **state["stats"]["projector"]})


METHOD = NNCLR
