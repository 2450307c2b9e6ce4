"""benchmarks/peer_parity.py: weight layouts between the sides and the comparison it reports."""
import numpy as np
import pytest


def test_layouts_round_trip_and_match_torchs():
  """Flax's HWIO conv and [in, out] dense kernels become torch's OIHW and [out, in], and back."""
  from benchmarks import _lightly_parity_worker as worker
  rng = np.random.default_rng(0)
  conv = rng.normal(size=(3, 3, 4, 8)).astype(np.float32)           # H, W, I, O
  dense = rng.normal(size=(5, 7)).astype(np.float32)                # in, out
  t_conv, t_dense = worker.to_torch(conv, "conv"), worker.to_torch(dense, "dense")
  assert t_conv.shape == (8, 4, 3, 3) and t_dense.shape == (7, 5)
  assert t_conv[6, 2, 0, 1] == conv[0, 1, 2, 6] and t_dense[3, 1] == dense[1, 3]
  np.testing.assert_array_equal(worker.to_ssljax(t_conv, "conv"), conv)
  np.testing.assert_array_equal(worker.to_ssljax(t_dense, "dense"), dense)
  np.testing.assert_array_equal(worker.to_torch(dense[0], ""), dense[0])


def _sides(method, rng):
  """ssljax's numbers and a lightly answer that computes the same thing."""
  from benchmarks import peer_parity
  offset, scale = peer_parity.LOSS_AFFINE[method]
  keys = ["['backbone']['conv0_0']['kernel']", "['head']['bn0']['scale']"]
  init = {k: rng.normal(size=(3, 4)) for k in keys}
  final = {k: v + 0.01 * rng.normal(size=v.shape) for k, v in init.items()}
  grads = {k: rng.normal(size=(3, 4)) for k in keys}
  lightly_losses = rng.normal(size=5)
  stats = {"stats/norm0_0/mean": rng.normal(size=4)}
  ours = {"init": init, "final": final, "grads": grads, "stats": stats,
          "losses": offset + scale * lightly_losses}
  theirs = {"losses": lightly_losses, "unmapped": np.asarray(["1.layers.3.bias"]),
            **{"grad/" + k: g / scale for k, g in grads.items()},
            **{"final/" + k: v for k, v in final.items()}, **stats}
  return ours, theirs


@pytest.mark.parametrize("method", ["simclr", "byol", "dino"])
def test_identical_steps_compare_as_zero(method):
  from benchmarks import peer_parity
  ours, theirs = _sides(method, np.random.default_rng(1))
  r = peer_parity.compare(method, ours, theirs)
  assert r["max_loss_diff"] < 1e-12 and r["grad_rel"] < 1e-12
  assert r["change_rel"] < 1e-12 and r["stats_rel"] < 1e-12
  assert r["unmapped"] == ["1.layers.3.bias"]
  np.testing.assert_allclose(r["curves"][0], theirs["losses"])


def test_a_different_step_shows_in_each_column():
  """A gradient off by 10% in one tensor, a moved parameter, a loss off at one step: each reported."""
  from benchmarks import peer_parity
  ours, theirs = _sides("byol", np.random.default_rng(2))
  key = "['head']['bn0']['scale']"
  theirs["grad/" + key] = theirs["grad/" + key] * 1.1
  theirs["final/" + key] = theirs["final/" + key] + 0.01
  theirs["losses"] = theirs["losses"] + np.array([0, 0, 0.5, 0, 0])
  theirs["stats/norm0_0/mean"] = theirs["stats/norm0_0/mean"] * 2
  r = peer_parity.compare("byol", ours, theirs)
  assert r["max_loss_diff"] == pytest.approx(0.5)
  assert 0.01 < r["grad_rel"] < 0.1
  assert r["change_rel"] > 0.1 and r["stats_rel"] == pytest.approx(0.5)

