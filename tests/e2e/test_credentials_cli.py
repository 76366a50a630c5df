"""`sonde credentials add|list|remove` as real processes against a real server: the secret goes
in from the environment or a key file, and never comes out: not in any output, not in the
audit log, not in the database file's bytes, not in the server's log."""

from __future__ import annotations

import json
import os
import pty
import secrets
import select
import subprocess
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from tests.support.deployment import Deployment, program, run

PASSWORD = "winrm-" + secrets.token_hex(12)
PASSPHRASE = "phrase-" + secrets.token_hex(12)


def cli(
    deployment: Deployment, *args: str, token: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    variables = deployment.cli_env(token)
    variables.pop("SONDE_CREDENTIAL_SECRET", None)
    variables.update(env)
    return run("sonde", *args, env=variables, timeout=60)


def ok_json(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert done.returncode == 0, done.stdout + done.stderr
    value: dict[str, Any] = json.loads(done.stdout)
    return value


def stored_bytes(data: Path) -> bytes:
    """Every byte of the server's database, its WAL included, and its log."""
    files = [*data.glob("sonde.db*"), data.parent / "server.log"]
    return b"".join(path.read_bytes() for path in files if path.is_file())


def private_key_file(folder: Path) -> tuple[Path, str]:
    text = (
        ed25519.Ed25519PrivateKey.generate()
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.BestAvailableEncryption(PASSPHRASE.encode()),
        )
        .decode()
    )
    path = folder / "helpdesk_ed25519"
    path.write_text(text)
    path.chmod(0o600)
    return path, text


def test_add_list_and_remove_never_show_a_secret(shared_sonde: Deployment, tmp_path: Path) -> None:
    key_file, key_text = private_key_file(tmp_path)
    outputs: list[str] = []

    def record(done: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
        outputs.append(done.stdout + done.stderr)
        return done

    added = record(
        cli(
            shared_sonde,
            "credentials", "add", "win-helpdesk", "--kind", "winrm-password",
            "--user", "CORP\\helpdesk", "--hosts", "*.corp.lan, 10.1.2.*",
            "--note", "the helpdesk's domain account",
            SONDE_CREDENTIAL_SECRET=PASSWORD,
        )
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert "stored credential win-helpdesk (winrm-password for CORP\\helpdesk" in added.stdout
    keyed = ok_json(
        record(
            cli(
                shared_sonde,
                "credentials", "add", "ssh-helpdesk", "--kind", "ssh-key", "--user", "helpdesk",
                "--hosts", "pc-042.corp.lan", "--key-file", str(key_file), "--json",
                SONDE_CREDENTIAL_SECRET=PASSPHRASE,
            )
        )
    )  # fmt: skip
    fingerprint = keyed["credential"]["key_fingerprint"]
    assert fingerprint.startswith("SHA256:")
    listed = record(cli(shared_sonde, "credentials", "list"))
    assert listed.returncode == 0, listed.stderr
    assert max(len(line) for line in listed.stdout.splitlines()) <= 80
    for shown in ("win-helpdesk", "ssh-helpdesk", "winrm-password", "ssh-key", fingerprint):
        assert shown in listed.stdout
    as_json = ok_json(record(cli(shared_sonde, "credentials", "list", "--json")))
    assert [c["name"] for c in as_json["credentials"]] == ["ssh-helpdesk", "win-helpdesk"]
    assert as_json["credentials"][1]["hosts"] == ["*.corp.lan", "10.1.2.*"]
    removed = record(cli(shared_sonde, "credentials", "remove", "win-helpdesk"))
    assert removed.returncode == 0, removed.stderr
    assert "its secret is deleted from the server" in removed.stdout
    after = ok_json(record(cli(shared_sonde, "credentials", "list", "--json")))
    assert [c["name"] for c in after["credentials"]] == ["ssh-helpdesk"]
    audit = ok_json(record(cli(shared_sonde, "audit", "--action", "credential.*", "--json")))
    assert sorted(entry["action"] for entry in audit["entries"]) == [
        "credential.add",
        "credential.add",
        "credential.remove",
    ]
    secrets_given = (PASSWORD, PASSPHRASE, key_text.splitlines()[2])
    for secret in secrets_given:
        for output in outputs:
            assert secret not in output
        assert secret.encode() not in stored_bytes(shared_sonde.data)


def test_a_secret_on_the_command_line_is_refused_without_echoing_it(
    shared_sonde: Deployment, tmp_path: Path
) -> None:
    base = ["credentials", "add", "x", "--kind", "ssh-password", "--user", "u", "--hosts", "h"]
    for attempt in (["--password", PASSWORD], [f"--secret={PASSWORD}"], ["--passphrase"]):
        done = cli(shared_sonde, *base, *attempt)
        assert done.returncode == 2, done.stdout + done.stderr
        assert "a secret is never given on the command line" in done.stderr
        assert PASSWORD not in done.stdout + done.stderr
    key_text = private_key_file(tmp_path)[1]
    ssh_key = ["credentials", "add", "x", "--kind", "ssh-key", "--user", "u", "--hosts", "h"]
    done = cli(shared_sonde, *ssh_key, "--key-file", key_text)
    assert done.returncode == 1
    assert "--key-file takes the key's file name, not the key" in done.stderr
    assert key_text.splitlines()[2] not in done.stdout + done.stderr
    # No terminal and no SONDE_CREDENTIAL_SECRET: refused, nothing read from stdin.
    done = cli(shared_sonde, *base)
    assert done.returncode == 1
    assert "no terminal to ask for the password on: set SONDE_CREDENTIAL_SECRET" in done.stderr
    listed = ok_json(cli(shared_sonde, "credentials", "list", "--json"))
    assert "x" not in [c["name"] for c in listed.get("credentials", [])]


def test_an_l2_lists_but_only_an_admin_adds_or_removes(shared_sonde: Deployment) -> None:
    l2 = shared_sonde.add_user("lena", "l2")
    l1 = shared_sonde.add_user("leo", "l1")
    base = ["credentials", "add", "by-l2", "--kind", "ssh-password", "--user", "u", "--hosts", "h"]
    done = cli(shared_sonde, *base, token=l2, SONDE_CREDENTIAL_SECRET=PASSWORD)
    assert done.returncode == 1
    assert "PERMISSION_DENIED" in done.stderr
    assert "`sonde credentials add` needs the credentials.manage permission" in done.stderr
    assert cli(shared_sonde, "credentials", "list", token=l2).returncode == 0
    done = cli(shared_sonde, "credentials", "list", token=l1)
    assert done.returncode == 1
    assert "credentials.read" in done.stderr


def test_a_server_whose_credentials_key_is_gone_refuses_to_start(sonde: Deployment) -> None:
    done = sonde_add(sonde)
    assert done.returncode == 0, done.stderr
    sonde.stop()
    key = sonde.data / "pki" / "credentials.key"
    assert key.stat().st_mode & 0o777 == 0o600
    saved = sonde.root / "credentials.key.saved"
    key.rename(saved)
    refused = subprocess.run(
        [*program("sonde-server"), "run", "--data", str(sonde.data)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 1, refused.stderr
    assert "credentials.key is missing, but 1 remote credentials are sealed with it" in (
        refused.stderr
    )
    assert not key.exists()  # no new key made over the stored credentials
    saved.rename(key)
    sonde.start_server()
    listed = ok_json(cli(sonde, "credentials", "list", "--json"))
    assert [c["name"] for c in listed["credentials"]] == ["lab"]


def sonde_add(deployment: Deployment) -> subprocess.CompletedProcess[str]:
    return cli(
        deployment,
        "credentials", "add", "lab", "--kind", "ssh-password", "--user", "u", "--hosts", "*",
        SONDE_CREDENTIAL_SECRET=PASSWORD,
    )  # fmt: skip


def _read_until(fd: int, wanted: bytes, seen: bytearray, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while wanted not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"waited for {wanted!r}, the terminal shows {bytes(seen)!r}"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the child closed the terminal
                chunk = b""
            assert chunk, f"the terminal closed before {wanted!r}: {bytes(seen)!r}"
            seen += chunk


def test_the_password_prompt_does_not_echo(shared_sonde: Deployment) -> None:
    """A real terminal (a pty that is the process's controlling terminal): asked twice, the
    typed password never shows on it, and the credential is stored."""
    env = shared_sonde.cli_env()
    env.pop("SONDE_CREDENTIAL_SECRET", None)
    argv = [*program("sonde"), "credentials", "add", "typed", "--kind", "ssh-password"]
    argv += ["--user", "helpdesk", "--hosts", "*.lab.lan"]
    pid, fd = pty.fork()
    if pid == 0:  # the child: its terminal is the pty
        os.execve(argv[0], argv, env)
    seen = bytearray()
    try:
        _read_until(fd, b"password: ", seen)
        os.write(fd, PASSWORD.encode() + b"\n")
        _read_until(fd, b"password again: ", seen)
        os.write(fd, PASSWORD.encode() + b"\n")
        _read_until(fd, b"its secret stays on the server", seen)
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0, bytes(seen)
    assert PASSWORD.encode() not in seen
    listed = ok_json(cli(shared_sonde, "credentials", "list", "--json"))
    assert "typed" in [c["name"] for c in listed["credentials"]]
