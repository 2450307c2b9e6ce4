#!/usr/bin/env bash
# Runs N ssljax processes on this machine, connected by jax.distributed (the multi-host code path,
# without a cluster): process 0 hosts the coordinator on localhost:PORT.
#
#   launch/local_multiprocess.sh [--num-processes N] [--port PORT] [--cpu-devices D] [--dry-run] \
#       -- --config configs/X.py --workdir DIR [--config.k=v ...]
#
# --cpu-devices D runs each process on D simulated CPU devices (JAX_PLATFORMS=cpu, gloo
# collectives) instead of the machine's accelerators. Output of process i goes to
# DIR/process_<i>.log (process 0's also to the terminal). --dry-run prints the N commands and runs
# nothing. Exits non-zero if any process fails; Ctrl-C stops them all.
set -euo pipefail
source "$(dirname "$0")/_run.sh"

N=2 PORT=12355 CPU_DEVICES=0 DRY=0
PYTHON="${PYTHON:-python}"
usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; }  # the header
while [ $# -gt 0 ]; do
  case "$1" in
    --num-processes) N="$2"; shift 2 ;;
    --port) PORT="$2"; shift 2 ;;
    --cpu-devices) CPU_DEVICES="$2"; shift 2 ;;
    --dry-run) DRY=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    *) echo "local_multiprocess.sh: unknown option $1 (ssljax flags go after --)" >&2; usage >&2; exit 2 ;;
  esac
done
if ! [[ "$N" =~ ^[1-9][0-9]*$ ]]; then
  echo "local_multiprocess.sh: --num-processes $N; expected a positive integer" >&2; exit 2
fi
if [ $# -eq 0 ]; then
  echo "local_multiprocess.sh: expected ssljax flags after --, e.g. -- --config configs/simclr_digits.py --workdir /tmp/run" >&2
  exit 2
fi
workdir=""
prev=""
for a in "$@"; do  # the workdir, for the per-process logs
  case "$a" in --workdir=*) workdir="${a#--workdir=}" ;; esac
  [ "$prev" = "--workdir" ] && workdir="$a"
  prev="$a"
done
[ -n "$workdir" ] || { echo "local_multiprocess.sh: --workdir is required after --" >&2; exit 2; }

envs=()
if [ "$CPU_DEVICES" -gt 0 ]; then
  envs=(env JAX_PLATFORMS=cpu XLA_FLAGS=--xla_force_host_platform_device_count="$CPU_DEVICES")
fi
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup INT TERM
[ "$DRY" -eq 1 ] || mkdir -p "$workdir"
for ((i = 0; i < N; i++)); do
  cmd=("${envs[@]}" "$PYTHON" -m ssljax.main --coordinator_address=localhost:"$PORT"
       --num_processes="$N" --process_id="$i" "$@")
  if [ "$DRY" -eq 1 ]; then
    quote_all "${cmd[@]}"; echo
    continue
  fi
  quote_all "${cmd[@]}"; echo "  > $workdir/process_$i.log"
  if [ "$i" -eq 0 ]; then
    ( "${cmd[@]}" 2>&1 | tee "$workdir/process_$i.log" ) &   # pipefail: the subshell fails with it
  else
    "${cmd[@]}" > "$workdir/process_$i.log" 2>&1 &
  fi
  pids+=($!)
done
status=0
for ((i = 0; i < ${#pids[@]}; i++)); do
  if ! wait "${pids[$i]}"; then
    echo "local_multiprocess.sh: process $i failed; see $workdir/process_$i.log" >&2
    status=1
  fi
done
exit "$status"
