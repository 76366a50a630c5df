"""The SSH RemoteShell against a real OpenSSH sshd on loopback: commands, quoting, caps,
timeouts, upload, and every refusal a technician can meet (host key, credentials, address)."""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sonde.server.remote.credentials import Credential
from sonde.server.remote.host_keys import (
    HostKeyRefused,
    TrustedHostKey,
    offered_host_keys,
)
from sonde.server.remote.shell import RemoteError, RemoteErrorKind, RemoteTarget, Transport
from sonde.server.remote.ssh import SshShell, SshTimeouts, remote_command
from tests.support.sshd import Sshd, ed25519_pair, free_port, host_key_of


async def test_a_command_runs_with_its_exit_code_output_and_stdin(
    sshd: Sshd, trusted: list[TrustedHostKey]
) -> None:
    shell = await SshShell.open(sshd.target(), sshd.credential(), trusted)
    try:
        result = await shell.run(
            ["sh", "-c", 'cat; echo "err" >&2; exit 7'], stdin=b"from the server\n"
        )
    finally:
        await shell.close()
    assert result.exit_code == 7
    assert result.stdout == b"from the server\n"
    assert result.stderr == b"err\n"
    assert not result.stdout_truncated


async def test_arguments_and_environment_arrive_byte_for_byte(
    sshd: Sshd, trusted: list[TrustedHostKey], tmp_path: Path
) -> None:
    canary = tmp_path / "canary"
    hostile = f"$(touch {canary}); `touch {canary}` ' \" ; & | * \\ \n end"
    shell = await SshShell.open(sshd.target(), sshd.credential(), trusted)
    try:
        result = await shell.run(
            ["printf", "%s|%s", hostile, "-n"], environment={"SONDE_VALUE": hostile}
        )
        env = await shell.run(
            ["sh", "-c", 'printf %s "$SONDE_VALUE"'], environment={"SONDE_VALUE": hostile}
        )
    finally:
        await shell.close()
    assert result.stdout.decode() == f"{hostile}|-n"
    assert env.stdout.decode() == hostile
    assert not canary.exists()


def test_environment_names_are_checked() -> None:
    with pytest.raises(ValueError, match="environment variable name"):
        remote_command(["true"], {"A;touch /tmp/x": "1"})
    with pytest.raises(ValueError, match="program name"):
        remote_command(["A=1"], {"B": "2"})


async def test_huge_output_is_capped_and_marked_truncated(
    sshd: Sshd, trusted: list[TrustedHostKey]
) -> None:
    shell = await SshShell.open(sshd.target(), sshd.credential(), trusted)
    try:
        result = await shell.run(
            ["sh", "-c", "head -c 8000000 /dev/zero; head -c 3000000 /dev/zero >&2"],
            max_output=1024 * 1024,
            timeout_s=30,
        )
    finally:
        await shell.close()
    assert result.exit_code == 0
    assert len(result.stdout) == 1024 * 1024
    assert result.stdout_truncated
    assert len(result.stderr) == 1024 * 1024
    assert result.stderr_truncated


async def test_a_command_over_its_time_is_refused_as_a_timeout(
    sshd: Sshd, trusted: list[TrustedHostKey]
) -> None:
    shell = await SshShell.open(sshd.target(), sshd.credential(), trusted)
    try:
        started = time.monotonic()
        with pytest.raises(RemoteError) as raised:
            await shell.run(["sleep", "20"], timeout_s=0.5)
        assert time.monotonic() - started < 5
        assert raised.value.kind is RemoteErrorKind.TIMEOUT
        assert "did not finish within 0.5 s" in raised.value.message
        # The connection is still usable after a command timed out.
        assert (await shell.run(["true"])).exit_code == 0
    finally:
        await shell.close()


async def test_upload_writes_an_owner_only_file_and_checks_its_hash(
    sshd: Sshd, trusted: list[TrustedHostKey], tmp_path: Path
) -> None:
    data = bytes(range(256)) * 4000
    path = tmp_path / "uploaded.bin"
    shell = await SshShell.open(sshd.target(), sshd.credential(), trusted)
    try:
        await shell.upload(data, str(path))
    finally:
        await shell.close()
    assert hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(data).digest()
    assert path.stat().st_mode & 0o777 == 0o600


async def test_an_unknown_host_key_is_refused_with_its_fingerprint(sshd: Sshd) -> None:
    with pytest.raises(HostKeyRefused) as raised:
        await SshShell.open(sshd.target(), sshd.credential(), [])
    assert raised.value.kind is RemoteErrorKind.HOST_KEY
    assert raised.value.trusted is None
    assert raised.value.offered == sshd.host_key
    message = raised.value.message
    assert f"127.0.0.1:{sshd.port} is not trusted" in message
    assert f"sonde hosts trust 127.0.0.1:{sshd.port} --fingerprint {sshd.host_key.fingerprint}" in (
        message
    )


async def test_a_changed_host_key_is_refused_naming_both_fingerprints(
    sshd: Sshd, trusted: list[TrustedHostKey]
) -> None:
    _, other_public = ed25519_pair()
    earlier = replace(trusted[0], key=host_key_of(other_public))
    with pytest.raises(HostKeyRefused) as raised:
        await SshShell.open(sshd.target(), sshd.credential(), [earlier])
    assert raised.value.trusted == earlier
    assert raised.value.offered == sshd.host_key
    message = raised.value.message
    assert "changed since it was trusted on 2026-11-30 09:00 UTC by admin" in message
    assert earlier.key.fingerprint in message
    assert sshd.host_key.fingerprint in message
    assert "If the machine was reinstalled" in message


async def test_a_key_trusted_for_another_port_does_not_count(
    sshd: Sshd, trusted: list[TrustedHostKey]
) -> None:
    elsewhere = replace(trusted[0], port=sshd.port + 1)
    with pytest.raises(HostKeyRefused, match="is not trusted"):
        await SshShell.open(sshd.target(), sshd.credential(), [elsewhere])


async def test_a_wrong_key_or_user_is_an_authentication_error(
    sshd: Sshd, trusted: list[TrustedHostKey]
) -> None:
    wrong_key, _ = ed25519_pair()
    stranger = Credential(user=sshd.user, private_key=wrong_key, name="old-key")
    with pytest.raises(RemoteError) as raised:
        await SshShell.open(sshd.target(), stranger, trusted)
    assert raised.value.kind is RemoteErrorKind.AUTHENTICATION
    assert f"wrong user or key for {sshd.user}@127.0.0.1" in raised.value.message
    assert "old-key (key for" in raised.value.message
    with pytest.raises(RemoteError) as other_user:
        await SshShell.open(sshd.target("helpdesk-nobody"), sshd.credential(), trusted)
    assert other_user.value.kind is RemoteErrorKind.AUTHENTICATION
    assert "wrong user or key for helpdesk-nobody@127.0.0.1" in other_user.value.message


async def test_an_unreadable_private_key_says_so(sshd: Sshd, trusted: list[TrustedHostKey]) -> None:
    broken = Credential(user=sshd.user, private_key=b"not a key", name="pasted-wrong")
    with pytest.raises(RemoteError) as raised:
        await SshShell.open(sshd.target(), broken, trusted)
    assert raised.value.kind is RemoteErrorKind.AUTHENTICATION
    assert "could not be read" in raised.value.message


async def test_a_closed_port_is_unreachable(sshd: Sshd) -> None:
    target = RemoteTarget(Transport.SSH, "helpdesk", "127.0.0.1", free_port())
    with pytest.raises(RemoteError) as raised:
        await SshShell.open(target, sshd.credential(), [])
    assert raised.value.kind is RemoteErrorKind.UNREACHABLE
    assert "could not reach 127.0.0.1:" in raised.value.message


@pytest.fixture
def silent_listener() -> Iterator[int]:
    """A port that accepts connections and never says a word (no SSH banner)."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield int(listener.getsockname()[1])
    stop.set()
    thread.join(2)
    for connection in held:
        connection.close()
    listener.close()


async def test_a_host_that_sends_no_banner_times_out(sshd: Sshd, silent_listener: int) -> None:
    target = RemoteTarget(Transport.SSH, "helpdesk", "127.0.0.1", silent_listener)
    started = time.monotonic()
    with pytest.raises(RemoteError) as raised:
        await SshShell.open(target, sshd.credential(), [], timeouts=SshTimeouts(banner_s=0.5))
    assert time.monotonic() - started < 5
    assert raised.value.kind is RemoteErrorKind.TIMEOUT


async def test_the_keys_a_host_offers_are_read_without_logging_in(sshd: Sshd) -> None:
    offered = offered_host_keys("127.0.0.1", sshd.port, timeout_s=5)
    assert offered == [sshd.host_key]  # this sshd has only an ed25519 key
    assert sshd.host_key.fingerprint.startswith("SHA256:")
    assert "=" not in sshd.host_key.fingerprint
    _ = datetime.now(UTC)
