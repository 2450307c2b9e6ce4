"""Multi-host start-up: when and how `jax.distributed.initialize()` is called.

One process runs per host (TPU pod worker) or per accelerator (GPU cluster). Each needs the
coordinator's `host:port`, the number of processes and its own id. They come, in this order, from

  1. the command line: --coordinator_address, --num_processes, --process_id (ssljax.main);
  2. the environment: JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID;
  3. JAX's cluster detection, for whatever is still unset: Cloud TPU (the TPU VM metadata),
     SLURM (SLURM_* variables of `srun`), Open MPI and Kubernetes.

A run is multi-host when --distributed (or SSLJAX_DISTRIBUTED=1) is given or any of the values
above is given; with none of them it is a single process and nothing is initialised. On CPU, JAX
0.10's default cross-process collectives are gloo (`jax_cpu_collectives_implementation`), which is
what the localhost multi-process test uses.
"""
from __future__ import annotations

import os
from typing import Any, Mapping

ENV_COORDINATOR = "JAX_COORDINATOR_ADDRESS"
ENV_NUM_PROCESSES = "JAX_NUM_PROCESSES"
ENV_PROCESS_ID = "JAX_PROCESS_ID"
ENV_ENABLE = "SSLJAX_DISTRIBUTED"


def _int_or_none(name: str, value: Any) -> int | None:
  if value is None or value == "":
    return None
  try:
    return int(value)
  except (TypeError, ValueError):
    raise ValueError(f"{name}={value!r}; expected a non-negative integer") from None


def resolve(coordinator_address: str | None = None, num_processes: int | None = None,
            process_id: int | None = None, enable: bool = False,
            environ: Mapping[str, str] | None = None) -> dict[str, Any] | None:
  """The keyword arguments for `jax.distributed.initialize`, or None for a single-process run.

  Explicit arguments win over the environment; values left None are detected by JAX on Cloud TPU
  and SLURM. Raises ValueError naming the bad value for a non-integer count/id or an id outside
  [0, num_processes).
  """
  env = os.environ if environ is None else environ
  address = coordinator_address or env.get(ENV_COORDINATOR) or None
  count = (_int_or_none("--num_processes", num_processes) if num_processes is not None
           else _int_or_none(ENV_NUM_PROCESSES, env.get(ENV_NUM_PROCESSES)))
  pid = (_int_or_none("--process_id", process_id) if process_id is not None
         else _int_or_none(ENV_PROCESS_ID, env.get(ENV_PROCESS_ID)))
  wanted = enable or env.get(ENV_ENABLE) == "1" or any(v is not None for v in (address, count, pid))
  if not wanted:
    return None
  if count is not None and count < 1:
    raise ValueError(f"num_processes={count}; expected at least 1")
  if pid is not None and count is not None and not 0 <= pid < count:
    raise ValueError(f"process_id={pid}; expected 0 <= process_id < num_processes={count}")
  return {"coordinator_address": address, "num_processes": count, "process_id": pid}


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, enable: bool = False) -> bool:
  """Calls `jax.distributed.initialize` when the run is multi-host (see `resolve`); returns whether it did."""
  kwargs = resolve(coordinator_address, num_processes, process_id, enable)
  if kwargs is None:
    return False
  import jax
  jax.distributed.initialize(**kwargs)
  return True
