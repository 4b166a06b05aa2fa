#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for the tests marked `slurm` (tests/test_slurm.py):
# Debian's slurm-wlm and munge, the node being this host, reached only over loopback/its own name.
# Run as root (CI does). Idempotent: a controller already answering is left as it is.
#   ci/slurm/setup.sh          install (apt) if needed, configure, start, wait until the node is idle
#   ci/slurm/setup.sh stop     stop the daemons this script started
set -euo pipefail

conf_dir=/etc/slurm
state=/var/spool/slurmctld
spool=/var/spool/slurmd
logs=/var/log/slurm

stop() {
  for pidfile in /run/slurmd.pid /run/slurmctld.pid /run/munge/munged.pid; do
    if [ -s "$pidfile" ]; then kill "$(cat "$pidfile")" 2>/dev/null || true; fi
  done
}
if [ "${1:-}" = stop ]; then stop; exit 0; fi

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
fi

running() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

host="$(hostname -s)"
mkdir -p "$conf_dir" "$state" "$spool" "$logs" /run/munge /etc/munge /var/lib/munge /var/log/munge

# munge: a key made here (never leaves this machine), the daemon as root
if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
fi
chmod 0400 /etc/munge/munge.key
chown -R root:root /etc/munge /var/lib/munge /var/log/munge /run/munge
chmod 0755 /run/munge
if ! running /run/munge/munged.pid; then
  munged --force --num-threads=2
fi
for _ in $(seq 50); do munge -n >/dev/null 2>&1 && break; sleep 0.1; done
munge -n | unmunge >/dev/null

if running /run/slurmctld.pid && running /run/slurmd.pid && sinfo -h -o %t 2>/dev/null | grep -q idle; then
  echo "slurm: already running"; sinfo; exit 0
fi

# the node as slurmd sees it (CPUs, sockets, cores, memory), in one partition
node_line="$(slurmd -C | head -1)"
cat > "$conf_dir/slurm.conf" <<CONF
ClusterName=bench-ci
SlurmctldHost=$host
SlurmctldPort=6817
SlurmdPort=6818
AuthType=auth/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$state
SlurmdSpoolDir=$spool
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$logs/slurmctld.log
SlurmdLogFile=$logs/slurmd.log
ProctrackType=proctrack/pgid
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
JobRequeue=1
KillWait=5
MinJobAge=300
SlurmdTimeout=60
$node_line State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
# no cgroup.conf: slurmd detects the cgroup version itself (task/none and proctrack/pgid use none)

running /run/slurmctld.pid || slurmctld -c   # -c: no saved jobs from an earlier start
running /run/slurmd.pid || slurmd

for _ in $(seq 120); do
  if sinfo -h -o %t 2>/dev/null | grep -q idle; then sinfo; exit 0; fi
  sleep 0.5
done
echo "slurm did not become idle; logs:" >&2
tail -20 "$logs/slurmctld.log" "$logs/slurmd.log" >&2 || true
sinfo >&2 || true
exit 1
