"""config.eval_ema: a weights EMA of the online params in the train state, used for evaluation.

It starts as the init, follows min(decay, (1 + t) / (10 + t)) EMA updates, survives a checkpoint
and resume bit-for-bit, and is what the evaluator, `ssljax.evaluate` and export see.
"""
import jax
import numpy as np

from ssljax import build as build_lib
from ssljax import train
from tests.test_remat import _close_trees


def _config(tiny_config):
  c = tiny_config()
  c.eval_ema = True
  c.eval_ema_decay = 0.9
  return c


def test_ema_follows_the_params_and_resumes_exactly(tiny_config, tmp_path):
  ref = train.Trainer(_config(tiny_config), str(tmp_path / "ref"))
  ref.run()
  s = ref.state
  assert s.ema_params is not None
  assert jax.tree.structure(s.ema_params) == jax.tree.structure(s.params)
  diffs = [float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
           for a, b in zip(jax.tree.leaves(s.ema_params), jax.tree.leaves(s.params))]
  assert max(diffs) > 0     # an average, not a copy
  part = train.Trainer(_config(tiny_config), str(tmp_path / "split"))
  assert part.run(until_step=3)["stopped_at"] == 3
  resumed = train.Trainer(_config(tiny_config), str(tmp_path / "split"))
  resumed.run()
  _close_trees(resumed.state.ema_params, s.ema_params, rtol=0, atol=0)
  _close_trees(resumed.state.params, s.params, rtol=0, atol=0)

  from ssljax.evaluate.pretrained import PretrainedRun
  with PretrainedRun(str(tmp_path / "ref")) as run:
    _close_trees(run.params, s.ema_params, rtol=0, atol=0)
    assert run.opened.params is run.state.ema_params


def test_ema_decay_warms_up():
  d = [float(build_lib.ema_decay(0.999, np.int32(t))) for t in (0, 10, 10_000)]
  np.testing.assert_allclose(d, [0.1, 11 / 20, 0.999], rtol=1e-6)


def test_off_keeps_no_copy(tiny_config):
  from ssljax.data import sources
  c = tiny_config()
  built = build_lib.build(c, jax.devices()[:1],
                          sources.build_source(c.data, c.data.train_split)[0])
  assert built.abstract_state.ema_params is None


def test_ema_starts_from_init_from_weights(tiny_config, tmp_path):
  """model.init_from with eval_ema: the EMA starts from the imported backbone, not the random init."""
  from ssljax import export
  ref = train.Trainer(tiny_config(), str(tmp_path / "ref"))
  ref.run()
  export.export_backbone(str(tmp_path / "ref"), str(tmp_path / "exp"))
  c = _config(tiny_config)
  c.model.init_from = str(tmp_path / "exp")
  state, restored = train.Trainer(c, str(tmp_path / "cont")).initial_state()
  assert restored is None
  _close_trees(state.ema_params, state.params, rtol=0, atol=0)
  _close_trees(state.ema_params["backbone"], ref.state.params["backbone"], rtol=0, atol=0)
