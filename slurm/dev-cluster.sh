#!/usr/bin/env bash
# A single-node Slurm cluster on this machine, for the tests, CI and trying the
# pipeline's SLURM mode without a cluster:  slurm/dev-cluster.sh start|stop|status
#
#   start   installs Debian's slurm-wlm and munge when missing (needs root and apt),
#           writes /etc/slurm/slurm.conf for this machine (slurmctld and slurmd on the
#           loopback, no accounting database, one partition `main` with the machine's
#           cores and most of its memory), starts munged, slurmctld and slurmd, and waits
#           until jobs can be submitted. Running it again changes nothing that works.
#   stop    stops the three daemons (jobs still running are lost).
#   status  one line: whether jobs can be submitted; exit status 0 if so.
#
# Not for a real cluster: there, the cluster's own administrators run Slurm; the
# pipeline only needs `sbatch`, `squeue` and `scancel` on the node the poller runs on.
set -euo pipefail

CONF=/etc/slurm/slurm.conf
SPOOL=/var/spool/slurm-dev
LOGS=/var/log/slurm-dev
HOST=$(hostname -s)

log() { printf 'dev-cluster: %s\n' "$*" >&2; }

running() { pgrep -x "$1" >/dev/null 2>&1; }

can_submit() {
  command -v sinfo >/dev/null 2>&1 || return 1
  local state
  state=$(timeout 5 sinfo -h -o '%T' 2>/dev/null | head -n 1) || return 1
  case "$state" in idle*|mixed*|allocated*|completing*) return 0 ;; *) return 1 ;; esac
}

status() {
  if can_submit; then
    echo "slurm: up, jobs can be submitted (node $HOST, $(sinfo -h -o '%c CPUs, %m MB' | head -n 1), partition main)"
    return 0
  fi
  if ! command -v sbatch >/dev/null 2>&1; then
    echo "slurm: not installed (slurm/dev-cluster.sh start installs and starts it)"
  elif ! running slurmctld; then
    echo "slurm: down, slurmctld is not running (slurm/dev-cluster.sh start)"
  else
    echo "slurm: down, the node is not ready: $(timeout 5 sinfo -h -o '%T %E' 2>/dev/null | head -n 1)"
  fi
  return 1
}

install() {
  if command -v slurmctld >/dev/null 2>&1 && command -v munged >/dev/null 2>&1; then
    return
  fi
  [ "$(id -u)" -eq 0 ] || { log "installing slurm-wlm and munge needs root"; exit 1; }
  log "installing slurm-wlm and munge (Debian packages)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
}

# The slurm.conf this machine gets (written by write_conf when it differs).
conf_text() {
  local cpus mem_mb
  cpus=$(nproc)
  # Leave the system some memory: Slurm refuses a node that reports less than RealMemory.
  mem_mb=$(( $(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo) * 9 / 10 ))
  cat <<EOF
# Written by slurm/dev-cluster.sh: a single-node cluster for tests (see that script).
ClusterName=ephys-dev
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=$SPOOL/ctld
SlurmdSpoolDir=$SPOOL/d
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
# No cgroups in a container: processes are tracked by their parents, no task binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Memory limits are enforced by polling every second and killing a job past its --mem.
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=task=1
JobAcctGatherParams=OverMemoryKill
# No accounting database: sacct is not available, squeue is; finished jobs stay
# visible to squeue for an hour (the Snakemake plugin asks after them).
AccountingStorageType=accounting_storage/none
MinJobAge=3600
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1,bf_interval=1
MessageTimeout=20
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=main Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
}

conf_current() { [ -f "$CONF" ] && [ "$(conf_text)" = "$(cat "$CONF")" ]; }

write_conf() {
  mkdir -p /etc/slurm "$SPOOL/ctld" "$SPOOL/d" "$LOGS"
  if ! conf_current; then
    local tmp
    tmp=$(mktemp)
    conf_text >"$tmp"
    mv "$tmp" "$CONF"
    chmod 644 "$CONF"
    log "wrote $CONF ($(nproc) CPUs)"
  fi
}

start_munge() {
  if [ ! -s /etc/munge/munge.key ]; then
    mkdir -p /etc/munge
    if command -v mungekey >/dev/null 2>&1; then mungekey --create --force >/dev/null 2>&1
    else dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none; fi
  fi
  chown -R munge:munge /etc/munge /var/lib/munge /var/log/munge 2>/dev/null || true
  chmod 700 /etc/munge
  chmod 400 /etc/munge/munge.key
  mkdir -p /run/munge
  chown munge:munge /run/munge
  chmod 755 /run/munge
  if ! running munged; then
    runuser -u munge -- /usr/sbin/munged
  fi
}

start() {
  # A cluster that is up as configured is left alone (no root needed to learn that).
  if conf_current && running munged && running slurmctld && running slurmd && can_submit; then
    status
    return 0
  fi
  [ "$(id -u)" -eq 0 ] || { log "starting Slurm daemons needs root"; exit 1; }
  install
  write_conf
  start_munge
  running slurmctld || /usr/sbin/slurmctld
  running slurmd || /usr/sbin/slurmd
  for _ in $(seq 1 60); do
    if can_submit; then status; return 0; fi
    # A node that came back after a stop may be marked down: bring it back.
    scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true
    sleep 1
  done
  status || { log "see $LOGS/slurmctld.log and $LOGS/slurmd.log"; exit 1; }
}

stop() {
  for daemon in slurmd slurmctld munged; do
    pkill -x "$daemon" 2>/dev/null || true
  done
  for _ in $(seq 1 20); do
    running slurmd || running slurmctld || break
    sleep 0.5
  done
  echo "slurm: stopped"
}

case "${1:-status}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
