"""Methods, registered by file name: `ssljax/methods/<name>.py` defines `METHOD`, a `base.Method` subclass.

A new method is one new file here; nothing else needs an edit. A method defined outside ssljax
(a user's own, or a test's) joins with `register(cls)` and is then selected by `config.method`
like any other.
"""
from __future__ import annotations

import importlib
import pkgutil

from ssljax.methods.base import Method

_NOT_METHODS = frozenset({"base", "common"})
_REGISTERED: dict[str, type[Method]] = {}


def _files() -> tuple[str, ...]:
  import ssljax.methods as pkg
  return tuple(m.name for m in pkgutil.iter_modules(pkg.__path__)
               if m.name not in _NOT_METHODS and not m.name.startswith("_"))


def available() -> tuple[str, ...]:
  """Names of all methods, sorted."""
  return tuple(sorted(set(_files()) | set(_REGISTERED)))


def register(cls: type[Method]) -> type[Method]:
  """Registers a Method subclass under `cls.name` (usable as a class decorator)."""
  if not (isinstance(cls, type) and issubclass(cls, Method)) or not cls.name:
    raise ValueError(f"register({cls!r}): expected a Method subclass with a non-empty `name`")
  if cls.name in _files() or _REGISTERED.get(cls.name, cls) is not cls:
    raise ValueError(f"method {cls.name!r} is already registered")
  _REGISTERED[cls.name] = cls
  return cls


def get(name: str) -> type[Method]:
  """The Method class registered as `name` (its file name, or `register`ed)."""
  if name in _REGISTERED:
    return _REGISTERED[name]
  names = available()
  if name not in names:
    raise ValueError(f"unknown method {name!r}; expected one of {names}")
  module = importlib.import_module(f"ssljax.methods.{name}")
  return module.METHOD
