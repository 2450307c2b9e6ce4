"""Config files: find one, load it, override its keys from the command line, reload a run's.

    config = config_files.load("simclr_digits")              # a shipped config, by name
    config = config_files.load("configs/simclr_digits.py")   # a path ('x.py:arg': get_config('arg'))
    config_files.override(config, [("batch_size", "64")])    # what `--config.batch_size=64` does
    config = config_files.load_run(workdir)                   # the config a run saved (config.json)

This is the one loader of config files: `ssljax.main`, `ssljax.plan`, evaluation, fine-tuning and
export all come through here. Every failure raises ConfigError with one line that names the file,
key or value and what was expected.
"""
from __future__ import annotations

import ast
import difflib
import importlib.util
import json
import os
import re
import sys
from typing import Any, Sequence

import ml_collections

from ssljax.errors import ConfigError

_HERE = os.path.dirname(os.path.abspath(__file__))


# ---------------------------------------------------------------------------------------------
# Finding and loading a config file.
# ---------------------------------------------------------------------------------------------


def shipped_dir() -> str:
  """The folder of the shipped configs: the installed package `ssljax.configs` where there is one,
  else the repository's `configs/` beside the `ssljax` package (a checkout)."""
  try:
    spec = importlib.util.find_spec("ssljax.configs")
  except (ImportError, ValueError):
    spec = None
  if spec is not None and spec.submodule_search_locations:
    return list(spec.submodule_search_locations)[0]
  return os.path.join(os.path.dirname(_HERE), "configs")


def shipped_names() -> list[str]:
  """Names of the shipped configs (`simclr_digits`, ...), sorted; common.py is not one."""
  folder = shipped_dir()
  if not os.path.isdir(folder):
    return []
  return sorted(f[:-3] for f in os.listdir(folder)
                if f.endswith(".py") and not f.startswith("_") and f != "common.py")


def resolve(value: str) -> tuple[str, str | None]:
  """(path of the config file, the argument for get_config or None) of a `--config` value.

  `value` is a path (`configs/x.py`, optionally `:arg`), or the name of a shipped config
  (`simclr_digits`): a value that is not an existing file and has no '/' and no '.py'.
  """
  path, sep, arg = value.partition(":")
  if not path:
    raise ConfigError(f"--config={value!r}; expected a config file path or a shipped config name "
                      f"such as 'simclr_digits'")
  if os.path.isfile(path):
    return path, (arg if sep else None)
  if os.path.isdir(path):
    raise ConfigError(f"--config={path!r} is a directory; expected a config file (.py) in it")
  names = shipped_names()
  if "/" in path or os.sep in path or path.endswith(".py"):
    name = os.path.basename(path)[:-3] if path.endswith(".py") else ""
    hint = f"; the shipped config of that name is --config {name}" if name in names else ""
    raise ConfigError(f"config file {path!r} does not exist{hint}")
  if path in names:
    return os.path.join(shipped_dir(), f"{path}.py"), (arg if sep else None)
  close = difflib.get_close_matches(path, names, n=3, cutoff=0.5)
  nearest = f"nearest: {', '.join(close)}" if close else f"shipped: {', '.join(names[:5])}, ..."
  raise ConfigError(f"--config={path!r} is neither a file nor a shipped config ({nearest}; all "
                    f"{len(names)} are in {shipped_dir()})")


def _where(error: BaseException, path: str) -> str:
  """' (line N)' of the innermost traceback frame in `path`, or ''."""
  line, tb = None, error.__traceback__
  target = os.path.abspath(path)
  while tb is not None:
    if os.path.abspath(tb.tb_frame.f_code.co_filename) == target:
      line = tb.tb_lineno
    tb = tb.tb_next
  return f" (line {line})" if line else ""


def exec_file(path: str, key: str):
  """The module of the Python file `path`, executed and registered as sys.modules[key].

  A ConfigError raised by the file passes through; any other failure becomes one ConfigError line.
  """
  spec = importlib.util.spec_from_file_location(key, path)
  module = importlib.util.module_from_spec(spec)
  sys.modules[key] = module
  try:
    spec.loader.exec_module(module)
  except ConfigError:
    del sys.modules[key]
    raise
  except SyntaxError as e:
    del sys.modules[key]
    raise ConfigError(f"config file {path!r} has a syntax error at line {e.lineno}: {e.msg}") from None
  except Exception as e:  # pylint: disable=broad-except
    del sys.modules[key]
    raise ConfigError(f"config file {path!r} failed to load{_where(e, path)}: "
                      f"{type(e).__name__}: {_one_line(e)}") from None
  return module


def _one_line(error: BaseException) -> str:
  return " ".join(str(error).split())


def load(value: str) -> ml_collections.ConfigDict:
  """`get_config()` (or `get_config(arg)` for 'path:arg') of the config file `value` names
  (a path or a shipped name, see `resolve`)."""
  path, arg = resolve(value)
  module = exec_file(path, f"ssljax_config_file:{os.path.abspath(path)}")
  get_config = getattr(module, "get_config", None)
  if not callable(get_config):
    raise ConfigError(f"config file {path!r} does not define get_config(); expected a function "
                      f"returning an ml_collections.ConfigDict")
  try:
    config = get_config() if arg is None else get_config(arg)
  except ConfigError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    call = "get_config()" if arg is None else f"get_config({arg!r})"
    raise ConfigError(f"{call} of {path!r} failed{_where(e, path)}: {type(e).__name__}: "
                      f"{_one_line(e)}") from None
  if not isinstance(config, ml_collections.ConfigDict):
    raise ConfigError(f"get_config() of {path!r} returned a {type(config).__name__}; expected an "
                      f"ml_collections.ConfigDict (start from ssljax.config.base_config)")
  return config


def import_sibling(config_file: str, name: str = "common"):
  """The module `<name>.py` in the folder of `config_file`, loaded by path once per process."""
  path = os.path.join(os.path.dirname(os.path.abspath(config_file)), f"{name}.py")
  key = f"ssljax_config_sibling:{path}"
  if key not in sys.modules:
    if not os.path.isfile(path):
      raise ConfigError(f"{config_file!r} imports {name!r}, but {path!r} does not exist")
    exec_file(path, key)
  return sys.modules[key]


# ---------------------------------------------------------------------------------------------
# `--config.<key>=<value>` overrides.
# ---------------------------------------------------------------------------------------------

_OVERRIDE = re.compile(r"^--?(no)?config\.([^=]*)(?:=(.*))?$", re.S)


def split_overrides(argv: Sequence[str]) -> tuple[list[str], list[tuple[str, str | None]]]:
  """(the other arguments, [(key, text)]) of a command line's `--config.<key>` overrides.

  Spellings: `--config.key=value`, `--config.key value` (the next argument is the value unless it
  starts with '--'), `--config.key` (text None: true for a bool key) and `--noconfig.key` ('false').
  """
  rest, found, i = [], [], 0
  while i < len(argv):
    match = _OVERRIDE.match(argv[i])
    if not match:
      rest.append(argv[i])
      i += 1
      continue
    negated, key, text = match.group(1), match.group(2), match.group(3)
    if negated:
      text = "false" if text is None else text
    elif text is None and i + 1 < len(argv) and not argv[i + 1].startswith("--"):
      text = argv[i + 1]
      i += 1
    found.append((key, text))
    i += 1
  return rest, found


def _paths(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
  out = []
  for key in config.keys():
    value = config[key]
    out.append(prefix + key)
    if isinstance(value, ml_collections.ConfigDict):
      out += _paths(value, f"{prefix}{key}.")
  return out


def _unknown(config, key: str, part: str, node, flag: str) -> ConfigError:
  """The nearest key in the same block, else a key of that name (or close) in another block
  (`knn_k` -> `eval.knn_k`), else the block's keys."""
  close = difflib.get_close_matches(part, list(node.keys()), n=1)
  prefix = key[:len(key) - len(part)]
  if close:
    return ConfigError(f"unknown config key {key!r} in {flag}; did you mean {prefix + close[0]!r}?")
  leaves = {path: path.rsplit(".", 1)[-1] for path in _paths(config)}
  near = difflib.get_close_matches(part, sorted(set(leaves.values())), n=1, cutoff=0.8)
  if near:
    where = sorted(path for path, leaf in leaves.items() if leaf == near[0])[0]
    return ConfigError(f"unknown config key {key!r} in {flag}; did you mean {where!r}?")
  block = f"config.{prefix[:-1]}" if prefix else "config"
  return ConfigError(f"unknown config key {key!r} in {flag}; {block} has the keys "
                     f"{', '.join(sorted(node.keys()))}")


def _literal(text: str):
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
    return None


_TRUE, _FALSE = ("true", "t", "1", "yes", "y"), ("false", "f", "0", "no", "n")


def _parse(key: str, text: str | None, current: Any, kind: type) -> Any:
  """The value of `--config.<key>=<text>` for a key whose current value is `current` (type `kind`)."""
  flag = f"--config.{key}"
  if kind is bool:
    if text is None:
      return True
    if text.strip().lower() in _TRUE + _FALSE:
      return text.strip().lower() in _TRUE
    raise ConfigError(f"{flag}={text!r}: expected true or false")
  if text is None:
    raise ConfigError(f"{flag} needs a value, e.g. {flag}={current!r}")
  if kind is int:
    for base in (0, 10):
      try:
        return int(text.strip(), base)
      except ValueError:
        pass
    number = _literal(text)
    if isinstance(number, (float, bool, str, tuple, list)):
      raise ConfigError(f"{flag}={text} is a {type(number).__name__}; expected an integer "
                        f"(like the current value {current!r})")
    raise ConfigError(f"{flag}={text!r} is not a number; expected an integer like {current!r}")
  if kind is float:
    try:
      return float(text.strip())
    except ValueError:
      raise ConfigError(f"{flag}={text!r} is not a number; expected a float like {current!r}") from None
  if kind is str:
    return text
  if kind in (tuple, list):
    value = _literal(text)
    if value is None and text.strip() not in ("None", ""):
      raise ConfigError(f"{flag}={text!r} is not a Python literal; expected a tuple such as "
                        f"{tuple(current) if current else (1, 2)!r}")
    value = tuple(value) if isinstance(value, (tuple, list)) else (value,)
    return _like_items(flag, value, tuple(current or ()))
  if issubclass(kind, ml_collections.ConfigDict):
    raise ConfigError(f"{flag} is a block of keys ({', '.join(current.keys())}); set them one by "
                      f"one, e.g. --config.{key}.{next(iter(current.keys()), 'key')}=<value>")
  value = _literal(text)   # a key whose default is None: any Python literal, else the string
  return text if value is None and text.strip() != "None" else value


def _like_items(flag: str, value: tuple, current: tuple) -> tuple:
  """`value` with the item type of `current` (ints become floats in a float tuple)."""
  kinds = {type(v) for v in current}
  if len(kinds) != 1:
    return value
  kind = kinds.pop()
  out = []
  for v in value:
    if kind is float and isinstance(v, int) and not isinstance(v, bool):
      v = float(v)
    if kind in (int, float, str, bool) and type(v) is not kind:  # pylint: disable=unidiomatic-typecheck
      raise ConfigError(f"{flag}={value!r} holds {v!r} ({type(v).__name__}); expected "
                        f"{kind.__name__} items like {current!r}")
    out.append(v)
  return tuple(out)


def override(config: ml_collections.ConfigDict, overrides: Sequence[tuple[str, str | None]]) -> None:
  """Sets `config`'s keys from `--config.<key>=<text>` overrides (from `split_overrides`), in order.

  The text is read as the type of the key's current value: int, float, bool (true/false), str,
  tuple (a Python literal such as `(32,)` or `0.3,1`; a repeated key adds items), or any Python
  literal for a key whose value is None. Raises ConfigError for an unknown key (with the nearest
  known one), a block given a value, a value of the wrong type or one that cannot be read.
  """
  repeated: dict[str, tuple] = {}
  for key, text in overrides:
    parts = key.split(".")
    if not all(parts):
      raise ConfigError(f"--config.{key}: expected a dotted key such as --config.batch_size=64")
    node = config
    for i, part in enumerate(parts):
      if not isinstance(node, ml_collections.ConfigDict):
        parent = ".".join(parts[:i])
        raise ConfigError(f"--config.{key}: config.{parent} is a value ({node!r}), not a block "
                          f"of keys")
      if part not in node:
        flag = f"--config.{key}" + ("" if text is None else f"={text}")
        raise _unknown(config, ".".join(parts[:i + 1]), part, node, flag)
      if i < len(parts) - 1:
        node = node[part]
    leaf = parts[-1]
    current = node[leaf]
    kind = node.get_type(leaf) if hasattr(node, "get_type") else type(current)
    if kind is type(None):
      kind = type(current)
    value = _parse(key, text, current, kind)
    if kind in (tuple, list) and key in repeated and text is not None:
      value = repeated[key] + value   # `--config.k=1 --config.k=2` -> (1, 2)
    if kind in (tuple, list):
      repeated[key] = value
    try:
      node[leaf] = value
    except (TypeError, ValueError) as e:
      raise ConfigError(f"--config.{key}={text!r}: {_one_line(e)}") from None


def load_with_overrides(value: str, argv: Sequence[str]) -> tuple[ml_collections.ConfigDict, list[str]]:
  """(config of `value` with the `--config.<key>` overrides in `argv` applied, the other args)."""
  rest, overrides = split_overrides(argv)
  config = load(value)
  override(config, overrides)
  return config, rest


# ---------------------------------------------------------------------------------------------
# The config a run saved.
# ---------------------------------------------------------------------------------------------


def load_run(workdir: str) -> ml_collections.ConfigDict:
  """The config a run saved in `workdir/config.json`, over the current schema's defaults.

  Keys the schema gained since the run take their defaults; JSON lists become tuples. Raises
  FileNotFoundError when there is no config.json, ConfigError when it cannot be read as a config.
  """
  from ssljax.config import base_config  # pylint: disable=g-import-not-at-top  (imports the methods)
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} does not exist; expected a workdir written by ssljax.main "
                            f"(it holds config.json, checkpoints/, metrics.jsonl)")
  try:
    with open(path) as f:
      saved = json.load(f)
  except (OSError, json.JSONDecodeError) as e:
    raise ConfigError(f"{path} cannot be read as JSON: {_one_line(e)}") from None
  try:
    config = base_config(saved["method"], saved["model"]["name"])
  except (KeyError, TypeError) as e:
    raise ConfigError(f"{path} has no method or model.name ({_one_line(e)}); expected a config "
                      f"written by ssljax.main") from None

  def merge(node, values, prefix):
    for key, value in values.items():
      if key not in node:
        raise ConfigError(f"{path}: key {prefix}{key!r} is not in the current config schema")
      if isinstance(value, dict):
        merge(node[key], value, f"{prefix}{key}.")
      else:
        try:
          node[key] = tuple(value) if isinstance(value, list) else value
        except TypeError as e:
          raise ConfigError(f"{path}: {prefix}{key}={value!r}: {_one_line(e)}") from None

  merge(config, saved, "")
  return config
