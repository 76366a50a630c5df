"""Environment values for a command over SSH, kept off its command line.

A command line on the host is visible to every user there (`ps`, /proc/PID/cmdline), so a
value (a parameter, a token) never goes on it. The command runs under one fixed bootstrap,
`sh -c ENV_BOOTSTRAP sonde-env PROGRAM ARGS...`: it reads the first line of its standard input,
the environment block (`NAME=BASE64 ...`, each value base64 of its bytes), exports each value,
and execs the program with the rest of standard input. sh's `read` takes its input one byte at
a time from a pipe, so nothing past that line is consumed. The bootstrap checks each name
again and never evaluates a value: a value is decoded by `base64 -d` and expanded quoted.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
BOOTSTRAP_NAME = "sonde-env"  # $0 of the bootstrap, what `ps` shows beside its fixed text
# The fixed text; no value is ever written into it. PATH is set, not exported, so that the
# bootstrap finds base64 even under `env -i`; the block's own PATH is what the program gets.
ENV_BOOTSTRAP = r"""set -f
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
IFS= read -r sonde_env || { echo "sonde-env: no environment block on stdin" >&2; exit 125; }
IFS=' '
for sonde_pair in $sonde_env; do
  sonde_name=${sonde_pair%%=*}
  case $sonde_name in
    ''|[!A-Za-z_]*|*[!A-Za-z0-9_]*)
      echo "sonde-env: refused a variable name that is not one" >&2; exit 125;;
  esac
  sonde_value=$(printf '%s' "${sonde_pair#*=}" | base64 -d && printf x) || {
    echo "sonde-env: $sonde_name is not base64" >&2; exit 125; }
  export "$sonde_name=${sonde_value%x}"
done
unset sonde_env sonde_pair sonde_name sonde_value IFS
set +f
exec "$@"
"""


def check_environment(environment: Mapping[str, str]) -> None:
    """ValueError naming a name that is not a variable's, or a value holding NUL."""
    for name, value in environment.items():
        if not ENV_NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not an environment variable name")
        if "\0" in value:
            raise ValueError(f"the value of {name} holds a NUL character, which no variable can")


def environment_block(environment: Mapping[str, str]) -> bytes:
    """The first line the bootstrap reads: `NAME=BASE64` words, then a newline."""
    check_environment(environment)
    words = [
        f"{name}={base64.b64encode(value.encode('utf-8')).decode('ascii')}"
        for name, value in environment.items()
    ]
    return (" ".join(words) + "\n").encode("ascii")
