"""The CPU switch (model config `cpu_tuning`, ssljax.cpu.enabled): decided once when a model is
built; off, the model is plain Flax (no CPU route in its program, lowered for CPU or CUDA, and
forward-mode autodiff goes through it); a bad value is a one-line error."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssljax import config as config_lib
from ssljax import cpu
from ssljax import models
from ssljax.cpu import conv as cpu_conv
from hlo_helpers import cpu_route, dilated_convolutions
from model_helpers import _images, _init, _resnet_cfg


def test_enabled_follows_the_setting_and_the_backend():
  assert cpu.enabled("on", backend="gpu") and not cpu.enabled("off", backend="cpu")
  assert cpu.enabled("auto", backend="cpu")
  assert not cpu.enabled("auto", backend="gpu") and not cpu.enabled("auto", backend="tpu")
  assert cpu.enabled("auto") == (jax.default_backend() == "cpu")
  expected = r"expected one of \('auto', 'on', 'off'\)$"
  with pytest.raises(ValueError, match=r"^cpu_tuning='yes'; " + expected):
    cpu.enabled("yes")
  with pytest.raises(ValueError, match="cpu_tuning=True"):
    cpu.enabled(True)


def test_build_backbone_hands_the_cpu_ops_to_the_resnet_only_when_on():
  on = models.build_backbone(_resnet_cfg(cpu_tuning="on"))
  off = models.build_backbone(_resnet_cfg(cpu_tuning="off"))
  assert isinstance(on.conv_general_dilated, cpu_conv.Conv)
  assert on.store_once is cpu_conv.computed_once
  assert off.conv_general_dilated is jax.lax.conv_general_dilated
  assert off.store_once(jnp.ones(3)) is not None and "cond" not in str(
      jax.make_jaxpr(off.store_once)(jnp.ones(3)))
  auto = models.build_backbone(_resnet_cfg())          # the default: on for this CPU process
  assert models.default_model_config("resnet").cpu_tuning == "auto"
  assert isinstance(auto.conv_general_dilated, cpu_conv.Conv) == (jax.default_backend() == "cpu")
  with pytest.raises(ValueError, match="cpu_tuning='fast'"):
    models.build_backbone(_resnet_cfg(cpu_tuning="fast"))
  with pytest.raises(ValueError, match="cpu_tuning='fast'"):
    models.build_backbone(dict(models.default_model_config("vit"), cpu_tuning="fast"))


def test_config_validation_names_a_bad_cpu_tuning():
  c = config_lib.base_config("simclr", "resnet")
  config_lib.validate(c)
  c.model.cpu_tuning = "fast"
  expected = r"expected one of \('auto', 'on', 'off'\)$"
  with pytest.raises(config_lib.ConfigError, match=r"^config.model.cpu_tuning='fast'; " + expected):
    config_lib.validate(c)
  c.model.cpu_tuning = "off"
  config_lib.validate(c)


def _grad_program(model, x):
  """The jitted parameter gradient of a train-mode loss of `model` on x, traced."""
  variables = _init(model, x)

  def loss(params):
    out, _ = model.apply({**variables, "params": params}, x, train=True, mutable=["batch_stats"])
    return jnp.sum(out ** 2)
  return jax.jit(jax.grad(loss)).trace(variables["params"]), loss, variables


@pytest.mark.parametrize("depth", [18, 50])
def test_switched_off_the_resnet_program_has_no_cpu_route(depth):
  """Off: no conditional, no dot (a backbone alone has none but the CPU ops'), lax's dilated
  stride-2 input gradients, no custom_vjp; on, all of these are there. The CUDA lowering of the
  switched-off model is op for op the CPU one."""
  x = _images(2, size=8)
  cfg = dict(depth=depth, cifar_stem=True)
  off, loss_off, variables = _grad_program(
      models.build_backbone(_resnet_cfg(cpu_tuning="off", **cfg)), x)
  on, loss_on, _ = _grad_program(models.build_backbone(_resnet_cfg(cpu_tuning="on", **cfg)), x)
  text = {p: off.lower(lowering_platforms=(p,)).as_text() for p in ("cpu", "cuda")}
  for t in text.values():
    assert cpu_route(t) == {"conditionals": 0, "batched_dots": 0, "dots": 0}
    assert dilated_convolutions(t) > 0
  assert (text["cpu"].count("stablehlo.convolution") == text["cuda"].count("stablehlo.convolution")
          > 0)
  assert "custom_vjp" not in str(jax.make_jaxpr(loss_off)(variables["params"]))
  tuned = on.lower(lowering_platforms=("cpu",)).as_text()
  route = cpu_route(tuned)
  assert route["conditionals"] > 0 and route["batched_dots"] > 0
  assert dilated_convolutions(tuned) == 0
  assert "custom_vjp" in str(jax.make_jaxpr(loss_on)(variables["params"]))


def test_the_resnet_train_step_lowered_for_cuda_has_no_cpu_route():
  """The whole SimCLR ResNet-18 train step (method, optimizer, jitted step as the Trainer builds
  it; x0.25: stage 4 is Winograd-wide), built as on a GPU ('auto' there = off), lowered for CUDA:
  the same convolutions and dots as the plain CPU lowering, no conditional of computed_once; the
  CPU-built step has them."""
  from ssljax import methods as methods_lib
  from ssljax import optim
  from ssljax import train

  def lowered(setting, platform):
    c = config_lib.base_config("simclr", "resnet")
    c.model.update(dict(depth=18, cifar_stem=True, width_multiplier=0.25, cpu_tuning=setting))
    c.simclr.update(dict(proj_hidden_dims=(16,), proj_dim=8))
    c.batch_size, c.data.image_size = 4, 8
    method = methods_lib.get("simclr")(c)
    tx, lr_fn = optim.build(c)
    batch = {"global": jnp.zeros((4, 2, 8, 8, 3), jnp.float32)}
    state = jax.eval_shape(train.make_init_fn(method, tx, batch, seed=0))
    step = jax.jit(train.make_train_step(method, tx, lr_fn))
    return step.trace(state, batch).lower(lowering_platforms=(platform,)).as_text()
  cuda, plain_cpu, tuned_cpu = lowered("off", "cuda"), lowered("off", "cpu"), lowered("on", "cpu")
  assert cpu_route(cuda) == cpu_route(plain_cpu)
  assert cpu_route(cuda)["batched_dots"] == 0 and dilated_convolutions(cuda) > 0
  assert cuda.count("stablehlo.convolution") == plain_cpu.count("stablehlo.convolution")
  tuned = cpu_route(tuned_cpu)
  assert tuned["conditionals"] > cpu_route(cuda)["conditionals"]
  assert tuned["dots"] > cpu_route(cuda)["dots"] and dilated_convolutions(tuned_cpu) == 0


def test_forward_mode_goes_through_the_switched_off_resnet():
  """jax.jvp through the plain ResNet (the model every non-CPU backend gets) works and agrees with
  reverse mode; the CPU ops' custom_vjp refuses it, which is why they are CPU-only."""
  x = _images(2, size=8)
  dx = _images(2, size=8, seed=1)
  off = models.build_backbone(_resnet_cfg(cpu_tuning="off", cifar_stem=True))
  variables = _init(off, x)
  f = lambda v: off.apply(variables, v, train=False)  # noqa: E731
  out, tangent = jax.jit(lambda x, dx: jax.jvp(f, (x,), (dx,)))(x, dx)
  assert out.shape == tangent.shape == (2, off.num_features)
  # <u, J dx> from forward mode equals <J^T u, dx> from reverse mode for any cotangent u.
  u = jax.random.normal(jax.random.key(2), out.shape)
  (pullback,) = jax.vjp(f, x)[1](u)
  np.testing.assert_allclose(float(jnp.sum(u * tangent)), float(jnp.sum(pullback * dx)),
                             rtol=1e-4)
  assert float(jnp.max(jnp.abs(tangent))) > 0
  on = models.build_backbone(_resnet_cfg(cpu_tuning="on", cifar_stem=True))
  with pytest.raises(TypeError, match="custom_vjp"):
    jax.jvp(lambda v: on.apply(variables, v, train=False), (x,), (dx,))
