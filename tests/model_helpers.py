"""Shared helpers of the model tests (test_models, test_vit, test_resnet, test_heads).

Tiny configs only (ViT width 32 depth 2 on 16x16, ResNet-18 x0.25 on 16x16). Keys use the
'rbg' PRNG: XLA:CPU compiles threefry initialisers very slowly, and the suite must stay fast.
Everything that runs is jitted; shape-only checks use jax.eval_shape (trace, no compile).
"""
import jax
import jax.numpy as jnp

from ssljax import models


def _jit(fn, **kwargs):
  """jax.jit with XLA's cheapest backend optimisation: these tests are compile-bound."""
  return jax.jit(fn, compiler_options={"xla_backend_optimization_level": 0}, **kwargs)


def _key(seed):
  return jax.random.key(seed, impl="rbg")


def _images(n, size=16, seed=0):
  return jax.random.normal(jax.random.key(seed, impl="rbg"), (n, size, size, 3), jnp.float32)


def _vit_cfg(**overrides):
  cfg = models.default_model_config("vit")
  cfg.update(width=32, depth=2, num_heads=2, patch_size=4, image_size=16)
  cfg.update(overrides)
  return cfg


def _resnet_cfg(**overrides):
  cfg = models.default_model_config("resnet")
  cfg.update(depth=18, width_multiplier=0.25)
  cfg.update(overrides)
  return cfg


def _init(model, x, **kwargs):
  return _jit(lambda k, x: model.init(k, x, **kwargs))(_key(0), x)


def _init_with_output(model, x, **kwargs):
  return _jit(lambda k, x: model.init_with_output(k, x, **kwargs))(_key(0), x)


# ----------------------------------------------------------------------------- config
