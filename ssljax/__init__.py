"""ssljax: self-supervised pretraining in JAX/Flax."""

from ssljax import _platforms

_platforms.quiet_tpu_probe()   # before anything imports JAX (see ssljax/_platforms.py)

__version__ = "0.1.0"

__all__ = ["load_backbone"]


def __getattr__(name):
  # Lazy, so that `import ssljax` (and every submodule import) does not pull in Flax.
  if name == "load_backbone":
    from ssljax.export import load_backbone
    return load_backbone
  raise AttributeError(f"module 'ssljax' has no attribute {name!r}")
