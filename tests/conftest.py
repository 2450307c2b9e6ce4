"""Test-wide set-up: 8 simulated CPU devices, so sharded and single-device runs share one process.

The flag must be set before JAX initialises its backends, hence here, before any test imports jax.
Single-device code paths are unaffected: un-sharded computations run on device 0.
"""
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
