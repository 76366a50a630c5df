"""sonde-agent's exit codes: systemd's RestartPreventExitStatus relies on 3 and 4."""

OK = 0
ERROR = 1
USAGE = 2
REFUSED = 3  # unsafe permissions or not enrolled: restarting would not help
REVOKED = 4  # the server revoked this agent: never reconnect
DAMAGED_STATE = 5  # agent.key or agent.crt damaged or another agent's: enroll again
BROKEN_PIPE = 141  # stdout's reader went away (`sonde-agent collect | head`): sonde.pipes
