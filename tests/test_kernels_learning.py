"""The kernels inside real training: SimCLR on digits learns with impl='xla' and impl='pallas'.

The kernel tests (test_kernels_*.py) check values and gradients against the references; these
check the wiring: the config switches reach the ViT attention and the contrastive loss, and a
model trained through the tiled kernels (blockwise XLA, and Pallas in interpret mode on CPU)
learns as a model trained through the references does.
"""
import jax
import jax.numpy as jnp
import pytest

from ssljax import methods
from tests.conftest import learn_on_digits, load_config, make_tiny_config


def _jaxpr_of_loss(impl: str) -> str:
  cfg = make_tiny_config("simclr", "vit")
  cfg.model.attention_impl = impl
  cfg.simclr.loss_impl = impl
  method = methods.get("simclr")(cfg)
  size = cfg.data.image_size
  batch = {"global": jnp.zeros((8, 2, size, size, 3))}
  params, state = method.init(jax.random.PRNGKey(0), batch)

  def loss(p):
    return method.loss(p, state, batch, jax.random.PRNGKey(1), 0)[0]

  return str(jax.make_jaxpr(jax.grad(loss))(params))


def test_config_switch_reaches_attention_and_loss():
  """impl='pallas' puts Pallas kernels into the traced train step (forward and backward);
  impl='reference' has none: the config switch is not silently ignored."""
  pallas = _jaxpr_of_loss("pallas")
  names = {"ssljax_flash_attention_dq", "ssljax_flash_attention_dkv"}
  assert all(n in pallas for n in names), "attention backward kernels missing"
  assert pallas.count("pallas_call") >= 5  # attention fwd/dq/dkv + contrastive fwd/bwd
  assert "pallas_call" not in _jaxpr_of_loss("reference")


@pytest.mark.slow
def test_simclr_learns_with_xla_kernels(tmp_path):
  """The quickstart recipe with blockwise-XLA attention and nt_xent (measured: kNN 0.908 vs
  0.764 random-init after 250 steps, 91 s on 2 cores)."""
  cfg = load_config("simclr_digits")
  cfg.model.attention_impl = "xla"
  cfg.simclr.loss_impl = "xla"
  cfg.total_steps = 250
  cfg.eval_every = cfg.checkpoint_every = 250
  learn_on_digits(cfg, tmp_path, margin=0.08)


@pytest.mark.slow
def test_tiny_simclr_learns_with_pallas_kernels_in_interpret_mode(tmp_path):
  """A 1-block ViT (width 32) with Pallas attention and Pallas nt_xent, interpret=True on CPU
  (measured: kNN 0.761 vs 0.697 random-init after 250 steps at batch 64, 51 s on 2 cores)."""
  cfg = load_config("simclr_digits")
  cfg.model.attention_impl = "pallas"
  cfg.simclr.loss_impl = "pallas"
  cfg.model.depth, cfg.model.width, cfg.model.num_heads = 1, 32, 2
  cfg.simclr.proj_hidden_dims, cfg.simclr.proj_dim = (64,), 32
  cfg.batch_size = 64
  cfg.total_steps = 250
  cfg.eval_every = cfg.checkpoint_every = 250
  learn_on_digits(cfg, tmp_path, margin=0.03)
