"""`sonde hosts winrm HOST[:PORT]`: how the server may talk WinRM to one host.

Without settings a host gets HTTPS on 5986, NTLM and its certificate checked. `--http` is
plain HTTP on 5985 (NTLM and Kerberos then always encrypt the messages); Basic needs
`--allow-basic`, and over HTTP also `--allow-unencrypted`; `--ca-file` is the CA (a file of
the winrm-ca folder in the server's data folder) that signed the listener's certificate. The
server refuses settings that could never connect, and stores nothing then.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from sonde.server.console.context import Context
from sonde.server.console.layout import Column, Give, ListTable
from sonde.server.console.render import format_time, text
from sonde.v1 import console_pb2

MAX_OPERATION_TIMEOUT_S = 300


def operation_timeout(value: str) -> int:
    """--operation-timeout: 1 to 300 seconds, refused at parse time."""
    if not value.isdigit() or not 0 < int(value) <= MAX_OPERATION_TIMEOUT_S:
        raise argparse.ArgumentTypeError(
            f"{value!r}: expected 1 to {MAX_OPERATION_TIMEOUT_S} seconds"
        )
    return int(value)


def add_winrm(
    verbs: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    winrm = verbs.add_parser(
        "winrm",
        parents=[common],
        help="set how the server talks WinRM to a host (l2)",
        description="Store a host's WinRM settings, replacing any. Without them the server "
        "uses HTTPS on 5986 with NTLM and checks the certificate against its CA bundle.",
    )
    winrm.add_argument(
        "address", metavar="HOST[:PORT]", help="port 5986, or 5985 with --http, when left out"
    )
    winrm.add_argument(
        "--http",
        action="store_true",
        help="plain HTTP (NTLM and Kerberos still encrypt every message)",
    )
    winrm.add_argument(
        "--auth", choices=("ntlm", "kerberos", "basic"), default="ntlm", help="default: ntlm"
    )
    winrm.add_argument(
        "--allow-basic",
        action="store_true",
        help="allow Basic, which sends the password itself (local accounts only)",
    )
    winrm.add_argument(
        "--allow-unencrypted",
        action="store_true",
        help="allow Basic over plain HTTP (the host's AllowUnencrypted must be on too)",
    )
    winrm.add_argument(
        "--ca-file",
        default="",
        metavar="NAME",
        help="the CA that signed the listener's certificate: a file of the winrm-ca folder "
        "in the server's data folder",
    )
    winrm.add_argument(
        "--operation-timeout",
        type=operation_timeout,
        default=0,
        metavar="S",
        help="how long the host holds one Receive (default 20)",
    )
    winrm.set_defaults(handler=run_winrm)


def winrm_address(host: console_pb2.WinRMHostSettings) -> str:
    name = f"[{host.host}]" if ":" in host.host else host.host
    return f"{name}:{host.port}"


def _how(host: console_pb2.WinRMHostSettings) -> str:
    allowed = [
        word
        for word, on in (
            ("Basic allowed", host.allow_basic),
            ("unencrypted", host.allow_unencrypted),
        )
        if on
    ]
    return ", ".join([host.auth, *allowed])


def winrm_table(hosts: Sequence[console_pb2.WinRMHostSettings]) -> ListTable:
    table = ListTable(
        "WinRM host settings (others: HTTPS 5986, NTLM, certificate checked)",
        [
            Column("host"),
            Column("via"),
            Column("auth", Give.CUT),
            Column("CA file", Give.CUT, optional=True),
            Column("timeout", optional=True),
            Column("set by", Give.CUT, optional=True),
            Column("set", optional=True),
        ],
    )
    for host in hosts:
        table.add_row(
            text(winrm_address(host)),
            text("https" if host.https else "http"),
            text(_how(host)),
            text(host.ca_file or "-"),
            text(f"{host.operation_timeout_s} s"),
            text(host.set_by),
            format_time(host.set_at)[:16],
        )
    return table


def run_winrm(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client()
    request = console_pb2.SetWinRMHostRequest(
        address=args.address,
        http=args.http,
        auth=args.auth,
        ca_file=args.ca_file,
        allow_basic=args.allow_basic,
        allow_unencrypted=args.allow_unencrypted,
        operation_timeout_s=args.operation_timeout,
    )
    response = client.call(client.stub.SetWinRMHost, request)
    ctx.out.emit_message(response)
    host = response.host
    scheme = "https" if host.https else "http"
    ctx.out.done(
        f"the server will talk WinRM to {winrm_address(host)} over {scheme} with {_how(host)}: "
        f"sonde diag NAME --winrm USER@{winrm_address(host)}"
    )
    return 0
