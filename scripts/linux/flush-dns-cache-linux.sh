#!/bin/bash
# Flush the DNS cache: systemd-resolved's (resolvectl flush-caches), or nscd's hosts cache.
# Parameters arrive as environment variables set by the agent: SONDE_DRY_RUN=1|0.
# Exit: 0 done or nothing to do; 1 failed; 2 refused (a parameter); 3 cannot run here.
set -euo pipefail

case "${SONDE_DRY_RUN:-}" in
    1) dry_run=true ;;
    0) dry_run=false ;;
    *) echo "refused: SONDE_DRY_RUN must be 1 or 0" >&2; exit 2 ;;
esac

if [ -d /run/systemd/system ] && systemctl is-active --quiet systemd-resolved.service; then
    if "$dry_run"; then
        echo "dry run: would flush systemd-resolved's DNS cache (resolvectl flush-caches)"
        exit 0
    fi
    resolvectl flush-caches
    echo "flushed systemd-resolved's DNS cache"
elif command -v nscd >/dev/null 2>&1 && pgrep -x nscd >/dev/null 2>&1; then
    if "$dry_run"; then
        echo "dry run: would invalidate nscd's hosts cache (nscd --invalidate=hosts)"
        exit 0
    fi
    nscd --invalidate=hosts
    echo "invalidated nscd's hosts cache"
else
    echo "no DNS cache runs on this machine (neither systemd-resolved nor nscd): nothing to flush"
fi
