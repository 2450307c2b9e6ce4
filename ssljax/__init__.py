"""ssljax: self-supervised pretraining in JAX/Flax."""

from ssljax import _platforms

# Before anything imports JAX: one line if an accelerator is present that this JAX cannot use, and
# JAX_PLATFORMS where libtpu is installed but no TPU is attached (see ssljax/_platforms.py).
_platforms.check()

__version__ = "0.1.0"

__all__ = ["import_weights", "load_backbone", "load_text_encoder"]


def __getattr__(name):
  # Lazy, so that `import ssljax` (and every submodule import) does not pull in Flax.
  if name == "load_backbone":
    from ssljax.export import load_backbone
    return load_backbone
  if name == "load_text_encoder":
    from ssljax.export_text import load_text_encoder
    return load_text_encoder
  if name == "import_weights":
    from ssljax.interop import import_weights
    return import_weights
  raise AttributeError(f"module 'ssljax' has no attribute {name!r}")
