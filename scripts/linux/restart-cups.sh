#!/bin/bash
# Restart CUPS, the print service; with SONDE_PARAM_CLEAR_QUEUE=1 cancel every print job first.
# Parameters (environment, set by the agent): SONDE_PARAM_CLEAR_QUEUE=1|0, SONDE_DRY_RUN=1|0.
# Exit: 0 done; 1 failed (CUPS did not come back); 2 refused; 3 no CUPS or no systemd here.
set -euo pipefail

case "${SONDE_DRY_RUN:-}" in
    1) dry_run=true ;;
    0) dry_run=false ;;
    *) echo "refused: SONDE_DRY_RUN must be 1 or 0" >&2; exit 2 ;;
esac
case "${SONDE_PARAM_CLEAR_QUEUE:-0}" in
    1) clear_queue=true ;;
    0) clear_queue=false ;;
    *) echo "refused: clear_queue must be 1 or 0" >&2; exit 2 ;;
esac

if [ ! -d /run/systemd/system ]; then
    echo "systemd is not running on this machine: cannot restart CUPS" >&2
    exit 3
fi
if ! systemctl cat cups.service >/dev/null 2>&1; then
    echo "CUPS (cups.service) is not installed on this machine" >&2
    exit 3
fi
jobs=0
if command -v lpstat >/dev/null 2>&1; then
    jobs=$(lpstat -o 2>/dev/null | wc -l || true)
fi
if "$dry_run"; then
    if "$clear_queue"; then
        echo "dry run: would cancel $jobs print jobs (cancel -a -x) and restart cups.service"
    else
        echo "dry run: would restart cups.service ($jobs print jobs waiting stay queued)"
    fi
    exit 0
fi

if "$clear_queue" && [ "$jobs" -gt 0 ]; then
    cancel -a -x
    echo "cancelled $jobs print jobs"
fi
systemctl restart cups.service
for _ in $(seq 1 30); do
    systemctl is-active --quiet cups.service && break
    sleep 1
done
if ! systemctl is-active --quiet cups.service; then
    echo "cups.service did not come back within 30 s:" >&2
    systemctl status --no-pager --lines=10 cups.service >&2 || true
    exit 1
fi
echo "restarted cups.service"
