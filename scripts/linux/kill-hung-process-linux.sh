#!/bin/bash
# End one hung process: SIGTERM, then SIGKILL after a grace period. The process is named by
# its id and its name together, so that an id reused by another program is refused.
# Parameters (environment, set by the agent): SONDE_PARAM_PROCESS_ID, SONDE_PARAM_PROCESS_NAME (the
# name ps shows, at most 15 characters), SONDE_PARAM_GRACE_S (1-60), SONDE_DRY_RUN=1|0.
# Exit: 0 ended or already gone; 1 it would not end; 2 refused (a parameter, a name that does
# not match, a process Sonde or the system needs).
set -euo pipefail

case "${SONDE_DRY_RUN:-}" in
    1) dry_run=true ;;
    0) dry_run=false ;;
    *) echo "refused: SONDE_DRY_RUN must be 1 or 0" >&2; exit 2 ;;
esac
pid="${SONDE_PARAM_PROCESS_ID:-}"
name="${SONDE_PARAM_PROCESS_NAME:-}"
grace="${SONDE_PARAM_GRACE_S:-10}"
if [[ ! "$pid" =~ ^[1-9][0-9]{0,9}$ ]] || [ "$pid" -lt 2 ]; then
    echo "refused: process_id must be a process id above 1" >&2
    exit 2
fi
if [[ ! "$name" =~ ^[A-Za-z0-9._+:@-]{1,15}$ ]]; then
    echo "refused: process_name must be the process's name as ps shows it" >&2
    exit 2
fi
if [[ ! "$grace" =~ ^[0-9]{1,2}$ ]] || [ "$grace" -lt 1 ] || [ "$grace" -gt 60 ]; then
    echo "refused: grace_s must be a whole number from 1 to 60" >&2
    exit 2
fi

# The state letter of a process (R, S, D, Z...), empty once it is gone.
state_of() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
    stat=${stat##*) }
    printf '%s' "${stat%% *}"
}
alive() {
    local state
    state=$(state_of "$1")
    [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

if ! alive "$pid"; then
    echo "process $pid is not running: nothing to do"
    exit 0
fi
actual=$(cat "/proc/$pid/comm" 2>/dev/null || true)
if [ "$actual" != "$name" ]; then
    echo "refused: process $pid is ${actual:-gone}, not $name (its id may have been reused)" >&2
    exit 2
fi
case "$name" in
    systemd | init | kthreadd | sshd | dbus-daemon | dbus-broker | systemd-journal | \
        systemd-logind | systemd-udevd | NetworkManager | polkitd | sonde-agent)
        echo "refused: $name is needed by the system or by Sonde; restart it or reboot instead" >&2
        exit 2
        ;;
esac
parent=$(awk '/^PPid:/ { print $2 }' "/proc/$pid/status")
if [ "$parent" = 2 ] || [ "$parent" = 0 ]; then
    echo "refused: process $pid is a kernel thread" >&2
    exit 2
fi
ancestor=$$
while [ "$ancestor" -gt 1 ]; do
    if [ "$ancestor" = "$pid" ]; then
        echo "refused: process $pid runs this script (it is the agent or its parent)" >&2
        exit 2
    fi
    ancestor=$(awk '/^PPid:/ { print $2 }' "/proc/$ancestor/status" 2>/dev/null || echo 1)
done
owner=$(stat -c %U "/proc/$pid")
if "$dry_run"; then
    echo "dry run: would end process $pid ($name, of $owner, state $(state_of "$pid")):" \
        "SIGTERM, then SIGKILL after $grace s"
    exit 0
fi

kill -TERM -- "$pid" 2>/dev/null || true
for _ in $(seq 1 $((grace * 10))); do
    alive "$pid" || break
    sleep 0.1
done
how="SIGTERM"
if alive "$pid"; then
    kill -KILL -- "$pid" 2>/dev/null || true
    how="SIGKILL after $grace s"
    for _ in $(seq 1 50); do
        alive "$pid" || break
        sleep 0.1
    done
fi
if alive "$pid"; then
    echo "process $pid ($name) did not end even with SIGKILL: its state is $(state_of "$pid")" \
        "(D waits on a disk or a network file system; only a reboot frees it)" >&2
    exit 1
fi
echo "ended process $pid ($name, of $owner) with $how"
