"""The credentials the server logs in with to reach a machine without its agent (SSH, WinRM).

A credential has a name technicians type (`helpdesk-ssh`), a kind, the user it logs in as and
the hosts it is for (server/domain/host_patterns.py); it is never sent to another host, even
when named. Its secret is sealed with pki/credentials.key (server/domain/credential_secrets.py)
and leaves this module only inside a server/remote/credentials.py Credential, whose repr never
shows it, for the transport that connects: no listing and no API answer holds it. Adding and
removing are audited in the change's transaction (`credential.add`, `credential.remove`), never
with the secret. Using a credential is checked by whoever connects (diagnostics.run,
scripts.run.*), not here.
"""

from __future__ import annotations

import builtins
import enum
import json
import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, delete, func, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from sonde.server.domain import hashed_secrets
from sonde.server.domain.audited import AuditedWrites, AuditEntry
from sonde.server.domain.clock import Clock, utc_now
from sonde.server.domain.credential_secrets import (
    Binding,
    CredentialKey,
    CredentialSecret,
    NotOpened,
    Sealed,
    open_sealed,
    private_key_fingerprint,
    seal,
)
from sonde.server.domain.host_patterns import (
    HostPattern,
    best_match,
    normalized_host,
    parse_hosts,
)
from sonde.server.domain.roles import Principal
from sonde.server.domain.text import checked_text
from sonde.server.errors import Conflict, InvalidArgument, NotFound
from sonde.server.remote.credentials import Credential
from sonde.server.remote.shell import RemoteTarget, Transport
from sonde.server.storage.db import Database
from sonde.server.storage.tables import remote_credentials
from sonde.server.storage.types import AnyRow

MAX_HOST_PATTERNS = 32
MAX_USER_CHARS = 128
MAX_NOTE_CHARS = 500
MAX_PASSWORD_CHARS = 1024
MAX_KEY_CHARS = 16 * 1024
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_ADD_HINT = "sonde credentials add NAME --kind {kind} --user USER --hosts PATTERN"


class CredentialKind(enum.StrEnum):
    SSH_PASSWORD = "ssh_password"  # noqa: S105 (a kind's name, not a password)
    SSH_PRIVATE_KEY = "ssh_private_key"  # OpenSSH or PEM private key text, optional passphrase
    WINRM_PASSWORD = "winrm_password"  # noqa: S105

    @property
    def transport(self) -> Transport:
        return Transport.WINRM if self is CredentialKind.WINRM_PASSWORD else Transport.SSH


@dataclass(frozen=True)
class CredentialInfo:
    """A credential as listings show it: never its secret."""

    id: str
    name: str
    kind: CredentialKind
    user: str
    hosts: tuple[str, ...]
    note: str
    key_fingerprint: str  # SHA256:... of a private key's public half; "" for a password
    added_by: str
    added_at: datetime


class CredentialDamaged(Conflict):
    """A stored credential does not open: another key, or its row was changed."""


_COLUMNS = remote_credentials.c
_ALL = select(remote_credentials).order_by(_COLUMNS.name)
_BY_NAME = select(remote_credentials).where(_COLUMNS.name == bindparam("wanted"))
_FOR_TRANSPORT = select(remote_credentials).where(
    _COLUMNS.kind.in_(bindparam("kinds", expanding=True))
)
_REMOVE = delete(remote_credentials).where(_COLUMNS.id == bindparam("removed_id"))
_SEALED_WITH = select(_COLUMNS.sealed_with, func.count()).group_by(_COLUMNS.sealed_with)


async def sealed_with(db: Database) -> dict[str, int]:
    """How many credentials each key id sealed: the server's start checks its key with it."""
    rows = await db.read(lambda connection: connection.execute(_SEALED_WITH).all())
    return {row[0]: row[1] for row in rows}


def _info(row: AnyRow) -> CredentialInfo:
    return CredentialInfo(
        id=row.id,
        name=row.name,
        kind=CredentialKind(row.kind),
        user=row.user_name,
        hosts=tuple(json.loads(row.hosts)),
        note=row.note,
        key_fingerprint=row.key_fingerprint,
        added_by=row.added_by,
        added_at=row.added_at,
    )


def _binding(info: CredentialInfo) -> Binding:
    return Binding(info.id, info.name, info.kind.value, info.user, info.hosts)


def checked_name(name: str) -> str:
    text = name.strip()
    if not _NAME.fullmatch(text):
        raise InvalidArgument(
            f"{text[:70]!r} is not a credential name: lower-case letters, digits, '.', '_' "
            "and '-', starting with a letter or digit, at most 64 (e.g. helpdesk-ssh)"
        )
    return text


def _insert(connection: Connection, info: CredentialInfo, sealed: Sealed) -> None:
    connection.execute(
        remote_credentials.insert(),
        {
            "id": info.id,
            "name": info.name,
            "kind": info.kind.value,
            "user_name": info.user,
            "hosts": json.dumps(list(info.hosts)),
            "note": info.note,
            "key_fingerprint": info.key_fingerprint,
            "sealed_with": sealed.key_id,
            "nonce": sealed.nonce,
            "ciphertext": sealed.ciphertext,
            "added_by": info.added_by,
            "added_at": info.added_at,
        },
    )


def _checked_secret(kind: CredentialKind, secret: str, passphrase: str) -> tuple[str, str]:
    """The secret checked (never quoted in a message) and a private key's fingerprint."""
    if not secret:
        what = "the private key's text" if kind is CredentialKind.SSH_PRIVATE_KEY else "a password"
        raise InvalidArgument(f"a {kind.value} credential needs {what}; none was given")
    if kind is CredentialKind.SSH_PRIVATE_KEY:
        if len(secret) > MAX_KEY_CHARS or len(passphrase) > MAX_PASSWORD_CHARS:
            raise InvalidArgument(f"a private key is at most {MAX_KEY_CHARS:,} characters")
        return private_key_fingerprint(secret, passphrase), passphrase
    if passphrase:
        raise InvalidArgument("a passphrase is for a private key; a password credential has none")
    if len(secret) > MAX_PASSWORD_CHARS:
        raise InvalidArgument(f"a password is at most {MAX_PASSWORD_CHARS:,} characters")
    return "", ""


class RemoteCredentials:
    """The credential store. `key` None (no pki/credentials.key): adding and using are
    refused, saying so; listing and removing still work."""

    def __init__(
        self,
        db: Database,
        writes: AuditedWrites,
        key: CredentialKey | None,
        clock: Clock = utc_now,
    ) -> None:
        self._db = db
        self._writes = writes
        self._key = key
        self._clock = clock

    def _require_key(self) -> CredentialKey:
        if self._key is None:
            raise Conflict(
                "this server has no credentials key (pki/credentials.key): start it once "
                "with its data folder, or copy pki/ from another replica"
            )
        return self._key

    async def add(
        self,
        actor: Principal,
        name: str,
        *,
        kind: CredentialKind,
        user: str,
        hosts: builtins.list[str],
        secret: str,
        passphrase: str = "",
        note: str = "",
    ) -> CredentialInfo:
        """A new credential, its secret sealed; audited as `credential.add` (never with the
        secret). A name in use is refused: remove the old one first."""
        shown_name = name.strip()[:64]

        def unit(connection: Connection, entry: AuditEntry) -> CredentialInfo:
            key = self._require_key()
            checked = checked_name(name)
            login = checked_text(
                "the user name", user, max_chars=MAX_USER_CHARS, required=True, multiline=False
            )
            patterns = parse_hosts(hosts, max_patterns=MAX_HOST_PATTERNS)
            fingerprint, kept_passphrase = _checked_secret(kind, secret, passphrase)
            info = CredentialInfo(
                id=hashed_secrets.new_id(),
                name=checked,
                kind=kind,
                user=login,
                hosts=tuple(pattern.text for pattern in patterns),
                note=checked_text("the note", note, max_chars=MAX_NOTE_CHARS),
                key_fingerprint=fingerprint,
                added_by=actor.name,
                added_at=self._clock(),
            )
            entry.detail.update(
                {"kind": kind.value, "user": login, "hosts": ",".join(info.hosts)[:200]}
            )
            if fingerprint:
                entry.detail["key_fingerprint"] = fingerprint
            sealed = seal(key, CredentialSecret(secret, kept_passphrase), _binding(info))
            try:
                _insert(connection, info, sealed)
            except IntegrityError:  # the unique name; the transaction is rolled back
                raise Conflict(
                    f"a credential named {checked!r} exists already: remove it first "
                    f"(sonde credentials remove {checked}), then add it again"
                ) from None
            return info

        return await self._writes.run(
            actor.name, "credential.add", unit, detail={"name": shown_name}, peer=actor.peer
        )

    async def list(self) -> builtins.list[CredentialInfo]:
        """Every credential, by name: what it is for, never its secret."""
        rows = await self._db.read(lambda connection: connection.execute(_ALL).all())
        return [_info(row) for row in rows]

    async def remove(self, actor: Principal, name: str) -> CredentialInfo:
        """Delete a credential and its sealed secret; audited as `credential.remove`."""

        def unit(connection: Connection, entry: AuditEntry) -> CredentialInfo:
            row = connection.execute(_BY_NAME, {"wanted": name.strip()}).first()
            if row is None:
                raise NotFound(
                    f"no credential is named {name.strip()[:64]!r} (sonde credentials list)"
                )
            info = _info(row)
            entry.detail.update({"kind": info.kind.value, "user": info.user})
            connection.execute(_REMOVE, {"removed_id": info.id})
            return info

        return await self._writes.run(
            actor.name,
            "credential.remove",
            unit,
            detail={"name": name.strip()[:64]},
            peer=actor.peer,
        )

    async def for_target(self, target: RemoteTarget, name: str | None = None) -> Credential:
        """The credential to log in to `target` with, its secret opened: the one `name`d, or
        the one whose hosts name the target's host most specifically. Either way it must be
        of the target's transport, for the target's user and for the target's host. This is
        the server's CredentialSource (server/remote/credentials.py); "" names none."""
        key = self._require_key()
        host = normalized_host(target.host)
        kinds = [kind.value for kind in CredentialKind if kind.transport is target.transport]
        hint = _ADD_HINT.format(
            kind="winrm-password" if target.transport is Transport.WINRM else "ssh-key"
        )
        if name:
            wanted = checked_name(name)
            row = await self._db.read(
                lambda connection: connection.execute(_BY_NAME, {"wanted": wanted}).first()
            )
            if row is None:
                raise NotFound(f"no credential is named {wanted!r}: add it with `{hint}`")
            info = _info(row)
            _check_fits(info, target, host)
            return _opened(key, row, info)
        rows = await self._db.read(
            lambda connection: connection.execute(_FOR_TRANSPORT, {"kinds": kinds}).all()
        )
        ranked: builtins.list[tuple[tuple[int, int], AnyRow, CredentialInfo]] = []
        for row in rows:
            info = _info(row)
            if target.user and info.user != target.user:
                continue
            rank = best_match(tuple(HostPattern(text) for text in info.hosts), host)
            if rank is not None:
                ranked.append((rank, row, info))
        if not ranked:
            raise NotFound(
                f"no {target.transport.value} credential for {target.user or 'any user'} is "
                f"for host {host!r}: add one with `{hint}`"
            )
        best = max(rank for rank, _, _ in ranked)
        tied = [(row, info) for rank, row, info in ranked if rank == best]
        if len(tied) > 1:
            names = ", ".join(sorted(info.name for _, info in tied))
            raise Conflict(
                f"credentials {names} match host {host!r} equally: name the one to use "
                "(--credential NAME), or make one's hosts more specific"
            )
        row, info = tied[0]
        return _opened(key, row, info)


def _check_fits(info: CredentialInfo, target: RemoteTarget, host: str) -> None:
    """A named credential is still only for its transport, its user and its hosts."""
    if info.kind.transport is not target.transport:
        raise InvalidArgument(
            f"credential {info.name!r} is a {info.kind.value} credential, not for "
            f"{target.transport.value}"
        )
    if target.user and info.user != target.user:
        raise InvalidArgument(
            f"credential {info.name!r} logs in as {info.user!r}, not {target.user!r}"
        )
    if best_match(tuple(HostPattern(text) for text in info.hosts), host) is None:
        raise InvalidArgument(
            f"credential {info.name!r} is not for host {host!r} (it is for "
            f"{', '.join(info.hosts)}): it is never sent to another host; add one for it"
        )


def _opened(key: CredentialKey, row: AnyRow, info: CredentialInfo) -> Credential:
    sealed = Sealed(bytes(row.nonce), bytes(row.ciphertext), row.sealed_with)
    if sealed.key_id != key.key_id:
        raise CredentialDamaged(
            f"credential {info.name!r} was sealed with another credentials key "
            f"({sealed.key_id}, this server's is {key.key_id}): copy pki/credentials.key "
            "from the server that added it"
        )
    try:
        secret = open_sealed(key, sealed, _binding(info))
    except NotOpened:
        raise CredentialDamaged(
            f"credential {info.name!r} does not open: its row was changed in the database "
            "(its secret, or what it is for); remove it and add it again"
        ) from None
    if info.kind is CredentialKind.SSH_PRIVATE_KEY:
        return Credential(
            info.user,
            private_key=secret.text().encode(),
            passphrase=secret.passphrase(),
            name=info.name,
        )
    return Credential(info.user, password=secret.text(), name=info.name)
