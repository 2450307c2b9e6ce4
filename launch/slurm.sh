#!/usr/bin/env bash
# Submits an ssljax run to a SLURM GPU cluster: one process per GPU, started by `srun`.
#
#   launch/slurm.sh [--nodes N] [--gpus-per-node G] [--cpus-per-task C] [--partition P] [--account A]
#       [--time HH:MM:SS] [--job-name NAME] [--no-install] [--dry-run] \
#       -- --config configs/X.py --workdir DIR [--config.k=v ...]
#
# Prints the exact commands and runs them; --dry-run only prints them. First (unless --no-install)
# `$PYTHON -m pip install -c requirements-lock.txt -e '<checkout>[cuda12]'`: JAX's CUDA 12 plugin,
# without which every task would run on the CPU. Then sbatch, with the batch script on stdin.
# --cpus-per-task defaults to the config's data.worker_count + 1 (the grain worker processes of each
# task plus the task itself), read from the config by ssljax itself (`$PYTHON -c ...`, which prints
# the number it read to stderr). Inside the job, `srun` starts N x G tasks, one per GPU; each runs
# `python -m ssljax.main --distributed`, and jax.distributed.initialize() reads the coordinator,
# the process count (SLURM_NTASKS), the process id (SLURM_PROCID) and the GPU of each task
# (SLURM_LOCALID) from the SLURM environment. Pre-emption and the time limit: the job is submitted
# with --requeue and --signal=B:USR1@120; 120 s before the limit the batch script passes SIGUSR1 to
# the tasks (srun forwards it), ssljax saves a checkpoint at the next step and exits, and the script
# requeues the job, which resumes from that checkpoint (a pre-empted job gets SIGTERM, which ssljax
# handles the same way, and SLURM requeues it). DIR must be on a file system all nodes share. The job
# runs in the directory this script is started from (sbatch --chdir), with the Python of $PYTHON
# (default: python, e.g. the activated venv).
set -euo pipefail
source "$(dirname "$0")/_run.sh"

NODES=1 GPUS=8 CPUS="" PARTITION="" ACCOUNT="" TIME="24:00:00" NAME="ssljax" INSTALL=1 DRY=0
PYTHON="${PYTHON:-python}"
usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; }  # the header
while [ $# -gt 0 ]; do
  case "$1" in
    --nodes) NODES="$2"; shift 2 ;;
    --gpus-per-node) GPUS="$2"; shift 2 ;;
    --cpus-per-task) CPUS="$2"; shift 2 ;;
    --partition) PARTITION="$2"; shift 2 ;;
    --account) ACCOUNT="$2"; shift 2 ;;
    --time) TIME="$2"; shift 2 ;;
    --job-name) NAME="$2"; shift 2 ;;
    --no-install) INSTALL=0; shift ;;
    --dry-run) DRY=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    *) echo "slurm.sh: unknown option $1 (ssljax flags go after --)" >&2; usage >&2; exit 2 ;;
  esac
done
for v in NODES GPUS; do
  if ! [[ "${!v}" =~ ^[1-9][0-9]*$ ]]; then
    echo "slurm.sh: --$(echo "$v" | tr A-Z a-z | sed 's/gpus/gpus-per-node/') ${!v}; expected a positive integer" >&2
    exit 2
  fi
done
if [ -n "$CPUS" ] && ! [[ "$CPUS" =~ ^[1-9][0-9]*$ ]]; then
  echo "slurm.sh: --cpus-per-task $CPUS; expected a positive integer" >&2; exit 2
fi
if [ $# -eq 0 ]; then
  echo "slurm.sh: expected ssljax flags after --, e.g. -- --config configs/simclr_resnet50_imagenet.py --workdir /shared/run" >&2
  exit 2
fi

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
if [ "$INSTALL" -eq 1 ]; then
  run "$PYTHON" -m pip install -q -c "$ROOT/requirements-lock.txt" -e "$ROOT[cuda12]"
fi

if [ -z "$CPUS" ]; then
  # The config exactly as ssljax.main reads it (a path or a shipped name, then the overrides).
  read_workers='import sys
from ssljax import commandline, config_files, main
rest, overrides = config_files.split_overrides(sys.argv[1:])
flag_values = commandline.parse(main.PROG, main.define_flags, rest)
print(int(commandline.load_config(main.PROG, flag_values.config, overrides).data.worker_count))'
  if ! workers="$("$PYTHON" -c "$read_workers" "$@" | tail -n 1)" || ! [[ "$workers" =~ ^[0-9]+$ ]]; then
    echo "slurm.sh: could not read data.worker_count from the config with $PYTHON (is ssljax installed there?); pass --cpus-per-task" >&2
    exit 2
  fi
  CPUS=$((workers + 1))
  echo "slurm.sh: --cpus-per-task=$CPUS (the config's data.worker_count=$workers, plus the task itself)" >&2
fi

script="#!/usr/bin/env bash
#SBATCH --job-name=$NAME
#SBATCH --nodes=$NODES
#SBATCH --ntasks-per-node=$GPUS
#SBATCH --gpus-per-node=$GPUS
#SBATCH --cpus-per-task=$CPUS
#SBATCH --time=$TIME
#SBATCH --requeue
#SBATCH --signal=B:USR1@120
#SBATCH --open-mode=append
#SBATCH --output=%x-%j.out"
[ -n "$PARTITION" ] && script+=$'\n'"#SBATCH --partition=$PARTITION"
[ -n "$ACCOUNT" ] && script+=$'\n'"#SBATCH --account=$ACCOUNT"
script+='
set -uo pipefail
# Near the time limit SLURM sends SIGUSR1 to this script (B:USR1@120): pass it to the tasks (srun
# forwards it; ssljax saves a checkpoint at the next step and exits), then requeue this job, which
# resumes from that checkpoint.
requeue=0
trap '"'"'requeue=1; echo "slurm.sh: time limit in 120 s: SIGUSR1 to the tasks, then requeue"; kill -USR1 "$pid" 2>/dev/null'"'"' USR1
# One task per GPU. Every task sees the node'"'"'s GPUs and JAX keeps GPU number SLURM_LOCALID
# (--gpus-per-task would hide the others and break that numbering).
srun --kill-on-bad-exit=1 '"$(quote_all "$PYTHON" -m ssljax.main --distributed "$@")"' &
pid=$!
while :; do
  wait "$pid" && rc=0 || rc=$?
  kill -0 "$pid" 2>/dev/null || break   # wait returned for the signal, not for srun: wait again
done
if [ "$requeue" -eq 1 ]; then scontrol requeue "$SLURM_JOB_ID"; fi
exit "$rc"
'

# The exact command: the batch script goes to sbatch on stdin.
quote_all sbatch --chdir="$PWD"; echo " <<'SBATCH'"
printf '%s' "$script"
echo "SBATCH"
if [ "$DRY" -eq 0 ]; then
  sbatch --chdir="$PWD" <<< "$script"
fi
