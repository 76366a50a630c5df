#!/bin/bash
# Remove downloaded package files: apt-get clean, dnf clean packages or zypper clean.
# Parameters (environment, set by the agent): SONDE_DRY_RUN=1|0.
# Exit: 0 done or nothing to do; 1 failed; 2 refused; 3 no known package manager here.
set -euo pipefail

case "${SONDE_DRY_RUN:-}" in
    1) dry_run=true ;;
    0) dry_run=false ;;
    *) echo "refused: SONDE_DRY_RUN must be 1 or 0" >&2; exit 2 ;;
esac

if command -v apt-get >/dev/null 2>&1; then
    cache=/var/cache/apt/archives
    clean=(apt-get clean -o DPkg::Lock::Timeout=60)
elif command -v dnf >/dev/null 2>&1; then
    cache=/var/cache/dnf
    clean=(dnf clean packages)
elif command -v zypper >/dev/null 2>&1; then
    cache=/var/cache/zypp/packages
    clean=(zypper --non-interactive clean --all)
else
    echo "no apt-get, dnf or zypper on this machine: no package cache to clean" >&2
    exit 3
fi

size_of() {
    if [ -d "$1" ]; then du -sb -- "$1" | cut -f1; else echo 0; fi
}
before=$(size_of "$cache")
if "$dry_run"; then
    echo "dry run: would run ${clean[*]}; $cache holds $before bytes"
    exit 0
fi
"${clean[@]}"
after=$(size_of "$cache")
echo "ran ${clean[*]}: freed $((before - after)) bytes in $cache"
