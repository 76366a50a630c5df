"""WinRM against a WinRS endpoint on loopback (tests/support/winrs_endpoint.py): real HTTP and
HTTPS, pywinrm's real messages, recorded PowerShell outputs behind them.

What the endpoint cannot show (NTLM, Kerberos, message encryption, real PowerShell) is in
docs/agentless.md; test_real_windows_host runs against a real one when SONDE_WINRM_* say where.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import socket
from collections.abc import Iterator, MutableMapping
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from sonde.agent.collectors.windows import parse
from sonde.agent.remediation import powershell
from sonde.catalog.bundle import BundleError, CatalogSource, SignedEntry, sign_entries
from sonde.catalog.manifest import ManifestError
from sonde.server.remote import winrm_powershell as ps
from sonde.server.remote.credentials import Credential
from sonde.server.remote.shell import RemoteError, RemoteErrorKind, RemoteTarget, Transport
from sonde.server.remote.winrm import WinRMAuth, WinRMHost, WinRMShell
from sonde.server.remote.winrm_catalog import run_catalog_script
from tests.support.catalog_bundles import manifest_text
from tests.support.listener_certificates import ListenerTls, listener_tls
from tests.support.winrs_endpoint import WinRSEndpoint, WinRSReply
from tests.support.winrs_programs import LaunchedRun, receiver, serve_transport
from tests.unit.agent.remediation.manifests import string_parameter
from tests.unit.agent.remediation.test_parameter_injection import ATTACKS

pytestmark = pytest.mark.timeout(60)

USER, PASSWORD = "helpdesk", "correct horse battery staple"
RECORDED = Path(__file__).parents[2] / "fixtures" / "recorded" / "windows"
SERVICES_COMMAND = ["Get-Service"]


def recorded_program(run: LaunchedRun) -> WinRSReply:
    """The host's recorded answers, keyed by the command line LAUNCHER starts."""
    if run.argv == SERVICES_COMMAND:
        return WinRSReply(stdout=(RECORDED / "services.json").read_bytes(), running=2)
    if run.argv[:1] == ["Write-Output"]:
        return WinRSReply(stdout=json.dumps(run.argv[1:]).encode())
    if run.argv[0] == "powershell.exe" and "-ParameterFile" in run.argv:
        # A catalog script that prints what the agent's prologue would bind from the file.
        assert run.file_after("-File") == powershell.PROLOGUE.encode("ascii")
        bound = powershell.read_parameter_file(run.file_after("-ParameterFile"))
        script = run.file_after("-Script")
        answer = {"bound": bound, "script_sha256": hashlib.sha256(script).hexdigest()}
        return WinRSReply(stdout=json.dumps(answer).encode(), exit_code=7)
    if run.argv[0] == "powershell.exe" and "-File" in run.argv:
        at = run.argv.index("-File")
        script = run.file_after("-File")
        answer = {"script": script.decode("utf-8"), "arguments": run.argv[at + 2 :]}
        return WinRSReply(stdout=json.dumps(answer).encode())
    return WinRSReply(stderr=f"unknown command {run.argv[0]}".encode(), exit_code=1)


def winrm_host(port: int, **settings: object) -> WinRMHost:
    options: dict[str, object] = {
        "https": False,
        "auth": WinRMAuth.BASIC,
        "allow_basic": True,
        "allow_unencrypted": True,
        "operation_timeout_s": 2,
    }
    options.update(settings)
    target = RemoteTarget(Transport.WINRM, USER, "127.0.0.1", port)
    return WinRMHost(target, **options)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def uploaded() -> dict[str, bytes]:
    return {}


@pytest.fixture(scope="module")
def endpoint(uploaded: dict[str, bytes]) -> Iterator[WinRSEndpoint]:
    with WinRSEndpoint(USER, PASSWORD) as running:
        serve_transport(running, recorded_program, uploaded)
        yield running


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> ListenerTls:
    return listener_tls(tmp_path_factory.mktemp("winrs-tls"), ["127.0.0.1"])


@pytest.fixture(scope="module")
def https_endpoint(tls: ListenerTls, uploaded: dict[str, bytes]) -> Iterator[WinRSEndpoint]:
    with WinRSEndpoint(USER, PASSWORD, tls=tls.context) as running:
        serve_transport(running, recorded_program, uploaded)
        yield running


async def opened(host: WinRMHost, password: str = PASSWORD) -> WinRMShell:
    credential = Credential(host.target.user, password=password, name="winrs-test")
    return await WinRMShell.open(host, credential, timeout_s=10)


async def test_collection_returns_the_recorded_json(endpoint: WinRSEndpoint) -> None:
    shell = await opened(winrm_host(endpoint.port))
    try:
        result = await shell.run(SERVICES_COMMAND, timeout_s=10)
    finally:
        await shell.close()
    assert result.exit_code == 0
    assert result.stdout == (RECORDED / "services.json").read_bytes()
    failed = parse.failed_services(json.loads(result.stdout))
    assert [(s.name, s.state) for s in failed] == [("Spooler", "stopped"), ("CcmExec", "stopped")]
    assert endpoint.shells == {}  # Delete closed the shell


async def test_the_command_line_is_fixed_and_under_cmds_limit(endpoint: WinRSEndpoint) -> None:
    shell = await opened(winrm_host(endpoint.port))
    try:
        await shell.run(["Write-Output", "a & b | c"], timeout_s=10)
    finally:
        await shell.close()
    sent = endpoint.finished[-1]
    assert sent.command == ps.encoded_command(ps.LAUNCHER)
    assert sent.codepage == "65001"
    for script in (ps.LAUNCHER, ps.RECEIVER):
        assert len(ps.encoded_command(script)) < ps.CMD_LINE_LIMIT
    assert "a & b" not in sent.command


async def test_arguments_and_environment_arrive_byte_for_byte(endpoint: WinRSEndpoint) -> None:
    shell = await opened(winrm_host(endpoint.port))
    try:
        result = await shell.run(
            ["Write-Output", *ATTACKS], environment={"SONDE_RUN": ATTACKS[0]}, timeout_s=10
        )
    finally:
        await shell.close()
    assert json.loads(result.stdout) == ATTACKS
    assert all(attack not in endpoint.finished[-1].command for attack in ATTACKS if attack)


async def test_a_fixed_script_runs_from_its_file(endpoint: WinRSEndpoint) -> None:
    script = "param([string]$Section)\nGet-CimInstance Win32_Service | ConvertTo-Json\n"
    shell = await opened(winrm_host(endpoint.port))
    try:
        document = ps.script_document("collect.ps1", script.encode(), ["-Section", ATTACKS[6]])
        result = await shell.run_document(document, timeout_s=10)
    finally:
        await shell.close()
    answer = json.loads(result.stdout)
    assert answer == {"script": "\ufeff" + script, "arguments": ["-Section", ATTACKS[6]]}
    assert endpoint.finished[-1].command == ps.encoded_command(ps.LAUNCHER)


def signed_entry(
    key: ed25519.Ed25519PrivateKey, *, parameters: int, platform: str = "windows"
) -> SignedEntry:
    manifest = manifest_text(
        "winrm-echo",
        platform=platform,
        interpreter="powershell" if platform == "windows" else "bash",
        parameters="".join(string_parameter(f"v{n}") for n in range(parameters)),
    )
    script = b"param([string]$V0, [switch]$DryRun)\nWrite-Output $V0\n"
    return sign_entries(key, [CatalogSource(manifest.encode(), script)]).entries[0]


async def test_a_catalog_script_gets_its_parameters_as_data(endpoint: WinRSEndpoint) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    values = ATTACKS[:25]
    entry = signed_entry(key, parameters=len(values))
    shell = await opened(winrm_host(endpoint.port))
    try:
        result = await run_catalog_script(
            shell, entry, key.public_key(), {f"v{n}": v for n, v in enumerate(values)}
        )
    finally:
        await shell.close()
    assert result.exit_code == 7
    answer = json.loads(result.stdout)
    assert answer["bound"] == {f"V{n}": v for n, v in enumerate(values)} | {"DryRun": False}
    expected_script = powershell.script_source(entry.script)
    assert answer["script_sha256"] == hashlib.sha256(expected_script).hexdigest()
    sent = endpoint.finished[-1]
    assert sent.command == ps.encoded_command(ps.LAUNCHER)
    assert all(value.encode() not in sent.stdin for value in values if len(value) > 3)


async def test_a_catalog_entry_that_does_not_verify_is_never_sent(
    endpoint: WinRSEndpoint,
) -> None:
    key, other = ed25519.Ed25519PrivateKey.generate(), ed25519.Ed25519PrivateKey.generate()
    entry = signed_entry(key, parameters=1)
    tampered = SignedEntry(
        entry.id, entry.version, entry.manifest, entry.script + b"\nStop-Computer", entry.key_id,
        entry.signature,
    )  # fmt: skip
    shell = await opened(winrm_host(endpoint.port))
    before = len(endpoint.actions)
    try:
        with pytest.raises(BundleError, match="signed with another key"):
            await run_catalog_script(shell, entry, other.public_key(), {"v0": "x"})
        with pytest.raises(BundleError, match="does not verify"):
            await run_catalog_script(shell, tampered, key.public_key(), {"v0": "x"})
        linux = signed_entry(key, parameters=1, platform="linux")
        with pytest.raises(ManifestError, match="only a PowerShell script for Windows"):
            await run_catalog_script(shell, linux, key.public_key(), {"v0": "x"})
        with pytest.raises(ManifestError, match="no parameter"):
            await run_catalog_script(shell, entry, key.public_key(), {"v9": "x"})
        assert endpoint.actions[before:] == []  # nothing reached the host
    finally:
        await shell.close()


async def test_an_upload_is_streamed_and_its_hash_checked(
    endpoint: WinRSEndpoint, uploaded: dict[str, bytes]
) -> None:
    data = os.urandom(700 * 1024 + 17)
    path = "C:\\Windows\\Temp\\sonde-agent.msi"
    shell = await opened(winrm_host(endpoint.port))
    try:
        await shell.upload(data, path, timeout_s=30)
    finally:
        await shell.close()
    assert uploaded[path] == data
    sent = endpoint.finished[-1]
    assert sent.command == ps.encoded_command(ps.RECEIVER)
    assert sent.stdin_sends == 1 + 6 + 1  # header, 6 chunks of 128 KiB, the end


async def test_a_corrupted_upload_is_refused(endpoint: WinRSEndpoint) -> None:
    kept: dict[str, bytes] = {}
    with WinRSEndpoint(USER, PASSWORD) as broken:
        broken.on_script(ps.RECEIVER, receiver(kept, corrupt=True))
        shell = await opened(winrm_host(broken.port))
        try:
            with pytest.raises(RemoteError, match="arrived corrupted") as refused:
                await shell.upload(b"MZ" + os.urandom(4096), "C:\\agent.msi", timeout_s=10)
        finally:
            await shell.close()
    assert refused.value.kind is RemoteErrorKind.PROTOCOL
    assert kept == {}


async def test_a_receive_that_times_out_is_asked_again() -> None:
    with WinRSEndpoint(USER, PASSWORD) as slow:
        slow.on_script(
            ps.LAUNCHER, lambda command: WinRSReply(stdout=b"done\r\n", exit_code=0, timeouts=3)
        )
        shell = await opened(winrm_host(slow.port))
        try:
            result = await shell.run(["Start-Sleep", "90"], timeout_s=10)
        finally:
            await shell.close()
    assert (result.exit_code, result.stdout) == (0, b"done\r\n")
    receives = slow.actions[slow.actions.index("Command") :]
    assert receives.count("Receive") == 4
    assert slow.actions[-2:] == ["Signal", "Delete"]


async def test_a_command_past_its_deadline_is_stopped() -> None:
    with WinRSEndpoint(USER, PASSWORD) as slow:
        slow.on_script(ps.LAUNCHER, lambda command: WinRSReply(timeouts=10_000))
        shell = await opened(winrm_host(slow.port))
        try:
            with pytest.raises(RemoteError, match="did not finish within 1 s") as stopped:
                await shell.run(["Start-Sleep", "3600"], timeout_s=1)
        finally:
            await shell.close()
    assert stopped.value.kind is RemoteErrorKind.TIMEOUT
    assert "Signal" in slow.actions


async def test_wrong_credentials_get_401_and_say_so(endpoint: WinRSEndpoint) -> None:
    refused_before = endpoint.refused_logins
    with pytest.raises(RemoteError, match="refused the credentials of helpdesk") as refused:
        await opened(winrm_host(endpoint.port), password="Winter2026!")
    assert refused.value.kind is RemoteErrorKind.AUTHENTICATION
    assert endpoint.refused_logins > refused_before


async def test_basic_needs_the_hosts_permission(endpoint: WinRSEndpoint) -> None:
    with pytest.raises(RemoteError, match=r"Basic authentication to .* is refused"):
        await opened(winrm_host(endpoint.port, allow_basic=False))
    with pytest.raises(RemoteError, match=r"over plain HTTP .* is refused") as refused:
        await opened(winrm_host(endpoint.port, allow_unencrypted=False))
    assert refused.value.kind is RemoteErrorKind.AUTHENTICATION
    assert "password" in refused.value.message


async def test_ntlm_over_http_is_refused_by_a_basic_only_host(endpoint: WinRSEndpoint) -> None:
    # The endpoint speaks no NTLM (docs/agentless.md): the client's handshake meets 401.
    host = winrm_host(endpoint.port, auth=WinRMAuth.NTLM, allow_basic=False)
    with pytest.raises(RemoteError) as refused:
        await opened(host)
    assert refused.value.kind is RemoteErrorKind.AUTHENTICATION


async def test_https_with_the_hosts_ca_works(
    https_endpoint: WinRSEndpoint, tls: ListenerTls
) -> None:
    host = winrm_host(https_endpoint.port, https=True, ca_file=tls.ca_file)
    shell = await opened(host)
    try:
        result = await shell.run(SERVICES_COMMAND, timeout_s=10)
    finally:
        await shell.close()
    assert result.stdout == (RECORDED / "services.json").read_bytes()


async def test_an_https_certificate_the_client_does_not_trust_is_refused(
    https_endpoint: WinRSEndpoint, tmp_path: Path
) -> None:
    stranger = listener_tls(tmp_path, ["127.0.0.1"], label="stranger")
    actions_before = len(https_endpoint.actions)
    for ca_file in (None, stranger.ca_file):
        host = winrm_host(https_endpoint.port, https=True, ca_file=ca_file)
        with pytest.raises(RemoteError, match=r"is not trusted: .*certificate") as refused:
            await opened(host)
        assert refused.value.kind is RemoteErrorKind.HOST_KEY
    assert len(https_endpoint.actions) == actions_before  # no request got through


async def test_a_certificate_for_another_name_is_refused(tmp_path: Path) -> None:
    other = listener_tls(tmp_path, ["winrm.example.test"], label="other-name")
    with WinRSEndpoint(USER, PASSWORD, tls=other.context) as misnamed:
        host = winrm_host(misnamed.port, https=True, ca_file=other.ca_file)
        with pytest.raises(RemoteError, match=r"not trusted: .*(?i:mismatch|match)") as refused:
            await opened(host)
    assert refused.value.kind is RemoteErrorKind.HOST_KEY


async def test_a_closed_port_is_unreachable(endpoint: WinRSEndpoint) -> None:
    with WinRSEndpoint(USER, PASSWORD) as gone:
        port = gone.port
    with pytest.raises(RemoteError, match=r"cannot connect to http://127\.0\.0\.1") as refused:
        await opened(winrm_host(port))
    assert refused.value.kind is RemoteErrorKind.UNREACHABLE


async def test_output_past_the_cap_is_marked_truncated(endpoint: WinRSEndpoint) -> None:
    shell = await opened(winrm_host(endpoint.port))
    try:
        result = await shell.run(SERVICES_COMMAND, timeout_s=10, max_output=100)
    finally:
        await shell.close()
    assert result.stdout_truncated
    assert len(result.stdout) == 100


async def test_a_shell_is_used_by_one_command_at_a_time(endpoint: WinRSEndpoint) -> None:
    shell = await opened(winrm_host(endpoint.port))
    try:
        results = await asyncio.gather(
            *(shell.run(["Write-Output", str(n)], timeout_s=10) for n in range(5))
        )
    finally:
        await shell.close()
    assert [json.loads(r.stdout) for r in results] == [[str(n)] for n in range(5)]


def _real_host() -> tuple[WinRMHost, str] | None:
    endpoint = os.environ.get("SONDE_WINRM_ENDPOINT", "")  # https://HOST:5986
    user, password = os.environ.get("SONDE_WINRM_USER"), os.environ.get("SONDE_WINRM_PASSWORD")
    if not endpoint or not user or not password:
        return None
    scheme, _, rest = endpoint.partition("://")
    address = rest.split("/", 1)[0]
    name, _, port = address.rpartition(":")
    ca_file = os.environ.get("SONDE_WINRM_CA_FILE")
    target = RemoteTarget(Transport.WINRM, user, name, int(port))
    auth = WinRMAuth(os.environ.get("SONDE_WINRM_AUTH", "ntlm"))
    host = WinRMHost(
        target, https=scheme == "https", auth=auth, ca_file=Path(ca_file) if ca_file else None,
        allow_basic=auth is WinRMAuth.BASIC,
    )  # fmt: skip
    return host, password


async def test_real_windows_host(tmp_path: Path) -> None:
    configured = _real_host()
    if configured is None:
        pytest.skip(
            "no real Windows host: set SONDE_WINRM_ENDPOINT (https://HOST:5986), "
            "SONDE_WINRM_USER and SONDE_WINRM_PASSWORD (and SONDE_WINRM_CA_FILE, _AUTH)"
        )
    host, password = configured
    key = ed25519.Ed25519PrivateKey.generate()
    shell = await opened(host, password)
    try:
        one_line = [a for a in ATTACKS if a and "\n" not in a and "\r" not in a]
        echoed = await shell.run(["Write-Output", *one_line], timeout_s=60)
        assert echoed.exit_code == 0
        assert echoed.stdout.decode("utf-8") == "".join(f"{a}\r\n" for a in one_line)
        data = os.urandom(300 * 1024)
        await shell.upload(data, "C:\\Windows\\Temp\\sonde-winrm-test.bin", timeout_s=120)
        entry = signed_entry(key, parameters=1)
        result = await run_catalog_script(shell, entry, key.public_key(), {"v0": ATTACKS[6]})
        assert result.exit_code == 0
        assert result.stdout.decode("utf-8").rstrip("\r\n") == ATTACKS[6]
    finally:
        await shell.close()


class EnvironmentWatch(MutableMapping[str, str]):
    """os.environ as it is, and the names anything set or deleted in it while watched."""

    def __init__(self, environment: MutableMapping[str, str]) -> None:
        self.environment = environment
        self.changed: list[str] = []

    def __getitem__(self, name: str) -> str:
        return self.environment[name]

    def __setitem__(self, name: str, value: str) -> None:
        self.changed.append(name)
        self.environment[name] = value

    def __delitem__(self, name: str) -> None:
        self.changed.append(name)
        del self.environment[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.environment)

    def __len__(self) -> int:
        return len(self.environment)


async def test_shells_in_parallel_leave_the_environment_alone(
    endpoint: WinRSEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    """requests reads proxies by setting and deleting os.environ['no_proxy'] around each
    request (its set_environ): from several threads at once, one thread's delete broke
    another's reading of the environment (a KeyError, seen as 'answered a message this client
    cannot use' in a push install of 20 hosts). The shells take no proxy from the environment,
    so nothing of theirs changes it."""
    watch = EnvironmentWatch(os.environ)
    monkeypatch.setattr(os, "environ", watch)

    async def commands(n: int) -> list[bytes]:
        shell = await opened(winrm_host(endpoint.port))
        try:
            return [
                (await shell.run(["Write-Output", f"{n}-{i}"], timeout_s=20)).stdout
                for i in range(3)
            ]
        finally:
            await shell.close()

    outputs = await asyncio.gather(*(commands(n) for n in range(8)))
    assert [[json.loads(out) for out in outs] for outs in outputs] == [
        [[f"{n}-{i}"] for i in range(3)] for n in range(8)
    ]
    assert watch.changed == []


async def test_the_encryption_handshake_goes_direct_past_an_environment_proxy(
    endpoint: WinRSEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NTLM over HTTP: its first message (the encryption's handshake) reaches the host, not a
    proxy the server's environment names, and changes nothing in the environment."""
    with socket.create_server(("127.0.0.1", 0)) as proxy:
        proxy.settimeout(0.5)
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.getsockname()[1]}")
        monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{proxy.getsockname()[1]}")
        watch = EnvironmentWatch(os.environ)
        monkeypatch.setattr(os, "environ", watch)
        handshakes_before = endpoint.actions.count("Create")
        host = winrm_host(endpoint.port, auth=WinRMAuth.NTLM, allow_basic=False)
        with pytest.raises(RemoteError) as refused:
            await opened(host)
        # The host's own 401 to NTLM (the endpoint speaks Basic only), not a proxy's silence.
        assert refused.value.kind is RemoteErrorKind.AUTHENTICATION
        with pytest.raises(TimeoutError):
            proxy.accept()
        assert endpoint.actions.count("Create") == handshakes_before
        assert watch.changed == []
