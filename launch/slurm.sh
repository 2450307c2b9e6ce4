#!/usr/bin/env bash
# Submits an ssljax run to a SLURM GPU cluster: one process per GPU, started by `srun`.
#
#   launch/slurm.sh [--nodes N] [--gpus-per-node G] [--partition P] [--account A] [--time HH:MM:SS]
#       [--job-name NAME] [--dry-run] -- --config configs/X.py --workdir DIR [--config.k=v ...]
#
# Prints the exact submission (sbatch with the batch script on stdin) and runs it; --dry-run only
# prints it. Inside the job, `srun` starts N x G tasks, one per GPU; each runs
# `python -m ssljax.main --distributed`, and jax.distributed.initialize() reads the coordinator
# (the first node of the job), the process count (SLURM_NTASKS), the process id (SLURM_PROCID)
# and the GPU of each task (SLURM_LOCALID) from the SLURM environment. DIR must be on a file system
# that all nodes share. The job runs in the directory this script is started from (sbatch --chdir),
# with the Python of $PYTHON (default: python, e.g. the activated venv).
set -euo pipefail
source "$(dirname "$0")/_run.sh"

NODES=1 GPUS=8 PARTITION="" ACCOUNT="" TIME="24:00:00" NAME="ssljax" DRY=0
PYTHON="${PYTHON:-python}"
usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --nodes) NODES="$2"; shift 2 ;;
    --gpus-per-node) GPUS="$2"; shift 2 ;;
    --partition) PARTITION="$2"; shift 2 ;;
    --account) ACCOUNT="$2"; shift 2 ;;
    --time) TIME="$2"; shift 2 ;;
    --job-name) NAME="$2"; shift 2 ;;
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
if [ $# -eq 0 ]; then
  echo "slurm.sh: expected ssljax flags after --, e.g. -- --config configs/simclr_resnet50_imagenet.py --workdir /shared/run" >&2
  exit 2
fi

script="#!/usr/bin/env bash
#SBATCH --job-name=$NAME
#SBATCH --nodes=$NODES
#SBATCH --ntasks-per-node=$GPUS
#SBATCH --gpus-per-node=$GPUS
#SBATCH --cpus-per-task=8
#SBATCH --time=$TIME
#SBATCH --output=%x-%j.out"
[ -n "$PARTITION" ] && script+=$'\n'"#SBATCH --partition=$PARTITION"
[ -n "$ACCOUNT" ] && script+=$'\n'"#SBATCH --account=$ACCOUNT"
script+="
set -euo pipefail
# One task per GPU. Every task sees the node's GPUs and JAX keeps GPU number SLURM_LOCALID
# (--gpus-per-task would hide the others and break that numbering).
srun --kill-on-bad-exit=1 $(quote_all "$PYTHON" -m ssljax.main --distributed "$@")
"

# The exact command: the batch script goes to sbatch on stdin.
quote_all sbatch --chdir="$PWD"; echo " <<'SBATCH'"
echo "$script"
echo "SBATCH"
if [ "$DRY" -eq 0 ]; then
  sbatch --chdir="$PWD" <<< "$script"
fi
