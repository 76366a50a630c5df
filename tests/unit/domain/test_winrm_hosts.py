"""WinRM host settings: stored per host:port, the safe defaults without a row, what could never
connect refused before anything is stored, every change and refusal audited; on SQLite and
PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from sonde.server.domain.audited import AuditedWrites
from sonde.server.domain.roles import Principal, Role
from sonde.server.domain.winrm_hosts import WinRMChoices, WinRMHosts, forget_settings
from sonde.server.errors import InvalidArgument
from sonde.server.remote.shell import RemoteTarget, Transport
from sonde.server.remote.winrm import WinRMAuth, WinRMHost
from sonde.server.storage.db import Database
from sonde.server.storage.tables import audit_log, winrm_hosts
from tests.support.listener_certificates import listener_tls
from tests.unit.domain.builders import Clock

L2 = Principal(user_id=2, name="lena", role=Role.L2, peer="ipv4:10.0.0.9:50000")


def _hosts(db: Database, ca_folder: Path | None = None) -> WinRMHosts:
    return WinRMHosts(db, AuditedWrites(db, Clock()), Clock(), ca_folder=ca_folder)


def _ca_folder(tmp_path: Path) -> tuple[Path, Path]:
    """The server's WinRM CA folder holding a listener CA, and that CA's file there."""
    tls = listener_tls(tmp_path, ["127.0.0.1"])
    folder = tmp_path / "data" / "winrm-ca"
    folder.mkdir(parents=True)
    ca = folder / "corp-ca.pem"
    ca.write_bytes(tls.ca_file.read_bytes())
    return folder, ca


def _target(host: str = "pc-042.corp.lan", port: int = 5986) -> RemoteTarget:
    return RemoteTarget(Transport.WINRM, "helpdesk", host, port)


async def _audit(db: Database) -> list[tuple[str, str, dict[str, object]]]:
    rows = await db.read(
        lambda c: c.execute(
            select(audit_log.c.action, audit_log.c.result, audit_log.c.detail).order_by(
                audit_log.c.id
            )
        ).all()
    )
    return [(row.action, row.result, json.loads(row.detail)) for row in rows]


async def test_a_host_without_settings_gets_the_safe_defaults(db: Database) -> None:
    host = await _hosts(db).settings_for(_target())
    assert host == WinRMHost(_target())
    assert host.https
    assert host.auth is WinRMAuth.NTLM
    assert host.ca_file is None
    assert not host.allow_basic
    assert not host.allow_unencrypted
    assert host.endpoint == "https://pc-042.corp.lan:5986/wsman"


async def test_settings_round_trip_and_are_audited_with_their_values(
    db: Database, tmp_path: Path
) -> None:
    folder, ca = _ca_folder(tmp_path)
    store = _hosts(db, folder)
    stored = await store.set(
        L2,
        "PC-042.corp.lan:5999",
        WinRMChoices(auth="kerberos", ca_file="corp-ca.pem", operation_timeout_s=45),
    )
    assert (stored.host, stored.port, stored.set_by) == ("pc-042.corp.lan", 5999, "lena")
    host = await store.settings_for(_target(port=5999))
    assert host.auth is WinRMAuth.KERBEROS
    assert host.ca_file == ca.resolve()
    assert host.operation_timeout_s == 45
    assert host.https
    assert await store.settings_for(_target(port=5986)) == WinRMHost(_target())  # by port
    (listed,) = await store.list()
    assert listed == stored
    action, result, detail = (await _audit(db))[-1]
    assert (action, result) == ("hosts.winrm", "ok")
    assert detail["address"] == "pc-042.corp.lan:5999"
    assert (detail["auth"], detail["https"], detail["operation_timeout_s"]) == ("kerberos", 1, 45)
    assert detail["ca_file"] == str(ca.resolve())


async def test_plain_http_settings_take_port_5985_and_diag_finds_them(db: Database) -> None:
    store = _hosts(db)
    await store.set(L2, "10.1.2.3", WinRMChoices(https=False))
    (row,) = await db.read(lambda c: c.execute(select(winrm_hosts)).all())
    assert (row.host, row.port, row.https, row.auth) == ("10.1.2.3", 5985, False, "ntlm")
    assert (await store.target_for("helpdesk@10.1.2.3")).port == 5985
    assert (await store.target_for("helpdesk@10.1.2.3:5986")).port == 5986
    assert (await store.target_for("helpdesk@10.9.9.9")).port == 5986


async def test_setting_again_replaces_and_says_what_it_replaced(db: Database) -> None:
    store = _hosts(db)
    await store.set(L2, "pc-042", WinRMChoices())
    await store.set(L2, "pc-042", WinRMChoices(auth="basic", allow_basic=True))
    (row,) = await db.read(lambda c: c.execute(select(winrm_hosts)).all())
    assert (row.auth, row.allow_basic) == ("basic", True)
    assert "set by lena" in str((await _audit(db))[-1][2]["replaced"])


@pytest.mark.parametrize(
    ("address", "choices", "said"),
    [
        ("pc-042", WinRMChoices(auth="basic"), "Basic authentication to pc-042:5986 is refused"),
        (
            "pc-042",
            WinRMChoices(https=False, auth="basic", allow_basic=True),
            "Basic authentication over plain HTTP to pc-042:5985 is refused",
        ),
        ("pc-042", WinRMChoices(allow_unencrypted=True), "--allow-unencrypted is for plain HTTP"),
        ("pc-042", WinRMChoices(auth="credssp"), "not a WinRM authentication method"),
        ("pc-042", WinRMChoices(operation_timeout_s=0), "operation timeout must be 1 to 300"),
        ("pc-042", WinRMChoices(ca_file="relative/ca.pem"), "is not a file of the server's"),
        ("pc-042", WinRMChoices(ca_file="/etc/../etc/ca.pem"), "is not a file of the server's"),
        ("pc-042", WinRMChoices(ca_file="/nonexistent/ca.pem"), "is not a file of the server's"),
        ("pc-042", WinRMChoices(ca_file="/etc/hostname"), "is not a file of the server's"),
        ("pc-042", WinRMChoices(ca_file="/dev/zero"), "is not a file of the server's"),
        ("pc-042", WinRMChoices(ca_file="missing.pem"), "is not a PEM file of CA"),
        ("pc-042:99999", WinRMChoices(), "the port must be a number"),
        ("pc 042; rm -rf /", WinRMChoices(), "is not a host name or address"),
    ],
)
async def test_settings_that_could_never_connect_are_refused_and_audited(
    db: Database, tmp_path: Path, address: str, choices: WinRMChoices, said: str
) -> None:
    folder, _ = _ca_folder(tmp_path)
    with pytest.raises(InvalidArgument, match=said.replace("(", r"\(").replace(".", r"\.")):
        await _hosts(db, folder).set(L2, address, choices)
    assert await db.read(lambda c: c.execute(select(winrm_hosts)).all()) == []
    action, result, _ = (await _audit(db))[-1]
    assert action == "hosts.winrm"
    assert result.startswith("refused: InvalidArgument")


async def test_a_huge_ca_file_is_refused_unread(db: Database, tmp_path: Path) -> None:
    folder, ca = _ca_folder(tmp_path)
    huge = folder / "huge.pem"
    with huge.open("wb") as out:
        out.write(ca.read_bytes())
        out.truncate(2 * 1024 * 1024)
    with pytest.raises(InvalidArgument, match="at most 1024 KiB"):
        await _hosts(db, folder).set(L2, "pc-042", WinRMChoices(ca_file=str(huge)))


async def test_a_ca_file_with_plain_http_is_refused(db: Database, tmp_path: Path) -> None:
    folder, ca = _ca_folder(tmp_path)
    with pytest.raises(InvalidArgument, match="the CA file is for HTTPS"):
        await _hosts(db, folder).set(L2, "pc-042", WinRMChoices(https=False, ca_file=str(ca)))


async def test_the_ca_file_is_named_in_the_servers_folder_or_by_its_full_path_there(
    db: Database, tmp_path: Path
) -> None:
    folder, ca = _ca_folder(tmp_path)
    store = _hosts(db, folder)
    by_name = await store.set(L2, "pc-042", WinRMChoices(ca_file="corp-ca.pem"))
    by_path = await store.set(L2, "pc-043", WinRMChoices(ca_file=str(ca)))
    assert by_name.ca_file == by_path.ca_file == str(ca.resolve())


async def test_no_other_file_of_the_server_is_read_for_a_ca_file(
    db: Database, tmp_path: Path
) -> None:
    """A PEM CA file elsewhere on the server (here the listener's own CA, a real certificate),
    a link in the folder pointing out of it, and a server without the folder: all refused
    alike, nothing stored, so an l2 learns nothing about the server's other files."""
    folder, _ = _ca_folder(tmp_path)
    elsewhere = listener_tls(tmp_path / "elsewhere", ["127.0.0.1"]).ca_file
    (folder / "out.pem").symlink_to(elsewhere)
    (folder / "loop.pem").symlink_to(folder / "loop.pem")
    store = _hosts(db, folder)
    refusals = []
    for named in (str(elsewhere), "out.pem", f"{folder}/../../elsewhere/ca.pem", "loop.pem"):
        with pytest.raises(InvalidArgument) as refused:
            await store.set(L2, "pc-042", WinRMChoices(ca_file=named))
        refusals.append(str(refused.value))
    assert all("is not a file of the server's WinRM CA folder" in r for r in refusals[:3])
    assert "is not a PEM file" in refusals[3]
    with pytest.raises(InvalidArgument, match="this server has no WinRM CA folder"):
        await _hosts(db).set(L2, "pc-042", WinRMChoices(ca_file=str(elsewhere)))
    assert await db.read(lambda c: c.execute(select(winrm_hosts)).all()) == []


async def test_forget_removes_both_default_ports_or_the_one_named(db: Database) -> None:
    store = _hosts(db)
    await store.set(L2, "pc-042", WinRMChoices())
    await store.set(L2, "pc-042", WinRMChoices(https=False))
    await store.set(L2, "pc-042:6000", WinRMChoices())
    gone = await db.write(lambda c: forget_settings(c, "pc-042", 6000))
    assert [s.port for s in gone] == [6000]
    gone = await db.write(lambda c: forget_settings(c, "pc-042", None))
    assert [s.port for s in gone] == [5985, 5986]
    assert await store.list() == []
