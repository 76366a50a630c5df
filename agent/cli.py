"""sonde-agent: enroll this workstation, keep its stream to the server, or collect locally.

Each command imports what it needs inside its function: `run` stays resident for weeks,
and every module imported here would cost it memory (see _run).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

# gRPC core's own lines (a failed TLS handshake, a key it cannot use) would duplicate our
# one-line reasons; it reads this once, when grpc is first imported, so it must come first.
# GRPC_VERBOSITY=debug still shows them.
os.environ.setdefault("GRPC_VERBOSITY", "NONE")

import sonde
from sonde.agent import exit_codes
from sonde.agent.paths import CERT_FILE, KEY_FILE, default_state_dir
from sonde.pipes import quiet_when_piped

if TYPE_CHECKING:
    import asyncio

    from sonde.agent.collectors.runner import CollectContext
    from sonde.v1 import diagnostics_pb2

# What the Hello announces, in registry order, without importing the collectors before
# the first Collect; a unit test holds it equal to agent.collectors.runner.collector_names().
COLLECTOR_NAMES = (
    "system",
    "cpu",
    "memory",
    "disks",
    "battery",
    "network",
    "processes",
    "services",
    "software",
    "updates",
)
# C modules that map OpenSSL into the process (about 4.5 MiB of RSS), which `run` never
# uses: gRPC carries its own TLS (BoringSSL).
OPENSSL_MODULES = ("ssl", "_hashlib")

log = logging.getLogger("sonde-agent")


def _address(text: str) -> str:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    return text


def _terminal_columns() -> int:
    """shutil.get_terminal_size()'s width rules, without importing shutil."""
    try:
        columns = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        columns = 0
    if columns > 0:
        return columns
    stdout = sys.__stdout__
    if stdout is None:
        return 80
    try:
        return os.get_terminal_size(stdout.fileno()).columns or 80
    except (AttributeError, ValueError, OSError):
        return 80


class _HelpFormatter(argparse.HelpFormatter):
    # argparse builds a formatter for every add_argument, and the stock one imports shutil
    # (with bz2 and lzma) for the width: 0.3 MiB that `run` would keep for weeks.
    def __init__(self, prog: str) -> None:
        super().__init__(prog, width=_terminal_columns())


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sonde-agent",
        description="Sonde workstation agent: remote diagnostics for the IT helpdesk.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=sonde.version_line("sonde-agent"))
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    state_help = f"state folder (default: $SONDE_AGENT_STATE or {default_state_dir()})"

    enroll = commands.add_parser(
        "enroll", help="enroll this workstation with a server", formatter_class=_HelpFormatter
    )
    enroll.add_argument("token", metavar="TOKEN", help="the sonde-enroll-1.… string")
    enroll.add_argument("--state", type=Path, help=state_help)
    enroll.add_argument("--force", action="store_true", help="replace an existing enrollment")
    enroll.add_argument("--json", action="store_true", help="print the result as JSON")

    for name, text in (
        ("run", "keep the stream to the server open (the service runs this)"),
        ("collect", "run every collector locally and print facts and findings"),
    ):
        sub = commands.add_parser(name, help=text, formatter_class=_HelpFormatter)
        sub.add_argument("--state", type=Path, help=state_help)
        sub.add_argument(
            "--target", type=_address, metavar="HOST:PORT", help="also measure TCP latency to it"
        )
        sub.add_argument(
            "--resolve",
            action="append",
            default=[],
            metavar="NAME",
            help="a host name whose DNS resolution time is measured (repeatable)",
        )
        if name == "collect":
            sub.add_argument("--json", action="store_true", help="print the snapshot as JSON")
        else:
            sub.add_argument(
                "--help-socket",
                metavar="PATH",
                help="listen for `sonde-agent help` here, open to every local user "
                "(default: /run/sonde-agent/help.sock for the system agent, else "
                "STATE.help.sock for its own user; on Windows a pipe, "
                r"\\.\pipe\sonde-agent-help for the service)",
            )

    asked = commands.add_parser(
        "help",
        help="ask the helpdesk for help: opens a ticket with this computer's diagnostics",
        formatter_class=_HelpFormatter,
    )
    asked.add_argument(
        "description",
        nargs="+",
        metavar="TEXT",
        help='what is wrong, e.g. "my printer doesn\'t print"',
    )
    asked.add_argument("--state", type=Path, help="the agent's state folder, to find its socket")
    asked.add_argument(
        "--socket", metavar="PATH", help="the running agent's help socket (Windows: its pipe)"
    )
    asked.add_argument("--json", action="store_true", help="print the result as JSON")

    fixing = commands.add_parser(
        "fix",
        help="list the fixes you may run yourself, or run one (logged on a helpdesk ticket)",
        formatter_class=_HelpFormatter,
    )
    fixing.add_argument(
        "script", nargs="?", metavar="SCRIPT_ID", help="the fix to run (none: list them)"
    )
    fixing.add_argument(
        "--ticket", type=int, metavar="N", help="the ticket of this computer to log it on"
    )
    fixing.add_argument("--state", type=Path, help="the agent's state folder, to find its socket")
    fixing.add_argument(
        "--socket", metavar="PATH", help="the running agent's help socket (Windows: its pipe)"
    )
    fixing.add_argument("--json", action="store_true", help="print the result as JSON")

    rating = commands.add_parser(
        "rate",
        help="rate the helpdesk's answer to your resolved requests (none given: list them)",
        formatter_class=_HelpFormatter,
    )
    rating.add_argument(
        "ticket", nargs="?", type=int, metavar="TICKET", help="the resolved ticket to rate"
    )
    rating.add_argument("rating", nargs="?", metavar="RATING", help="from 1 (bad) to 5 (very good)")
    rating.add_argument("--comment", default="", metavar="TEXT", help="a word for the helpdesk")
    rating.add_argument("--state", type=Path, help="the agent's state folder, to find its socket")
    rating.add_argument(
        "--socket", metavar="PATH", help="the running agent's help socket (Windows: its pipe)"
    )
    rating.add_argument("--json", action="store_true", help="print the result as JSON")
    return parser


def _enroll(args: argparse.Namespace, state_dir: Path) -> int:
    # Only enrollment needs cryptography: keep its ~8 MiB out of the long-running agent.
    import json

    from sonde.agent.enroll import EnrollmentError, enroll

    try:
        state = enroll(args.token, state_dir, force=args.force)
    except EnrollmentError as error:
        print(f"sonde-agent: {error}", file=sys.stderr)
        return exit_codes.ERROR
    except OSError as error:
        print(f"sonde-agent: cannot write the state folder {state_dir}: {error}", file=sys.stderr)
        return exit_codes.ERROR
    if args.json:
        print(
            json.dumps(
                {
                    "agent_id": state.agent_id,
                    "agent_address": state.agent_address,
                    "agent_addresses": list(state.agent_addresses),
                    "state_dir": str(state_dir),
                }
            )
        )
    else:
        print(f"enrolled as agent {state.agent_id}")
        print(f"state folder: {state_dir}")
        print(f"start it with: sonde-agent run --state {state_dir}")
    return exit_codes.OK


def _collect_context(
    args: argparse.Namespace, state_dir: Path, server_address: str | None
) -> CollectContext:
    # Imported here so that enroll works (and starts fast) without the collectors.
    from sonde.agent.collectors.runner import CollectContext

    return CollectContext(
        server_address=server_address,
        target_address=args.target,
        resolve_names=tuple(args.resolve),
        state_dir=state_dir if state_dir.is_dir() else None,
    )


def _collect(args: argparse.Namespace, state_dir: Path) -> int:
    from sonde.agent.collect_cmd import run_collect
    from sonde.agent.state import NotEnrolled, load_state

    if state_dir.exists() and not state_dir.is_dir():
        print(
            f"sonde-agent: --state {state_dir} is a file; the state folder must be a folder "
            "(leave --state out for the default one)",
            file=sys.stderr,
        )
        return exit_codes.USAGE
    try:
        server_address: str | None = load_state(state_dir).agent_address
    except NotEnrolled:
        server_address = None  # works without a server: the user may be on the phone
    ctx = _collect_context(args, state_dir, server_address)
    return run_collect(ctx, as_json=args.json, out=sys.stdout)


def keep_openssl_out() -> None:
    """Make `import ssl` and `import _hashlib` fail in this process (the `run` path only).

    Poisoning rather than avoiding, because asyncio imports ssl unconditionally; asyncio and
    hashlib both treat the ImportError as "no OpenSSL" and go on (hashlib with its built-in
    digests). gRPC brings its own TLS. A module already imported is left alone.
    """
    for name in OPENSSL_MODULES:
        if name not in sys.modules:
            sys.modules[name] = None  # type: ignore[assignment]  # typeshed omits this idiom


def _run(args: argparse.Namespace, state_dir: Path) -> int:
    keep_openssl_out()
    import asyncio

    from sonde.agent.credential_check import DamagedCredentials, check_credentials
    from sonde.agent.journal import Outbox
    from sonde.agent.state import (
        NotEnrolled,
        UnsafePermissions,
        check_permissions,
        load_credentials,
        load_state,
    )
    from sonde.agent.transport import AgentRuntime, SessionTarget

    try:
        check_permissions(state_dir)
        state = load_state(state_dir)
        credentials = load_credentials(state_dir)
    except (UnsafePermissions, NotEnrolled) as refusal:
        # One line, as every refusal at start (the service manager keeps stderr too).
        print(f"sonde-agent: {refusal}", file=sys.stderr)
        return exit_codes.REFUSED
    try:
        check_credentials(
            state.agent_id,
            state_dir / KEY_FILE,
            credentials.private_key_pem,
            state_dir / CERT_FILE,
            credentials.certificate_pem,
        )
    except DamagedCredentials as refusal:
        print(f"sonde-agent: refusing to start: {refusal}", file=sys.stderr)
        return exit_codes.DAMAGED_STATE

    async def collect(only: Sequence[str]) -> diagnostics_pb2.Snapshot:
        # The collectors (and platform, shutil...) load with the first Collect, not at idle.
        from sonde.agent.collectors.runner import collect_snapshot

        return await collect_snapshot(_collect_context(args, state_dir, state.agent_address), only)

    async def serve() -> int:
        from sonde.agent.help_socket import help_listener

        stop = asyncio.Event()
        _stop_on_signals(stop)
        with Outbox.in_state_dir(state_dir) as outbox:
            runtime = AgentRuntime(
                state=state,
                target=SessionTarget.from_state(state, credentials),
                outbox=outbox,
                collect=collect,
                collectors=COLLECTOR_NAMES,
                state_dir=state_dir,
            )
            log.info("agent %s starting (state folder %s)", state.agent_id, state_dir)
            try:
                help_channel = help_listener(
                    state_dir,
                    runtime.ask_for_help,
                    args.help_socket,
                    runtime.self_service,
                    runtime.rate_resolution,
                )
            except ValueError as refused:
                print(f"sonde-agent: {refused}", file=sys.stderr)
                return exit_codes.USAGE
            await help_channel.start()
            try:
                return await runtime.run(stop)
            finally:
                await help_channel.stop()

    return asyncio.run(serve())


def _stop_on_signals(stop: asyncio.Event) -> None:
    import asyncio
    import signal

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(signum, stop.set)
        except NotImplementedError:
            # Windows' event loop has no signal handlers; Ctrl-C still reaches it this way.
            signal.signal(signum, lambda *_: loop.call_soon_threadsafe(stop.set))


def main(argv: Sequence[str] | None = None) -> int:
    """The program: exit code 141, and no traceback, when stdout's reader goes away."""
    return quiet_when_piped(lambda: _main(argv))


def _main(argv: Sequence[str] | None) -> int:
    # Everything the agent writes (state, outbox, caches) is for its own user only.
    os.umask(0o077)
    logging.basicConfig(
        level=os.environ.get("SONDE_AGENT_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    args = _parser().parse_args(argv)
    state_dir: Path = args.state or default_state_dir()
    if args.command == "enroll":
        return _enroll(args, state_dir)
    if args.command == "collect":
        return _collect(args, state_dir)
    if args.command == "help":
        from sonde.agent.help_cmd import ask_for_help

        return ask_for_help(" ".join(args.description), args.state, args.socket, args.json)
    if args.command == "fix":
        from sonde.agent.fix_cmd import self_service_fix

        return self_service_fix(args.script, args.ticket, args.state, args.socket, args.json)
    if args.command == "rate":
        from sonde.agent.rate_cmd import rate_resolution

        return rate_resolution(
            args.ticket,
            args.rating,
            comment=args.comment,
            state_dir=args.state,
            given=args.socket,
            as_json=args.json,
        )
    return _run(args, state_dir)


if __name__ == "__main__":
    sys.exit(main())
