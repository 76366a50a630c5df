"""How the MSI reaches a Windows host (server/remote/msi_fetch.py): the choice made at
preflight, what preflight's answer is read as, and the refusals of a wrong delivery."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sonde.server.cli import build_parser, cmd_run
from sonde.server.console.deploy import report_table
from sonde.server.domain.deployment_store import DeployOptions
from sonde.server.domain.deployments import check_options
from sonde.server.errors import InvalidArgument
from sonde.server.remote.msi_fetch import (
    FETCH_PS,
    DeliveryRefused,
    FetchResult,
    MsiDelivery,
    PackageOffer,
    chosen_delivery,
    fetch_failure,
)
from sonde.server.remote.windows_install import check_windows_host, load_msi
from sonde.v1 import deploy_pb2
from tests.unit.console.test_console_80_columns import lines

OFFER = PackageOffer("https://sonde.example:8443/packages/ab12/sonde-agent-1.0.msi", "C0FFEE")
FETCH, STREAM, AUTO = MsiDelivery.FETCH, MsiDelivery.STREAM, MsiDelivery.AUTO


@pytest.mark.parametrize(
    ("asked", "offer", "reaches", "chosen"),
    [
        (AUTO, OFFER, True, FETCH),
        (AUTO, OFFER, False, STREAM),  # behind a firewall: streamed, not failed
        (AUTO, None, True, STREAM),  # no listener on this server
        (FETCH, OFFER, True, FETCH),
        (STREAM, OFFER, True, STREAM),  # the admin's word
        (STREAM, None, False, STREAM),
    ],
)
def test_fetch_where_the_host_reaches_the_listener_else_stream(
    asked: MsiDelivery, offer: PackageOffer | None, reaches: bool, chosen: MsiDelivery
) -> None:
    assert chosen_delivery(asked, offer, reaches, "pc-041") is chosen


def test_fetch_asked_for_and_impossible_says_what_to_do() -> None:
    with pytest.raises(DeliveryRefused, match="--package-listen HOST:PORT"):
        chosen_delivery(FETCH, None, True, "pc-041")
    with pytest.raises(DeliveryRefused, match=r"https://sonde.example:8443: open the firewall"):
        chosen_delivery(FETCH, OFFER, False, "pc-041")


FACTS = {"admin": True, "arch": "AMD64", "free_bytes": 10 * 2**30, "installed": ""}


@pytest.mark.parametrize(
    ("answer", "reaches"),
    [(True, True), (False, False), ("true", False), (1, False), (None, False)],
)
def test_only_a_true_reaches_server_counts(answer: object, reaches: bool) -> None:
    text = json.dumps(FACTS | {"reaches_server": answer}).encode()
    found = check_windows_host(text, label="pc", min_free_bytes=0, msi_size=1)
    assert found.reaches_server is reaches


def test_a_delivery_other_than_auto_fetch_or_stream_is_refused() -> None:
    for good in ("auto", "fetch", "stream"):
        check_options(DeployOptions(msi_delivery=good))
    with pytest.raises(InvalidArgument, match="auto, fetch or stream, got 'carrier pigeon'"):
        check_options(DeployOptions(msi_delivery="carrier pigeon"))


def test_fetch_failures_read_in_words_with_the_host_saying_why() -> None:
    said = fetch_failure(FetchResult(3, "the server at https://x did not show it"), "pc-041")
    assert said.startswith("pc-041: the server's certificate was not the one pinned")
    assert said.endswith(": the server at https://x did not show it")
    assert "exit code 9" in fetch_failure(FetchResult(9, ""), "pc-041")


def test_the_fetch_script_takes_every_value_as_a_parameter() -> None:
    script = FETCH_PS.decode()
    assert script.startswith(
        "param([string]$Url, [string]$Pin, [string]$Sha256, [string]$Msi, [int64]$Size)"
    )
    # ${Sha256} and ${Url} braced: "$Sha256:" would be read as a drive-qualified variable.
    assert "$Sha256:" not in script
    assert "$Url:" not in script


def test_the_msi_hash_is_the_files(tmp_path: Path) -> None:
    msi = tmp_path / "sonde-agent-2.0.1.msi"
    msi.write_bytes(b"\xd0\xcf\x11\xe0 an MSI")
    found = load_msi(msi)
    assert found.sha256 == "7226cfb6f57e66d9b069b507678638064f46260875a2fd99a793cada091a6f8a"
    assert found.version == "2.0.1"


def test_package_listen_without_an_msi_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = build_parser().parse_args(
        ["run", "--data", str(tmp_path), "--package-listen", "0.0.0.0:8443"]
    )
    assert cmd_run(args) != 0
    assert "--package-listen serves the agent's MSI: give it with --msi FILE" in (
        capsys.readouterr().err
    )


def test_the_report_says_which_way_each_msi_went() -> None:
    deployment = deploy_pb2.Deployment(
        id="3f9c0a1b2c3d4e5f",
        agent_version="0.1.0",
        hosts=[
            deploy_pb2.DeploymentHost(
                transport=deploy_pb2.DEPLOY_TRANSPORT_WINRM,
                address=f"admin@pc-04{n}:5986",
                stage=deploy_pb2.DEPLOY_STAGE_DONE,
                result=deploy_pb2.DEPLOY_HOST_RESULT_SUCCEEDED,
                msi_delivery=delivery,
            )
            for n, delivery in enumerate(["fetched", "streamed"])
        ]
        + [
            deploy_pb2.DeploymentHost(
                transport=deploy_pb2.DEPLOY_TRANSPORT_SSH,
                address="root@pc-050:22",
                stage=deploy_pb2.DEPLOY_STAGE_DONE,
                result=deploy_pb2.DEPLOY_HOST_RESULT_SUCCEEDED,
            )
        ],
    )
    shown = "\n".join(lines(report_table(deployment), width=120))
    assert "done (MSI fetched)" in shown
    assert "done (MSI streamed)" in shown
    assert shown.count("(MSI") == 2  # a Linux host has no MSI
