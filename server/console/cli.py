"""`sonde`: the technician's command line. Parses arguments and hands off to a command module.

Exit codes: 0 done, 1 refused or failed (the message says why), 2 bad usage, 130 interrupted,
141 stdout's reader went away (`sonde ... | head`, see sonde.pipes).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

import sonde
from sonde.server.console import (
    agents,
    audit,
    commands,
    credentials,
    demo,
    deploy,
    diag,
    fixes,
    groups,
    hosts,
    kb,
    login,
    report,
    requesters,
    runs,
    scripts,
    sla,
    snapshots,
    ticket_handling,
    tickets,
    tokens,
    users,
    webhooks,
)
from sonde.server.console.context import Context
from sonde.server.console.errors import CliError
from sonde.server.console.output import Output

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class UsageError(CliError):
    def __init__(self, message: str, usage: str) -> None:
        super().__init__("INVALID_ARGUMENT", message)
        self.usage = usage


class _Parser(argparse.ArgumentParser):
    """Raises instead of exiting, so that --json can report usage errors as JSON too."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message, self.format_usage())


def build_parser() -> argparse.ArgumentParser:
    # --json is accepted before or after the command: SUPPRESS keeps a subcommand's
    # default from overwriting a --json given earlier on the line.
    common = _Parser(add_help=False)
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print JSON for scripts"
    )
    parser = _Parser(
        prog="sonde",
        description="Sonde technician CLI: agents, live diagnostics and tickets.",
        epilog="Start with `sonde login SERVER --token TOKEN --ca CA_FILE`, or try `sonde demo`.",
    )
    parser.add_argument("--json", action="store_true", default=False, help="print JSON")
    parser.add_argument("--version", action="version", version=sonde.version_line("sonde"))
    subcommands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in (
        login,
        agents,
        diag,
        snapshots,
        commands,
        tickets,
        ticket_handling,
        kb,
        report,
        requesters,
        sla,
        groups,
        users,
        tokens,
        audit,
        scripts,
        runs,
        fixes,
        credentials,
        hosts,
        deploy,
        webhooks,
        demo,
    ):
        module.register(subcommands, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    try:
        args = parser.parse_args(arguments)
    except UsageError as error:
        if "--json" in arguments:
            Output(json_mode=True).error(error)
        else:
            sys.stderr.write(f"{error.usage}sonde: error: {error.message}\n")
        return EXIT_USAGE
    if getattr(args, "handler", None) is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    out = Output(json_mode=args.json)
    ctx = Context(out)
    try:
        code: int = args.handler(args, ctx)
        return code
    except CliError as error:
        out.error(error)
        return EXIT_FAILED
    except KeyboardInterrupt:
        out.error(CliError("CANCELLED", "interrupted"))
        return EXIT_INTERRUPTED
    finally:
        ctx.close()


def _entry() -> NoReturn:
    sys.exit(main())


if __name__ == "__main__":
    _entry()
