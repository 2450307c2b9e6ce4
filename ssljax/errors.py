"""Errors shared across ssljax, in a leaf module (it imports nothing from ssljax).

`ssljax.config` re-exports `ConfigError`, so `from ssljax.config import ConfigError` keeps
working; library modules that `ssljax.config` imports (the methods) import it from here.
"""


class ConfigError(ValueError):
  """A config value that cannot work; the message names the key, the value and what was expected."""
