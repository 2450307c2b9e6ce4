# Developer shortcuts; each target is the command it names, nothing more.
#   make setup | quickstart | test | test-fast | test-bench | bench | bench-more | bench-methods | bench-seeds
PY := .venv/bin/python

.PHONY: setup quickstart test test-fast test-bench bench bench-more bench-methods bench-seeds

setup:
	bash scripts/setup_env.sh

quickstart:
	bash scripts/quickstart.sh

test:
	bash scripts/test.sh

test-fast:
	bash scripts/test.sh --fast

# The tests of the benchmarks/ harness and its torch / lightly peers (-m bench; the peer tests
# skip without .venv-peer/, made by `bash benchmarks/peer_env.sh`).
test-bench: setup
	$(PY) -m pytest -q -p no:cacheprovider -m bench tests

# The side-by-side benchmarks, about 35 minutes on 2 CPU cores once the peer env (.venv-peer/:
# torch, torchvision, lightly; installed on the first run, a few minutes) exists: contrastive loss
# memory and time, train-step throughput vs lightly, data pipeline vs torchvision, pipeline + step
# end to end vs lightly, time to kNN accuracy vs lightly, time to first step. Each rewrites its section of BENCHMARKS.md;
# the README summary is refreshed last.
bench: setup
	bash benchmarks/peer_env.sh
	$(PY) -m benchmarks.contrastive_memory
	$(PY) -m benchmarks.startup
	$(PY) -m benchmarks.peer_throughput --warmup 0 --settle 1 --rounds 12 --chunk 1 --rounds-large 2
	$(PY) -m benchmarks.data_pipeline_peer
	$(PY) -m benchmarks.end_to_end_peer
	$(PY) -m benchmarks.time_to_accuracy
	$(PY) -m benchmarks.readme_summary

# The other measurements (~15 minutes): attention kernel, data loading, MAE encoder FLOPs, the
# XLA:CPU library-fusion settings behind ssljax/xla_flags.py, the ResNet step with and without each
# of ssljax/models/resnet.py's CPU workarounds, the DINO recipe's ViT backbone alone vs
# torchvision's (forward / backward: where the DINO throughput gap is), and ResNet-18's 3x3
# convolutions alone vs torch's (one per stage: how much of the ResNet-18 row they are).
bench-more: setup
	bash benchmarks/peer_env.sh
	$(PY) -m benchmarks.peer_throughput --breakdown --warmup 0 --settle 1 --rounds 3 --chunk 1 --rounds-large 2
	$(PY) -m benchmarks.peer_throughput --convs --batches 32 128 --rounds 8 --chunk 3 --rounds-large 6 --chunk-large 2 --settle 4
	$(PY) -m benchmarks.attention
	$(PY) -m benchmarks.data_loading
	$(PY) -m benchmarks.mae_flops
	$(PY) -m benchmarks.xla_cpu_flags
	$(PY) -m benchmarks.resnet_cpu_workarounds
	$(PY) -m benchmarks.readme_summary

# Trains every method's digits config (2-4 minutes each): the README methods table.
bench-methods: setup
	$(PY) -m benchmarks.methods_digits

# The slow learning tests at seeds 0, 1 and 2 (about 10 minutes per seed): does each recipe learn at
# seeds other than the one CI runs?
bench-seeds: setup
	$(PY) -m benchmarks.learning_seeds
