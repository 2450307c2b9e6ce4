"""Optimizer recipe: lr scaling by batch, warm-up + cosine, decay masks, layer-wise lr decay."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ssljax import optim


def test_peak_lr_scales_with_batch(tiny_config):
  c = tiny_config()
  c.batch_size, c.optimizer.base_lr, c.total_steps, c.optimizer.warmup_steps = 512, 0.3, 100, 10
  assert optim.peak_learning_rate(c) == 0.6
  lr = optim.schedule(c)
  assert float(lr(0)) == 0.0
  np.testing.assert_allclose(float(lr(10)), 0.6, rtol=1e-6)
  assert float(lr(55)) < 0.6 and float(lr(99)) < float(lr(55))
  c.optimizer.scale_lr_by_batch = False
  assert optim.peak_learning_rate(c) == 0.3


def test_weight_decay_skips_biases_and_norms(tiny_config):
  c = tiny_config()
  c.optimizer.name, c.optimizer.weight_decay, c.optimizer.base_lr = "sgd", 0.5, 0.0
  c.optimizer.momentum = 0.0
  tx, _ = optim.build(c)
  params = {"dense": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones((2,))}, "norm": {"scale": jnp.ones((2,))}}
  zeros = jax.tree.map(jnp.zeros_like, params)
  # lr is 0 here, so the update is only weight decay scaled by the (zero) lr: use the chain directly.
  decay = optax.add_decayed_weights(0.5, mask=optim.decay_mask)
  upd, _ = decay.update(zeros, decay.init(params), params)
  assert float(upd["dense"]["kernel"][0, 0]) == 0.5
  assert float(upd["dense"]["bias"][0]) == 0.0 and float(upd["norm"]["scale"][0]) == 0.0
  assert tx is not None


def test_layer_decay_scales_updates_by_depth(tiny_config):
  c = tiny_config()   # ViT depth 1
  c.optimizer.layer_decay = 0.5
  params = {"backbone": {"patch_embed": {"kernel": jnp.ones((2, 2))},
                         "block0": {"mlp": {"kernel": jnp.ones((2, 2))}},
                         "norm": {"scale": jnp.ones((2,))}}}
  scales = optim.layer_decay_scales(params, 0.5, num_layers=1)
  assert scales["backbone"]["patch_embed"]["kernel"] == 0.25
  assert scales["backbone"]["block0"]["mlp"]["kernel"] == 0.5
  assert scales["backbone"]["norm"]["scale"] == 1.0
  tx, _ = optim.build(c)
  grads = jax.tree.map(jnp.ones_like, params)
  state = tx.init(params)
  for _ in range(3):
    upd, state = tx.update(grads, state, params)
  a = abs(float(upd["backbone"]["patch_embed"]["kernel"][0, 0]))
  b = abs(float(upd["backbone"]["block0"]["mlp"]["kernel"][0, 0]))
  np.testing.assert_allclose(a / b, 0.5, rtol=1e-5)


def test_weight_decay_schedule_cosine_from_start_to_end(tiny_config):
  """optimizer.weight_decay_end >= 0: DINO's cosine weight-decay schedule, applied by the optimizer."""
  c = tiny_config()
  c.total_steps = 100
  assert optim.weight_decay_schedule(c) == c.optimizer.weight_decay    # default: constant
  c.optimizer.weight_decay, c.optimizer.weight_decay_end = 0.04, 0.4
  wd = optim.weight_decay_schedule(c)
  np.testing.assert_allclose([float(wd(s)) for s in (0, 50, 100, 150)],
                             [0.04, 0.22, 0.4, 0.4], rtol=1e-6)
  assert float(wd(25)) < 0.22 < float(wd(75))          # monotone between the ends
  # Through the optimizer: sgd, lr 1 and no momentum -> update = -(grad + wd(step) * param).
  c.optimizer.name, c.optimizer.momentum, c.optimizer.base_lr = "sgd", 0.0, 1.0
  c.optimizer.scale_lr_by_batch, c.optimizer.warmup_steps = False, 0
  tx, _ = optim.build(c)
  params = {"w": jnp.ones((2, 2))}
  state = tx.init(params)
  zeros = jax.tree.map(jnp.zeros_like, params)
  seen = []
  for _ in range(3):
    upd, state = tx.update(zeros, state, params)
    seen.append(-float(upd["w"][0, 0]) / float(optim.schedule(c)(len(seen))))
  np.testing.assert_allclose(seen, [float(wd(0)), float(wd(1)), float(wd(2))], rtol=1e-5)


def test_decay_mask_skips_vit_attention_biases_and_tokens(tiny_config):
  """A real ViT: kernels decay; [H, Dh] attention biases, [CLS] and positional tokens do not."""
  from ssljax.models import vit as vit_lib
  model = vit_lib.ViT(patch_size=4, width=32, depth=1, num_heads=2, image_size=8, posemb="learned")
  params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 3)))["params"]
  flat = {"/".join(str(getattr(k, "key", k)) for k in path): (leaf, p.ndim)
          for path, leaf, p in [(pth, l, p) for (pth, l), p in zip(
              jax.tree_util.tree_leaves_with_path(optim.decay_mask(params)), jax.tree.leaves(params))]}
  decayed = {k for k, (v, _) in flat.items() if v}
  assert any(k.endswith("query/kernel") for k in decayed) and "patch_embed/kernel" in decayed
  two_d_biases = [k for k, (v, nd) in flat.items() if k.endswith("bias") and nd > 1]
  assert two_d_biases and not any(flat[k][0] for k in two_d_biases)   # [H, Dh] biases: no decay
  assert not flat["cls"][0] and not flat["pos_embedding"][0]


def test_lr_scales_multiply_one_modules_updates(tiny_config):
  """'predictor:10' gives the predictor's params ten times the AdamW update (weight decay included)
  and leaves the others' updates bit for bit as without it."""
  c = tiny_config()
  c.optimizer.update(name="adamw", weight_decay=0.1, warmup_steps=1)
  params = {"backbone": {"kernel": jnp.full((2, 2), 0.5)},
            "predictor": {"kernel": jnp.full((2, 2), -0.3), "bias": jnp.ones((2,))}}
  grads = jax.tree.map(lambda p: jnp.arange(p.size, dtype=p.dtype).reshape(p.shape) - 1.0, params)
  base_tx, _ = optim.build(c)
  c.optimizer.lr_scales = "predictor:10"
  tx, _ = optim.build(c)
  base_state, state = base_tx.init(params), tx.init(params)
  for _ in range(2):   # the second step has a non-zero learning rate after the warm-up
    want, base_state = base_tx.update(grads, base_state, params)
    got, state = tx.update(grads, state, params)
  assert float(jnp.abs(want["predictor"]["kernel"]).max()) > 0
  np.testing.assert_array_equal(got["backbone"]["kernel"], want["backbone"]["kernel"])
  for k in ("kernel", "bias"):
    np.testing.assert_allclose(got["predictor"][k], 10 * want["predictor"][k], rtol=1e-6)


def test_lr_scales_bad_spec_or_module_is_one_line_error(tiny_config):
  from ssljax.config import ConfigError
  for spec in ("predictor", "predictor:0", "predictor:x", "a:1,a:2", ":3"):
    with pytest.raises(ConfigError, match="expected 'module:factor"):
      optim.parse_lr_scales(spec)
  assert optim.parse_lr_scales(" predictor:10, projector:2.5 ") == {"predictor": 10.0,
                                                                   "projector": 2.5}
  c = tiny_config()
  c.optimizer.lr_scales = "predicter:10"
  tx, _ = optim.build(c)
  with pytest.raises(ConfigError, match=r"names \['predicter'\].*param modules are \['backbone'"):
    tx.init({"backbone": {"kernel": jnp.ones((2,))}, "predictor": {"kernel": jnp.ones((2,))}})
