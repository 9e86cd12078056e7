#!/usr/bin/env bash
# Stop the single-node SLURM that scripts/slurm_up.sh started (by the pids in its pid files).
# Jobs still queued or running are lost; state and logs stay under $XSPEC_SLURM_DIR.
set -euo pipefail

DIR=${XSPEC_SLURM_DIR:-/var/lib/xspec-slurm}

[ "$(id -u)" = 0 ] || { echo "slurm_down: must run as root (sudo $0)" >&2; exit 1; }

stop() {  # stop NAME PIDFILE: TERM, wait up to 10 s, then KILL
    local name=$1 file=$2 pid
    [ -s "$file" ] || return 0
    pid=$(cat "$file")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid"
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
        echo "slurm_down: stopped $name ($pid)"
    fi
    rm -f "$file"
}

# Cancel this cluster's jobs first, so that no job step outlives slurmd.
if [ -s "$DIR/run/slurmctld.pid" ] && kill -0 "$(cat "$DIR/run/slurmctld.pid")" 2>/dev/null; then
    jobs=$(squeue -h -o %A 2>/dev/null | sort -u | tr '\n' ' ')
    if [ -n "${jobs// }" ]; then
        # shellcheck disable=SC2086
        scancel $jobs 2>/dev/null || true
        echo "slurm_down: cancelled jobs $jobs"
        for _ in $(seq 60); do [ -z "$(squeue -h 2>/dev/null)" ] && break; sleep 0.5; done
    fi
fi

stop slurmd "$DIR/run/slurmd.pid"
stop slurmctld "$DIR/run/slurmctld.pid"
if [ -e "$DIR/run/munged.started-by-xspec" ]; then
    stop munged /run/munge/munged.pid
    rm -f "$DIR/run/munged.started-by-xspec"
fi
