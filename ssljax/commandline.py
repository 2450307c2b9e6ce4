"""What every ssljax command line shares: absl flags, `--config` loading, one-line errors.

Each command (`ssljax.main`, `ssljax.evaluate`, `ssljax.finetune`, `ssljax.export`, `ssljax.plan`)
defines its flags in a `define_flags(flag_values)` function and runs as

    commandline.run("ssljax.evaluate", define_flags, body)     # python -m ...: absl's FLAGS
    flag_values = commandline.parse("ssljax.evaluate", define_flags, argv)   # from Python

so that a bad flag, a bad `--config.<key>=<value>` override or a bad input ends the command with
exactly one line on stderr that names the problem, and a non-zero exit code, never a traceback.
"""
from __future__ import annotations

import sys
from typing import Any, Callable, NoReturn, Sequence

from absl import app
from absl import flags
from absl import logging

from ssljax import config_files
from ssljax.errors import ConfigError


def one_line(message: Any, limit: int = 1000) -> str:
  """`message` as one line (newlines and runs of spaces become one space), cut at `limit`
  characters (some libraries list every choice they know)."""
  text = " ".join(str(message).split())
  return text if len(text) <= limit else text[:limit - 5] + " ..."


def fail(prog: str, message: Any, code: int = 2, kind: str = "error") -> NoReturn:
  """Prints `<prog>: <kind>: <message>` as one line on stderr and exits with `code`."""
  print(f"{prog}: {kind}: {one_line(message)}", file=sys.stderr, flush=True)
  sys.exit(code)


def parse(prog: str, define: Callable[[flags.FlagValues], None],
          argv: Sequence[str]) -> flags.FlagValues:
  """Fresh FlagValues holding `define`'s flags, parsed from `argv` (without the program name).

  Raises SystemExit with a one-line message for an unknown flag, a bad value or a stray argument.
  """
  flag_values = flags.FlagValues()
  define(flag_values)
  try:
    rest = flag_values([prog] + list(argv))
  except flags.Error as e:
    raise SystemExit(f"{prog}: error: {one_line(e)}") from None
  if len(rest) > 1:
    raise SystemExit(f"{prog}: error: unexpected arguments {rest[1:]}; expected only --flags")
  return flag_values


def run(prog: str, define: Callable[[flags.FlagValues], None],
        body: Callable[[flags.FlagValues, list[tuple[str, str | None]]], int | None],
        config_overrides: bool = False) -> None:
  """`python -m <prog>`: defines the flags on absl's FLAGS, parses sys.argv and exits with
  `body(FLAGS, overrides)` (None counts as 0).

  With `config_overrides`, `--config.<key>=<value>` arguments are taken out of the command line
  first (`ssljax.config_files.split_overrides`) and handed to `body`; a bad flag is one line.
  """
  before = set(flags.FLAGS)
  define(flags.FLAGS)
  for name in sorted(set(flags.FLAGS) - before):   # listed by --help whatever module defines them
    flags.FLAGS.register_key_flag_for_module(sys.argv[0], flags.FLAGS[name])

  def parser(argv: list[str]) -> list[tuple[str, str | None]]:
    try:   # --flagfile=FILE: its lines join the command line (overrides included)
      argv = flags.FLAGS.read_flags_from_files(argv, force_gnu=False)
      rest, overrides = (config_files.split_overrides(argv[1:]) if config_overrides
                         else (list(argv[1:]), []))
      positional = flags.FLAGS([argv[0]] + rest)
    except flags.Error as e:
      fail(prog, e)
    if len(positional) > 1:
      fail(prog, f"unexpected arguments {positional[1:]}; expected only --flags")
    return overrides

  app.run(lambda overrides: body(flags.FLAGS, overrides) or 0, flags_parser=parser)


def load_config(prog: str, value: str | None, overrides: Sequence[tuple[str, str | None]]):
  """The config `--config=value` names with the overrides applied; one line and exit 2 if not."""
  if not value:
    fail(prog, "--config is required: a config file path or a shipped config name such as "
               "simclr_digits")
  try:
    config = config_files.load(value)
    config_files.override(config, overrides)
  except ConfigError as e:
    fail(prog, e, kind="config error")
  return config


def quiet_logging(flag_values: flags.FlagValues) -> None:
  """absl WARNING verbosity unless --verbosity was given (orbax's INFO lines drown the output)."""
  if "verbosity" not in flag_values or not flag_values["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
