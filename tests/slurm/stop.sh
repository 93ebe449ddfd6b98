#!/usr/bin/env bash
# Stop the SLURM daemons that tests/slurm/setup.sh started (and only those), in the order
# slurmd, slurmctld, munged; put back a slurm.conf that setup.sh replaced.
set -uo pipefail
STATE=${NORMLAB_SLURM_STATE:-/run/normlab-slurm}
CONF=/etc/slurm/slurm.conf
[ -f "$STATE/started" ] || { echo "stop.sh: nothing recorded in $STATE; nothing to stop" >&2; exit 0; }
for name in slurmd slurmctld munged; do
    pid=$(awk -v n="$name" '$1 == n {print $2}' "$STATE/started")
    [ -n "$pid" ] || continue
    # the recorded pid must still be that daemon (pids get reused)
    if [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = "$name" ]; then
        kill -TERM "$pid"
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && echo "stop.sh: $name ($pid) still running after 10 s" >&2
    fi
done
if [ -f "$STATE/slurm.conf.orig" ]; then
    mv "$STATE/slurm.conf.orig" "$CONF"
elif grep -qF "# written by normlab tests/slurm/setup.sh" "$CONF" 2>/dev/null; then
    rm -f "$CONF"
fi
rm -f "$STATE/started"
echo "stop.sh: stopped what setup.sh started" >&2
