"""model.remat / model.remat_policy: per-block jax.checkpoint gives the same values and gradients.

ViT blocks under every policy and with XLA:CPU's tied remat (`ssljax.cpu.remat`), ResNet blocks
(BatchNorm statistics updated once, as without remat), the whole train step through the config,
the one-line error for an unknown policy, and the memory it saves: XLA:CPU's compiled temporaries
of a small ViT's gradient drop by more than 2x (benchmarks/remat_memory.py: the ViT-B/16 step).
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssljax import build as build_lib
from ssljax import models
from ssljax.config import ConfigError, validate
from ssljax.cpu import remat as cpu_remat
from ssljax.models import resnet as resnet_lib
from ssljax.models import vit as vit_lib


def _close_trees(a, b, rtol=1e-5, atol=1e-6):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


@pytest.mark.parametrize("policy,full_remat", [(p, None) for p in sorted(vit_lib.REMAT_POLICIES)]
                         + [("full", cpu_remat.remat)])
def test_vit_remat_policies_give_the_same_gradients(policy, full_remat):
  x = jax.random.normal(jax.random.PRNGKey(0), (4, 8, 8, 3))
  kw = dict(patch_size=4, width=32, depth=2, num_heads=2, image_size=8, drop_path=0.2)
  plain = vit_lib.ViT(**kw)
  remat = vit_lib.ViT(**kw, remat=True, remat_policy=policy, full_remat=full_remat)
  params = plain.init(jax.random.PRNGKey(1), x)

  def loss(module):   # stochastic depth on: the recomputed blocks must draw the same masks
    return lambda p: jnp.sum(module.apply(p, x, train=True,
                                          rngs={"dropout": jax.random.PRNGKey(2)}) ** 2)

  want, g_want = jax.jit(jax.value_and_grad(loss(plain)))(params)
  got, g_got = jax.jit(jax.value_and_grad(loss(remat)))(params)
  np.testing.assert_allclose(got, want, rtol=1e-6)
  _close_trees(g_got, g_want)
  primitives = {str(e.primitive) for e in jax.make_jaxpr(loss(remat))(params).jaxpr.eqns}
  assert any(p.startswith("remat") or p.startswith("custom_vjp") for p in primitives), primitives


@pytest.mark.parametrize("full_remat", [None, cpu_remat.remat])
def test_resnet_remat_same_gradients_and_batch_stats(full_remat):
  x = jax.random.normal(jax.random.PRNGKey(0), (4, 8, 8, 3))
  kw = dict(depth=18, width_multiplier=0.125, cifar_stem=True)
  plain, remat = resnet_lib.ResNet(**kw), resnet_lib.ResNet(**kw, remat=True, full_remat=full_remat)
  variables = plain.init(jax.random.PRNGKey(1), x)

  def loss(module):
    def f(p):
      y, new = module.apply({"params": p, "batch_stats": variables["batch_stats"]}, x, train=True,
                            mutable=["batch_stats"])
      return jnp.sum(y ** 2), new
    return f

  (want, s_want), g_want = jax.jit(jax.value_and_grad(loss(plain), has_aux=True))(variables["params"])
  (got, s_got), g_got = jax.jit(jax.value_and_grad(loss(remat), has_aux=True))(variables["params"])
  np.testing.assert_allclose(got, want, rtol=1e-5)
  _close_trees(g_got, g_want, rtol=1e-4, atol=1e-5)
  _close_trees(s_got, s_want)


def test_model_config_builds_remat_and_rejects_unknown_policy(tiny_config):
  cfg = models.default_model_config("vit")
  assert cfg.remat is False and cfg.remat_policy == "full"
  cfg.update(remat=True, remat_policy="dots_saveable")
  module = models.build_backbone(cfg)
  assert module.remat and module.remat_policy == "dots_saveable"
  assert models.build_backbone(dict(name="resnet", depth=18, remat=True)).remat
  c = tiny_config()
  c.model.remat_policy = "everything"
  with pytest.raises(ConfigError, match=r"config.model.remat_policy='everything'; expected one of"):
    validate(c)


def _temp_bytes(module, x) -> int:
  params = jax.eval_shape(module.init, jax.random.PRNGKey(0), x)
  grad = jax.jit(jax.grad(lambda p, x: jnp.sum(module.apply(p, x, train=True) ** 2)))
  return grad.lower(params, x).compile().memory_analysis().temp_size_in_bytes


def test_remat_halves_compiled_temporary_memory_on_cpu():
  """XLA:CPU's memory analysis of a ViT (width 192, depth 6) gradient at batch 16: the tied remat
  of build_backbone on CPU keeps only block inputs; plain nn.remat is undone by XLA:CPU."""
  cfg = dict(name="vit", patch_size=8, width=192, depth=6, num_heads=3, image_size=64,
             cpu_tuning="on")
  x = jax.ShapeDtypeStruct((16, 64, 64, 3), jnp.float32)
  off = _temp_bytes(models.build_backbone(dict(cfg, remat=False)), x)
  on = _temp_bytes(models.build_backbone(dict(cfg, remat=True)), x)
  assert off / on >= 2.0, (off, on)


def test_train_step_with_remat_matches_without(tiny_config):
  """One step of the whole jitted train step: same loss and parameters with remat on."""
  from ssljax.data import sources
  states = []
  for remat in (False, True):
    c = tiny_config("mae")
    c.model.update(depth=2, remat=remat)
    record = sources.build_source(c.data, c.data.train_split)[0]
    built = build_lib.build(c, jax.devices()[:1], record)
    batch = real_batch(built, c)
    state, metrics = built.train_step(built.init(), batch)
    states.append((state, float(metrics["loss"])))
  np.testing.assert_allclose(states[1][1], states[0][1], rtol=1e-5)
  _close_trees(states[1][0].params, states[0][0].params, rtol=1e-4, atol=1e-6)


def real_batch(built, config, seed: int = 0) -> dict:
  """A global batch made by the run's own view transform from the first records of the train split."""
  from ssljax.data import pipeline, sources
  src = sources.build_source(config.data, config.data.train_split)
  make = pipeline.MakeViews(built.spec, config.data.augment)
  rows = [make(src[i], np.random.default_rng(seed + i)) for i in range(config.batch_size)]
  return {k: jnp.asarray(np.stack([r[k] for r in rows])) for k in built.example}
