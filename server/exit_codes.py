"""sonde-server's exit codes (docs/server.md, "Exit codes")."""

OK = 0
ERROR = 1  # a refused admin command, a folder that is not initialised or cannot be made,
# a tampered audit log, a database that refuses the server
USAGE = 2  # a bad command line, or the `server` extra is not installed
DATA_FOLDER_IN_USE = 3  # another sonde-server holds the data folder's lock
CANNOT_LISTEN = 4  # a listen address is in use, not on this host, or not ours to bind
BROKEN_PIPE = 141  # stdout's reader went away (`sonde-server ... | head`): sonde.pipes
