"""`sonde hosts trust|winrm|list|forget`: how the server may reach hosts without an agent.

The server logs in over SSH only to a host whose key a technician confirmed: read the
fingerprint on the machine's own console (`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`),
or from the inventory, and give it to `trust`. The server reads the key the host offers and
keeps it only when the fingerprints match. `winrm` stores how the server talks WinRM to a
host (without it: HTTPS on 5986, NTLM, the certificate checked). `forget` is for a
reinstalled machine: its keys and its WinRM settings.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from rich.console import RenderableType

from sonde.server.console.context import Context
from sonde.server.console.hosts_winrm import add_winrm as _add_winrm
from sonde.server.console.hosts_winrm import winrm_address, winrm_table
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
        help="SSH host keys and WinRM settings for agentless reach (trust/winrm/forget: l2)",
        description="The server logs in over SSH only to hosts whose key was trusted here, "
        "by its fingerprint read out of band. Never on first use. Over WinRM it talks to a "
        "host as its settings here say; without them HTTPS 5986, NTLM, certificate checked.",
    )
    hosts.set_defaults(handler=run_list)
    verbs = hosts.add_subparsers(dest="hosts_command", metavar="{trust,winrm,list,forget}")
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
    _add_winrm(verbs, common)
    listed = verbs.add_parser("list", parents=[common], help="list the trusted host keys")
    listed.set_defaults(handler=run_list)
    forget = verbs.add_parser(
        "forget",
        parents=[common],
        help="stop trusting a host's keys and drop its WinRM settings (a reinstalled machine)",
    )
    forget.add_argument(
        "address",
        metavar="HOST[:PORT]",
        help=_ADDRESS_HELP + "; without a port also the WinRM settings of 5986 and 5985",
    )
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
    if not response.hosts and not response.winrm and not ctx.out.json_mode:
        ctx.out.done(
            "no host key is trusted and no WinRM settings are stored: an l2 trusts a key with "
            "`sonde hosts trust HOST --fingerprint SHA256:...` and sets WinRM with "
            "`sonde hosts winrm HOST`"
        )
        return 0
    shown: list[RenderableType] = []
    if response.hosts:
        shown.append(hosts_table(response.hosts))
    if response.winrm:
        shown.append(winrm_table(response.winrm))
    ctx.out.result(response, *shown)
    return 0


def run_forget(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client()
    response = client.call(
        client.stub.ForgetHost, console_pb2.ForgetHostRequest(address=args.address)
    )
    ctx.out.emit_message(response)
    if response.forgotten:
        gone = ", ".join(f"{key.key_type} {key.fingerprint}" for key in response.forgotten)
        ctx.out.done(
            f"forgot {gone} for {args.address}: the server will refuse it until a key is "
            "trusted again"
        )
    if response.forgotten_winrm:
        where = ", ".join(winrm_address(host) for host in response.forgotten_winrm)
        ctx.out.done(
            f"dropped the WinRM settings of {where}: it gets the defaults again (HTTPS 5986, "
            "NTLM, certificate checked)"
        )
    return 0
