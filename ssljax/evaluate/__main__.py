"""`python -m ssljax.evaluate --workdir DIR --protocol knn|linear|fewshot|diagnostics|finetune`."""
from ssljax.cpu import host_memory
from ssljax.cpu import xla_flags

if __name__ == "__main__":
  host_memory.reexec_with_host_defaults()   # huge pages for XLA:CPU (ssljax/cpu/host_memory.py)
  xla_flags.apply_cpu_defaults()   # before JAX starts; only for a CPU run (ssljax/cpu/xla_flags.py)
  from ssljax.evaluate import cli
  cli.run()
