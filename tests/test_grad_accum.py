"""config.grad_accum_steps: k micro-batches give the step of one k-times batch, where that is exact.

MAE (a per-example loss; masks come from the pipeline) with accumulation over 2 and 4 micro-batches
takes the same optimizer step as the whole batch, on one device and on the 8-device mesh; methods
with statistics across the batch are refused in one line that names the method and the reason.
"""
import jax
import numpy as np
import pytest

from ssljax import build as build_lib
from ssljax import grad_accum
from ssljax.config import ConfigError, validate
from ssljax.data import sources
from tests.test_remat import _close_trees, real_batch


def _step(config, devices):
  record = sources.build_source(config.data, config.data.train_split)[0]
  built = build_lib.build(config, devices, record)
  batch = jax.device_put(real_batch(built, config), built.batch_sharding)
  state, metrics = built.train_step(built.init(), batch)
  return jax.device_get(state), jax.device_get(metrics)


@pytest.mark.parametrize("k,devices", [(2, 1), (4, 8)])
def test_accumulation_equals_the_whole_batch(tiny_config, k, devices):
  def config(steps):
    c = tiny_config("mae")
    c.batch_size = 32 if devices > 1 else 16
    c.grad_accum_steps = steps
    c.optimizer.grad_clip = 1.0    # the clip sees the averaged gradient, as with the whole batch
    return c
  want, m_want = _step(config(1), jax.devices()[:devices])
  got, m_got = _step(config(k), jax.devices()[:devices])
  np.testing.assert_allclose(m_got["loss"], m_want["loss"], rtol=1e-5)
  np.testing.assert_allclose(m_got["grad_norm"], m_want["grad_norm"], rtol=1e-4)
  _close_trees(got.params, want.params, rtol=1e-4, atol=1e-6)
  _close_trees(got.opt_state, want.opt_state, rtol=1e-3, atol=1e-7)


def test_split_keeps_rows_interleaved():
  x = np.arange(12).reshape(12, 1)
  micro = np.asarray(grad_accum.split({"x": x}, 3)["x"])
  assert micro.shape == (3, 4, 1)
  assert micro[1, :, 0].tolist() == [1, 4, 7, 10]


@pytest.mark.parametrize("method,why", [
    ("simclr", "negatives"), ("vicreg", "variance and covariance"), ("dino", "center"),
    ("byol", "BatchNorm"), ("swav", "Sinkhorn")])
def test_batch_statistic_methods_are_refused(tiny_config, method, why):
  c = tiny_config(method)
  c.grad_accum_steps = 2
  with pytest.raises(ConfigError, match=rf"config.grad_accum_steps=2 with method '{method}': "
                                        rf"not exact because .*{why}"):
    validate(c, device_count=8)


def test_byol_without_batchnorm_heads_may_accumulate(tiny_config):
  c = tiny_config("byol")
  c.grad_accum_steps = 2
  c.byol.use_bn = False
  assert validate(c, device_count=8) is None
  c.byol.use_bn = True     # BatchNorm in the heads: batch statistics, refused in one line
  with pytest.raises(ConfigError, match="byol"):
    validate(c, device_count=8)


def test_bad_values_are_one_line_errors(tiny_config):
  c = tiny_config("mae")
  c.grad_accum_steps = 0
  with pytest.raises(ConfigError, match="grad_accum_steps=0; expected a positive integer"):
    validate(c)
  c.grad_accum_steps = 4   # 16 rows over 8 devices x 4 micro-batches
  with pytest.raises(ConfigError, match="batch_size=16 is not divisible by grad_accum_steps=4 "
                                        "x data-parallel size 8"):
    validate(c, device_count=8)
  c = tiny_config("mae", "resnet")
  c.grad_accum_steps = 2
  with pytest.raises(ConfigError, match="BatchNorm normalises over the batch"):
    validate(c)
