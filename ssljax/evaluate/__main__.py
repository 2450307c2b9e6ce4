"""`python -m ssljax.evaluate --workdir DIR --protocol knn|linear|fewshot|diagnostics|finetune`."""
from ssljax import host_memory
from ssljax import xla_flags

if __name__ == "__main__":
  host_memory.reexec_with_host_defaults()   # huge pages for XLA's buffers (ssljax/host_memory.py)
  xla_flags.apply_cpu_defaults()   # before JAX starts its backend (see ssljax/xla_flags.py)
  from ssljax.evaluate import cli
  cli.main()
