#!/bin/bash
# Shrink the systemd journal to at most N MiB (journalctl --vacuum-size), oldest first.
# Parameters (environment, set by the agent): SONDE_PARAM_KEEP_MIB (16-102400),
# SONDE_DRY_RUN=1|0.
# Exit: 0 done or nothing to do; 1 failed; 2 refused; 3 no journalctl here.
set -euo pipefail

case "${SONDE_DRY_RUN:-}" in
    1) dry_run=true ;;
    0) dry_run=false ;;
    *) echo "refused: SONDE_DRY_RUN must be 1 or 0" >&2; exit 2 ;;
esac
keep="${SONDE_PARAM_KEEP_MIB:-500}"
if [[ ! "$keep" =~ ^[0-9]{1,6}$ ]] || [ "$keep" -lt 16 ] || [ "$keep" -gt 102400 ]; then
    echo "refused: keep_mib must be a whole number from 16 to 102400" >&2
    exit 2
fi
if ! command -v journalctl >/dev/null 2>&1; then
    echo "journalctl is not on this machine: no systemd journal to shrink" >&2
    exit 3
fi

usage=$(journalctl --disk-usage 2>&1 || true)
if "$dry_run"; then
    echo "dry run: would shrink the journal to at most $keep MiB; now: $usage"
    exit 0
fi
journalctl --vacuum-size="${keep}M"
echo "now: $(journalctl --disk-usage 2>&1 || true)"
