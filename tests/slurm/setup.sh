#!/usr/bin/env bash
# Start a real one-node SLURM cluster on this machine (recipe: ../shared/recipes/local-slurm.md).
#
#   tests/slurm/setup.sh [PYTHON]     PYTHON: the interpreter of the venv snakemake runs from
#   tests/slurm/stop.sh               stops only the daemons this script started
#
# Installs (if missing) the apt packages munge slurmctld slurmd slurm-client and the pip package
# snakemake-executor-plugin-slurm, writes /etc/slurm/slurm.conf (no accounting database; finished
# jobs logged one per line in /var/log/slurm/jobcomp.log), starts munged, slurmctld and slurmd by
# hand (there is no systemd here) and waits until the node is idle. A cluster that is already up
# is reused and left alone. What it started is recorded in $STATE for stop.sh.
# Exit status: 0 cluster up; 3 packages cannot be installed here (callers may skip); other: failure.
set -euo pipefail

PYTHON=${1:-python3}
STATE=${NORMLAB_SLURM_STATE:-/run/normlab-slurm}
CONF=/etc/slurm/slurm.conf
MARK="# written by normlab tests/slurm/setup.sh"
cannot() { echo "setup.sh: cannot install: $*" >&2; exit 3; }
say() { echo "setup.sh: $*" >&2; }

# --- packages -----------------------------------------------------------------------------------
need_apt=0
for b in /usr/sbin/munged /usr/sbin/slurmctld /usr/sbin/slurmd /usr/bin/sbatch /usr/bin/squeue; do
    [ -x "$b" ] || need_apt=1
done
if [ "$need_apt" = 1 ]; then
    [ "$(id -u)" = 0 ] || cannot "SLURM is not installed and this user is not root"
    command -v apt-get >/dev/null || cannot "SLURM is not installed and apt-get is not available"
    pkgs="munge slurmctld slurmd slurm-client"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q --no-install-recommends $pkgs >/tmp/normlab-slurm-apt.log 2>&1; then
        apt-get update -q >>/tmp/normlab-slurm-apt.log 2>&1 || true
        apt-get install -y -q --no-install-recommends $pkgs >>/tmp/normlab-slurm-apt.log 2>&1 \
            || cannot "apt-get install $pkgs failed (log: /tmp/normlab-slurm-apt.log)"
    fi
    say "installed $pkgs"
fi
if ! "$PYTHON" -c "import snakemake_executor_plugin_slurm" 2>/dev/null; then
    "$PYTHON" -m pip install -q snakemake-executor-plugin-slurm >&2 \
        || cannot "pip install snakemake-executor-plugin-slurm failed"
    say "installed snakemake-executor-plugin-slurm"
fi
[ "$(id -u)" = 0 ] || { scontrol ping 2>/dev/null | grep -q UP && exit 0; cannot "starting SLURM daemons needs root"; }

# --- a cluster already up: reuse it, start nothing ------------------------------------------------
if [ -f "$CONF" ] && timeout 5 scontrol ping 2>/dev/null | grep -q "is UP"; then
    say "a SLURM controller is already up; reusing it"
    exit 0
fi

# --- slurm.conf -----------------------------------------------------------------------------------
mkdir -p "$STATE"
: >"$STATE/started"
host=$(hostname -s)
cpus=$(nproc)
mem=$(free -m | awk '/^Mem:/ {print int($2 * 0.9)}')
if [ -f "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
    cp -p "$CONF" "$STATE/slurm.conf.orig"   # someone else's: put back by stop.sh
fi
mkdir -p /etc/slurm
cat >"$CONF.tmp" <<CONFEOF
$MARK (restored/removed by stop.sh)
ClusterName=local
SlurmctldHost=$host
AuthType=auth/munge
SlurmUser=slurm
SlurmdUser=root
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=/var/log/slurm/jobcomp.log
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
MinJobAge=600
ReturnToService=2
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONFEOF
mv "$CONF.tmp" "$CONF"

# --- daemons --------------------------------------------------------------------------------------
alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
mkdir -p /run/munge /run/slurm /var/lib/slurm/slurmctld /var/lib/slurm/slurmd /var/log/slurm
chown munge:munge /run/munge
chown slurm:slurm /run/slurm /var/lib/slurm/slurmctld /var/log/slurm
[ -s /etc/munge/munge.key ] || { mungekey --create >/dev/null 2>&1 || \
    (dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 2>/dev/null); \
    chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key; }

if ! alive /run/munge/munged.pid; then
    runuser -u munge -- /usr/sbin/munged
    for _ in $(seq 50); do alive /run/munge/munged.pid && break; sleep 0.1; done
    echo "munged $(cat /run/munge/munged.pid)" >>"$STATE/started"
fi
for d in slurmctld slurmd; do
    if alive /run/slurm/$d.pid; then
        say "$d is already running (pid $(cat /run/slurm/$d.pid)); not touching it"
        continue
    fi
    /usr/sbin/$d
    for _ in $(seq 50); do alive /run/slurm/$d.pid && break; sleep 0.1; done
    alive /run/slurm/$d.pid || { say "$d did not start; see /var/log/slurm/$d.log"; exit 1; }
    echo "$d $(cat /run/slurm/$d.pid)" >>"$STATE/started"
done

# --- ready: controller UP and the node idle --------------------------------------------------------
for i in $(seq 300); do
    st=$(sinfo -h -N -o %T 2>/dev/null | head -1 || true)
    if scontrol ping 2>/dev/null | grep -q "is UP" && [ "$st" = idle ]; then
        say "cluster up: node $host idle, $cpus CPUs, ${mem} MB (after $((i / 10)).$((i % 10)) s)"
        exit 0
    fi
    case "$st" in down*|drain*) scontrol update nodename="$host" state=resume 2>/dev/null || true ;; esac
    sleep 0.1
done
say "the node did not become idle within 30 s (state: ${st:-none}); see /var/log/slurm/"
exit 1
