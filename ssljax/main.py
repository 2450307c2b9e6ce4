"""Command line: `python -m ssljax.main --config configs/<name>.py --workdir DIR [--config.key=value ...]`.

Flags follow big_vision/scenic: the config file's `get_config()` builds an ml_collections
ConfigDict, and any key can be overridden, e.g. `--config.batch_size=64 --config.total_steps=200`.
Running the same command again with the same workdir resumes from the latest checkpoint.
Multi-host: pass --distributed (or SSLJAX_DISTRIBUTED=1), plus --coordinator_address,
--num_processes and --process_id (or JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID)
unless on Cloud TPU / SLURM, where jax.distributed finds them itself (see ssljax/distributed.py).
"""
from __future__ import annotations

import json
import os
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a config file (configs/*.py).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs, plots, eval.json.")
_DISTRIBUTED = flags.DEFINE_bool("distributed", os.environ.get("SSLJAX_DISTRIBUTED") == "1",
                                 "Call jax.distributed.initialize() (multi-host runs).")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None,
                                   "host:port of process 0 (else $JAX_COORDINATOR_ADDRESS / detected).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None,
                                      "Number of processes (else $JAX_NUM_PROCESSES / detected).")
_PROCESS_ID = flags.DEFINE_integer("process_id", None,
                                   "This process's id (else $JAX_PROCESS_ID / detected).")


def main(argv) -> int:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}; expected only --flags")
  if _CONFIG.value is None or _WORKDIR.value is None:
    raise app.UsageError("--config and --workdir are required, e.g. "
                         "python -m ssljax.main --config configs/simclr_digits.py --workdir /tmp/run")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # orbax/absl INFO lines would drown the progress bar
  from ssljax import cpu
  from ssljax.cpu import xla_flags
  setting = _CONFIG.value.get("model", {}).get("cpu_tuning", "auto")   # bad: ConfigError below
  if setting in cpu.SETTINGS:   # before JAX starts its backend; only for a CPU run
    xla_flags.apply_cpu_defaults(setting=setting)   # (ssljax/cpu/xla_flags.py)
  import jax
  _enable_compilation_cache(jax)
  from ssljax import distributed
  distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value,
                         enable=_DISTRIBUTED.value)
  from ssljax import checkpoint as ckpt_lib
  from ssljax import config as config_lib
  from ssljax import train
  try:
    result = train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  except config_lib.ConfigError as e:
    print(f"ssljax: config error: {e}", file=sys.stderr)
    return 2
  except ckpt_lib.WorkdirWriteError as e:
    print(f"ssljax: error: {e}", file=sys.stderr)
    return 1
  if jax.process_index() == 0:
    print(json.dumps(result, indent=2))
    if "knn_top1" in result:
      base = result.get("knn_top1_random_init")
      base = f" (random-init backbone: {base:.4f})" if base is not None else ""
      print(f"final held-out kNN top-1: {result['knn_top1']:.4f}{base}; "
            f"logs, plots and checkpoints in {os.path.abspath(_WORKDIR.value)}")
  return 0


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
  app.run(main)


if __name__ == "__main__":
  run()
