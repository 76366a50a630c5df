"""The credential store for agentless reach: sealed at rest, bound to its row, never shown,
found by the most specific host, audited; on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import io
import json
import os
import secrets
from pathlib import Path

import paramiko
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from sonde.server.credential_key import (
    CredentialKeyProblem,
    credential_key_for_store,
    credential_key_path,
)
from sonde.server.domain.audited import AuditedWrites
from sonde.server.domain.credential_secrets import CredentialKey
from sonde.server.domain.remote_credentials import (
    CredentialDamaged,
    CredentialKind,
    RemoteCredentials,
    sealed_with,
)
from sonde.server.domain.roles import Principal, Role
from sonde.server.errors import Conflict, InvalidArgument, NotFound
from sonde.server.remote.credentials import CredentialSource
from sonde.server.remote.shell import RemoteTarget, Transport
from sonde.server.storage.db import Database
from sonde.server.storage.tables import audit_log, remote_credentials
from tests.unit.domain.builders import Clock

ADMIN = Principal(user_id=1, name="alice", role=Role.ADMIN, peer="ipv4:10.0.0.9:50000")
PASSWORD = "correct-horse-" + secrets.token_hex(8)
PASSPHRASE = "battery-" + secrets.token_hex(8)


def _store(db: Database, key: CredentialKey | None = None) -> RemoteCredentials:
    key = key if key is not None else CredentialKey(os.urandom(32))
    return RemoteCredentials(db, AuditedWrites(db, Clock()), key, Clock())


def _ssh(host: str, user: str = "helpdesk", port: int = 22) -> RemoteTarget:
    return RemoteTarget(Transport.SSH, user, host, port)


def _openssh_key(passphrase: str = "") -> str:
    key = ed25519.Ed25519PrivateKey.generate()
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase.encode())
        if passphrase
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, encryption
    ).decode()


async def _add_password(
    store: RemoteCredentials, name: str, hosts: list[str], *, user: str = "helpdesk"
) -> None:
    await store.add(
        ADMIN,
        name,
        kind=CredentialKind.SSH_PASSWORD,
        user=user,
        hosts=hosts,
        secret=f"{PASSWORD}-{name}",
    )


async def _everything_stored(db: Database) -> bytes:
    def unit(connection: Connection) -> bytes:
        rows = connection.execute(select(remote_credentials)).all()
        audit = connection.execute(select(audit_log)).all()
        return repr((rows, audit)).encode()

    return await db.read(unit)


async def test_a_password_round_trips_and_is_never_stored_listed_or_audited_in_the_clear(
    db: Database,
) -> None:
    store = _store(db)
    added = await store.add(
        ADMIN,
        "helpdesk-ssh",
        kind=CredentialKind.SSH_PASSWORD,
        user="helpdesk",
        hosts=["*.Corp.LAN.", "10.1.2.*"],
        secret=PASSWORD,
        note="the helpdesk's local account",
    )
    assert added.hosts == ("*.corp.lan", "10.1.2.*")
    assert added.added_by == "alice"
    assert added.key_fingerprint == ""
    source: CredentialSource = store  # what the transports take (server/remote/credentials.py)
    found = await source.for_target(_ssh("pc-042.corp.lan"))
    assert (found.user, found.password, found.private_key) == ("helpdesk", PASSWORD, b"")
    for shown in (repr(found), str(found), found.described):
        assert PASSWORD not in shown
    listed = await store.list()
    assert [info.name for info in listed] == ["helpdesk-ssh"]
    assert PASSWORD not in repr(listed)
    stored = await _everything_stored(db)
    assert PASSWORD.encode() not in stored
    row = await db.read(lambda c: c.execute(select(remote_credentials)).one())
    assert len(row.nonce) == 12
    assert len(row.ciphertext) > len(PASSWORD) + 16  # GCM's tag at its end
    audit = await db.read(lambda c: c.execute(select(audit_log)).one())
    assert (audit.actor, audit.action, audit.result) == ("alice", "credential.add", "ok")
    assert json.loads(audit.detail) == {
        "name": "helpdesk-ssh",
        "kind": "ssh_password",
        "user": "helpdesk",
        "hosts": "*.corp.lan,10.1.2.*",
    }


async def test_a_private_key_with_a_passphrase_round_trips_with_its_fingerprint(
    db: Database,
) -> None:
    store = _store(db)
    key_text = _openssh_key(PASSPHRASE)
    added = await store.add(
        ADMIN,
        "helpdesk-key",
        kind=CredentialKind.SSH_PRIVATE_KEY,
        user="helpdesk",
        hosts=["pc-042.corp.lan"],
        secret=key_text,
        passphrase=PASSPHRASE,
    )
    # The fingerprint `ssh-keygen -l` (and paramiko) prints for the key's public half.
    loaded = paramiko.Ed25519Key.from_private_key(io.StringIO(key_text), password=PASSPHRASE)
    assert added.key_fingerprint == loaded.fingerprint
    found = await store.for_target(_ssh("PC-042.corp.lan"), "helpdesk-key")
    assert found.private_key == key_text.encode()
    assert found.passphrase == PASSPHRASE
    assert found.password == ""
    assert PASSPHRASE not in repr(found)
    stored = await _everything_stored(db)
    assert PASSPHRASE.encode() not in stored
    assert b"OPENSSH PRIVATE KEY" not in stored
    audit = await db.read(lambda c: c.execute(select(audit_log.c.detail)).scalar_one())
    assert json.loads(audit)["key_fingerprint"] == loaded.fingerprint


async def test_a_pem_rsa_key_without_a_passphrase_is_accepted(db: Database) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    added = await _store(db).add(
        ADMIN, "rsa", kind=CredentialKind.SSH_PRIVATE_KEY, user="u", hosts=["h"], secret=pem
    )
    assert added.key_fingerprint == paramiko.RSAKey.from_private_key(io.StringIO(pem)).fingerprint


@pytest.mark.parametrize(
    ("secret", "passphrase", "refusal"),
    [
        ("not a key at all", "", "is not an OpenSSH or PEM private key"),
        (_openssh_key(PASSPHRASE), "", "the private key is encrypted"),
        (_openssh_key(PASSPHRASE), "not-" + PASSPHRASE, "or the passphrase is wrong"),
        (_openssh_key(), PASSPHRASE, "the private key is not encrypted"),
        ("", "", "needs the private key's text"),
    ],
    # Named, not derived from the values: a random passphrase in a test id would differ
    # between two pytest-xdist workers' collections (and print a secret-like value).
    ids=["not-a-key", "encrypted", "wrong-passphrase", "not-encrypted", "empty"],
)
async def test_a_key_that_cannot_be_read_is_refused_without_quoting_it(
    db: Database, secret: str, passphrase: str, refusal: str
) -> None:
    with pytest.raises(InvalidArgument, match=refusal) as refused:
        await _store(db).add(
            ADMIN,
            "bad-key",
            kind=CredentialKind.SSH_PRIVATE_KEY,
            user="u",
            hosts=["h"],
            secret=secret,
            passphrase=passphrase,
        )
    probe = secret[40:80] or secret or "-----"  # a piece of the key, never in a message
    assert probe not in str(refused.value)
    audit = await db.read(lambda c: c.execute(select(audit_log)).one())
    assert audit.action == "credential.add"
    assert audit.result.startswith("refused: InvalidArgument")
    assert probe not in audit.detail + audit.result
    if passphrase:
        assert passphrase not in audit.detail + audit.result
    assert await db.read(lambda c: c.execute(select(remote_credentials)).all()) == []


@pytest.mark.parametrize(
    ("name", "hosts", "refusal"),
    [
        ("Helpdesk SSH", ["h"], "is not a credential name"),
        ("ok", [], "needs the hosts it is for"),
        ("ok", ["pc.*.corp.lan"], "is not a host pattern"),
        ("ok", ["*.*"], "is not a host pattern"),
        ("ok", ["pc 42"], "is not a host pattern"),
        ("ok", [f"h{n}" for n in range(33)], "at most 32 host patterns"),
    ],
)
async def test_bad_names_and_hosts_are_refused_and_audited_without_the_secret(
    db: Database, name: str, hosts: list[str], refusal: str
) -> None:
    with pytest.raises(InvalidArgument, match=refusal):
        await _store(db).add(
            ADMIN, name, kind=CredentialKind.WINRM_PASSWORD, user="u", hosts=hosts, secret=PASSWORD
        )
    audit = await db.read(lambda c: c.execute(select(audit_log)).one())
    assert audit.result.startswith("refused: InvalidArgument")
    assert PASSWORD not in audit.detail + audit.result


async def test_a_name_in_use_is_refused_and_remove_deletes_it_audited(db: Database) -> None:
    store = _store(db)
    await _add_password(store, "helpdesk-ssh", ["*"])
    with pytest.raises(Conflict, match="exists already: remove it first"):
        await _add_password(store, "helpdesk-ssh", ["*.corp.lan"])
    removed = await store.remove(ADMIN, "helpdesk-ssh")
    assert removed.name == "helpdesk-ssh"
    assert await store.list() == []
    with pytest.raises(NotFound, match="no credential is named 'helpdesk-ssh'"):
        await store.remove(ADMIN, "helpdesk-ssh")
    with pytest.raises(NotFound, match="sonde credentials add"):
        await store.for_target(_ssh("pc.corp.lan"))
    rows = await db.read(
        lambda c: c.execute(
            select(audit_log.c.action, audit_log.c.result).order_by(audit_log.c.id)
        ).all()
    )
    assert [(action, result.split(":")[0]) for action, result in rows] == [
        ("credential.add", "ok"),
        ("credential.add", "refused"),
        ("credential.remove", "ok"),
        ("credential.remove", "refused"),
    ]


async def test_the_most_specific_host_match_wins_and_a_tie_is_refused(db: Database) -> None:
    store = _store(db)
    await _add_password(store, "anywhere", ["*"])
    await _add_password(store, "corp", ["*.corp.lan"])
    await _add_password(store, "paris", ["*.paris.corp.lan", "10.1.*"])
    await _add_password(store, "subnet", ["10.1.2.*"])
    await _add_password(store, "pc-042", ["pc-042.paris.corp.lan"])
    await _add_password(store, "other-user", ["*.corp.lan"], user="admin")

    async def chosen(host: str, user: str = "helpdesk") -> str:
        return (await store.for_target(_ssh(host, user))).name

    assert await chosen("pc-042.paris.corp.lan") == "pc-042"
    assert await chosen("pc-043.paris.corp.lan") == "paris"
    assert await chosen("pc-043.lyon.corp.lan") == "corp"
    assert await chosen("printer") == "anywhere"
    assert await chosen("10.1.2.3") == "subnet"
    assert await chosen("10.1.3.3") == "paris"
    assert await chosen("pc.corp.lan", user="admin") == "other-user"
    with pytest.raises(NotFound, match="no ssh credential for root is for host"):
        await chosen("pc.corp.lan", user="root")
    await _add_password(store, "corp-too", ["pc.corp.*"])  # two labels written out, as corp
    with pytest.raises(Conflict, match=r"credentials corp, corp-too match host 'pc\.corp\.lan'"):
        await chosen("pc.corp.lan")
    assert await chosen("pc-044.corp.lan") == "corp"  # corp-too names only pc.corp.*


async def test_a_named_credential_is_still_only_for_its_transport_user_and_hosts(
    db: Database,
) -> None:
    store = _store(db)
    await _add_password(store, "corp", ["*.corp.lan"])
    await store.add(
        ADMIN,
        "win",
        kind=CredentialKind.WINRM_PASSWORD,
        user="helpdesk",
        hosts=["*"],
        secret=PASSWORD,
    )
    # Pointing a credential at a host it is not for would hand its secret to that host.
    with pytest.raises(InvalidArgument, match=r"is not for host 'evil\.example'"):
        await store.for_target(_ssh("evil.example"), "corp")
    with pytest.raises(InvalidArgument, match="logs in as 'helpdesk', not 'root'"):
        await store.for_target(_ssh("pc.corp.lan", "root"), "corp")
    with pytest.raises(InvalidArgument, match="is a winrm_password credential, not for ssh"):
        await store.for_target(_ssh("pc.corp.lan"), "win")
    winrm = RemoteTarget(Transport.WINRM, "helpdesk", "pc.corp.lan", 5986)
    assert (await store.for_target(winrm)).name == "win"  # ssh credentials are not for winrm
    with pytest.raises(NotFound, match="no credential is named 'nope'"):
        await store.for_target(_ssh("pc.corp.lan"), "nope")


@pytest.mark.parametrize("column", ["ciphertext", "nonce"])
async def test_a_changed_ciphertext_or_nonce_does_not_open(db: Database, column: str) -> None:
    store = _store(db)
    await _add_password(store, "corp", ["*.corp.lan"])
    row = await db.read(lambda c: c.execute(select(remote_credentials)).one())
    changed = bytearray(getattr(row, column))
    changed[len(changed) // 2] ^= 0x01
    await db.write(lambda c: c.execute(update(remote_credentials).values({column: bytes(changed)})))
    with pytest.raises(CredentialDamaged, match="its row was changed in the database"):
        await store.for_target(_ssh("pc.corp.lan"))


@pytest.mark.parametrize(
    ("column", "value"),
    [("hosts", '["*"]'), ("user_name", "root"), ("name", "renamed"), ("kind", "winrm_password")],
)
async def test_a_row_changed_in_what_its_secret_is_for_does_not_open(
    db: Database, column: str, value: str
) -> None:
    """A database writer widening a credential's hosts (to harvest it on their own host) or
    changing its user gets a refusal, not the secret."""
    store = _store(db)
    await _add_password(store, "corp", ["pc.corp.lan"])
    await db.write(lambda c: c.execute(update(remote_credentials).values({column: value})))
    target = RemoteTarget(
        Transport.WINRM if value == "winrm_password" else Transport.SSH,
        value if column == "user_name" else "helpdesk",
        "evil.example" if column == "hosts" else "pc.corp.lan",
        22,
    )
    with pytest.raises(CredentialDamaged, match="does not open"):
        await store.for_target(target)


async def test_a_ciphertext_copied_onto_another_row_does_not_open(db: Database) -> None:
    store = _store(db)
    await _add_password(store, "corp", ["*.corp.lan"])
    await _add_password(store, "lab", ["*.lab.lan"])
    rows = {
        row.name: row
        for row in await db.read(lambda c: c.execute(select(remote_credentials)).all())
    }
    corp = rows["corp"]
    await db.write(
        lambda c: c.execute(
            update(remote_credentials)
            .where(remote_credentials.c.name == "lab")
            .values(nonce=corp.nonce, ciphertext=corp.ciphertext)
        )
    )
    with pytest.raises(CredentialDamaged, match="'lab' does not open"):
        await store.for_target(_ssh("pc.lab.lan"))
    assert (await store.for_target(_ssh("pc.corp.lan"))).password == f"{PASSWORD}-corp"


async def test_another_key_opens_nothing_and_says_which_key(db: Database) -> None:
    await _add_password(_store(db), "corp", ["*"])
    with pytest.raises(CredentialDamaged, match="sealed with another credentials key"):
        await _store(db).for_target(_ssh("pc.corp.lan"))


async def test_without_a_key_nothing_is_added_or_opened(db: Database) -> None:
    store = RemoteCredentials(db, AuditedWrites(db, Clock()), None, Clock())
    with pytest.raises(Conflict, match=r"no credentials key \(pki/credentials.key\)"):
        await _add_password(store, "corp", ["*"])
    with pytest.raises(Conflict, match="no credentials key"):
        await store.for_target(_ssh("pc.corp.lan"))


async def test_the_key_file_is_made_owner_only_and_checked_at_start(
    db: Database, tmp_path: Path
) -> None:
    key, made = credential_key_for_store(tmp_path, await sealed_with(db))
    assert made
    path = credential_key_path(tmp_path)
    assert path.stat().st_mode & 0o777 == 0o600
    await _add_password(_store(db, key), "corp", ["*"])
    again, made = credential_key_for_store(tmp_path, await sealed_with(db))
    assert (again.key_id, made) == (key.key_id, False)
    # A missing key with credentials stored refuses the start, as the audit key does.
    path.rename(tmp_path / "saved.key")
    with pytest.raises(CredentialKeyProblem, match="is missing, but 1 remote credentials"):
        credential_key_for_store(tmp_path, await sealed_with(db))
    assert not path.exists()
    # Another key: refused, naming both keys.
    path.write_bytes(os.urandom(32))
    path.chmod(0o600)
    with pytest.raises(
        CredentialKeyProblem, match=f"key {key.key_id}; this file is key [0-9a-f]{{16}}"
    ):
        credential_key_for_store(tmp_path, await sealed_with(db))
    (tmp_path / "saved.key").replace(path)
    path.chmod(0o640)
    with pytest.raises(CredentialKeyProblem, match="readable or writable by others"):
        credential_key_for_store(tmp_path, await sealed_with(db))
    path.chmod(0o600)
    path.write_bytes(b"short")
    with pytest.raises(CredentialKeyProblem, match="a credentials key is 32 bytes"):
        credential_key_for_store(tmp_path, await sealed_with(db))


async def test_two_admins_adding_one_name_at_once_store_one(db: Database) -> None:
    """The unique name decides, not a read before the write: one add wins, the other is
    refused as a Conflict (not a database error), and one row and one ok audit row remain."""
    store = _store(db)
    outcomes = await asyncio.gather(
        *(_add_password(store, "shared", [f"h{n}"]) for n in range(4)), return_exceptions=True
    )
    refused = [outcome for outcome in outcomes if outcome is not None]
    assert len(refused) == 3
    assert all(isinstance(error, Conflict) for error in refused), refused
    assert len(await store.list()) == 1
    results = await db.read(lambda c: c.execute(select(audit_log.c.result)).scalars().all())
    assert sorted(result.split(":")[0] for result in results) == ["ok"] + ["refused"] * 3
