"""Test-wide set-up: 8 simulated CPU devices, so sharded and single-device runs share one process.

The flag must be set before JAX initialises its backends, hence here, before any test imports jax.
Single-device code paths are unaffected: un-sharded computations run on device 0.
"""
import os
import tempfile

# Tiny models: compile time dominates, so compile with less backend optimisation.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8 "
                      "--xla_backend_optimization_level=0")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Identical programs built by different tests (e.g. a run and its resumed twin) compile once.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), "ssljax-test-jax-cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import pytest  # noqa: E402


def make_tiny_config(method: str = "simclr", model: str = "vit"):
  """A seconds-to-compile config on the digits data (8x8 input, one ViT block, batch 16)."""
  from ssljax.config import base_config
  c = base_config(method=method, model=model)
  c.batch_size = 16
  c.total_steps = 6
  c.log_every = 1
  c.eval_every = 1000
  c.checkpoint_every = 3
  c.progress_bar = False
  c.data.image_size = 8
  if model == "vit":
    c.model.update(dict(patch_size=4, width=32, depth=1, num_heads=2, image_size=8))
  else:
    c.model.update(dict(depth=18, width_multiplier=0.125, cifar_stem=True))
  c.eval.max_examples = 64
  c.eval.linear_epochs = 2
  c.eval.batch_size = 64
  c.eval.random_init = False
  c.optimizer.warmup_steps = 2
  if method == "simclr":
    c.simclr.proj_hidden_dims = (32,)
    c.simclr.proj_dim = 16
  return c


@pytest.fixture
def tiny_config():
  return make_tiny_config
