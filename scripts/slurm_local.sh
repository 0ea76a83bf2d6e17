#!/usr/bin/env bash
# A single-node SLURM (controller + compute node on this machine) for the sweep's SLURM tests.
#
#   bash scripts/slurm_local.sh start [DIR]   # install slurm-wlm + munge if absent, start them
#   bash scripts/slurm_local.sh stop  [DIR]   # stop what `start` started (by its PID files)
#   bash scripts/slurm_local.sh env   [DIR]   # print: export SLURM_CONF=DIR/slurm.conf
#
# DIR (default /tmp/dgp_snr_slurm) holds slurm.conf, cgroup.conf, spool, state, logs and PIDs;
# the client commands (sinfo, sbatch, squeue, and dask-jobqueue) find it by SLURM_CONF.
# Needs root (SlurmUser=root) and Debian's slurm-wlm 22.05. The configuration avoids cgroups
# (containers rarely delegate them): proctrack/linuxproc, task/none, jobacct_gather/none.
set -euo pipefail

cmd="${1:-start}"
DIR="$(realpath -m "${2:-${SLURM_LOCAL_DIR:-/tmp/dgp_snr_slurm}}")"
NODE="$(hostname -s)"

log() { echo "slurm_local: $*" >&2; }

install_if_absent() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null \
        && command -v munged >/dev/null; then
        return
    fi
    log "installing slurm-wlm and munge"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq slurm-wlm munge >/dev/null
}

write_conf() {
    mkdir -p "$DIR"/{spool,state,log}
    local cpus mem
    cpus="$(nproc --all)"
    # Leave 10% of the memory to the system: slurmd drains a node that reports less than this.
    mem="$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)"
    cat >"$DIR/slurm.conf" <<EOF
ClusterName=dgpsnr
SlurmctldHost=$NODE
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
SlurmctldPort=${SLURM_LOCAL_CTLD_PORT:-16817}
SlurmdPort=${SLURM_LOCAL_D_PORT:-16818}
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
SwitchType=switch/none
# At the walltime SLURM sends SIGTERM, then SIGKILL after KillWait seconds.
KillWait=30
MinJobAge=30
InactiveLimit=0
NodeName=$NODE CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
    # slurmd loads cgroup.conf even with no cgroup plugin in use; 'disabled' does not exist
    # in 22.05, autodetect without systemd does.
    cat >"$DIR/cgroup.conf" <<EOF
CgroupPlugin=autodetect
IgnoreSystemd=yes
EOF
}

alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

start() {
    install_if_absent
    write_conf
    export SLURM_CONF="$DIR/slurm.conf"
    if ! pgrep -x munged >/dev/null; then
        mkdir -p /run/munge
        munged --force --pid-file="$DIR/munged.pid" 2>>"$DIR/log/munged.log"
        log "munged started"
    fi
    if ! alive "$DIR/slurmctld.pid"; then
        slurmctld -f "$SLURM_CONF" -i   # -i: ignore state left by an earlier run
    fi
    if ! alive "$DIR/slurmd.pid"; then
        slurmd -f "$SLURM_CONF"
    fi
    for _ in $(seq 60); do
        if sinfo -h -N -o '%t' 2>/dev/null | grep -qx idle; then
            log "node $NODE idle (SLURM_CONF=$SLURM_CONF)"
            sinfo >&2
            return 0
        fi
        sleep 1
    done
    log "node not idle after 60 s; logs in $DIR/log"
    sinfo -N -l >&2 || true
    tail -n 20 "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log" >&2 || true
    return 1
}

stop() {
    local name pidfile pid
    export SLURM_CONF="$DIR/slurm.conf"
    [[ -f "$SLURM_CONF" ]] && scancel --user root 2>/dev/null || true
    for name in slurmd slurmctld munged; do
        pidfile="$DIR/$name.pid"
        alive "$pidfile" || continue
        pid="$(cat "$pidfile")"
        kill -TERM "$pid"
        for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
        rm -f "$pidfile"
        log "$name ($pid) stopped"
    done
}

case "$cmd" in
    start) start ;;
    stop) stop ;;
    env) echo "export SLURM_CONF=$DIR/slurm.conf" ;;
    *) echo "usage: $0 start|stop|env [DIR]" >&2; exit 2 ;;
esac
