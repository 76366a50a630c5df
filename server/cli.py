"""`sonde-server`: set up a data folder, run the server, and the admin's offline commands."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import logging
import re
import signal
import sys
import urllib.parse
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import sonde
from sonde.server import exit_codes, pki
from sonde.server.audit_checkpoints import checkpoint_path, read_checkpoint
from sonde.server.audit_key import audit_key_path, ensure_audit_key, load_audit_key
from sonde.server.credential_key import credential_key_for_store
from sonde.server.database_errors import database_refusal
from sonde.server.domain.audit import AuditCheckpoint, AuditKey, AuditLog
from sonde.server.domain.audited import AuditedWrites
from sonde.server.domain.enrollment_tokens import MAX_TTL, MAX_USES, MIN_TTL, EnrollmentTokens
from sonde.server.domain.roles import Principal, Role
from sonde.server.domain.users import Users
from sonde.server.enrollment_issuer import BundleIssuer
from sonde.server.errors import SondeError
from sonde.server.folder_lock import DataFolderInUse, FolderLock
from sonde.server.intake.mail_sender import BadRelay, smtp_relay
from sonde.server.intake.mailbox_settings import BadMailbox, mailbox_account
from sonde.server.intake.smtp_notify import mail_address
from sonde.server.packaging.command import add_package_parser
from sonde.server.settings import (
    DEFAULT_AGENT_ADDRESS,
    DEFAULT_CONSOLE_ADDRESS,
    DEFAULT_HEARTBEAT_INTERVAL_S,
    DEFAULT_MAX_CONNECTING,
    DataDir,
    ServerConfig,
    advertised_address,
    check_advertised_address,
    is_wildcard,
    split_address,
)
from sonde.server.storage.db import Database, _sqlite_path, database_url, migrate

log = logging.getLogger("sonde-server")

# Who the admin commands run as; the domain audits their changes under this name.
SERVER_ADMIN = Principal(user_id=0, name="sonde-server", role=Role.ADMIN)

_DURATION = re.compile(r"^(\d+)\s*([smhd])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> dt.timedelta:
    """'90s', '30m', '1h', '7d' -> timedelta."""
    match = _DURATION.match(text.strip().lower())
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 30m, 1h or 7d")
    return dt.timedelta(seconds=int(match.group(1)) * _UNIT_SECONDS[match.group(2)])


def _token_uses(text: str) -> int:
    """--uses, refused here as the server would refuse it."""
    if not text.strip().isdigit() or not 1 <= int(text) <= MAX_USES:
        raise argparse.ArgumentTypeError(f"{text!r}: expected 1 to {MAX_USES}")
    return int(text)


def _token_ttl(text: str) -> dt.timedelta:
    """--ttl, refused here as the server would refuse it."""
    try:
        ttl = parse_duration(text)
    except argparse.ArgumentTypeError:
        ttl = None
    if ttl is None or not MIN_TTL <= ttl <= MAX_TTL:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected between 1m and 30d (a duration like 30m, 1h or 7d)"
        )
    return ttl


def _address(text: str) -> str:
    try:
        split_address(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def _agent_address(text: str) -> str:
    try:
        return check_advertised_address(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _database_option(text: str) -> str:
    try:
        database_url(Path("."), text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def _emit(args: argparse.Namespace, payload: dict[str, Any], text: str) -> None:
    print(json.dumps(payload, indent=2) if args.json else text)


def _db_url(data: DataDir, config: ServerConfig, override: str | None) -> str:
    return database_url(data.root, override or config.database_url)


def _audit_key(data: DataDir) -> AuditKey | None:
    """The data folder's audit key (None in a folder made before there was one)."""
    return load_audit_key(audit_key_path(data.pki.root))


def _audited(db: Database, data: DataDir) -> AuditedWrites:
    """Audited writes of an admin command, linked with the data folder's audit key."""
    return AuditedWrites(db, key=_audit_key(data))


async def _with_db(url: str, work: Callable[[Database], Awaitable[int]]) -> int:
    try:
        db = await Database.open(url)
        try:
            return await work(db)
        finally:
            await db.close()
    except Exception as error:
        refusal = database_refusal(url, error)
        if refusal is None:
            raise
        raise refusal from None


def _migrate(url: str) -> None:
    """migrate(), with a database that refuses us or is not there said in one line."""
    try:
        migrate(url)
    except Exception as error:
        refusal = database_refusal(url, error)
        if refusal is None:
            raise
        raise refusal from None


# -- init ------------------------------------------------------------------------------------


def _unreachable(args: argparse.Namespace) -> str | None:
    """Why enrollment strings made from these options would name an address nobody reaches."""
    for host in args.host:
        if is_wildcard(host):
            return f"--host {host}: that means every address; give the name workstations use"
    if args.host:
        return None  # a listener on every address is reached by the first --host
    if is_wildcard(split_address(args.listen)[0]):
        return (
            f"--listen {args.listen} listens on every address, and no name says which one "
            "workstations reach: add --host NAME (the server certificate names it too)"
        )
    if is_wildcard(split_address(args.agent_listen)[0]) and not args.agent_address:
        return (
            f"--agent-listen {args.agent_listen} listens on every address, and no name says "
            "which one agents reach: add --host NAME, or --agent-address HOST:PORT"
        )
    return None


def _cannot_create(folder: Path, error: OSError) -> str:
    """Why init cannot make the data folder, and the command that makes it for the server."""
    reason = error.strerror or str(error)
    where = f" ({error.filename})" if error.filename and str(error.filename) != str(folder) else ""
    return (
        f"cannot create the data folder {folder}: {reason}{where}; create it first as root for "
        f"the user the server runs as (install -d -m 700 -o USER -g USER {folder}), or give "
        "--data a folder this user can create"
    )


def _print_refusals(doing: str, problems: list[str]) -> None:
    for line in problems:
        print(f"sonde-server: refusing to {doing}: {line}", file=sys.stderr)


def cmd_init(args: argparse.Namespace) -> int:
    unreachable = _unreachable(args)
    if unreachable:
        print(f"sonde-server init: {unreachable}", file=sys.stderr)
        return exit_codes.USAGE
    data = DataDir(args.data)
    if data.is_initialised():
        print(f"sonde-server: {data.root} is already initialised", file=sys.stderr)
        return 1
    try:
        # A link, another user's folder or what was planted in it would hold our keys.
        problems = data.permission_problems(None, root_mode=False)
    except (FileNotFoundError, NotADirectoryError):
        problems = []  # not there yet: made below, or refused saying why it cannot be
    if problems:
        _print_refusals("initialise", problems)
        return exit_codes.ERROR
    try:
        data.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        data.root.chmod(0o700)
    except OSError as error:
        print(f"sonde-server: {_cannot_create(data.root, error)}", file=sys.stderr)
        return exit_codes.ERROR
    config = ServerConfig(
        console_address=args.listen,
        agent_address=args.agent_listen,
        hosts=list(args.host),
        heartbeat_interval_s=DEFAULT_HEARTBEAT_INTERVAL_S,
        database_url=args.db,
        agent_addresses=list(args.agent_address),
    )
    url = _db_url(data, config, None)
    _migrate(url)  # first: a database that refuses us leaves no keys behind to trip a retry
    pki.initialise(data.pki, config.hosts)
    audit_key, _ = ensure_audit_key(data.pki.root)  # the first audit row is keyed already
    credential_key_for_store(data.pki.root, {})  # pki/credentials.key: none is stored yet

    async def create_admin(db: Database) -> int:
        users = Users(db, writes=AuditedWrites(db, key=audit_key))
        _, token = await users.add_first_admin(SERVER_ADMIN, hosts=config.hosts)
        payload = {
            "data": str(data.root),
            "admin_user": "admin",
            "admin_token": token,
            "ca_certificate": str(data.pki.ca_certificate),
            "console_address": config.console_address,
            "agent_address": config.agent_address,
            "agent_addresses": config.agent_addresses,
            "catalog_key": str(data.pki.catalog_key),
            "catalog_public_key": str(data.pki.catalog_public_key),
        }
        told = ", ".join(config.agent_addresses)
        _emit(
            args,
            payload,
            f"Initialised {data.root}\n"
            f"  CA certificate : {data.pki.ca_certificate}\n"
            f"  console        : {config.console_address}\n"
            f"  agents (mTLS)  : {config.agent_address}\n"
            + (f"  agents told    : {told}\n" if told else "")
            + f"  catalog key    : {data.pki.catalog_key}\n"
            "    signs the script catalog (sonde-catalog sign); the server reads only "
            f"{data.pki.catalog_public_key.name}.\n"
            "    In production move catalog.key to an offline machine (docs/remediation.md)\n"
            f"Admin API token (shown once, keep it safe):\n  {token}\n"
            f"Next: sonde-server run --data {data.root}",
        )
        return 0

    data.save_config(config)
    return asyncio.run(_with_db(url, create_admin))


# -- run -------------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    if args.package_listen and not args.msi:
        print(
            "sonde-server: --package-listen serves the agent's MSI: give it with --msi FILE",
            file=sys.stderr,
        )
        return exit_codes.ERROR
    mailbox = None
    if args.mailbox:
        try:
            mailbox = mailbox_account(
                args.mailbox,
                password_file=args.mailbox_password_file,
                ca_file=args.mailbox_ca,
                done_folder=args.mailbox_done_folder,
            )
        except BadMailbox as error:
            print(f"sonde-server: {error}", file=sys.stderr)
            return exit_codes.ERROR
        if not 5 <= args.mail_interval <= 3600:
            print("sonde-server: --mail-interval is from 5 to 3600 seconds", file=sys.stderr)
            return exit_codes.ERROR
    args.mailbox_account = mailbox
    if not 1 <= args.monitoring_min_interval <= 3600:
        print("sonde-server: --monitoring-min-interval is from 1 to 3600 seconds", file=sys.stderr)
        return exit_codes.ERROR
    if not 1 <= args.sla_interval <= 300:
        print("sonde-server: --sla-interval is from 1 to 300 seconds", file=sys.stderr)
        return exit_codes.ERROR
    args.smtp_relay = None
    if args.smtp:
        try:
            args.smtp_relay = smtp_relay(args.smtp, ca_file=args.smtp_ca)
            mail_address(args.smtp_from or "")
        except (BadRelay, ValueError) as error:
            said = str(error) if isinstance(error, BadRelay) else f"--smtp-from: {error}"
            print(f"sonde-server: {said}", file=sys.stderr)
            return exit_codes.ERROR
    data = DataDir(args.data)
    data.require_initialised()
    config = data.load_config()
    url = _db_url(data, config, args.db)
    # Before the lock and the migration: a refusal changes nothing.
    problems = data.permission_problems(_sqlite_path(url))
    if problems:
        _print_refusals("start", problems)
        return exit_codes.ERROR
    try:
        pki.load_catalog_public_key(data.pki)
        # Writes dispatch.pub from dispatch.key in a data folder from before it existed.
        pki.load_dispatch_public_key(data.pki)
    except (pki.CatalogKeyDamaged, pki.DispatchKeyDamaged) as error:
        print(f"sonde-server: refusing to start: {error}", file=sys.stderr)
        return exit_codes.ERROR
    try:
        # Held until the process ends: one server per data folder.
        lock = FolderLock.acquire(data.root)
    except DataFolderInUse as error:
        print(f"sonde-server: {error}", file=sys.stderr)
        return exit_codes.DATA_FOLDER_IN_USE
    except OSError as error:
        print(f"sonde-server: cannot lock the data folder {data.root}: {error}", file=sys.stderr)
        return exit_codes.ERROR
    with lock:
        return _run_locked(args, data, config, url)


def _run_locked(args: argparse.Namespace, data: DataDir, config: ServerConfig, url: str) -> int:
    from sonde.server.api.app import RunOptions, serve  # the gRPC stack only when serving
    from sonde.server.api.connection_limits import warn_if_over_file_limit
    from sonde.server.api.listeners import CannotListen
    from sonde.server.file_limit import raise_open_file_limit

    _migrate(url)
    limits = config.limits()
    open_files = raise_open_file_limit()
    warn_if_over_file_limit(
        limits, open_files[0] if open_files else None, web_form=bool(args.web_listen)
    )
    options = RunOptions(
        data=data,
        console_address=args.listen or config.console_address,
        agent_address=args.agent_listen or config.agent_address,
        database_url=url,
        heartbeat_interval_s=args.heartbeat_interval or config.heartbeat_interval_s,
        server_name=config.server_name,
        agent_addresses=tuple(config.agent_addresses),
        max_connecting=args.max_connecting,
        limits=limits,
        wheelhouse=args.wheelhouse,
        msi=args.msi,
        package_address=args.package_listen or "",
        mailbox=args.mailbox_account,
        mail_interval_s=args.mail_interval,
        smtp=args.smtp_relay,
        smtp_from=args.smtp_from or "",
        monitoring_min_interval_s=args.monitoring_min_interval,
        sla_interval_s=args.sla_interval,
        web_address=args.web_listen or "",
        web_url=args.web_url or "",
    )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await serve(options, stop)

    try:
        asyncio.run(main())
    except CannotListen as error:
        print(f"sonde-server: {error}", file=sys.stderr)
        return exit_codes.CANNOT_LISTEN
    return exit_codes.OK


# -- token create ----------------------------------------------------------------------------


def cmd_token_create(args: argparse.Namespace) -> int:
    data = DataDir(args.data)
    data.require_initialised()
    config = data.load_config()
    running = data.read_listening()
    # As the running server does: a listener on every address is reached by the server's name.
    console_address = (
        running["console_address"]
        if running
        else advertised_address(config.console_address, config.server_name)
    )
    agent_address = (
        running["agent_address"]
        if running
        else advertised_address(config.agent_address, config.server_name)
    )
    advertised = list(args.agent_address) or config.agent_addresses
    if split_address(console_address)[1] == 0 or (
        not advertised and split_address(agent_address)[1] == 0
    ):
        print(
            "sonde-server: the server is not running and its ports are chosen at start (0); "
            "start it first, or give fixed ports to init",
            file=sys.stderr,
        )
        return 1
    authority_der = data.pki.ca_certificate.read_bytes()
    issuer = BundleIssuer(_pem_to_der(authority_der), config.server_name, advertised)
    issuer.set_addresses(console_address, agent_address)

    async def create(db: Database) -> int:
        issuer.set_tokens(EnrollmentTokens(db, writes=_audited(db, data)))
        issued = await issuer.issue(SERVER_ADMIN, uses=args.uses, ttl=args.ttl)
        payload = {
            "enrollment": issued.enrollment,
            "token_id": issued.token_id,
            "expires_at": issued.expires_at.isoformat(),
            "uses": issued.uses,
        }
        _emit(args, payload, issued.enrollment)
        if not args.json:
            print(
                f"(token {issued.token_id}: {issued.uses} use(s), expires "
                f"{issued.expires_at:%Y-%m-%d %H:%M} UTC; on the workstation run "
                "`sonde-agent enroll <string>`)",
                file=sys.stderr,
            )
        return 0

    return asyncio.run(_with_db(_db_url(data, config, args.db), create))


def _pem_to_der(pem: bytes) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    return x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)


# -- user add --------------------------------------------------------------------------------


def cmd_user_add(args: argparse.Namespace) -> int:
    data = DataDir(args.data)
    data.require_initialised()
    config = data.load_config()
    role = Role.parse(args.role)

    async def add(db: Database) -> int:
        user, token = await Users(db, writes=_audited(db, data)).add(SERVER_ADMIN, args.name, role)
        payload = {"name": user.name, "role": role.label, "api_token": token}
        _emit(args, payload, f"User {user.name} ({role.label}). API token (shown once):\n  {token}")
        return 0

    return asyncio.run(_with_db(_db_url(data, config, args.db), add))


# -- audit verify ----------------------------------------------------------------------------


def _expected_checkpoint(text: str) -> AuditCheckpoint:
    rows, _, head_hash = text.partition(":")
    if not rows.isdigit() or not re.fullmatch(r"[0-9a-f]{64}", head_hash):
        raise argparse.ArgumentTypeError(
            f"{text!r}: give ROWS:HASH, the row count and the 64 hex digits of the head's hash "
            "(SONDE_AUDIT_ROWS and SONDE_AUDIT_HEAD of a journal entry)"
        )
    return AuditCheckpoint(rows=int(rows), head_hash=head_hash, at=None)


def _checkpoint_to_verify(
    args: argparse.Namespace, data: DataDir, key: AuditKey | None
) -> tuple[AuditCheckpoint | None, str]:
    """The checkpoint `audit verify` compares with, and where it comes from (or why none)."""
    if args.no_checkpoint:
        return None, "--no-checkpoint"
    if args.expect is not None:
        return args.expect, "--expect"
    path = checkpoint_path(data.root)
    if key is None:
        return None, f"this data folder has no audit key, so {path} cannot be checked"
    checkpoint = read_checkpoint(path, key)
    if checkpoint is None:
        return None, f"{path} does not exist yet: the server writes it while it runs"
    return checkpoint, str(path)


def cmd_audit_verify(args: argparse.Namespace) -> int:
    data = DataDir(args.data)
    data.require_initialised()
    config = data.load_config()
    key = _audit_key(data)
    checkpoint, source = _checkpoint_to_verify(args, data, key)

    async def verify(db: Database) -> int:
        result = await AuditLog(db, key=key).verify(checkpoint)
        payload = {
            "ok": result.ok,
            "rows": result.rows,
            "first_bad_id": result.first_bad_id,
            "reason": result.reason,
            "checkpoint": None
            if checkpoint is None
            else {
                "source": source,
                "rows": checkpoint.rows,
                "head_hash": checkpoint.head_hash,
                "at": None if checkpoint.at is None else checkpoint.at.isoformat(),
            },
        }
        text = (
            f"audit log intact: {result.reason}"
            if result.ok
            else f"AUDIT LOG TAMPERED at row {result.first_bad_id}: {result.reason}"
        )
        if result.ok and checkpoint is None:
            text += f"\n(no checkpoint to compare with: {source})"
        _emit(args, payload, text)
        return 0 if result.ok else 1

    return asyncio.run(_with_db(_db_url(data, config, args.db), verify))


# -- parser ----------------------------------------------------------------------------------


def _deploy_option(run: argparse.ArgumentParser) -> None:
    """`run`'s last options, and its handler."""
    run.add_argument(
        "--sla-interval",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how often the SLA watch looks for clocks at risk or breached (docs/sla.md; 1 to 300)",
    )
    run.add_argument(
        "--monitoring-min-interval",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="the shortest monitoring interval a group may have (docs/monitoring.md; 1 to 3600)",
    )
    run.add_argument(
        "--wheelhouse",
        type=Path,
        metavar="DIR",
        help="the agent's wheels and pip's, which `sonde deploy` installs on Linux hosts "
        "(docs/deploy.md); without it deploy is refused",
    )
    run.add_argument(
        "--msi",
        type=Path,
        metavar="FILE",
        help="the agent's sonde-agent-VERSION.msi, which `sonde deploy --winrm` installs",
    )
    run.add_argument(
        "--package-listen",
        type=_address,
        metavar="HOST:PORT",
        help="serve the --msi over HTTPS here, for Windows hosts to fetch it instead of "
        "having it streamed over WinRM (docs/deploy.md)",
    )
    run.add_argument(
        "--mailbox",
        metavar="URL",
        help="read this mailbox for tickets: imaps://USER@HOST[:PORT]/FOLDER or "
        "imap+starttls://...; the password from SONDE_MAILBOX_PASSWORD or "
        "--mailbox-password-file (docs/mail.md)",
    )
    run.add_argument("--mailbox-password-file", type=Path, metavar="FILE")
    run.add_argument(
        "--mailbox-ca", type=Path, metavar="FILE", help="the CA of the mail server's certificate"
    )
    run.add_argument(
        "--mailbox-done-folder",
        metavar="FOLDER",
        help="move each mail taken there (default: flag it read)",
    )
    run.add_argument(
        "--mail-interval", type=float, default=60.0, metavar="S", help="seconds between reads"
    )
    run.add_argument(
        "--smtp",
        metavar="URL",
        help="mail requesters on open and resolve through this relay: "
        "smtp+starttls://[USER@]HOST[:PORT] or smtps://...; a login's password from "
        "SONDE_SMTP_PASSWORD (docs/mail.md)",
    )
    run.add_argument("--smtp-from", metavar="ADDRESS", help="the notifications' sender")
    run.add_argument("--smtp-ca", type=Path, metavar="FILE", help="the relay certificate's CA")
    _web_arguments(run)
    run.set_defaults(handler=cmd_run)


def _web_arguments(run: argparse.ArgumentParser) -> None:
    run.add_argument(
        "--web-listen",
        type=_address,
        metavar="HOST:PORT",
        help="serve the self-service request form and the satisfaction question over HTTPS "
        "here, with the server's certificate (docs/web.md)",
    )
    run.add_argument(
        "--web-url",
        type=_web_url,
        metavar="URL",
        help="how requesters reach the form, for the rating links in the resolve mails "
        "(default: https://HOST:PORT of --web-listen)",
    )


def _web_url(value: str) -> str:
    parsed = urllib.parse.urlsplit(value.strip())
    if parsed.scheme != "https" or not parsed.hostname or parsed.query or parsed.fragment:
        raise argparse.ArgumentTypeError(
            f"--web-url {value[:80]!r}: an https:// URL, such as https://helpdesk.example.org"
        )
    return value.strip().rstrip("/")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sonde-server", description="Sonde's central server and its admin commands."
    )
    parser.add_argument("--version", action="version", version=sonde.version_line("sonde-server"))
    commands = parser.add_subparsers(dest="command", required=True)

    def agent_address_option(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--agent-address",
            type=_agent_address,
            action="append",
            default=[],
            metavar="HOST:PORT",
            help="an agent listener that enrollment strings name, in the order agents try "
            "them (repeat, one per replica; default: this server's own)",
        )

    def data_option(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data", type=Path, required=True, help="the server's data folder")
        p.add_argument(
            "--db",
            type=_database_option,
            help="database URL, postgresql://USER@HOST/DB (default: SQLite in the data folder)",
        )

    init = commands.add_parser("init", help="create the CA, keys, database and the admin token")
    data_option(init)
    init.add_argument("--host", action="append", default=[], help="a name the server is reached by")
    init.add_argument("--listen", type=_address, default=DEFAULT_CONSOLE_ADDRESS)
    init.add_argument("--agent-listen", type=_address, default=DEFAULT_AGENT_ADDRESS)
    agent_address_option(init)
    init.add_argument("--json", action="store_true")
    init.set_defaults(handler=cmd_init)

    run = commands.add_parser("run", help="serve agents and technicians")
    data_option(run)
    run.add_argument("--listen", type=_address, help="console listener HOST:PORT")
    run.add_argument("--agent-listen", type=_address, help="agent (mTLS) listener HOST:PORT")
    run.add_argument("--heartbeat-interval", type=int, help="seconds between agent heartbeats")
    run.add_argument(
        "--max-connecting",
        type=int,
        default=DEFAULT_MAX_CONNECTING,
        metavar="N",
        help="agents between connection and Welcome at once; more are told to retry later "
        f"(default {DEFAULT_MAX_CONNECTING})",
    )
    _deploy_option(run)

    token = commands.add_parser("token", help="enrollment tokens")
    token_commands = token.add_subparsers(dest="token_command", required=True)
    create = token_commands.add_parser("create", help="print one enrollment string")
    data_option(create)
    create.add_argument("--uses", type=_token_uses, default=1, help="1 to 1000 (default 1)")
    create.add_argument(
        "--ttl", type=_token_ttl, default=dt.timedelta(hours=1), help="1m to 30d (default 1h)"
    )
    agent_address_option(create)
    create.add_argument("--json", action="store_true")
    create.set_defaults(handler=cmd_token_create)

    user = commands.add_parser("user", help="technicians and admins")
    user_commands = user.add_subparsers(dest="user_command", required=True)
    add = user_commands.add_parser("add", help="add a user and print their API token")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=["l1", "l2", "admin"])
    data_option(add)
    add.add_argument("--json", action="store_true")
    add.set_defaults(handler=cmd_user_add)

    audit = commands.add_parser("audit", help="the audit log")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True)
    verify = audit_commands.add_parser(
        "verify",
        help="check the audit log's hash chain, and that it still reaches its last checkpoint",
    )
    data_option(verify)
    against = verify.add_mutually_exclusive_group()
    against.add_argument(
        "--expect",
        metavar="ROWS:HASH",
        type=_expected_checkpoint,
        help="compare with this checkpoint (from the system journal: SONDE_AUDIT_ROWS and "
        "SONDE_AUDIT_HEAD) instead of the data folder's",
    )
    against.add_argument(
        "--no-checkpoint", action="store_true", help="check the chain alone, with no checkpoint"
    )
    verify.add_argument("--json", action="store_true")
    verify.set_defaults(handler=cmd_audit_verify)
    add_package_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    args = build_parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    except SondeError as error:
        print(f"sonde-server: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
