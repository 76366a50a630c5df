#!/bin/bash
# Restart NetworkManager or systemd-resolved (an allow-list), then flush the DNS cache.
# Parameters (environment, set by the agent): SONDE_PARAM_SERVICE=network-manager|
# systemd-resolved, SONDE_DRY_RUN=1|0.
# Exit: 0 done; 1 failed (the service did not come back); 2 refused; 3 cannot run here.
set -euo pipefail

case "${SONDE_DRY_RUN:-}" in
    1) dry_run=true ;;
    0) dry_run=false ;;
    *) echo "refused: SONDE_DRY_RUN must be 1 or 0" >&2; exit 2 ;;
esac
case "${SONDE_PARAM_SERVICE:-}" in
    network-manager) unit=NetworkManager.service ;;
    systemd-resolved) unit=systemd-resolved.service ;;
    *) echo "refused: service must be network-manager or systemd-resolved" >&2; exit 2 ;;
esac

if [ ! -d /run/systemd/system ]; then
    echo "systemd is not running on this machine: cannot restart $unit" >&2
    exit 3
fi
if ! systemctl cat -- "$unit" >/dev/null 2>&1; then
    echo "$unit is not installed on this machine" >&2
    exit 3
fi
if "$dry_run"; then
    echo "dry run: would restart $unit (now $(systemctl is-active -- "$unit" || true))" \
        "and flush the DNS cache; the network may drop for a few seconds"
    exit 0
fi

systemctl restart -- "$unit"
for _ in $(seq 1 30); do
    systemctl is-active --quiet -- "$unit" && break
    sleep 1
done
if ! systemctl is-active --quiet -- "$unit"; then
    echo "$unit did not come back within 30 s:" >&2
    systemctl status --no-pager --lines=10 -- "$unit" >&2 || true
    exit 1
fi
echo "restarted $unit"
if systemctl is-active --quiet systemd-resolved.service; then
    resolvectl flush-caches
    echo "flushed systemd-resolved's DNS cache"
fi
