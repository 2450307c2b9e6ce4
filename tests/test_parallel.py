"""Mesh construction and partition rules."""
import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from ssljax import parallel
from ssljax.config import ConfigError


def test_mesh_shape_fills_minus_one():
  assert parallel.mesh_shape({"data": -1, "fsdp": 2, "model": 1}, 8) == {"data": 4, "fsdp": 2, "model": 1}
  with pytest.raises(ConfigError, match="at most one -1"):
    parallel.mesh_shape({"data": -1, "fsdp": -1}, 8)
  with pytest.raises(ConfigError, match=r"config.mesh.data=0"):
    parallel.mesh_shape({"data": 0}, 8)


def test_make_mesh_and_batch_sharding():
  mesh = parallel.make_mesh({"data": 2, "fsdp": 4, "model": 1})
  assert mesh.shape == {"data": 2, "fsdp": 4, "model": 1}
  assert parallel.data_parallel_size(mesh) == 8
  x = jax.device_put(np.zeros((16, 3)), parallel.batch_sharding(mesh))
  assert x.addressable_shards[0].data.shape == (2, 3)


def test_fsdp_rule_splits_largest_divisible_dim_and_keeps_small_replicated():
  mesh = parallel.make_mesh({"data": 2, "fsdp": 4, "model": 1})
  tree = {"kernel": jax.ShapeDtypeStruct((6, 512), np.float32),
          "bias": jax.ShapeDtypeStruct((512,), np.float32),
          "odd": jax.ShapeDtypeStruct((7, 333), np.float32)}
  sh = parallel.tree_shardings(tree, mesh, "fsdp")
  assert sh["kernel"].spec == P(None, "fsdp")
  assert sh["bias"].spec == P()            # below FSDP_MIN_SIZE elements
  assert sh["odd"].spec == P()             # nothing divisible by 4
  rep = parallel.tree_shardings(tree, mesh, "replicated")
  assert all(s.spec == P() for s in jax.tree.leaves(rep))


def test_explicit_rules_first_match_wins_and_rank_is_checked():
  mesh = parallel.make_mesh({"data": 4, "fsdp": 1, "model": 2})
  rules = ((r".*/query/kernel", (None, "model")), (".*", "replicate"))
  tree = {"attn": {"query": {"kernel": jax.ShapeDtypeStruct((8, 8), np.float32)}},
          "other": jax.ShapeDtypeStruct((8, 8), np.float32)}
  sh = parallel.tree_shardings(tree, mesh, rules)
  assert sh["attn"]["query"]["kernel"].spec == P(None, "model")
  assert sh["other"].spec == P()
  with pytest.raises(ValueError, match="has rank 1"):
    parallel.tree_shardings(tree, mesh, ((".*", ("model",)),))
