#!/usr/bin/env bash
# Runs ssljax on every worker of a Cloud TPU VM pod slice (e.g. a v4-32: 4 hosts x 4 chips).
#
#   launch/tpu_pod.sh --tpu NAME --zone ZONE [--project P] [--create [--accelerator-type v4-32]
#       [--version tpu-ubuntu2204-base]] [--no-install] [--dry-run] -- --config configs/X.py --workdir DIR [--config.k=v ...]
#
# Steps (each a gcloud command; --dry-run prints them, one per line, and runs nothing):
#   1. (--create) gcloud compute tpus tpu-vm create NAME --accelerator-type=... --version=...
#   2. copy this checkout (git archive of HEAD) to every worker with `tpu-vm scp --worker=all`
#   3. install it on every worker: pip install -e . with the pinned versions plus jax[tpu]
#   4. start `python3 -m ssljax.main --distributed ...` on all workers at once (`ssh --worker=all`);
#      on Cloud TPU jax.distributed.initialize() finds the coordinator, process count and ids itself.
# Everything after `--` goes to ssljax.main unchanged. DIR must be one directory that every worker
# sees (a Filestore/NFS mount or a gcsfuse-mounted bucket): orbax checkpoints are written there by
# all hosts together. The TFDS data_dir (config.data.path) must be readable from every worker too.
set -euo pipefail

source "$(dirname "$0")/_run.sh"

TPU="" ZONE="" PROJECT="" CREATE=0 ACCEL="v4-32" VERSION="tpu-ubuntu2204-base" INSTALL=1 DRY=0
REMOTE_DIR="ssljax"
usage() { sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --tpu) TPU="$2"; shift 2 ;;
    --zone) ZONE="$2"; shift 2 ;;
    --project) PROJECT="$2"; shift 2 ;;
    --create) CREATE=1; shift ;;
    --accelerator-type) ACCEL="$2"; shift 2 ;;
    --version) VERSION="$2"; shift 2 ;;
    --no-install) INSTALL=0; shift ;;
    --dry-run) DRY=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    *) echo "tpu_pod.sh: unknown option $1 (ssljax flags go after --)" >&2; usage >&2; exit 2 ;;
  esac
done
if [ -z "$TPU" ] || [ -z "$ZONE" ]; then
  echo "tpu_pod.sh: --tpu NAME and --zone ZONE are required" >&2; exit 2
fi
if [ $# -eq 0 ]; then
  echo "tpu_pod.sh: expected ssljax flags after --, e.g. -- --config configs/simclr_resnet50_imagenet.py --workdir /mnt/shared/run" >&2
  exit 2
fi

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
where=(--zone="$ZONE")
[ -n "$PROJECT" ] && where+=(--project="$PROJECT")
ssljax_args="$(quote_all "$@")"
tarball="/tmp/ssljax-$TPU.tar.gz"

if [ "$CREATE" -eq 1 ]; then
  run gcloud compute tpus tpu-vm create "$TPU" "${where[@]}" --accelerator-type="$ACCEL" --version="$VERSION"
fi
if [ "$INSTALL" -eq 1 ]; then
  run git -C "$ROOT" archive --format=tar.gz -o "$tarball" HEAD
  run gcloud compute tpus tpu-vm scp "$tarball" "$TPU":ssljax.tar.gz "${where[@]}" --worker=all
  run gcloud compute tpus tpu-vm ssh "$TPU" "${where[@]}" --worker=all --command="mkdir -p $REMOTE_DIR && tar xzf ssljax.tar.gz -C $REMOTE_DIR && cd $REMOTE_DIR && python3 -m pip install -q -c requirements-lock.txt -e . 'jax[tpu]'"
fi
run gcloud compute tpus tpu-vm ssh "$TPU" "${where[@]}" --worker=all --command="cd $REMOTE_DIR && python3 -m ssljax.main --distributed $ssljax_args"
