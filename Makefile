# Developer shortcuts; each target is the command it names, nothing more.
#   make setup | quickstart | test | test-fast | bench | bench-methods
PY := .venv/bin/python

.PHONY: setup quickstart test test-fast bench bench-methods

setup:
	bash scripts/setup_env.sh

quickstart:
	bash scripts/quickstart.sh

test:
	bash scripts/test.sh

test-fast:
	bash scripts/test.sh --fast

# Every benchmark that fits in ~15 minutes on 2 CPU cores; each rewrites its section of BENCHMARKS.md.
bench: setup
	$(PY) -m benchmarks.contrastive_memory
	$(PY) -m benchmarks.attention
	$(PY) -m benchmarks.data_loading
	$(PY) -m benchmarks.startup
	$(PY) -m benchmarks.mae_flops
	$(PY) -m benchmarks.xla_cpu_flags
	$(PY) -m benchmarks.readme_summary

# Trains every method's digits config (2-4 minutes each): the README methods table.
bench-methods: setup
	$(PY) -m benchmarks.methods_digits

# ssljax vs lightly / torchvision (PyTorch), side by side: train-step throughput, data pipeline, time
# to accuracy (~45 min on 2 shared cores, so not in `bench`). Installs the peer env (.venv-peer/)
# once, then each script writes its section of BENCHMARKS.md; the README summary is refreshed last.
bench-peer: setup
	bash benchmarks/peer_env.sh
	$(PY) -m benchmarks.peer_throughput --profile
	$(PY) -m benchmarks.data_pipeline_peer
	$(PY) -m benchmarks.time_to_accuracy
	$(PY) -m benchmarks.readme_summary
