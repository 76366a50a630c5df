#!/bin/bash
# Set the clock from the network now: chrony (chronyc makestep) or systemd-timesyncd.
# Parameters (environment, set by the agent): SONDE_DRY_RUN=1|0.
# Exit: 0 done; 1 failed; 2 refused; 3 neither chrony nor systemd-timesyncd here.
set -euo pipefail

case "${SONDE_DRY_RUN:-}" in
    1) dry_run=true ;;
    0) dry_run=false ;;
    *) echo "refused: SONDE_DRY_RUN must be 1 or 0" >&2; exit 2 ;;
esac

if command -v chronyc >/dev/null 2>&1 && chronyc -n tracking >/dev/null 2>&1; then
    if "$dry_run"; then
        echo "dry run: would step the clock to chrony's time (chronyc -a makestep)"
        exit 0
    fi
    chronyc -a makestep
    chronyc -n tracking
elif [ -d /run/systemd/system ] && systemctl cat systemd-timesyncd.service >/dev/null 2>&1; then
    if "$dry_run"; then
        echo "dry run: would turn network time on (timedatectl set-ntp true) and restart" \
            "systemd-timesyncd"
        exit 0
    fi
    timedatectl set-ntp true
    systemctl restart systemd-timesyncd.service
    for _ in $(seq 1 30); do
        [ "$(timedatectl show -p NTPSynchronized --value)" = yes ] && break
        sleep 1
    done
    timedatectl status
else
    echo "no time service on this machine (neither chrony nor systemd-timesyncd runs)" >&2
    exit 3
fi
