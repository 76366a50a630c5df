#!/bin/bash
# Remove temporary files older than N days: from $TMPDIR when it is set, else from /tmp and
# /var/tmp; with SONDE_PARAM_INCLUDE_CACHES=1 also from $HOME/.cache. Files only (no sockets,
# no device nodes), never following a link, never crossing into another file system; a file is
# old when neither written nor read for N days. Folders that were old and are left empty go too.
# Parameters (environment, set by the agent): SONDE_PARAM_OLDER_THAN_DAYS (1-365),
# SONDE_PARAM_INCLUDE_CACHES=1|0, SONDE_DRY_RUN=1|0.
# Exit: 0 done or nothing to do; 1 failed; 2 refused (a parameter or an unsafe folder).
set -euo pipefail

case "${SONDE_DRY_RUN:-}" in
    1) dry_run=true ;;
    0) dry_run=false ;;
    *) echo "refused: SONDE_DRY_RUN must be 1 or 0" >&2; exit 2 ;;
esac
days="${SONDE_PARAM_OLDER_THAN_DAYS:-7}"
if [[ ! "$days" =~ ^[0-9]{1,3}$ ]] || [ "$days" -lt 1 ] || [ "$days" -gt 365 ]; then
    echo "refused: older_than_days must be a whole number from 1 to 365" >&2
    exit 2
fi
case "${SONDE_PARAM_INCLUDE_CACHES:-1}" in
    1) include_caches=true ;;
    0) include_caches=false ;;
    *) echo "refused: include_caches must be 1 or 0" >&2; exit 2 ;;
esac

folders=()
if [ -n "${TMPDIR:-}" ]; then
    folders+=("$TMPDIR")
else
    folders+=(/tmp /var/tmp)
fi
if "$include_caches" && [ -n "${HOME:-}" ] && [ -d "$HOME/.cache" ]; then
    folders+=("$HOME/.cache")
fi

minutes=$((days * 1440))
total_files=0
total_bytes=0
for folder in "${folders[@]}"; do
    case "$folder" in
        /*) ;;
        *) echo "refused: $folder is not an absolute path" >&2; exit 2 ;;
    esac
    if [ "$(realpath -- "$folder")" = / ]; then
        echo "refused: $folder is the root folder" >&2
        exit 2
    fi
    if [ ! -d "$folder" ] || [ -L "$folder" ]; then
        echo "$folder: not a folder, skipped"
        continue
    fi
    read -r files bytes < <(
        find "$folder" -xdev -mindepth 1 -type f -mmin +"$minutes" -amin +"$minutes" \
            -printf '%s\n' 2>/dev/null | awk '{ n++; s += $1 } END { printf "%d %d\n", n, s }'
    )
    total_files=$((total_files + files))
    total_bytes=$((total_bytes + bytes))
    if "$dry_run"; then
        echo "dry run: would remove $files files ($bytes bytes) older than $days days from $folder"
        continue
    fi
    # Folders old before the files go (removing a file makes its folder new), deepest first.
    mapfile -d '' old_folders < <(
        find "$folder" -xdev -mindepth 1 -depth -type d -mmin +"$minutes" -print0 2>/dev/null
    )
    find "$folder" -xdev -mindepth 1 -type f -mmin +"$minutes" -amin +"$minutes" \
        -delete 2>/dev/null || true
    for old_folder in "${old_folders[@]}"; do
        rmdir -- "$old_folder" 2>/dev/null || true # only if it is empty now
    done
    echo "removed $files files ($bytes bytes) older than $days days from $folder"
done
if "$dry_run"; then
    echo "dry run: would free $total_bytes bytes in $total_files files; nothing was removed"
else
    echo "freed $total_bytes bytes in $total_files files"
fi
