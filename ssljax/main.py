"""Command line: `python -m ssljax.main --config <file or name> --workdir DIR [--config.key=value ...]`.

`--config` takes a config file (`configs/simclr_digits.py`) or the name of a shipped config
(`simclr_digits`); its `get_config()` builds an ml_collections ConfigDict, and any key can be
overridden, big_vision/scenic style: `--config.batch_size=64 --config.total_steps=200`.
Running the same command again with the same workdir resumes from the latest checkpoint.
Multi-host: pass --distributed (or SSLJAX_DISTRIBUTED=1), plus --coordinator_address,
--num_processes and --process_id (or JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID)
unless on Cloud TPU / SLURM, where jax.distributed finds them itself (see ssljax/distributed.py).

A bad input (config, override, data, workdir, checkpoint) ends the run with one line on stderr
and a non-zero exit code; README.md "Errors" lists them.
"""
from __future__ import annotations

import json
import os

from absl import flags

from ssljax import commandline

PROG = "ssljax"


def define_flags(flag_values: flags.FlagValues) -> None:
  fv = flag_values
  flags.DEFINE_string("config", None, "A config file (configs/<name>.py[:arg]) or the name of a "
                      "shipped config (simclr_digits); keys are overridden with "
                      "--config.<key>=<value>.", flag_values=fv)
  flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs, plots, eval.json.",
                      flag_values=fv)
  flags.DEFINE_bool("distributed", os.environ.get("SSLJAX_DISTRIBUTED") == "1",
                    "Call jax.distributed.initialize() (multi-host runs).", flag_values=fv)
  flags.DEFINE_string("coordinator_address", None,
                      "host:port of process 0 (else $JAX_COORDINATOR_ADDRESS / detected).",
                      flag_values=fv)
  flags.DEFINE_integer("num_processes", None,
                       "Number of processes (else $JAX_NUM_PROCESSES / detected).", flag_values=fv)
  flags.DEFINE_integer("process_id", None, "This process's id (else $JAX_PROCESS_ID / detected).",
                       flag_values=fv)


def main(fv: flags.FlagValues, overrides: list[tuple[str, str | None]]) -> int:
  if fv.config is None or fv.workdir is None:
    commandline.fail(PROG, "--config and --workdir are required, e.g. python -m ssljax.main "
                           "--config simclr_digits --workdir /tmp/run")
  commandline.quiet_logging(fv)   # orbax/absl INFO lines would drown the progress bar
  config = commandline.load_config(PROG, fv.config, overrides)
  from ssljax import config as config_lib
  try:   # what needs no device: before JAX starts (the Trainer checks the mesh too)
    config_lib.validate(config)
  except (ValueError, OSError) as e:   # ConfigError is a ValueError
    _fail(e)
  from ssljax import cpu
  from ssljax.cpu import xla_flags
  setting = config.model.get("cpu_tuning", "auto")   # validated above
  if setting in cpu.SETTINGS:   # before JAX starts its backend; only for a CPU run
    xla_flags.apply_cpu_defaults(setting=setting)   # (ssljax/cpu/xla_flags.py)
  import jax
  _enable_compilation_cache(jax)
  from ssljax import distributed
  distributed.initialize(fv.coordinator_address, fv.num_processes, fv.process_id,
                         enable=fv.distributed)
  from ssljax import train
  try:
    trainer = train.Trainer(config, fv.workdir)
  except (ValueError, OSError, ImportError) as e:   # set-up only checks inputs: config, data, workdir
    _fail(e)
  try:
    result = trainer.run()
  except (ValueError, OSError, RuntimeError) as e:
    _fail(e, during_run=True)
  if jax.process_index() == 0:
    print(json.dumps(result, indent=2))
    if "knn_top1" in result:
      base = result.get("knn_top1_random_init")
      base = f" (random-init backbone: {base:.4f})" if base is not None else ""
      print(f"final held-out kNN top-1: {result['knn_top1']:.4f}{base}; "
            f"logs, plots and checkpoints in {os.path.abspath(fv.workdir)}")
  return 0


def _image_error(e: BaseException):
  """The data source's ImageReadError in `e` or its causes (grain may wrap it), else None."""
  from ssljax.data import sources
  seen = set()
  while e is not None and id(e) not in seen:
    seen.add(id(e))
    if isinstance(e, sources.ImageReadError):
      return e
    e = e.__cause__ or e.__context__
  return None


def _fail(e: BaseException, during_run: bool = False) -> None:
  """One line for a bad input; re-raises what is not one (a bug keeps its traceback)."""
  from ssljax import checkpoint as ckpt_lib
  from ssljax.errors import ConfigError
  if isinstance(e, ConfigError):
    commandline.fail(PROG, e, 2, "config error")
  image = _image_error(e)
  if image is not None:
    commandline.fail(PROG, f"{image}; with data.on_bad_image='fail' (the default) an unreadable "
                           f"image stops the run: fix or remove the file, or pass "
                           f"--config.data.on_bad_image=skip to skip such files (reported)", 1)
  if isinstance(e, ckpt_lib.IncompatibleCheckpointError):
    commandline.fail(PROG, e, 2)
  if isinstance(e, ckpt_lib.WorkdirWriteError):
    commandline.fail(PROG, e, 1)
  if not during_run:
    commandline.fail(PROG, e if isinstance(e, (ValueError, OSError)) and str(e) else
                     f"{type(e).__name__}: {e}", 1)
  raise e


def _enable_compilation_cache(jax) -> None:
  """JAX's persistent compilation cache, on by default, so a second start skips compilation.

  The directory is $JAX_COMPILATION_CACHE_DIR if set, else $XDG_CACHE_HOME/ssljax/jax (~/.cache).
  """
  if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    return
  cache_home = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  jax.config.update("jax_compilation_cache_dir", os.path.join(cache_home, "ssljax", "jax"))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def run() -> None:
  """Console-script entry point (`ssljax --config ... --workdir ...`)."""
  from ssljax.cpu import host_memory
  host_memory.reexec_with_host_defaults()   # huge pages for XLA:CPU (ssljax/cpu/host_memory.py)
  commandline.run(PROG, define_flags, main, config_overrides=True)


if __name__ == "__main__":
  run()
