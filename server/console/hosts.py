"""`sonde hosts trust|list|forget`: the SSH host keys the server trusts for agentless reach.

The server logs in over SSH only to a host whose key a technician confirmed: read the
fingerprint on the machine's own console (`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`),
or from the inventory, and give it to `trust`. The server reads the key the host offers and
keeps it only when the fingerprints match. `forget` is for a reinstalled machine.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from sonde.server.console.context import Context
from sonde.server.console.layout import Column, Give, ListTable
from sonde.server.console.render import format_time, text
from sonde.v1 import console_pb2

_ADDRESS_HELP = "HOST or HOST:PORT (port 22 when left out); [IPV6]:PORT"


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    hosts = commands.add_parser(
        "hosts",
        parents=[common],
        help="SSH host keys the server trusts for agentless reach (trust/forget: l2)",
        description="The server logs in over SSH only to hosts whose key was trusted here, "
        "by its fingerprint read out of band. Never on first use.",
    )
    hosts.set_defaults(handler=run_list)
    verbs = hosts.add_subparsers(dest="hosts_command", metavar="{trust,list,forget}")
    trust = verbs.add_parser(
        "trust",
        parents=[common],
        help="trust the key a host offers, if its fingerprint is the one given",
        description="The server connects to HOST, reads the key it offers (no login) and "
        "stores it only when its SHA256 fingerprint is --fingerprint. Read the fingerprint on "
        "the machine's console: ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub",
    )
    trust.add_argument("address", metavar="HOST[:PORT]", help=_ADDRESS_HELP)
    trust.add_argument(
        "--fingerprint", required=True, metavar="SHA256:...", help="as ssh-keygen -lf prints it"
    )
    trust.set_defaults(handler=run_trust)
    listed = verbs.add_parser("list", parents=[common], help="list the trusted host keys")
    listed.set_defaults(handler=run_list)
    forget = verbs.add_parser(
        "forget",
        parents=[common],
        help="stop trusting a host's keys (a reinstalled machine), then trust its new one",
    )
    forget.add_argument("address", metavar="HOST[:PORT]", help=_ADDRESS_HELP)
    forget.set_defaults(handler=run_forget)


def _address(host: console_pb2.TrustedHost) -> str:
    name = f"[{host.host}]" if ":" in host.host else host.host
    return f"{name}:{host.port}"


def hosts_table(hosts: Sequence[console_pb2.TrustedHost]) -> ListTable:
    table = ListTable(
        "Trusted SSH host keys",
        [
            Column("host"),
            Column("key type"),
            Column("fingerprint", Give.CUT),
            Column("trusted by", Give.CUT, optional=True),
            Column("trusted", optional=True),
        ],
    )
    for host in hosts:
        table.add_row(
            text(_address(host)),
            text(host.key_type),
            text(host.fingerprint),
            text(host.trusted_by),
            format_time(host.trusted_at)[:16],
        )
    return table


def run_trust(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client()
    request = console_pb2.TrustHostRequest(address=args.address, fingerprint=args.fingerprint)
    response = client.call(client.stub.TrustHost, request)
    ctx.out.emit_message(response)
    host = response.host
    ctx.out.done(
        f"trusted the {host.key_type} key of {_address(host)} ({host.fingerprint}): the server "
        "may now log in there with a stored credential"
    )
    return 0


def run_list(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client()
    response = client.call(client.stub.ListHosts, console_pb2.ListHostsRequest())
    if not response.hosts and not ctx.out.json_mode:
        ctx.out.done(
            "no host key is trusted: an l2 trusts one with `sonde hosts trust HOST "
            "--fingerprint SHA256:...`"
        )
        return 0
    ctx.out.result(response, hosts_table(response.hosts))
    return 0


def run_forget(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client()
    response = client.call(
        client.stub.ForgetHost, console_pb2.ForgetHostRequest(address=args.address)
    )
    ctx.out.emit_message(response)
    gone = ", ".join(f"{key.key_type} {key.fingerprint}" for key in response.forgotten)
    ctx.out.done(
        f"forgot {gone} for {args.address}: the server will refuse it until a key is trusted again"
    )
    return 0
