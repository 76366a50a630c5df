"""`sonde credentials add|list|remove`: the credentials the server logs in with to reach a
machine without its agent (SSH, WinRM). The server does the connecting: the secret goes to it
once, here, and never comes back.

A secret is never taken on the command line (other users see it in the process list, and it
stays in the shell's history): a password or passphrase comes from SONDE_CREDENTIAL_SECRET or
a prompt that does not echo, a private key from the file --key-file names.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.text import Text

from sonde.server.console.context import Context
from sonde.server.console.errors import CliError
from sonde.server.console.layout import Column, Give, ListTable
from sonde.server.console.render import format_time, text
from sonde.server.console.secret_options import refuse_secret_options
from sonde.v1 import console_pb2

SECRET_VARIABLE = "SONDE_CREDENTIAL_SECRET"  # noqa: S105 (the variable's name)
MAX_KEY_FILE_BYTES = 16 * 1024
KINDS = {
    "ssh-password": console_pb2.CREDENTIAL_KIND_SSH_PASSWORD,
    "ssh-key": console_pb2.CREDENTIAL_KIND_SSH_PRIVATE_KEY,
    "winrm-password": console_pb2.CREDENTIAL_KIND_WINRM_PASSWORD,
}
_KIND_LABELS = {value: label for label, value in KINDS.items()}
_INSTEAD = (
    f"set {SECRET_VARIABLE}, or answer the prompt; a private key is read from the file "
    "--key-file names"
)


def kind(value: str) -> console_pb2.CredentialKind.ValueType:
    key = value.strip().lower()
    if key not in KINDS:
        raise argparse.ArgumentTypeError(f"unknown kind {value!r}: expected {', '.join(KINDS)}")
    return KINDS[key]


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    credentials = commands.add_parser(
        "credentials",
        parents=[common],
        help="credentials for agentless SSH and WinRM (list: l2, add/remove: admin)",
        description="The credentials the server logs in with to reach a machine without its "
        "agent. Their secrets stay on the server: nothing here shows one.",
    )
    credentials.set_defaults(handler=run_list)
    verbs = credentials.add_subparsers(dest="credentials_command", metavar="{add,list,remove}")
    add = verbs.add_parser(
        "add",
        parents=[common],
        help="store a credential on the server (its secret from the environment or a prompt)",
        description=f"The password or passphrase comes from {SECRET_VARIABLE} or a prompt "
        "that does not echo; a private key from --key-file. Never from the command line.",
    )
    add.add_argument("name", metavar="NAME", help="what technicians type, e.g. helpdesk-ssh")
    add.add_argument(
        "--kind", type=kind, required=True, help="ssh-key, ssh-password or winrm-password"
    )
    add.add_argument("--user", required=True, help="the user it logs in as")
    add.add_argument(
        "--hosts",
        required=True,
        help="the hosts it is for, comma-separated: names, addresses, *.corp.lan, 10.1.2.*",
    )
    add.add_argument("--key-file", type=Path, help="the private key file (ssh-key)")
    add.add_argument("--note", default="", help="what it is for, shown in the list")
    refuse_secret_options(add, _INSTEAD)
    add.set_defaults(handler=run_add)
    listed = verbs.add_parser("list", parents=[common], help="list the stored credentials")
    listed.set_defaults(handler=run_list)
    remove = verbs.add_parser(
        "remove", parents=[common], help="delete a credential and its secret from the server"
    )
    remove.add_argument("name", metavar="NAME")
    remove.set_defaults(handler=run_remove)


def _read_key_file(path: Path) -> str:
    if str(path).lstrip().startswith("-----BEGIN"):
        raise CliError("INVALID_ARGUMENT", "--key-file takes the key's file name, not the key")
    try:
        with path.open("rb") as file:
            data = file.read(MAX_KEY_FILE_BYTES + 1)
    except OSError as error:
        raise CliError(
            "INVALID_ARGUMENT", f"cannot read the key file {path}: {error.strerror}"
        ) from None
    if len(data) > MAX_KEY_FILE_BYTES:
        raise CliError(
            "INVALID_ARGUMENT",
            f"{path} is larger than any private key ({MAX_KEY_FILE_BYTES // 1024} KiB at most)",
        )
    try:
        return data.decode("ascii")
    except UnicodeDecodeError:
        raise CliError(
            "INVALID_ARGUMENT", f"{path} is not an OpenSSH or PEM private key (text)"
        ) from None


def _key_is_encrypted(key_text: str) -> bool:
    """Whether the key needs a passphrase (asked then, not otherwise); the server checks it."""
    from cryptography.exceptions import UnsupportedAlgorithm  # only for ssh-key
    from cryptography.hazmat.primitives import serialization

    data = key_text.encode()
    try:
        if b"BEGIN OPENSSH PRIVATE KEY" in data:
            serialization.load_ssh_private_key(data, None)
        else:
            serialization.load_pem_private_key(data, None)
    except TypeError:  # "Password was not given but private key is encrypted"
        return True
    except (ValueError, UnsupportedAlgorithm):  # the server says what is wrong with it
        return False
    return False


def _secret_from(ctx: Context, what: str) -> str:
    """The environment's SONDE_CREDENTIAL_SECRET, or a prompt that does not echo."""
    given = ctx.env.get(SECRET_VARIABLE)
    if given is not None:
        return given
    if not sys.stdin.isatty():
        raise CliError(
            "INVALID_ARGUMENT",
            f"no terminal to ask for the {what} on: set {SECRET_VARIABLE}",
        )
    first = getpass.getpass(f"{what}: ")
    if getpass.getpass(f"{what} again: ") != first:
        raise CliError("INVALID_ARGUMENT", f"the two {what}s differ: nothing was stored")
    return first


def run_add(args: argparse.Namespace, ctx: Context) -> int:
    secret, passphrase = "", ""
    if args.kind == console_pb2.CREDENTIAL_KIND_SSH_PRIVATE_KEY:
        if args.key_file is None:
            raise CliError("INVALID_ARGUMENT", "--kind ssh-key needs --key-file FILE")
        secret = _read_key_file(args.key_file)
        if SECRET_VARIABLE in ctx.env or _key_is_encrypted(secret):
            passphrase = _secret_from(ctx, "key passphrase")
    else:
        if args.key_file is not None:
            raise CliError("INVALID_ARGUMENT", "--key-file is for --kind ssh-key only")
        secret = _secret_from(ctx, "password")
    client = ctx.client()
    request = console_pb2.AddCredentialRequest(
        name=args.name,
        kind=args.kind,
        user=args.user,
        hosts=[host for host in (part.strip() for part in args.hosts.split(",")) if host],
        note=args.note,
        secret=secret,
        passphrase=passphrase,
    )
    response = client.call(client.stub.AddCredential, request)
    ctx.out.emit_message(response)
    added = response.credential
    fingerprint = f", key {added.key_fingerprint}" if added.key_fingerprint else ""
    ctx.out.done(
        f"stored credential {added.name} ({kind_label(added.kind)} for {added.user} on "
        f"{', '.join(added.hosts)}{fingerprint}): its secret stays on the server"
    )
    return 0


def kind_label(value: console_pb2.CredentialKind.ValueType) -> str:
    return _KIND_LABELS.get(value, "unknown")


def credentials_table(credentials: Sequence[console_pb2.RemoteCredential]) -> ListTable:
    """One row a credential at 80 columns; a key's fingerprint and the note under it."""
    table = ListTable(
        "Credentials for agentless reach",
        [
            Column("name"),
            Column("kind"),
            Column("user", Give.CUT),
            Column("hosts", Give.WRAP),
            Column("added by", Give.CUT, optional=True),
            Column("added", optional=True),
        ],
    )
    for credential in credentials:
        detail = " · ".join(
            part
            for part in (
                f"key {credential.key_fingerprint}" if credential.key_fingerprint else "",
                credential.note,
            )
            if part
        )
        table.add_row(
            text(credential.name),
            kind_label(credential.kind),
            text(credential.user),
            text(", ".join(credential.hosts)),
            text(credential.added_by),
            format_time(credential.added_at)[:10],
            detail=Text(detail, style="dim") if detail else None,
        )
    return table


def run_list(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client()
    response = client.call(client.stub.ListCredentials, console_pb2.ListCredentialsRequest())
    if not response.credentials and not ctx.out.json_mode:
        ctx.out.done(
            "no credentials are stored: an admin adds one with `sonde credentials add NAME "
            "--kind ssh-key --user USER --hosts PATTERN --key-file FILE`"
        )
        return 0
    ctx.out.result(response, credentials_table(response.credentials))
    return 0


def run_remove(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client()
    request = console_pb2.RemoveCredentialRequest(name=args.name)
    response = client.call(client.stub.RemoveCredential, request)
    ctx.out.emit_message(response)
    removed = response.credential
    ctx.out.done(
        f"removed credential {removed.name} ({kind_label(removed.kind)} for {removed.user}): "
        "its secret is deleted from the server"
    )
    return 0
