#!/usr/bin/env bash
# Start a single-node SLURM on this machine, to try `xspec submit` (and for the SLURM tests).
#
#   sudo scripts/slurm_up.sh      # idempotent: does only what is missing
#   sudo scripts/slurm_down.sh    # stops what this script started
#
# Needs the Debian packages slurmctld slurmd slurm-client munge, and root. Writes
# /etc/slurm/slurm.conf (refusing to overwrite one it did not write) and keeps state, spool,
# pid and log files under $XSPEC_SLURM_DIR (default /var/lib/xspec-slurm). The settings favour
# quick turnaround over throughput: requeued jobs may restart after 5 s instead of 120 s.
set -euo pipefail

DIR=${XSPEC_SLURM_DIR:-/var/lib/xspec-slurm}
CONF=${SLURM_CONF:-/etc/slurm/slurm.conf}
MARK="# written by xspec scripts/slurm_up.sh"
WAIT_S=${XSPEC_SLURM_WAIT_S:-60}
HOST=$(hostname -s)

die() { echo "slurm_up: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (sudo $0)"
for tool in munged slurmctld slurmd sinfo scontrol sbatch; do
    command -v "$tool" >/dev/null || PATH=$PATH:/usr/sbin:/sbin
    command -v "$tool" >/dev/null \
        || die "$tool not found; install: apt-get install slurmctld slurmd slurm-client munge"
done

mkdir -p "$DIR"/{state,spool,log,run}

# --- munge --------------------------------------------------------------------------------
if [ ! -s /etc/munge/munge.key ]; then
    if command -v mungekey >/dev/null; then
        mungekey -c -f -k /etc/munge/munge.key
    else
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
    fi
    chown munge:munge /etc/munge/munge.key
    chmod 400 /etc/munge/munge.key
fi
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    install -d -o munge -g munge -m 0755 /run/munge
    install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge
    if command -v runuser >/dev/null; then
        runuser -u munge -- munged
    else
        su -s /bin/sh munge -c munged
    fi
    touch "$DIR/run/munged.started-by-xspec"
    for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
    munge -n | unmunge >/dev/null 2>&1 || die "munged did not start; see /var/log/munge/munged.log"
fi

# --- slurm.conf ---------------------------------------------------------------------------
CPUS=$(nproc)
MEM_MB=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
MARGIN=$(( MEM_MB / 10 > 1024 ? MEM_MB / 10 : 1024 ))
REAL_MEM=$(( MEM_MB - MARGIN > 512 ? MEM_MB - MARGIN : 512 ))

GRES_LINE=""
NODE_GRES=""
if command -v nvidia-smi >/dev/null && GPUS=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU'); then
    if [ "$GPUS" -gt 0 ]; then
        GRES_LINE="GresTypes=gpu"
        NODE_GRES="Gres=gpu:$GPUS"
        {
            echo "$MARK"
            echo "NodeName=$HOST Name=gpu File=/dev/nvidia[0-$((GPUS - 1))]"
        } > "$(dirname "$CONF")/gres.conf"
    fi
fi
if [ -z "$GRES_LINE" ] && [ -e "$(dirname "$CONF")/gres.conf" ] \
        && head -1 "$(dirname "$CONF")/gres.conf" | grep -qxF "$MARK"; then
    rm -f "$(dirname "$CONF")/gres.conf"
fi

NEW_CONF=$(cat <<EOF
$MARK
ClusterName=xspec
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=cred_expire=5
CryptoType=crypto/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=5,batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
JobRequeue=1
KillWait=5
MinJobAge=600
InactiveLimit=0
Waittime=0
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MailProg=/bin/true
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
$GRES_LINE
NodeName=$HOST CPUs=$CPUS RealMemory=$REAL_MEM $NODE_GRES State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
)

if [ -e "$CONF" ] && ! head -1 "$CONF" | grep -qxF "$MARK"; then
    die "$CONF exists and was not written by this script; not touching it"
fi
CHANGED=0
if [ ! -e "$CONF" ] || [ "$(cat "$CONF")" != "$NEW_CONF" ]; then
    mkdir -p "$(dirname "$CONF")"
    printf '%s\n' "$NEW_CONF" > "$CONF.tmp"
    mv "$CONF.tmp" "$CONF"
    CHANGED=1
fi

# --- daemons ------------------------------------------------------------------------------
alive() {  # alive PIDFILE: the daemon whose pid the file holds is running
    [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}
if alive "$DIR/run/slurmctld.pid" && [ "$CHANGED" = 1 ]; then
    scontrol reconfigure || true
fi
alive "$DIR/run/slurmctld.pid" || slurmctld -f "$CONF" \
    || die "slurmctld did not start; see $DIR/log/slurmctld.log"
alive "$DIR/run/slurmd.pid" || slurmd -f "$CONF" \
    || die "slurmd did not start; see $DIR/log/slurmd.log"

# --- wait until the node takes jobs -------------------------------------------------------
deadline=$(( $(date +%s) + WAIT_S ))
state=""
while [ "$(date +%s)" -lt "$deadline" ]; do
    state=$(sinfo -h -n "$HOST" -o %T 2>/dev/null | head -1 || true)
    case "$state" in
        idle|mixed|allocated|completing)
            echo "slurm_up: node $HOST is $state ($CPUS CPUs, ${REAL_MEM} MB)"
            exit 0 ;;
        drained|draining|down|down\*|drained\*)
            scontrol update NodeName="$HOST" State=RESUME 2>/dev/null || true ;;
    esac
    sleep 1
done
REASON=$(sinfo -h -n "$HOST" -o %E 2>/dev/null | head -1 || true)
die "node $HOST not idle after ${WAIT_S}s" \
    "(state: '${state:-no answer}'${REASON:+, reason: $REASON});" \
    "see $DIR/log/slurmctld.log and $DIR/log/slurmd.log"
