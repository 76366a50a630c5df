"""`sonde deploy` as a real process against a real `sonde-server run --wheelhouse`: a hosts file
with a real sshd host and a closed port; the JSON report, exit code 1 for the failure, the
table of `--show`, and `--retry` skipping the host that is done."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.deploy_hosts import TestHost, fleet_options, shared_wheelhouse, start_host
from tests.support.deployment import Deployment, run
from tests.support.sshd import free_port


@pytest.fixture
def sonde(tmp_path: Path) -> Iterator[Deployment]:
    server = Deployment(tmp_path / "sonde")
    server.init()
    server.start_server("--wheelhouse", str(shared_wheelhouse()))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def host(tmp_path: Path) -> Iterator[TestHost]:
    started = start_host(tmp_path / "hosts")
    yield started
    started.stop()


def cli(sonde: Deployment, *args: str) -> subprocess.CompletedProcess[str]:
    return run("sonde", *args, env=sonde.cli_env(), timeout=180)


def _results(report: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {
        host["address"]: (host["result"], host.get("failed_check", "")) for host in report["hosts"]
    }


def test_deploy_from_a_hosts_file_reports_each_host_and_a_retry_skips_the_done(
    sonde: Deployment, host: TestHost, tmp_path: Path
) -> None:
    key_file = tmp_path / "fleet_ed25519"
    key_file.write_bytes(host.sshd.user_key)
    key_file.chmod(0o600)
    added = cli(
        sonde, "credentials", "add", "fleet-key", "--kind", "ssh-key",
        "--user", host.sshd.user, "--hosts", "127.0.0.1", "--key-file", str(key_file),
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    trusted = cli(
        sonde, "hosts", "trust", host.address, "--fingerprint", host.sshd.host_key.fingerprint
    )
    assert trusted.returncode == 0, trusted.stderr
    closed = f"{host.sshd.user}@127.0.0.1:{free_port()}"
    good = f"{host.sshd.user}@{host.address}"
    hosts = tmp_path / "fleet.txt"
    hosts.write_text(f"# lab\nssh {good}\nssh {closed}  # not there\n")
    options = fleet_options(tmp_path / "hosts")
    paths = [
        "--prefix", options.prefix, "--state-dir", options.state_dir,
        "--unit-dir", options.unit_dir, "--online-timeout", "30", "--min-free-mb", "50",
    ]  # fmt: skip

    done = cli(sonde, "--json", "deploy", "--from", str(hosts), *paths)
    assert done.returncode == 1, done.stdout + done.stderr  # one host failed
    report = json.loads(done.stdout)
    assert _results(report) == {
        good: ("DEPLOY_HOST_RESULT_SUCCEEDED", ""),
        closed: ("DEPLOY_HOST_RESULT_FAILED", "reachable"),
    }
    assert report["finished"] is True
    assert (host.prefix / "bin" / "sonde-agent").is_file()

    shown = cli(sonde, "deploy", "--show", report["id"])
    assert shown.returncode == 1
    table = shown.stdout
    assert f"Deployment {report['id']} of agent 0.1.0: 1 failed, 1 succeeded" in table
    assert "reachable" in table
    assert "could not reach" in table
    assert f"sonde deploy --retry {report['id']}" in shown.stdout

    again = cli(sonde, "--json", "deploy", "--retry", report["id"])
    assert again.returncode == 1
    redone = json.loads(again.stdout)
    assert redone["retry_of"] == report["id"]
    assert _results(redone)[closed] == ("DEPLOY_HOST_RESULT_FAILED", "reachable")
    assert _results(redone)[good] == ("DEPLOY_HOST_RESULT_SKIPPED", "")

    refused = cli(sonde, "deploy", "--from", str(tmp_path / "missing.txt"))
    assert refused.returncode != 0
    assert "cannot read the hosts file" in refused.stderr
