#!/bin/sh
# A one-node Slurm cluster on localhost, as root, for kvfoot's integration test and for
# trying kvfoot eval --slurm by hand (docs/CLUSTER.md):
#   tools/slurm/local.sh start   install slurm-wlm and munge when missing (apt-get), write
#                                a minimal slurm.conf, start munged, slurmctld and slurmd
#   tools/slurm/local.sh stop    stop the daemons this script started
# It prints "skip: REASON" and exits 3 when Slurm cannot be installed or started here.
set -u
state=${KVFOOT_SLURM_STATE:-/tmp/kvfoot-slurm}
# the daemons this caller started, so that stop leaves alone the ones someone else did
started=${KVFOOT_SLURM_STARTED:-$state/started}
skip() { echo "skip: $*"; exit 3; }

# running NAME: a live process of that name (not a zombie left by a daemon's fork)
running() {
	for p in $(pgrep -x "$1"); do
		[ "$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null)" != Z ] && return 0
	done
	return 1
}

start() {
	[ "$(id -u)" = 0 ] || skip "not root (the one-node cluster runs its daemons as root)"
	if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null || ! command -v sbatch >/dev/null; then
		command -v apt-get >/dev/null || skip "slurm-wlm is not installed and there is no apt-get"
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge) >"$state.apt.log" 2>&1 ||
			skip "apt-get install slurm-wlm munge failed (see $state.apt.log)"
	fi
	mkdir -p "$state/spool" "$state/state" "$state/log" /etc/slurm /run/munge /var/log/munge /var/lib/munge
	host=$(hostname -s)
	cpus=$(nproc)
	mem=$(awk '/MemTotal/ {print int($2/1024*0.8)}' /proc/meminfo)
	if [ -e /etc/slurm/slurm.conf ] && ! grep -q '^# written by kvfoot' /etc/slurm/slurm.conf; then
		skip "/etc/slurm/slurm.conf exists and was not written by this script: not touching a real cluster's configuration"
	fi
	cat >/etc/slurm/slurm.conf <<CONF
# written by kvfoot tools/slurm/local.sh: a one-node cluster on localhost
ClusterName=kvfoot
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
ReturnToService=2
MpiDefault=none
DefMemPerCPU=1024
StateSaveLocation=$state/state
SlurmdSpoolDir=$state/spool
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/slurmd.pid
SlurmctldLogFile=$state/log/slurmctld.log
SlurmdLogFile=$state/log/slurmd.log
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
MinJobAge=600
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
	if [ ! -s /etc/munge/munge.key ]; then
		mkdir -p /etc/munge
		dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
		chmod 400 /etc/munge/munge.key
	fi
	if ! running munged; then
		munged --force 2>/dev/null || skip "munged does not start"
		echo munged >>"$started"
	fi
	if ! running slurmctld; then
		slurmctld -i || skip "slurmctld does not start (see $state/log/slurmctld.log)"
		echo slurmctld >>"$started"
	fi
	if ! running slurmd; then
		slurmd || skip "slurmd does not start (see $state/log/slurmd.log)"
		echo slurmd >>"$started"
	fi
	# the node is up once sinfo shows it idle (or mixed, allocated)
	for _ in $(seq 60); do
		if sinfo -h -o %T 2>/dev/null | grep -Eq 'idle|mix|alloc'; then
			echo "slurm: one-node cluster $host up ($cpus CPUs); stop it with $0 stop"
			exit 0
		fi
		sleep 1
	done
	skip "the node did not come up within 60 s (sinfo: $(sinfo -h 2>&1 | head -1); see $state/log)"
}

stop() {
	[ -f "$started" ] || exit 0
	# the daemons' own pid files, for the ones this script started
	for d in slurmd slurmctld; do
		if grep -qx $d "$started" && [ -f "$state/$d.pid" ]; then
			kill "$(cat "$state/$d.pid")" 2>/dev/null
		fi
	done
	if grep -qx munged "$started" && [ -f /run/munge/munged.pid ]; then
		kill "$(cat /run/munge/munged.pid)" 2>/dev/null
	fi
	rm -f "$started"
}

case "${1:-}" in
start) start ;;
stop) stop ;;
*) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
