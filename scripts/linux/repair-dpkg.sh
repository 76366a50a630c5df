#!/bin/bash
# Finish an interrupted package installation: dpkg --configure -a, then apt-get -f install.
# Parameters (environment, set by the agent): SONDE_DRY_RUN=1|0.
# Exit: 0 done or nothing to repair; 1 failed; 2 refused; 3 not a dpkg system.
set -euo pipefail

case "${SONDE_DRY_RUN:-}" in
    1) dry_run=true ;;
    0) dry_run=false ;;
    *) echo "refused: SONDE_DRY_RUN must be 1 or 0" >&2; exit 2 ;;
esac
if ! command -v dpkg >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
    echo "this machine does not use dpkg and apt: nothing here to repair" >&2
    exit 3
fi

pending=$(dpkg --audit 2>&1 || true)
broken=false
if ! apt-get check -qq >/dev/null 2>&1; then
    broken=true
fi
if [ -z "$pending" ] && ! "$broken"; then
    echo "dpkg has no interrupted installation and apt no broken dependency: nothing to repair"
    exit 0
fi
if "$dry_run"; then
    echo "dry run: would run dpkg --configure -a and apt-get -f install; dpkg --audit says:"
    printf '%s\n' "${pending:-(nothing)}"
    if "$broken"; then echo "and apt-get check reports broken dependencies"; fi
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
dpkg --configure -a --force-confold
apt-get -f install -y -o DPkg::Lock::Timeout=120 -o Dpkg::Options::=--force-confold
if [ -n "$(dpkg --audit 2>&1 || true)" ] || ! apt-get check -qq >/dev/null 2>&1; then
    echo "still not repaired; dpkg --audit says:" >&2
    dpkg --audit >&2 || true
    exit 1
fi
echo "repaired: dpkg --audit and apt-get check report nothing"
