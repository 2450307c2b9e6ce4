"""Methods, registered by file name: `ssljax/methods/<name>.py` defines `METHOD`, a `base.Method` subclass.

A new method is one new file here; nothing else needs an edit.
"""
from __future__ import annotations

import importlib
import pkgutil

from ssljax.methods.base import Method

_NOT_METHODS = frozenset({"base", "common"})


def available() -> tuple[str, ...]:
  """Names of all methods, sorted."""
  import ssljax.methods as pkg
  return tuple(sorted(m.name for m in pkgutil.iter_modules(pkg.__path__)
                      if m.name not in _NOT_METHODS and not m.name.startswith("_")))


def get(name: str) -> type[Method]:
  """The Method class registered as `name` (its file name)."""
  names = available()
  if name not in names:
    raise ValueError(f"unknown method {name!r}; expected one of {names}")
  module = importlib.import_module(f"ssljax.methods.{name}")
  return module.METHOD
