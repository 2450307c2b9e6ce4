#!/usr/bin/env bash
# Runs ssljax on every worker of a Cloud TPU VM pod slice (e.g. a v4-32: 4 hosts x 4 chips), detached.
#
#   launch/tpu_pod.sh [run] --tpu NAME --zone ZONE [--project P] [--create [--accelerator-type v4-32]
#       [--version tpu-ubuntu2204-base]] [--python 3.11] [--no-install] [--dry-run] \
#       -- --config configs/X.py --workdir DIR [--config.k=v ...]
#   launch/tpu_pod.sh status|stop --tpu NAME --zone ZONE [--project P] [--dry-run]
#   launch/tpu_pod.sh logs --tpu NAME --zone ZONE [--project P] [--worker N] [--lines N] [--follow]
#
# run (each step a command; --dry-run prints them, one per line, and runs nothing):
#   1. (--create) gcloud compute tpus tpu-vm create NAME --accelerator-type=... --version=...
#   2. copy this checkout (git archive of HEAD) to ~/ssljax on every worker (`tpu-vm scp --worker=all`)
#   3. install it on every worker into ~/ssljax/.venv, a Python 3.11 venv made by uv (pip-installed
#      for the user): uv uses the image's python3.11 if it has one, else downloads a standalone
#      CPython 3.11, so any --version works (tpu-ubuntu2204-base has Python 3.10, too old for
#      jax 0.10.2); then pip install -c requirements-lock.txt -e '.[tpu]'
#   4. start `python -m ssljax.main --distributed ...` on all workers at once (`ssh --worker=all`),
#      detached (nohup, stdin/stdout/stderr redirected: it survives the ssh session), with each
#      worker's output in DIR/logs/worker_<N>.log (N: the worker number from the TPU VM metadata;
#      ~/ssljax_logs/ when DIR is a gs:// path) and its pid in ~/ssljax/run.pid.
#      On Cloud TPU jax.distributed.initialize() finds the coordinator, process count and ids itself.
# status: one line per worker (running or not, the log path) and the log's last line.
# stop: SIGTERM to every worker's run: ssljax saves a checkpoint at the next step and exits; the
#   same `run` command (with --no-install) resumes from it.
# logs: the last --lines (default 100) lines of worker N's log (default 0); --follow keeps following.
# Everything after `--` goes to ssljax.main unchanged. DIR must be one directory that every worker
# sees (a Filestore/NFS mount or a gcsfuse-mounted bucket): orbax checkpoints are written there by
# all hosts together. The TFDS data_dir (config.data.path) must be readable from every worker too.
set -euo pipefail

source "$(dirname "$0")/_run.sh"

CMD=run
case "${1:-}" in run|logs|status|stop) CMD="$1"; shift ;; esac
TPU="" ZONE="" PROJECT="" CREATE=0 ACCEL="v4-32" VERSION="tpu-ubuntu2204-base" INSTALL=1 DRY=0
PY_VERSION="3.11" WORKER=0 LINES=100 FOLLOW=0
REMOTE_DIR="ssljax"
usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; }  # the header
while [ $# -gt 0 ]; do
  case "$1" in
    --tpu) TPU="$2"; shift 2 ;;
    --zone) ZONE="$2"; shift 2 ;;
    --project) PROJECT="$2"; shift 2 ;;
    --create) CREATE=1; shift ;;
    --accelerator-type) ACCEL="$2"; shift 2 ;;
    --version) VERSION="$2"; shift 2 ;;
    --python) PY_VERSION="$2"; shift 2 ;;
    --no-install) INSTALL=0; shift ;;
    --worker) WORKER="$2"; shift 2 ;;
    --lines) LINES="$2"; shift 2 ;;
    --follow) FOLLOW=1; shift ;;
    --dry-run) DRY=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    *) echo "tpu_pod.sh: unknown option $1 (ssljax flags go after --)" >&2; usage >&2; exit 2 ;;
  esac
done
if [ -z "$TPU" ] || [ -z "$ZONE" ]; then
  echo "tpu_pod.sh: --tpu NAME and --zone ZONE are required" >&2; exit 2
fi
if ! [[ "$PY_VERSION" =~ ^3\.(1[1-9]|[2-9][0-9])$ ]]; then
  echo "tpu_pod.sh: --python $PY_VERSION; expected 3.11 or newer (jax 0.10.2 needs it)" >&2; exit 2
fi
for v in WORKER LINES; do
  if ! [[ "${!v}" =~ ^[0-9]+$ ]]; then
    echo "tpu_pod.sh: --$(echo "$v" | tr A-Z a-z) ${!v}; expected a non-negative integer" >&2; exit 2
  fi
done
where=(--zone="$ZONE")
[ -n "$PROJECT" ] && where+=(--project="$PROJECT")
ssh_all() { run gcloud compute tpus tpu-vm ssh "$TPU" "${where[@]}" --worker=all --command="$1"; }

# Shell snippets run on the workers (from the home directory).
worker_id='W=$(curl -sf -m 5 -H Metadata-Flavor:Google http://metadata.google.internal/computeMetadata/v1/instance/attributes/agent-worker-number || hostname)'
alive='[ -f run.pid ] && kill -0 "$(cat run.pid)" 2>/dev/null'

if [ "$CMD" = status ]; then
  ssh_all "cd $REMOTE_DIR && $worker_id && if $alive; then echo \"worker \$W: running (pid \$(cat run.pid)), log \$(cat run.log)\"; else echo \"worker \$W: not running, log \$(cat run.log 2>/dev/null)\"; fi && { tail -n 1 \"\$(cat run.log)\" 2>/dev/null | sed \"s/^/worker \$W: /\" || true; }"
  exit 0
fi
if [ "$CMD" = stop ]; then
  ssh_all "cd $REMOTE_DIR && $worker_id && if $alive; then kill -TERM \"\$(cat run.pid)\" && echo \"worker \$W: sent SIGTERM to pid \$(cat run.pid): it saves a checkpoint at the next step, then exits\"; else echo \"worker \$W: not running\"; fi"
  exit 0
fi
if [ "$CMD" = logs ]; then
  follow=""
  [ "$FOLLOW" -eq 1 ] && follow=" -F"
  run gcloud compute tpus tpu-vm ssh "$TPU" "${where[@]}" --worker="$WORKER" \
      --command="cd $REMOTE_DIR && tail -n $LINES$follow \"\$(cat run.log)\""
  exit 0
fi

if [ $# -eq 0 ]; then
  echo "tpu_pod.sh: expected ssljax flags after --, e.g. -- --config configs/simclr_resnet50_imagenet.py --workdir /mnt/shared/run" >&2
  exit 2
fi
workdir="" prev=""
for a in "$@"; do  # the workdir, for the per-worker logs
  case "$a" in --workdir=*) workdir="${a#--workdir=}" ;; esac
  [ "$prev" = "--workdir" ] && workdir="$a"
  prev="$a"
done
[ -n "$workdir" ] || { echo "tpu_pod.sh: --workdir is required after --" >&2; exit 2; }
case "$workdir" in
  gs://*) log_dir='"$HOME/ssljax_logs"' ;;   # logs go to a file system, not a bucket
  *) log_dir="$(quote "${workdir%/}/logs")" ;;
esac

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
ssljax_args="$(quote_all "$@")"
tarball="/tmp/ssljax-$TPU.tar.gz"

if [ "$CREATE" -eq 1 ]; then
  run gcloud compute tpus tpu-vm create "$TPU" "${where[@]}" --accelerator-type="$ACCEL" --version="$VERSION"
fi
if [ "$INSTALL" -eq 1 ]; then
  run git -C "$ROOT" archive --format=tar.gz -o "$tarball" HEAD
  run gcloud compute tpus tpu-vm scp "$tarball" "$TPU":ssljax.tar.gz "${where[@]}" --worker=all
  ssh_all "mkdir -p $REMOTE_DIR && tar xzf ssljax.tar.gz -C $REMOTE_DIR && cd $REMOTE_DIR && export PATH=\"\$HOME/.local/bin:\$PATH\" && { command -v uv >/dev/null || python3 -m pip install -q --user uv || python3 -m pip install -q --user --break-system-packages uv; } && { [ -x .venv/bin/python ] || uv venv -q --seed --python $PY_VERSION .venv; } && .venv/bin/python -m pip install -q -c requirements-lock.txt -e '.[tpu]'"
fi
ssh_all "cd $REMOTE_DIR && $worker_id && if $alive; then echo \"worker \$W: already running (pid \$(cat run.pid)); launch/tpu_pod.sh stop first\" >&2; exit 1; fi && mkdir -p $log_dir && L=$log_dir/worker_\$W.log && echo \"\$L\" > run.log && { nohup .venv/bin/python -m ssljax.main --distributed $ssljax_args > \"\$L\" 2>&1 < /dev/null & echo \$! > run.pid; } && echo \"worker \$W: started pid \$(cat run.pid), log \$L\""
