#!/bin/bash
# Restart the computer after a notice to logged-on users (shutdown -r +N MESSAGE), or cancel
# a restart scheduled before (SONDE_PARAM_CANCEL=1: shutdown -c).
# Parameters (environment, set by the agent): SONDE_PARAM_DELAY_MINUTES (1-240),
# SONDE_PARAM_MESSAGE, SONDE_PARAM_CANCEL=1|0, SONDE_DRY_RUN=1|0.
# Exit: 0 scheduled or cancelled; 1 failed; 2 refused; 3 no shutdown command here.
set -euo pipefail

case "${SONDE_DRY_RUN:-}" in
    1) dry_run=true ;;
    0) dry_run=false ;;
    *) echo "refused: SONDE_DRY_RUN must be 1 or 0" >&2; exit 2 ;;
esac
delay="${SONDE_PARAM_DELAY_MINUTES:-10}"
message="${SONDE_PARAM_MESSAGE:-IT support will restart this computer: please save your work.}"
if [[ ! "$delay" =~ ^[0-9]{1,3}$ ]] || [ "$delay" -lt 1 ] || [ "$delay" -gt 240 ]; then
    echo "refused: delay_minutes must be a whole number from 1 to 240" >&2
    exit 2
fi
if [[ ! "$message" =~ ^[A-Za-z0-9][A-Za-z0-9\ .,:\;\'!?()/-]{0,199}$ ]]; then
    echo "refused: message must be plain text of letters, digits and punctuation" >&2
    exit 2
fi
case "${SONDE_PARAM_CANCEL:-0}" in
    1) cancel=true ;;
    0) cancel=false ;;
    *) echo "refused: cancel must be 1 or 0" >&2; exit 2 ;;
esac
if ! command -v shutdown >/dev/null 2>&1; then
    echo "there is no shutdown command on this machine" >&2
    exit 3
fi

if "$cancel"; then
    if "$dry_run"; then
        echo "dry run: would cancel a scheduled restart (shutdown -c)"
        exit 0
    fi
    shutdown -c "Sonde: the restart is cancelled."
    echo "cancelled the scheduled restart"
    exit 0
fi
if "$dry_run"; then
    echo "dry run: would restart this computer in $delay minutes, telling users: $message"
    exit 0
fi
shutdown -r "+$delay" "$message"
echo "restart scheduled in $delay minutes; cancel it with this script and cancel=true"
