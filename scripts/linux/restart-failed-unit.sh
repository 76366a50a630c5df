#!/bin/bash
# Restart one systemd unit that is in the failed state; a unit that is not failed is left alone.
# Parameters (environment, set by the agent): SONDE_PARAM_UNIT (a unit name such as
# cups.service), SONDE_DRY_RUN=1|0.
# Exit: 0 done or nothing to do; 1 failed (it failed again); 2 refused; 3 no systemd here.
set -euo pipefail

case "${SONDE_DRY_RUN:-}" in
    1) dry_run=true ;;
    0) dry_run=false ;;
    *) echo "refused: SONDE_DRY_RUN must be 1 or 0" >&2; exit 2 ;;
esac
unit="${SONDE_PARAM_UNIT:-}"
if [[ ! "$unit" =~ ^[A-Za-z0-9][A-Za-z0-9@._:-]{0,120}\.(service|socket|timer|mount|path)$ ]]; then
    echo "refused: unit must be a unit name such as cups.service" >&2
    exit 2
fi

if [ ! -d /run/systemd/system ]; then
    echo "systemd is not running on this machine: no unit to restart" >&2
    exit 3
fi
if ! systemctl cat -- "$unit" >/dev/null 2>&1; then
    echo "refused: there is no unit $unit on this machine" >&2
    exit 2
fi
if ! systemctl is-failed --quiet -- "$unit"; then
    echo "$unit is $(systemctl is-active -- "$unit" || true), not failed: nothing to do"
    exit 0
fi
if "$dry_run"; then
    echo "dry run: would reset and restart the failed unit $unit"
    exit 0
fi

systemctl reset-failed -- "$unit"
systemctl restart -- "$unit" || true
sleep 2
if systemctl is-failed --quiet -- "$unit"; then
    echo "$unit failed again after its restart:" >&2
    systemctl status --no-pager --lines=20 -- "$unit" >&2 || true
    exit 1
fi
echo "restarted $unit: now $(systemctl is-active -- "$unit" || true)"
